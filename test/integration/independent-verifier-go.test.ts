/**
 * An independent verifier of TRACE-claim addenda, written in Go from docs/ alone (tools/verify-go: strict
 * JSON, the addendum shape, canonical JSON, Ed25519 signatures, kids, hash chains), run against a real
 * embedded `killswitch run` (several trips with non-ASCII session ids, an operator unblock and block, a
 * restart that continues a chain), against tampered copies of its addenda, and against the committed
 * vectors. It must agree with `killswitch verify`. The Go toolchain is required: without it the test fails.
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { ROOT, runCli, startLogged, T0, tempDir, writeIn } from '../helpers/cli.js';
import { eventually, freePort } from '../helpers/http-request.js';

const GO_MODULE = join(ROOT, 'tools/verify-go');
const VECTORS = join(ROOT, 'test/vectors');
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const goEnv = {
  ...process.env,
  GOFLAGS: '-mod=mod -buildvcs=false',
  GOCACHE: process.env.GOCACHE ?? join(ROOT, '.cache/go-build'),
  GOTOOLCHAIN: 'local',
  CGO_ENABLED: '0',
};

let goBinary = '';

function requireGo(): void {
  const probe = spawnSync('go', ['version'], { encoding: 'utf8', env: goEnv });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(`the Go toolchain is required for this test (go version: ${probe.error?.message ?? probe.stderr})`);
  }
}

// ---- the Go verifier ----

interface GoLine {
  line: number;
  ok: boolean;
  stream?: string;
  seq?: number;
  codes: string[];
  text: string;
}

interface GoResult {
  status: number | null;
  lines: GoLine[];
  stderr: string;
}

function goVerify(jwks: string, addenda: string): GoResult {
  const r = spawnSync(goBinary, ['--jwks', jwks, addenda], { encoding: 'utf8' });
  if (r.error !== undefined) throw r.error;
  const lines = r.stdout.split('\n').filter((l) => l.length > 0).map((text): GoLine => {
    const parts = text.split(' ');
    if (parts[0] === 'OK') {
      return { line: Number(parts[1]), ok: true, stream: parts.slice(2, -1).join(' '), seq: Number(parts.at(-1)), codes: [], text };
    }
    expect(parts[0], text).toBe('FAIL');
    return { line: Number(parts[1]), ok: false, codes: (parts[2] ?? '').split(','), text };
  });
  return { status: r.status, lines, stderr: r.stderr };
}

/** line -> codes of every FAIL line */
function goFailures(r: GoResult): Record<number, string[]> {
  return Object.fromEntries(r.lines.filter((l) => !l.ok).map((l) => [l.line, l.codes]));
}

// ---- `killswitch verify` ----

interface Report {
  valid: boolean;
  addenda: number;
  valid_addenda: number;
  streams: Record<string, { addenda: number; first_sequence: number; last_sequence: number }>;
  failures: { line?: number; code: string; message: string }[];
}

function ksVerify(jwks: string, addenda: string): { status: number | null; report: Report } {
  const r = runCli(['verify', '--jwks', jwks, addenda]);
  expect(r.stderr).toBe('');
  return { status: r.status, report: JSON.parse(r.stdout) as Report };
}

function ksFailureLines(report: Report): number[] {
  return [...new Set(report.failures.map((f) => f.line ?? 0))].sort((a, b) => a - b);
}

// ---- the product run ----

const SCRAPER = 'spiffe://example.org/ns/prod/sa/scraper';
const EMOJI = 'spiffe://example.org/ns/prod/sa/emoji';
const CROWD = 'spiffe://example.org/ns/prod/sa/crowd';
const ODD = 'spiffe://build-42.example-corp.io/ns/v1.2-rc/sa/Agent-007.x_y-9';
const CLEAN = 'spiffe://example.org/ns/prod/sa/clean';
/** session ids that exercise every escape of canonical JSON */
const ODD_SESSIONS = ['sess-\u00fc', 'sess-\u{1F600}', 'tab\there', 'quote"back\\slash', 'del\u007f', 'ls\u2028', 'bell\u0007', 'cjk-\u4e2d\u6587', 'ff61-\uff61'];

