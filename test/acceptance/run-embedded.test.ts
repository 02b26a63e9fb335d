/** `killswitch run` in embedded mode, as `npm start` runs it and as an operator restarts it. */
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canonicalDigest } from '../../src/core/hash.js';
import {
  configFile, decision, signedConfigFile, type KillEventLine, ndjson, parseLines, repeat, runCli, startCli, tempDir, writeIn,
} from '../helpers/cli.js';
import { eventually } from '../helpers/http-request.js';

const SCRAPER = 'spiffe://example.org/ns/prod/sa/scraper-agent';
const SUPPORT = 'spiffe://example.org/ns/prod/sa/support-agent';

interface AddendumLine {
  agent_id: string;
  session_ids: string[];
  kill_event_id: string;
  gateway: { kill_switch_triggered: boolean };
  chain: { stream: string; sequence_number: number; prev_hash: string };
}

describe('killswitch run (embedded mode)', () => {
  it('runs the shipped example (what `npm start` runs): blocks the scraper, not the support agent', () => {
    const dir = tempDir('example-');
    const dataDir = join(dir, 'data');
    const keysDir = join(dir, 'keys');
    expect(runCli(['keys', 'generate', '--out', keysDir, '--if-missing']).status).toBe(0);
    const r = runCli(['run', '--config', 'examples/embedded.yaml', 'examples/decisions.ndjson'], {
      env: { KILLSWITCH_DATA_DIR: dataDir, KILLSWITCH_KEYS_DIR: keysDir },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`BLOCKED ${SCRAPER}`);
    expect(r.stdout).not.toContain(`BLOCKED ${SUPPORT}`);
    expect(r.stdout).toMatch(/blocked identities \(1\):\n {2}spiffe:\/\/example\.org\/ns\/prod\/sa\/scraper-agent {2}epoch 1/);
    const kills = parseLines<KillEventLine>(readFileSync(join(dataDir, 'kills.ndjson'), 'utf8'));
    expect(kills.map((k) => [k.agent_id, k.action, k.epoch])).toEqual([[SCRAPER, 'block', 1]]);
    const addenda = parseLines<AddendumLine>(readFileSync(join(dataDir, 'addenda.ndjson'), 'utf8'));
    expect(addenda).toHaveLength(1);
    expect(addenda[0]).toMatchObject({
      agent_id: SCRAPER, kill_event_id: kills[0]!.event_id, gateway: { kill_switch_triggered: true },
      session_ids: ['sess-scraper-1', 'sess-scraper-2'], chain: { stream: 'examples/decisions.ndjson', sequence_number: 1, prev_hash: 'genesis' },
    });
    // signed, and a regulator can check it offline and re-derive it from the decisions
    const v = runCli(['verify', '--jwks', join(keysDir, 'jwks.json'), '--decisions', 'examples/decisions.ndjson', join(dataDir, 'addenda.ndjson')]);
    expect(v.status).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, rederived: { checked: 1, matched: 1 } });
  });

  it('never lifts a block on restart, and continues the addendum chain of a stream', () => {
    const dir = tempDir('restart-');
    const cfg = signedConfigFile(dir);
    const A = 'spiffe://example.org/agent/a';
    const B = 'spiffe://example.org/agent/b';
    const input = join(dir, 'decisions.ndjson');
    writeFileSync(input, ndjson(repeat(A, 'deny', 10, 0)));
    expect(runCli(['run', '--config', cfg, input]).status).toBe(0);

    // After the restart A keeps denying: no second trip (still latched), and the report says A is blocked.
    writeFileSync(input, ndjson([...repeat(A, 'deny', 30, 100), ...repeat(B, 'deny', 10, 200)]));
    const second = runCli(['run', '--config', cfg, input]);
    expect(second.status).toBe(0);
    expect(second.stdout).toContain(`still blocked: ${A} (epoch 1`);
    const kills = parseLines<KillEventLine>(readFileSync(join(dir, 'data/kills.ndjson'), 'utf8'));
    expect(kills.map((k) => [k.agent_id, k.epoch])).toEqual([[A, 1], [B, 1]]);
    const addendaText = readFileSync(join(dir, 'data/addenda.ndjson'), 'utf8');
    const addenda = parseLines<AddendumLine>(addendaText);
    expect(addenda.map((a) => a.chain.sequence_number)).toEqual([1, 2]);
    expect(addenda[1]!.chain.prev_hash).toBe(canonicalDigest(JSON.parse(addendaText.split('\n')[0]!)));
  });

  it('cuts off a torn last ledger line (an interrupted append) and refuses a corrupt one', () => {
    const dir = tempDir('torn-');
    const cfg = signedConfigFile(dir);
    const A = 'spiffe://example.org/agent/a';
    const input = writeIn(dir, 'in.ndjson', ndjson(repeat(A, 'deny', 10, 0)));
    expect(runCli(['run', '--config', cfg, input]).status).toBe(0);
    const kills = join(dir, 'data/kills.ndjson');
    const intact = readFileSync(kills, 'utf8');
    appendFileSync(kills, '{"type":"killswitch.kill-ev');
    const r = runCli(['run', '--config', cfg, writeIn(dir, 'empty.ndjson', '')]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/torn last line/);
    expect(r.stdout).toContain(`still blocked: ${A}`);
    expect(readFileSync(kills, 'utf8')).toBe(intact);

    writeFileSync(kills, 'garbage\n' + intact);
    const corrupt = runCli(['run', '--config', cfg, writeIn(dir, 'empty.ndjson', '')]);
    expect(corrupt.status).toBe(1);
    expect(corrupt.stderr).toBe(`killswitch: ${kills}:1: not valid JSON\n`);
  });

  it('keeps bad lines with their reason in data_dir/dlq.ndjson and goes on', () => {
    const dir = tempDir('dlq-');
    const cfg = signedConfigFile(dir);
    const A = 'spiffe://example.org/agent/a';
    const input = writeIn(dir, 'in.ndjson', ndjson(['not json', ...repeat(A, 'deny', 10, 0)]));
    const r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`BLOCKED ${A}`);
    expect(r.stdout).toContain('1 invalid line skipped');
    const dlq = parseLines<Record<string, unknown>>(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(dlq).toEqual([{ file: input, line: 1, reason: 'invalid_json', message: expect.any(String) as string, raw: 'not json' }]);
    const log = parseLines<{ level: number; msg: string; line: number }>(r.stderr);
    expect(log).toEqual([expect.objectContaining({ level: 40, msg: 'invalid decision skipped', line: 1 })]);
    expect(r.stderr).not.toContain('not json'); // payloads stay out of logs
  });

  it('warns when the tracked-identity cap evicts identities whose windows were still live', () => {
    const dir = tempDir('cap-');
    signedConfigFile(dir); // makes the keys
    const cfg = configFile(dir, {}, {
      limits: { max_tracked_identities: 2 },
      signing: { private_key_file: join(dir, 'keys/signing-key.pem'), jwks_file: join(dir, 'keys/jwks.json') },
    });
    const lines = [0, 1, 2, 0, 1, 2].map((i, n) => decision(`spiffe://example.org/agent/${i}`, 'allow', n));
    const r = runCli(['run', '--config', cfg, writeIn(dir, 'in.ndjson', ndjson(lines))]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^warning: \d+ identities with live windows were evicted at limits.max_tracked_identities$/m);
    expect(r.stderr).toContain('tracked-identity cap reached');
  });

  it('holds data_dir against a second process, and stops cleanly on SIGTERM', async () => {
    const dir = tempDir('sigterm-');
    const cfg = signedConfigFile(dir);
    const A = 'spiffe://example.org/agent/a';
    const child = startCli(['run', '--config', cfg, '-']);
    let stdout = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stdin!.write(ndjson(repeat(A, 'deny', 10, 0)));
    while (!stdout.includes('BLOCKED')) await new Promise((r) => setTimeout(r, 20));

    const second = runCli(['run', '--config', cfg, writeIn(dir, 'x.ndjson', '')]);
    expect(second.status).toBe(2);
    expect(second.stderr).toMatch(/is in use by another killswitch process \(pid \d+\)/);

    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(stdout).toMatch(/\nstopped: 10 decisions from 1 input: 1 new block/);
    // the lock is released: the next run starts
    expect(runCli(['run', '--config', cfg, writeIn(dir, 'y.ndjson', '')]).status).toBe(0);
  });

  it('takes over a lock left behind (one naming PID 1, or a live process of another program, or a socket of a killed run), refuses a second live run, with a data_dir longer than a socket address', async () => {
    const dir = tempDir('lock-');
    signedConfigFile(dir); // makes the keys
    // 150 bytes and more: longer than the 107 a Unix socket address holds
    const dataDir = join(dir, 'd'.repeat(60), 'e'.repeat(60), 'data');
    const cfg = configFile(dir, {}, {
      data_dir: dataDir, signing: { private_key_file: join(dir, 'keys/signing-key.pem'), jwks_file: join(dir, 'keys/jwks.json') },
    });
    mkdirSync(dataDir, { recursive: true });
    const empty = writeIn(dir, 'empty.ndjson', '');
    // a restarted container's process is PID 1 again, the PID a stale lock names; or the PID is reused
    for (const pid of [1, process.pid]) {
      writeFileSync(join(dataDir, 'killswitch.lock'), `${pid}\n`);
      const r = runCli(['run', '--config', cfg, empty]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }

    const owner = startCli(['run', '--config', cfg, '-']);
    let out = '';
    owner.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await eventually(() => Promise.resolve(out), (o) => o.includes('reading stdin') || owner.exitCode !== null, 30_000);
    const second = runCli(['run', '--config', cfg, empty]);
    expect(second.status).toBe(2);
    expect(second.stderr).toBe(`killswitch: data_dir ${dataDir} is in use by another killswitch process (pid ${owner.pid})\n`);

    // SIGKILL leaves the socket file behind; the kernel closed the socket, so the next run takes it over
    owner.kill('SIGKILL');
    await once(owner, 'exit');
    expect(existsSync(join(dataDir, 'killswitch.lock'))).toBe(true);
    const after = runCli(['run', '--config', cfg, empty]);
    expect(after.stderr).toBe('');
    expect(after.status).toBe(0);
  });
});
