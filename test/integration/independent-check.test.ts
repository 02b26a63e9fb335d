/**
 * docs/spec.md#5-canonical-json-and-signatures, checked independently: a Python 3 script using only `json` and
 * `cryptography` reproduces our canonical bytes, verifies our signatures, kids, event ids and chains,
 * on the committed vectors and on a fresh `killswitch replay --key` output.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { configFile, decision, ndjson, repeat, ROOT, runCli, tempDir, writeIn } from '../helpers/cli.js';
import { buildVectors, VECTORS } from '../helpers/vectors.js';

const SCRIPT = join(ROOT, 'scripts/independent_check.py');

function python(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('python3', [SCRIPT, ...args], { encoding: 'utf8' });
  if (r.error !== undefined) throw new Error(`python3 is required for the independent check: ${r.error.message}`);
  return { status: r.status, out: r.stdout + r.stderr };
}

beforeAll(() => {
  // The check needs `cryptography`; install it when this machine lacks it (a fresh CI machine may).
  const probe = spawnSync('python3', ['-c', 'import cryptography'], { encoding: 'utf8' });
  if (probe.error !== undefined) throw new Error(`python3 is required for the independent check: ${probe.error.message}`);
  if (probe.status !== 0) {
    const pip = spawnSync('python3', ['-m', 'pip', 'install', '--quiet', 'cryptography'], { encoding: 'utf8' });
    if (pip.status !== 0) throw new Error(`cannot install the Python package cryptography: ${pip.stderr}`);
  }
}, 300_000);

describe('independent check with Python (json + cryptography)', () => {
  const vectors = buildVectors();
  const docsText = vectors.documents.map((d) => canonicalJson(d)).join('\n') + '\n';
  const canonicalText = vectors.canonical.join('\n') + '\n';

  it('the committed vectors are what the code produces today', () => {
    if (process.env.UPDATE_VECTORS === '1') {
      writeFileSync(join(VECTORS, 'documents.ndjson'), docsText);
      writeFileSync(join(VECTORS, 'canonical.ndjson'), canonicalText);
    }
    expect(readFileSync(join(VECTORS, 'documents.ndjson'), 'utf8')).toBe(docsText);
    expect(readFileSync(join(VECTORS, 'canonical.ndjson'), 'utf8')).toBe(canonicalText);
  });

  it('verifies the committed vectors: canonical bytes, signatures, kids, event ids, chains', () => {
    const r = python([join(VECTORS, 'jwks.json'), join(VECTORS, 'documents.ndjson'), join(VECTORS, 'canonical.ndjson')]);
    expect(r.out).toBe(`independent check: ${vectors.documents.length} documents, 0 problems\n`);
    expect(r.status).toBe(0);
  });

  it('catches a tampered vector (the check can fail)', () => {
    const dir = tempDir('vectors-tampered-');
    const tampered = writeIn(dir, 'docs.ndjson', docsText.replace('"calls":20', '"calls":21'));
    const r = python([join(VECTORS, 'jwks.json'), tampered]);
    expect(r.status).toBe(1);
    expect(r.out).toContain('signature does not verify');
  });

  it('refuses a document with a duplicated key, whichever copy is the forged one (as killswitch verify does)', () => {
    const dir = tempDir('vectors-duplicate-');
    const addendum = vectors.documents.find((d) => d.type === 'killswitch.trace-addendum/v1')!;
    const line = canonicalJson(addendum);
    const real = `"agent_id":${JSON.stringify(addendum.agent_id)}`;
    const forged = '"agent_id":"spiffe://example.org/innocent"';
    expect(line.startsWith(`{${real},`)).toBe(true);
    // forged first: json.loads keeps the last value, so a lenient check would see the signed document
    for (const text of [line.replace(`{${real},`, `{${forged},${real},`), line.replace(`{${real},`, `{${real},${forged},`)]) {
      const r = python([join(VECTORS, 'jwks.json'), writeIn(dir, 'docs.ndjson', text + '\n')]);
      expect(r.out).toBe('#1: duplicate key "agent_id"\nindependent check: 1 documents, 1 problems\n');
      expect(r.status).toBe(1);
    }
  });

  it('refuses a document nested deeper than 64, however deep', () => {
    const dir = tempDir('vectors-deep-');
    for (const depth of [65, 100_000]) {
      const r = python([join(VECTORS, 'jwks.json'), writeIn(dir, 'docs.ndjson', `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}\n`)]);
      expect(r.out, String(depth)).toBe('#1: nesting deeper than 64\nindependent check: 1 documents, 1 problems\n');
      expect(r.status).toBe(1);
    }
  });

  it('refuses a JWKS with a duplicated key (exit 2, one line)', () => {
    const dir = tempDir('jwks-duplicate-');
    const jwks = readFileSync(join(VECTORS, 'jwks.json'), 'utf8');
    const twice = writeIn(dir, 'jwks.json', jwks.replace(/"x":\s*"/, '"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "x": "'));
    const r = python([twice, join(VECTORS, 'documents.ndjson')]);
    expect(r.out).toBe(`${twice}: duplicate key "x"\n`);
    expect(r.status).toBe(2);
  });

  it('the README\'s by-hand Python snippet verifies a genuine addendum and rejects a forged one', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const snippet = /By hand[\s\S]*?```python\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(snippet).toBeDefined();
    const dir = tempDir('by-hand-');
    writeFileSync(join(dir, 'jwks.json'), readFileSync(join(VECTORS, 'jwks.json')));
    const addendum = vectors.documents.find((d) => d.type === 'killswitch.trace-addendum/v1')!;
    writeFileSync(join(dir, 'addenda.ndjson'), canonicalJson(addendum) + '\n');
    const ok = spawnSync('python3', ['-c', snippet!], { cwd: dir, encoding: 'utf8' });
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe(`valid: ${addendum.agent_id} True ${addendum.issued_at}\n`);
    writeFileSync(join(dir, 'addenda.ndjson'), canonicalJson({ ...addendum, issued_at: '2026-01-01T00:00:00.000Z' }) + '\n');
    const forged = spawnSync('python3', ['-c', snippet!], { cwd: dir, encoding: 'utf8' });
    expect(forged.status).not.toBe(0);
    expect(forged.stderr).toContain('InvalidSignature');
    // the same genuine addendum with a forged agent_id ahead of the real one (json.loads keeps the last)
    const line = canonicalJson(addendum);
    const real = `"agent_id":${JSON.stringify(addendum.agent_id)}`;
    writeFileSync(join(dir, 'addenda.ndjson'), line.replace(`{${real},`, `{"agent_id":"spiffe://example.org/innocent",${real},`) + '\n');
    const duplicated = spawnSync('python3', ['-c', snippet!], { cwd: dir, encoding: 'utf8' });
    expect(duplicated.status).not.toBe(0);
    expect(duplicated.stderr).toContain('ValueError: duplicate key');
    expect(duplicated.stdout).toBe('');
  });

  it('verifies a fresh `killswitch replay --key` output, kill events and addenda', () => {
    const dir = tempDir('independent-');
    expect(runCli(['keys', 'generate', '--out', join(dir, 'keys')]).status).toBe(0);
    const lines: string[] = [];
    for (let i = 0; i < 300; i++) {
      const who = `spiffe://example.org/ns/team/agent-${i % 9}`;
      lines.push(decision(who, i % 9 < 4 ? 'deny' : i % 4 === 0 ? 'advisory_deny' : 'allow', i * 0.7, { session_id: `sess-\u00fc-${i % 5}-\u{1F600}` }));
    }
    lines.push(...repeat('spiffe://example.org/late/agent', 'deny', 12, 300));
    const cfg = configFile(dir, { min_calls: 7, deny_rate_threshold: 0.7 });
    const input = writeIn(dir, 'in.ndjson', ndjson(lines));
    const addenda = join(dir, 'addenda.ndjson');
    const r = runCli(['replay', '--config', cfg, '--key', join(dir, 'keys/signing-key.pem'), '--addenda', addenda, input]);
    expect(r.status).toBe(0);
    const kills = writeIn(dir, 'kills.ndjson', r.stdout);
    const count = r.stdout.trim().split('\n').length;
    expect(count).toBeGreaterThanOrEqual(4);
    expect(python([join(dir, 'keys/jwks.json'), kills]).out).toBe(`independent check: ${count} documents, 0 problems\n`);
    expect(python([join(dir, 'keys/jwks.json'), addenda]).out).toBe(`independent check: ${count} documents, 0 problems\n`);
  });
});