let counter = 0;
function dec(agent: string | null, verdict: string, atSeconds: number, session?: string): string {
  counter++;
  return JSON.stringify({
    decision_id: `go-${counter}`,
    ...(agent === null ? {} : { agent_id: agent }),
    decision: verdict,
    occurred_at: new Date(T0 + atSeconds * 1000).toISOString(),
    ...(session === undefined ? {} : { session_id: session }),
  });
}

interface Run {
  dir: string;
  jwks: string;
  addenda: string;
  text: string;
  docs: { line: number; stream: string; seq: number; agent: string; trigger: string; raw: string }[];
}

let run: Run;

async function productRun(): Promise<Run> {
  const dir = tempDir('verify-go-');
  expect(runCli(['keys', 'generate', '--out', join(dir, 'keys')]).status).toBe(0);
  expect(runCli(['tokens', 'generate', '--out', join(dir, 'tokens'), '--name', 'op', '--roles', 'viewer,operator']).status).toBe(0);
  const token = readFileSync(join(dir, 'tokens', 'op.token'), 'utf8').trim();

  // a.ndjson: three identities trip (non-ASCII sessions; the crowd has 43 sessions, of which the first 32 are listed)
  const a: string[] = [];
  for (let i = 0; i < 6; i++) a.push(dec(SCRAPER, i % 3 === 0 ? 'allow' : 'deny', i, 'sess-\u00fc'));
  for (let i = 0; i < 6; i++) a.push(dec(EMOJI, i === 2 ? 'advisory_deny' : 'deny', 10 + i, i % 2 === 0 ? 'sess-\u{1F600}' : 'sess-\u00fc'));
  a.push(dec(null, 'deny', 19));
  a.push('this line is not JSON');
  a.push('');
  // the crowd alternates allow and deny (rate 0.5, below the threshold) for 34 calls, then 9 denies trip it: 43 sessions
  for (let i = 0; i < 43; i++) a.push(dec(CROWD, i < 34 && i % 2 === 0 ? 'allow' : 'deny', 20 + i * 0.5, i < ODD_SESSIONS.length ? ODD_SESSIONS[i] : `sess-${i}-\u00e9`));
  for (let i = 0; i < 12; i++) a.push(dec(CLEAN, 'allow', 30 + i));
  // ./b.ndjson (a stream name is the path exactly as given): an identity with digits, dots and dashes
  const b: string[] = [];
  for (let i = 0; i < 7; i++) b.push(dec(ODD, i === 0 ? 'step_up' : 'deny', 5 + i, `run-${i}.v1-\u00df`));
  writeIn(dir, 'a.ndjson', a.join('\n') + '\n');
  writeIn(dir, 'b.ndjson', b.join('\n') + '\n');

  const port = await freePort();
  const config = (http: boolean): string => writeIn(dir, http ? 'config-http.json' : 'config.json', JSON.stringify({
    kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.6, min_calls: 5 },
    data_dir: join(dir, 'data'),
    signing: { private_key_file: join(dir, 'keys', 'signing-key.pem'), jwks_file: join(dir, 'keys', 'jwks.json') },
    ...(http ? { http: { listen: `127.0.0.1:${port}`, tokens_file: join(dir, 'tokens', 'tokens.json') } } : {}),
    log: { level: 'info' },
  }));
  const addenda = join(dir, 'data', 'addenda.ndjson');
  const count = (): number => (existsSync(addenda) ? readFileSync(addenda, 'utf8').split('\n').filter((l) => l.length > 0).length : 0);

  // 1. the service with the operator API reads both inputs; then an operator unblocks the scraper and blocks another identity
  const service = startLogged(['run', '--config', config(true), 'a.ndjson', './b.ndjson'], { cwd: dir });
  try {
    const exited = (): boolean => service.child.exitCode !== null || service.child.signalCode !== null;
    await eventually(() => Promise.resolve(count()), (n) => n >= 4 || exited(), 60_000);
    await eventually(() => Promise.resolve(service.log()), (o) => o.includes('serving the operator API') || exited(), 30_000);
    expect(exited(), 'killswitch run stopped early').toBe(false);
    const ops = { env: { KILLSWITCH_TOKEN: token }, cwd: dir };
    const url = `http://127.0.0.1:${port}`;
    const un = runCli(['unblock', SCRAPER, '--reason', 'false positive \u2014 INC-\u00e942', '--by', 'zo\u00eb@example.org', '--url', url], ops);
    expect(un.status, un.stderr).toBe(0);
    const bl = runCli(['block', CLEAN, '--reason', 'manual \u{1F6AB} "test"', '--by', 'oncall', '--url', url], ops);
    expect(bl.status, bl.stderr).toBe(0);
    await eventually(() => Promise.resolve(count()), (n) => n >= 6, 30_000);
  } catch (e) {
    await service.stop();
    throw new Error(`${String(e)}\n--- killswitch run:\n${service.log()}`, { cause: e });
  }
  const stopped = await service.stop();
  expect(stopped, service.log()).toBe(0);
  // 2. a restart without the API resumes a.ndjson: the unblocked scraper trips again (epoch 2), the chain continues
  const more: string[] = [];
  for (let i = 0; i < 6; i++) more.push(dec(SCRAPER, 'deny', 120 + i, 'sess-\u00fc-2'));
  appendFileSync(join(dir, 'a.ndjson'), more.join('\n') + '\n');
  const again = runCli(['run', '--config', config(false), 'a.ndjson'], { cwd: dir });
  expect(again.status, again.stderr).toBe(0);

  const text = readFileSync(addenda, 'utf8');
  const docs = text.split('\n').map((raw, i) => ({ raw, line: i + 1 })).filter((l) => l.raw.length > 0).map(({ raw, line }) => {
    const d = JSON.parse(raw) as { agent_id: string; chain: { stream: string; sequence_number: number }; gateway: { kill_switch: { trigger: string } } };
    return { line, raw, stream: d.chain.stream, seq: d.chain.sequence_number, agent: d.agent_id, trigger: d.gateway.kill_switch.trigger };
  });
  return { dir, jwks: join(dir, 'keys', 'jwks.json'), addenda, text, docs };
}

