/**
 * Signed kill events and addenda, keys, and `killswitch verify` as a regulator runs it: every tamper
 * is caught with a specific error, and nothing on the verify path touches the network.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { Ed25519Signer } from '../../src/adapters/signing/ed25519-signer.js';
import { generateSigningKey, loadSigningKey } from '../../src/adapters/signing/keys.js';
import { configFile, ndjson, parseLines, repeat, ROOT, runCli, tempDir, writeIn } from '../helpers/cli.js';

interface Report {
  valid: boolean;
  file_missing?: boolean;
  addenda: number;
  valid_addenda: number;
  failures: { line?: number; code: string; message: string; agent_id?: string }[];
  rederived?: { checked: number; matched: number; not_rederivable: number };
}

type Doc = Record<string, unknown>;

let dir: string;
let keys: string;
let decisionsFile: string;
let addendaFile: string;
let addendaLines: string[];

function verify(addenda: string, extra: string[] = []): { status: number | null; report: Report; stderr: string } {
  const r = runCli(['verify', '--jwks', join(keys, 'jwks.json'), ...extra, addenda]);
  return { status: r.status, report: (r.stdout === '' ? {} : JSON.parse(r.stdout)) as Report, stderr: r.stderr };
}

function writeAddenda(lines: readonly string[]): string {
  return writeIn(dir, `addenda-${Math.random().toString(36).slice(2)}.ndjson`, lines.join('\n') + '\n');
}

beforeAll(() => {
  dir = tempDir('verify-');
  keys = join(dir, 'keys');
  expect(runCli(['keys', 'generate', '--out', keys]).status).toBe(0);
  const lines: string[] = [];
  for (let a = 0; a < 5; a++) lines.push(...repeat(`spiffe://example.org/agent/${a}`, a < 4 ? 'deny' : 'allow', 12, a * 20, 1));
  decisionsFile = writeIn(dir, 'decisions.ndjson', ndjson(lines));
  addendaFile = join(dir, 'addenda.ndjson');
  const r = runCli(['replay', '--config', configFile(dir), '--key', join(keys, 'signing-key.pem'), '--addenda', addendaFile, decisionsFile]);
  expect(r.status).toBe(0);
  addendaLines = readFileSync(addendaFile, 'utf8').trim().split('\n');
  expect(addendaLines).toHaveLength(4);
});

describe('keys and signing', () => {
  it('generates a PKCS#8 key with mode 0600 and a JWKS; rotating keeps the old key trusted', () => {
    const d = join(tempDir('keys-'), 'k');
    const first = runCli(['keys', 'generate', '--out', d]);
    expect(first.status).toBe(0);
    expect(statSync(join(d, 'signing-key.pem')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(d, 'signing-key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const jwks1 = JSON.parse(readFileSync(join(d, 'jwks.json'), 'utf8')) as { keys: { kid: string; kty: string; crv: string; d?: string }[] };
    expect(jwks1.keys).toHaveLength(1);
    expect(jwks1.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
    expect(jwks1.keys[0]!.d).toBeUndefined();
    expect(first.stdout).toContain(jwks1.keys[0]!.kid);

    const second = runCli(['keys', 'generate', '--out', d]);
    expect(second.status).toBe(0);
    const jwks2 = JSON.parse(readFileSync(join(d, 'jwks.json'), 'utf8')) as { keys: { kid: string }[] };
    expect(jwks2.keys.map((k) => k.kid)).toEqual([jwks1.keys[0]!.kid, expect.any(String)]);
    expect(existsSync(join(d, `${jwks1.keys[0]!.kid}.pem`))).toBe(true);
    // --if-missing leaves an existing key alone
    const again = runCli(['keys', 'generate', '--out', d, '--if-missing']);
    expect(again.stdout).toBe(`signing key ${jwks2.keys[1]!.kid} already in ${d}\n`);
  });

  it('signs with the kid in kill events and the public JWK in addenda; the same input gives the same bytes', () => {
    const kills1 = runCli(['replay', '--config', configFile(dir), '--key', join(keys, 'signing-key.pem'), decisionsFile]).stdout;
    const kills2 = runCli(['replay', '--config', configFile(dir), '--key', join(keys, 'signing-key.pem'), decisionsFile]).stdout;
    expect(kills2).toBe(kills1);
    const kid = (JSON.parse(readFileSync(join(keys, 'jwks.json'), 'utf8')) as { keys: { kid: string; x: string }[] }).keys[0]!;
    const ke = parseLines<Doc>(kills1)[0]!;
    expect(ke.issuer).toEqual({ kid: kid.kid });
    expect(ke.signature).toMatch(/^[A-Za-z0-9_-]{86}$/);
    const ad = JSON.parse(addendaLines[0]!) as Doc;
    expect(ad.issuer).toEqual({ kid: kid.kid, jwk: { kty: 'OKP', crv: 'Ed25519', x: kid.x } });
    // without --key nothing is signed, and nothing else differs
    const unsigned = parseLines<Doc>(runCli(['replay', '--config', configFile(dir), decisionsFile]).stdout)[0]!;
    const { issuer: _i, signature: _s, ...rest } = ke;
    expect(unsigned).toEqual(rest);
  });

  it('refuses to run an enabled kill switch without a signing key, unless allow_unsigned is set (with a warning)', () => {
    const d = tempDir('unsigned-');
    const input = writeIn(d, 'in.ndjson', ndjson(repeat('spiffe://example.org/a', 'deny', 10, 0)));
    const cfg = writeIn(d, 'c.json', JSON.stringify({ kill_switch: { enabled: true }, data_dir: join(d, 'data') }));
    const refused = runCli(['run', '--config', cfg, input]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/^killswitch: kill_switch.enabled is true but no signing key is configured/);
    const cfg2 = writeIn(d, 'c2.json', JSON.stringify({ kill_switch: { enabled: true }, data_dir: join(d, 'data'), signing: { allow_unsigned: true } }));
    const ok = runCli(['run', '--config', cfg2, input]);
    expect(ok.status).toBe(0);
    expect(ok.stderr).toMatch(/"level":40.*NOT signed/);
    expect(parseLines<Doc>(readFileSync(join(d, 'data/kills.ndjson'), 'utf8'))[0]!.signature).toBeUndefined();
  });

  it('refuses to run with trusted keys but no signing key: it would write kill events its own readers refuse', () => {
    const d = tempDir('jwks-no-key-');
    runCli(['keys', 'generate', '--out', join(d, 'keys')]);
    const input = writeIn(d, 'in.ndjson', ndjson(repeat('spiffe://example.org/a', 'deny', 10, 0)));
    const cfg = writeIn(d, 'c.json', JSON.stringify({ kill_switch: { enabled: true }, data_dir: join(d, 'data'), signing: { allow_unsigned: true, jwks_file: join(d, 'keys/jwks.json') } }));
    const refused = runCli(['run', '--config', cfg, input]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/^killswitch: signing.jwks_file is set but no signing key is/);
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(d, 'data/kills.ndjson'))).toBe(false);
    // --check-config says the same before anything runs
    const checked = runCli(['run', '--config', cfg, '--check-config']);
    expect(checked.status).toBe(2);
    expect(checked.stderr).toMatch(/signing.jwks_file is set but no signing key is/);
  });

  it('refuses to start from a ledger holding a forged kill event (an unblock signed by an untrusted key)', () => {
    const d = tempDir('forged-ledger-');
    runCli(['keys', 'generate', '--out', join(d, 'keys')]);
    const cfg = writeIn(d, 'c.json', JSON.stringify({
      kill_switch: { enabled: true }, data_dir: join(d, 'data'),
      signing: { private_key_file: join(d, 'keys/signing-key.pem'), jwks_file: join(d, 'keys/jwks.json') },
    }));
    const A = 'spiffe://example.org/a';
    expect(runCli(['run', '--config', cfg, writeIn(d, 'in.ndjson', ndjson(repeat(A, 'deny', 10, 0)))]).status).toBe(0);
    const kills = join(d, 'data/kills.ndjson');
    const block = parseLines<Doc>(readFileSync(kills, 'utf8'))[0]!;
    const { signature: _s, issuer: _i, ...body } = block;
    const forged = new Ed25519Signer(generateSigningKey()).sign({ ...body, action: 'unblock', trigger: 'operator', authorized_by: 'mallory' }, false);
    writeFileSync(kills, readFileSync(kills, 'utf8') + canonicalJson(forged) + '\n');
    const r = runCli(['run', '--config', cfg, writeIn(d, 'empty.ndjson', '')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/kill event #2 is not trusted \(unknown_kid/);
  });
});

describe('killswitch verify', () => {
  it('accepts genuine addenda and re-derives every trip from the decisions', () => {
    const { status, report } = verify(addendaFile, ['--decisions', decisionsFile]);
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({ valid: true, addenda: 4, valid_addenda: 4, rederived: { checked: 4, matched: 4, not_rederivable: 0 } });
    expect(status).toBe(0);
  });

  /** Every leaf of an addendum, changed, is caught. */
  function leaves(o: unknown, path: string[] = []): string[][] {
    if (o !== null && typeof o === 'object') {
      return Object.entries(o as Doc).flatMap(([k, v]) => leaves(v, [...path, k]));
    }
    return [path];
  }
  function mutate(doc: Doc, path: string[]): Doc {
    const copy = JSON.parse(JSON.stringify(doc)) as Doc;
    let at: Doc = copy;
    for (const k of path.slice(0, -1)) at = at[k] as Doc;
    const last = path[path.length - 1]!;
    const v = at[last];
    at[last] = typeof v === 'number' ? v + 1 : typeof v === 'boolean' ? !v : typeof v === 'string' ? (v.length > 2 ? v.slice(0, -2) + (v.endsWith('AA') ? 'AB' : 'AA') : v + 'x') : v;
    return copy;
  }

  it('catches a change to any field of an addendum, with the error that names it', () => {
    const doc = JSON.parse(addendaLines[1]!) as Doc;
    const paths = leaves(doc);
    expect(paths.length).toBeGreaterThan(25);
    for (const path of paths) {
      const lines = [...addendaLines];
      lines[1] = JSON.stringify(mutate(doc, path));
      const { status, report } = verify(writeAddenda(lines));
      const name = path.join('.');
      expect(status, name).toBe(1);
      const codes = report.failures.filter((f) => f.line === 2).map((f) => f.code);
      const expected = name === 'issuer.kid' ? 'unknown_kid' : name === 'issuer.jwk.x' ? 'jwk_mismatch' : undefined;
      if (expected !== undefined) expect(codes, name).toContain(expected);
      else expect(codes.some((c) => c === 'bad_signature' || c === 'schema_invalid'), `${name}: ${codes.join(',')}`).toBe(true);
    }
  }, 180_000);

  it('catches swapped, dropped, duplicated and forked addenda, and a dropped head', () => {
    const [a, b, c, d] = addendaLines as [string, string, string, string];
    const swapped = verify(writeAddenda([a, c, b, d])).report.failures.map((f) => f.code);
    expect(swapped).toEqual(expect.arrayContaining(['chain_gap', 'chain_reordered']));
    const dropped = verify(writeAddenda([a, c, d])).report.failures;
    expect(dropped).toEqual([expect.objectContaining({ line: 2, code: 'chain_gap' })]);
    const duplicated = verify(writeAddenda([a, b, b, c, d])).report.failures;
    expect(duplicated).toEqual([expect.objectContaining({ line: 3, code: 'chain_duplicate' })]);
    const head = verify(writeAddenda([b, c, d])).report.failures;
    expect(head).toEqual([expect.objectContaining({ line: 1, code: 'chain_head_missing' })]);
    // a fork: a second, validly signed addendum claiming sequence 2
    const { signature: _s, issuer: _i, ...body } = JSON.parse(b) as Doc;
    const forked = verify(writeAddenda([a, b, JSON.stringify(resign({ ...body, session_ids: ['other'] })), c, d])).report.failures;
    expect(forked).toEqual([expect.objectContaining({ line: 3, code: 'chain_fork' })]);
  });

  it('rejects addenda re-signed with an untrusted key, and a kid changed to a trusted one', () => {
    const doc = JSON.parse(addendaLines[0]!) as Doc;
    const { signature: _s, issuer: _i, ...body } = doc;
    const mallory = new Ed25519Signer(generateSigningKey());
    const untrusted = verify(writeAddenda([canonicalJson(mallory.sign(body, true)), ...addendaLines.slice(1)])).report.failures;
    expect(untrusted.map((f) => f.code)).toContain('unknown_kid');
    // Mallory's signature under our kid: the key comes from the JWKS, so the signature fails.
    const signed = mallory.sign(body, true) as Doc & { issuer: { kid: string } };
    const ours = (doc.issuer as { kid: string; jwk: unknown });
    const relabelled = { ...signed, issuer: { kid: ours.kid, jwk: ours.jwk } };
    const r = verify(writeAddenda([canonicalJson(relabelled), ...addendaLines.slice(1)])).report.failures;
    expect(r.map((f) => f.code)).toContain('bad_signature');
  });

  it('re-derives from the decisions: altered evidence counts are caught even when validly re-signed', () => {
    const doc = JSON.parse(addendaLines[0]!) as Doc & { evidence: { calls: number; denies: number } };
    const { signature: _s, issuer: _i, ...body } = doc;
    const altered = resign({ ...body, evidence: { ...doc.evidence, calls: 11, denies: 11 } });
    // the rest of the chain is re-linked too, so only re-derivation can tell
    const lines = relink([canonicalJson(altered), ...addendaLines.slice(1)]);
    const plain = verify(writeAddenda(lines));
    expect(plain.report.valid).toBe(true);
    const { status, report } = verify(writeAddenda(lines), ['--decisions', decisionsFile]);
    expect(status).toBe(1);
    expect(report.failures).toEqual([expect.objectContaining({
      line: 1, code: 'rederive_mismatch', message: expect.stringContaining('calls: recorded 11, derived 10') as string,
    })]);
  });

  it('reports a trip in the decisions that no addendum records (a truncated tail, caught with --decisions)', () => {
    const { report } = verify(writeAddenda(addendaLines.slice(0, 3)), ['--decisions', decisionsFile]);
    expect(report.failures).toEqual([expect.objectContaining({ code: 'missing_addendum', agent_id: 'spiffe://example.org/agent/3' })]);
    // without the decisions a truncated tail cannot be seen: the shorter chain is valid
    expect(verify(writeAddenda(addendaLines.slice(0, 3))).report.valid).toBe(true);
  });

  it('lists every failure of every document, not only the first', () => {
    const lines = [...addendaLines];
    lines[0] = 'not json';
    lines[2] = JSON.stringify({ ...(JSON.parse(lines[2]!) as Doc), signature: 'A'.repeat(86) });
    const { report } = verify(writeAddenda(lines));
    // line 4 is fine in itself, but its prev_hash no longer matches the altered line 3
    expect(report.failures.map((f) => [f.line, f.code])).toEqual([
      [1, 'invalid_json'], [2, 'chain_head_missing'], [3, 'bad_signature'], [4, 'chain_prev_hash_mismatch'],
    ]);
    expect(report.valid_addenda).toBe(0);
  });

  it('gives usage errors exit 2', () => {
    expect(runCli(['verify', addendaFile]).status).toBe(2);
    expect(runCli(['verify', '--jwks', join(dir, 'nope.json'), addendaFile]).status).toBe(2);
    expect(runCli(['verify', '--jwks', join(keys, 'jwks.json')]).status).toBe(2);
  });

  it('never touches the network: with every socket, DNS and HTTP API made to throw, verify still succeeds', () => {
    const guard = join(ROOT, 'test/helpers/no-network.cjs');
    const r = runCli(['verify', '--jwks', join(keys, 'jwks.json'), '--decisions', decisionsFile, addendaFile], {
      env: { NODE_OPTIONS: `--require ${guard}` },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as Report).valid).toBe(true);
    // and the guard works: a process that does try to connect is stopped
    const probe = runCli(['--version'], { env: { NODE_OPTIONS: `--require ${guard}`, NO_NETWORK_SELF_TEST: '1' } });
    expect(probe.stderr).toContain('network access attempted');
  });

  it('rejects an addendum with a duplicated key as duplicate_key, whichever copy is the forged one', () => {
    const doc = JSON.parse(addendaLines[1]!) as Doc & { agent_id: string };
    const real = `"agent_id":${JSON.stringify(doc.agent_id)}`;
    const forged = '"agent_id":"spiffe://example.org/agent/innocent"';
    expect(addendaLines[1]!.startsWith(`{${real},`)).toBe(true);
    // forged first: a parser that keeps the last value (JSON.parse) sees the signed, genuine document
    const forgedFirst = addendaLines[1]!.replace(`{${real},`, `{${forged},${real},`);
    // real first: a parser that keeps the first value sees the genuine one
    const realFirst = addendaLines[1]!.replace(`{${real},`, `{${real},${forged},`);
    for (const [name, line] of [['forged first', forgedFirst], ['real first', realFirst]] as const) {
      const lines = [...addendaLines];
      lines[1] = line;
      const { status, report } = verify(writeAddenda(lines));
      expect(status, name).toBe(1);
      const onLine2 = report.failures.filter((f) => f.line === 2);
      expect(onLine2, name).toEqual([expect.objectContaining({ code: 'duplicate_key', message: expect.stringContaining('"agent_id"') as string })]);
      expect(report.valid_addenda, name).toBeLessThan(4);
    }
  });

  it('rejects a line with a byte that is not UTF-8 (it must not verify as U+FFFD), and a number with no canonical form, each with a report and no stack trace', () => {
    const doc = JSON.parse(addendaLines[0]!) as Doc & { session_ids: string[] };
    // a signed document whose text holds the escape of U+FFFD; the forger writes a raw 0xFF in its place
    const signed = canonicalJson(resign({ ...doc, session_ids: ['sess-\ufffd'] }));
    expect(signed).toContain('\\ufffd');
    const [before, after] = signed.split('\\ufffd') as [string, string];
    const file = join(dir, 'not-utf8.ndjson');
    writeFileSync(file, Buffer.concat([Buffer.from(`${before}`), Buffer.from([0xff]), Buffer.from(`${after}\n${addendaLines.slice(1).join('\n')}\n`)]));
    const utf8 = verify(file);
    expect(utf8.status).toBe(1);
    expect(utf8.report.failures.filter((f) => f.line === 1)).toEqual([expect.objectContaining({ code: 'invalid_utf8' })]);
    // deny_rate 0.00001 is JSON, but has no canonical form: no signed bytes, so not valid (and no crash)
    const evidence = (doc as unknown as { evidence: Record<string, unknown> }).evidence;
    const noCanonical = JSON.stringify({ ...doc, evidence: { ...evidence, deny_rate: 0.00001 } });
    const r = verify(writeAddenda([noCanonical, ...addendaLines.slice(1)]));
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.status).toBe(1);
    expect(r.report.failures.filter((f) => f.line === 1)).toEqual([expect.objectContaining({ code: 'schema_invalid', message: expect.stringContaining('no canonical form') as string })]);
  });

  it('rejects an addendum nested deeper than a strict document allows as too_deep', () => {
    const doc = JSON.parse(addendaLines[0]!) as Doc;
    const deep = canonicalJson(resign({ ...doc, session_ids: [JSON.parse('['.repeat(100) + ']'.repeat(100)) as unknown] }));
    const { status, report } = verify(writeAddenda([deep, ...addendaLines.slice(1)]));
    expect(status).toBe(1);
    expect(report.failures.filter((f) => f.line === 1)).toEqual([expect.objectContaining({ code: 'too_deep' })]);
  });

  it('refuses a JWKS with a duplicated key: exit 2, one line, no stack trace', () => {
    const jwks = readFileSync(join(keys, 'jwks.json'), 'utf8');
    const attacker = generateSigningKey().jwk.x;
    // a verifier keeping the first `x` would trust the attacker's key; JSON.parse keeps ours
    const twice = jwks.replace(/"x":\s*"/, `"x": "${attacker}", "x": "`);
    expect(twice).not.toBe(jwks);
    const file = writeIn(dir, 'jwks-duplicate.json', twice);
    const r = runCli(['verify', '--jwks', file, addendaFile]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`killswitch: ${file}: duplicate key "x"; a key file must be a strict JSON document\n`);
  });

  it('reports every trip as missing_addendum when the addenda file is empty', () => {
    const { status, report } = verify(writeIn(dir, 'empty-addenda.ndjson', ''), ['--decisions', decisionsFile]);
    expect(report.failures.map((f) => [f.code, f.agent_id])).toEqual([0, 1, 2, 3].map((a) => ['missing_addendum', `spiffe://example.org/agent/${a}`]));
    expect(report.valid).toBe(false);
    expect(status).toBe(1);
  });

  it('reports every trip as missing_addendum when the addenda file does not exist (and says so)', () => {
    const absent = join(dir, 'never-written.ndjson');
    const r = runCli(['verify', '--jwks', join(keys, 'jwks.json'), '--decisions', decisionsFile, absent]);
    expect(r.stderr).toBe(`killswitch: ${absent} does not exist; verified as a file holding no addendum\n`);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.file_missing).toBe(true);
    expect(report.failures.map((f) => [f.code, f.agent_id])).toEqual([0, 1, 2, 3].map((a) => ['missing_addendum', `spiffe://example.org/agent/${a}`]));
    expect(r.status).toBe(1);
    // without the decisions there is nothing to check it against: a usage error
    const alone = runCli(['verify', '--jwks', join(keys, 'jwks.json'), absent]);
    expect(alone.status).toBe(2);
    expect(alone.stderr).toMatch(/^killswitch: .*never-written\.ndjson: cannot read addenda \(ENOENT\)\n$/);
  });

  it('reports exactly the trip whose addendum was removed as missing_addendum, also when overrides record other settings', () => {
    const [a, , c, d] = addendaLines as [string, string, string, string];
    const middle = verify(writeAddenda([a, c, d]), ['--decisions', decisionsFile]);
    expect(middle.report.failures.filter((f) => f.code === 'missing_addendum')).toEqual([
      expect.objectContaining({ agent_id: 'spiffe://example.org/agent/1' }),
    ]);
    expect(middle.status).toBe(1);

    // agent/0 trips under an override of its own: its addendum records min_calls 5, the others 10
    const od = tempDir('verify-overrides-');
    const cfg = configFile(od, {}, { overrides: [{ match: 'spiffe://example.org/agent/0', min_calls: 5 }] });
    const addenda = join(od, 'addenda.ndjson');
    expect(runCli(['replay', '--config', cfg, '--key', join(keys, 'signing-key.pem'), '--addenda', addenda, decisionsFile]).status).toBe(0);
    const lines = readFileSync(addenda, 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { gateway: { kill_switch: { min_calls: number } } }).gateway.kill_switch.min_calls)).toEqual([5, 10, 10, 10]);
    const whole = verify(writeAddenda(lines), ['--decisions', decisionsFile]);
    expect(whole.report.failures).toEqual([]);
    expect(whole.status).toBe(0);
    const cut = verify(writeAddenda(lines.slice(0, 3)), ['--decisions', decisionsFile]);
    expect(cut.report.failures).toEqual([expect.objectContaining({ code: 'missing_addendum', agent_id: 'spiffe://example.org/agent/3' })]);
    expect(cut.status).toBe(1);
  });

  // Helpers that re-sign with the genuine key (an insider with the key, for the re-derivation test).
  function resign(body: Doc): Doc {
    return signer().sign(body, true);
  }
  function relink(lines: string[]): string[] {
    let prev = 'genesis';
    return lines.map((l) => {
      const d = JSON.parse(l) as Doc & { chain: { prev_hash: string } };
      const { signature: _s, issuer: _i, ...body } = d;
      const re = resign({ ...body, chain: { ...d.chain, prev_hash: prev } });
      prev = 'sha256:' + sha256(canonicalJson(re));
      return canonicalJson(re);
    });
  }
});

function sha256(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
function signer(): Ed25519Signer {
  return new Ed25519Signer(loadSigningKey(join(keys, 'signing-key.pem')));
}