/** Write `lines` (the addenda file's lines, edited) as a file of its own. */
function tampered(name: string, lines: string[]): string {
  return writeIn(run.dir, name, lines.join('\n') + '\n');
}

function lines(): string[] {
  return run.text.split('\n').filter((l) => l.length > 0);
}

/** The next addendum of the same stream after the one on `line`, if any. */
function successor(line: number): { line: number } | undefined {
  const d = run.docs.find((x) => x.line === line)!;
  return run.docs.find((x) => x.stream === d.stream && x.seq === d.seq + 1);
}

/** An addendum of stream a.ndjson that has a successor in its stream. */
function middleOfChain(): number {
  const d = run.docs.find((x) => x.stream === 'a.ndjson' && x.seq >= 2 && successor(x.line) !== undefined);
  expect(d).toBeDefined();
  return d!.line;
}

beforeAll(async () => {
  requireGo();
  const out = tempDir('verify-go-bin-');
  goBinary = join(out, 'verify-go');
  const b = spawnSync('go', ['build', '-o', goBinary, '.'], { cwd: GO_MODULE, env: goEnv, encoding: 'utf8' });
  if (b.error !== undefined || b.status !== 0) throw new Error(`go build of tools/verify-go failed: ${b.error?.message ?? b.stderr}`);
  run = await productRun();
}, 180_000);

describe('an independent Go verifier written from docs/ agrees with killswitch verify', () => {
  it('its own unit tests pass: the worked examples of spec section 5, strict JSON, SPIFFE IDs, the vectors', () => {
    const t = spawnSync('go', ['test', '-count=1', '.'], { cwd: GO_MODULE, env: goEnv, encoding: 'utf8' });
    expect(t.error).toBeUndefined();
    expect(t.status, t.stdout + t.stderr).toBe(0);
  }, 180_000);

  it('the product run made the addenda the scenario needs', () => {
    const streams = [...new Set(run.docs.map((d) => d.stream))].sort();
    expect(streams).toEqual(['./b.ndjson', 'a.ndjson', 'operator']);
    expect(run.docs.filter((d) => d.trigger === 'operator').map((d) => d.agent)).toEqual([SCRAPER, CLEAN]);
    expect(run.docs.filter((d) => d.trigger === 'deny_rate').map((d) => d.agent).sort()).toEqual([CROWD, EMOJI, ODD, SCRAPER, SCRAPER].sort());
    expect(run.docs.filter((d) => d.stream === 'a.ndjson').map((d) => d.seq)).toEqual([1, 2, 3, 4]);
    // canonical JSON escapes every non-ASCII character: the sessions are there, escaped
    expect(run.text).toContain('"sess-\\u00fc"');
    expect(run.text).toContain('"sess-\\ud83d\\ude00"');
    expect(run.text).toContain('"tab\\there","quote\\"back\\\\slash","del\\u007f","ls\\u2028","bell\\u0007"');
    expect(run.text).toContain(ODD);
    expect(/[^\x20-\x7e\n]/.test(run.text)).toBe(false);
  });

  it('says OK for every addendum, with the streams and tips killswitch verify reports', () => {
    const go = goVerify(run.jwks, run.addenda);
    expect(go.lines.filter((l) => !l.ok).map((l) => l.text)).toEqual([]);
    expect(go.status).toBe(0);
    expect(go.lines.map((l) => [l.line, l.stream, l.seq])).toEqual(run.docs.map((d) => [d.line, d.stream, d.seq]));
    const ks = ksVerify(run.jwks, run.addenda);
    expect(ks.report.failures).toEqual([]);
    expect(ks.status).toBe(0);
    expect(ks.report.addenda).toBe(run.docs.length);
    // tips: "tip <stream> <seq> sha256:<hex> (<n> addenda)" on standard error
    const tips: Report['streams'] = {};
    for (const l of go.stderr.split('\n').filter((x) => x.startsWith('tip '))) {
      const m = /^tip (\S+) (\d+) (sha256:[0-9a-f]{64}) \((\d+) addenda\)$/.exec(l);
      expect(m, l).not.toBeNull();
      tips[m![1]!] = { addenda: Number(m![4]), first_sequence: 1, last_sequence: Number(m![2]) };
    }
    expect(tips).toEqual(ks.report.streams);
  });

  it('a flipped signature byte: bad_signature on that line, and the next addendum of its stream no longer links', () => {
    const line = middleOfChain();
    const next = successor(line)!.line;
    const all = lines();
    const doc = JSON.parse(all[line - 1]!) as { signature: string };
    const sig = Buffer.from(doc.signature, 'base64url');
    sig[17] = sig[17]! ^ 0x01;
    all[line - 1] = all[line - 1]!.replace(doc.signature, sig.toString('base64url'));
    const file = tampered('flipped.ndjson', all);
    const go = goVerify(run.jwks, file);
    expect(goFailures(go)).toEqual({ [line]: ['bad_signature'], [next]: ['chain_prev_hash_mismatch'] });
    expect(go.status).toBe(1);
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ksFailureLines(ks.report)).toEqual([line, next]);
    expect(ks.report.failures.map((f) => f.code).sort()).toEqual(['bad_signature', 'chain_prev_hash_mismatch']);
  });

  it('a changed field (the block pinned on another identity, last of its chain): bad_signature on that line only', () => {
    const d = run.docs.find((x) => x.stream === './b.ndjson' && successor(x.line) === undefined)!;
    const all = lines();
    all[d.line - 1] = all[d.line - 1]!.replace(`"agent_id":"${ODD}"`, '"agent_id":"spiffe://example.org/ns/prod/sa/innocent"');
    expect(all[d.line - 1]).not.toBe(run.docs.find((x) => x.line === d.line)!.raw);
    const file = tampered('changed.ndjson', all);
    const go = goVerify(run.jwks, file);
    expect(goFailures(go)).toEqual({ [d.line]: ['bad_signature'] });
    expect(go.status).toBe(1);
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual([[d.line, 'bad_signature']]);
  });

  it('a dropped line: chain_gap on the next addendum of that stream, nothing else', () => {
    const line = middleOfChain();
    const next = successor(line)!.line - 1; // its line number once the line above is gone
    const all = lines();
    all.splice(line - 1, 1);
    const file = tampered('dropped.ndjson', all);
    const go = goVerify(run.jwks, file);
    expect(goFailures(go)).toEqual({ [next]: ['chain_gap'] });
    expect(go.status).toBe(1);
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual([[next, 'chain_gap']]);
  });

  it('a duplicated key (a forged agent_id ahead of the signed one): duplicate_key, and the chain skips the line', () => {
    const line = middleOfChain();
    const next = successor(line)!.line;
    const all = lines();
    const real = `{"agent_id":${JSON.stringify(run.docs.find((x) => x.line === line)!.agent)},`;
    expect(all[line - 1]!.startsWith(real)).toBe(true);
    all[line - 1] = all[line - 1]!.replace(real, `{"agent_id":"spiffe://example.org/ns/prod/sa/innocent",${real.slice(1)}`);
    const file = tampered('duplicate-key.ndjson', all);
    const go = goVerify(run.jwks, file);
    expect(goFailures(go)).toEqual({ [line]: ['duplicate_key'], [next]: ['chain_gap'] });
    expect(go.status).toBe(1);
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual([[line, 'duplicate_key'], [next, 'chain_gap']]);
  });

  it('two lines swapped: chain_gap (or chain_head_missing at the head) on the first, chain_reordered on the second', () => {
    for (const head of [true, false]) {
      const first = run.docs.find((x) => x.stream === 'a.ndjson' && (x.seq === 1) === head && run.docs.find((y) => y.line === x.line + 1)?.stream === 'a.ndjson')!;
      expect(first, `head ${head}`).toBeDefined();
      const all = lines();
      [all[first.line - 1], all[first.line]] = [all[first.line]!, all[first.line - 1]!];
      const file = tampered('swapped.ndjson', all);
      const go = goVerify(run.jwks, file);
      const expected = { [first.line]: [head ? 'chain_head_missing' : 'chain_gap'], [first.line + 1]: ['chain_reordered'] };
      expect(goFailures(go)).toEqual(expected);
      expect(go.status).toBe(1);
      const ks = ksVerify(run.jwks, file);
      expect(ks.status).toBe(1);
      expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual(Object.entries(expected).map(([l, c]) => [Number(l), c[0]]));
    }
  });

  it('a file concatenated twice: chain_duplicate on every line of the second copy', () => {
    const file = tampered('twice.ndjson', [...lines(), ...lines()]);
    const n = run.docs.length;
    const go = goVerify(run.jwks, file);
    expect(goFailures(go)).toEqual(Object.fromEntries(run.docs.map((d) => [d.line + n, ['chain_duplicate']])));
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual(run.docs.map((d) => [d.line + n, 'chain_duplicate']));
  });

  it('a JWKS without the signing key: unknown_kid on every line; an embedded jwk of another key: jwk_mismatch', () => {
    const other = join(run.dir, 'other-keys');
    expect(runCli(['keys', 'generate', '--out', other]).status).toBe(0);
    const otherJwks = join(other, 'jwks.json');
    const go = goVerify(otherJwks, run.addenda);
    expect(goFailures(go)).toEqual(Object.fromEntries(run.docs.map((d) => [d.line, ['unknown_kid']])));
    const ks = ksVerify(otherJwks, run.addenda);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual(run.docs.map((d) => [d.line, 'unknown_kid']));

    const otherX = (JSON.parse(readFileSync(otherJwks, 'utf8')) as { keys: { x: string }[] }).keys[0]!.x;
    const d = run.docs.find((x) => x.stream === 'operator' && successor(x.line) === undefined)!;
    const all = lines();
    const ownX = (JSON.parse(all[d.line - 1]!) as { issuer: { jwk: { x: string } } }).issuer.jwk.x;
    all[d.line - 1] = all[d.line - 1]!.replace(`"x":"${ownX}"`, `"x":"${otherX}"`);
    const file = tampered('jwk.ndjson', all);
    expect(goFailures(goVerify(run.jwks, file))).toEqual({ [d.line]: ['jwk_mismatch'] });
    const ks2 = ksVerify(run.jwks, file);
    expect(ks2.status).toBe(1);
    expect(ks2.report.failures.map((f) => [f.line, f.code])).toEqual([[d.line, 'jwk_mismatch']]);
  });

  it('nesting deeper than 64 and text that is not JSON are refused as killswitch verify refuses them', () => {
    const all = lines();
    all.push(`{"a":${'['.repeat(64)}${']'.repeat(64)}}`, '{"type":', '   ');
    const file = tampered('deep.ndjson', all);
    const n = run.docs.length;
    expect(goFailures(goVerify(run.jwks, file))).toEqual({ [n + 1]: ['too_deep'], [n + 2]: ['invalid_json'] });
    const ks = ksVerify(run.jwks, file);
    expect(ks.status).toBe(1);
    expect(ks.report.failures.map((f) => [f.line, f.code])).toEqual([[n + 1, 'too_deep'], [n + 2, 'invalid_json']]);
  });

  it('edge cases of the docs (re-signed with the run\'s key where the content changes): both verifiers give the same codes', () => {
    const first = lines()[0]!;
    const base = JSON.parse(first) as Record<string, unknown> & { signature: string; issuer: { kid: string; jwk: Record<string, string> }; chain: Record<string, unknown> };
    const key = createPrivateKey(readFileSync(join(run.dir, 'keys', 'signing-key.pem')));
    const resigned = (doc: Record<string, unknown>): string => {
      const { signature: _drop, ...rest } = doc;
      return canonicalJson({ ...rest, signature: sign(null, Buffer.from(canonicalJson(rest)), key).toString('base64url') });
    };
    const { signature: _sig, ...unsigned } = base;
    const { issuer: _iss, ...noIssuer } = base;
    const cases: [string, string, string[]][] = [
      ['spaces, raw UTF-8, upper-case escapes, 5.0 for 5', JSON.stringify(JSON.parse(first), null, 1).replace(/\n/g, ' ').replace(/"calls": (\d+)/, '"calls": $1.0').replace('"sess-\u00fc"', '"sess-\\u00FC"'), []],
      ['a CRLF line end', `${first}\r`, []],
      ['a line of no-break spaces is blank', '\u00a0\u00a0', []],
      ['an escaped member name', first.replace('"agent_id"', '"\\u0061gent_id"'), []],
      ['lone surrogates and U+FFFF in session ids', resigned({ ...base, session_ids: ['a\ud800b', '\udc00', '\uffff', '\u{10ffff}'] }), []],
      ['issued_at without milliseconds, with an offset', resigned({ ...base, issued_at: '2026-11-23T10:00:04+01:00' }), []],
      ['issued_at in a leap second', resigned({ ...base, issued_at: '2026-11-23T23:59:60.5Z' }), []],
      ['issued_at with a space for T', resigned({ ...base, issued_at: '2026-11-23 09:00:04.000Z' }), ['schema_invalid']],
      ['a jwk with kid, alg and use', resigned({ ...base, issuer: { ...base.issuer, jwk: { ...base.issuer.jwk, kid: base.issuer.kid, alg: 'EdDSA', use: 'sig' } } }), []],
      ['an issuer without jwk', resigned({ ...base, issuer: { kid: base.issuer.kid } }), ['schema_invalid']],
      ['a member the schema does not have', resigned({ ...base, note: 'x' }), ['schema_invalid']],
      ['no signature', JSON.stringify(unsigned), ['unsigned']],
      ['a signature without issuer', JSON.stringify(noIssuer), ['schema_invalid']],
      ['a padded signature', first.replace(base.signature, `${base.signature}==`), ['schema_invalid']],
      ['a signature whose last character has stray bits', first.replace(base.signature, base.signature.slice(0, -1) + B64URL[B64URL.indexOf(base.signature.at(-1)!) ^ 1]!), ['bad_signature']],
      ['a duplicate key spelt with an escape', first.replace('{"agent_id":', '{"\\u0061gent_id":"spiffe://example.org/x","agent_id":'), ['duplicate_key']],
      ['a byte order mark', `\ufeff${first}`, ['invalid_json']],
      ['sequence 1 without "genesis"', resigned({ ...base, chain: { ...base.chain, prev_hash: `sha256:${'0'.repeat(64)}` } }), ['chain_prev_hash_mismatch']],
    ];
    expect(base.chain.sequence_number).toBe(1);
    for (const [name, text, codes] of cases) {
      const file = writeIn(run.dir, 'edge.ndjson', `${text}\n`);
      const go = goVerify(run.jwks, file);
      const ks = ksVerify(run.jwks, file);
      expect(go.lines.flatMap((l) => l.codes.map((c) => [l.line, c])), name).toEqual(codes.map((c) => [1, c]));
      expect(ks.report.failures.map((f) => [f.line, f.code]), name).toEqual(codes.map((c) => [1, c]));
      expect([go.status, ks.status], name).toEqual(codes.length === 0 ? [0, 0] : [1, 1]);
    }
  }, 90_000);

  it('the committed vectors: the addenda verify with the tips of the regulators\' guide; kill events are not addenda', () => {
    const jwks = join(VECTORS, 'jwks.json');
    const docs = join(VECTORS, 'documents.ndjson');
    const all = readFileSync(docs, 'utf8').split('\n').filter((l) => l.length > 0);
    const kinds = all.map((l) => (JSON.parse(l) as { type: string }).type);
    const killLines = kinds.flatMap((t, i) => (t === 'killswitch.kill-event/v1' ? [i + 1] : []));
    expect(killLines.length).toBeGreaterThan(0);

    const go = goVerify(jwks, docs);
    expect(Object.keys(goFailures(go)).map(Number)).toEqual(killLines);
    expect(Object.values(goFailures(go)).every((c) => c.join() === 'schema_invalid')).toBe(true);
    const ks = ksVerify(jwks, docs);
    expect(ks.status).toBe(1);
    expect(ksFailureLines(ks.report)).toEqual(killLines);
    expect(new Set(ks.report.failures.map((f) => f.code))).toEqual(new Set(['schema_invalid']));

    const only = writeIn(tempDir('verify-go-vectors-'), 'addenda.ndjson', all.filter((_, i) => kinds[i] === 'killswitch.trace-addendum/v1').join('\n') + '\n');
    const goOnly = goVerify(jwks, only);
    expect(goOnly.status).toBe(0);
    expect(goOnly.lines.every((l) => l.ok)).toBe(true);
    expect(goOnly.stderr).toContain('tip decisions/2026-11-23.ndjson 3 sha256:641900f5');
    expect(goOnly.stderr).toContain('tip policy.decisions/3 1 sha256:23ee6c4d');
    const ksOnly = ksVerify(jwks, only);
    expect(ksOnly.status).toBe(0);
    expect(ksOnly.report.streams).toEqual({
      'decisions/2026-11-23.ndjson': { addenda: 3, first_sequence: 1, last_sequence: 3 },
      'policy.decisions/3': { addenda: 1, first_sequence: 1, last_sequence: 1 },
    });
  });

  it('usage errors exit 2: no --jwks, two files, an unreadable or invalid JWKS', () => {
    const dir = tempDir('verify-go-usage-');
    const bad = writeIn(dir, 'bad-jwks.json', '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","x":"BBBB"}]}');
    const priv = writeIn(dir, 'priv-jwks.json', JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'YyTpsO2qC3D-jfZpcDzLx_7W5mV1c22XyEduWvBAz3Y', d: 'YyTpsO2qC3D-jfZpcDzLx_7W5mV1c22XyEduWvBAz3Y' }] }));
    writeFileSync(join(dir, 'empty.ndjson'), '');
    for (const args of [[run.addenda], ['--jwks', run.jwks], ['--jwks', run.jwks, run.addenda, run.addenda], ['--jwks', join(dir, 'missing.json'), run.addenda], ['--jwks', bad, run.addenda], ['--jwks', priv, run.addenda]]) {
      const r = spawnSync(goBinary, args, { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
    }
    const empty = spawnSync(goBinary, ['--jwks', run.jwks, join(dir, 'empty.ndjson')], { encoding: 'utf8' });
    expect([empty.status, empty.stdout]).toEqual([0, '']);
  });
});
