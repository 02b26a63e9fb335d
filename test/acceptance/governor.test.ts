/**
 * A trip storm of 10,000 identities through `killswitch run` (embedded mode): the blast-radius governor
 * holds automatic blocks to its limits, writes the rest as signed shadow events, counts them in a
 * metric, and `killswitch replay` holds exactly the same trips.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkSignature } from '../../src/adapters/signing/ed25519-signer.js';
import { loadJwks } from '../../src/adapters/signing/keys.js';
import { validator } from '../../src/schemas.js';
import { decision, ndjson, parseLines, runCli, startCli, tempDir, writeIn } from '../helpers/cli.js';
import { eventually, freePort, request } from '../helpers/http-request.js';

const N = 10_000;

/** Every identity denied twice in a row; the storm spans three minutes of event time. */
function stormFile(dir: string): string {
  const lines: string[] = [];
  for (let i = 0; i < N; i++) {
    const id = `spiffe://storm.example/agent/${i}`;
    const at = Math.floor((i * 180) / N);
    lines.push(decision(id, 'deny', at), decision(id, 'deny', at));
  }
  return writeIn(dir, 'storm.ndjson', ndjson(lines));
}

function config(dir: string, governor: Record<string, unknown>, http?: string): string {
  const keys = join(dir, 'keys');
  runCli(['keys', 'generate', '--out', keys, '--if-missing']);
  return writeIn(dir, `config-${Object.values(governor).join('-')}.json`, JSON.stringify({
    kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 1, min_calls: 2 },
    data_dir: join(dir, 'data'), governor, log: { level: 'error' },
    signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') },
    ...(http === undefined ? {} : { http: { listen: http } }),
  }));
}

describe('blast-radius governor: a trip storm of 10,000 identities', () => {
  it('max_blocks_per_minute: 100 blocks per minute of event time, the rest held as signed shadow events, counted in a metric', async () => {
    const dir = tempDir('governor-rate-');
    const input = stormFile(dir);
    const port = await freePort();
    const cfg = config(dir, { max_blocks_per_minute: 100, max_blocked_share: 1, share_floor: 0 }, `127.0.0.1:${port}`);
    const child = startCli(['run', '--config', cfg, input]);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    try {
      await eventually(() => Promise.resolve(out), (o) => o.includes('serving the operator API'), 60_000);
      const metrics = (await request(`http://127.0.0.1:${port}/metrics`)).body;
      expect(metrics).toMatch(/^killswitch_governor_held_total\{reason="governor_rate"\} 9700$/m);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toContain('300 new blocks, 9700 trips held by the governor or shadow rules');
    const kills = parseLines<{ at: string; agent_id: string; event_id: string }>(readFileSync(join(dir, 'data', 'kills.ndjson'), 'utf8'));
    expect(kills).toHaveLength(300);
    const perMinute = new Map<string, number>();
    for (const k of kills) perMinute.set(k.at.slice(0, 16), (perMinute.get(k.at.slice(0, 16)) ?? 0) + 1);
    expect([...perMinute.values()]).toEqual([100, 100, 100]);
    const shadow = parseLines<Record<string, unknown>>(readFileSync(join(dir, 'data', 'shadow.ndjson'), 'utf8'));
    expect(shadow).toHaveLength(9700);
    const valid = validator('shadowEvent');
    const trusted = loadJwks(join(dir, 'keys', 'jwks.json'));
    for (const s of shadow.slice(0, 200)) {
      expect(valid(s), JSON.stringify(valid.errors)).toBe(true);
      expect(checkSignature(s, trusted)).toMatchObject({ ok: true });
      expect(s).toMatchObject({ action: 'would_block', reason: 'governor_rate', epoch: 1 });
    }
    // replay holds the same trips: the same identities blocked, in the same order
    const replay = runCli(['replay', '--config', cfg, input]);
    expect(replay.status).toBe(0);
    expect(parseLines<{ event_id: string }>(replay.stdout).map((k) => k.event_id)).toEqual(kills.map((k) => k.event_id));
    expect(replay.stderr.match(/^held by the governor \(governor_rate\)/gm)).toHaveLength(9700);
  });

  it('max_blocked_share: never more than 5% of the identities with a window blocked automatically', () => {
    const dir = tempDir('governor-share-');
    const input = stormFile(dir);
    const cfg = config(dir, { max_blocks_per_minute: 100_000, max_blocked_share: 0.05, share_floor: 10 });
    const r = runCli(['run', '--config', cfg, input]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('500 new blocks, 9500 trips held by the governor or shadow rules');
    const shadow = parseLines<{ reason: string }>(readFileSync(join(dir, 'data', 'shadow.ndjson'), 'utf8'));
    expect(new Set(shadow.map((s) => s.reason))).toEqual(new Set(['governor_share']));
  });

  it('means the same after a restart: blocks of a day ago in the ledger do not hold a genuine trip of today', () => {
    const dir = tempDir('governor-restart-');
    const cfg = config(dir, { max_blocks_per_minute: 1000, max_blocked_share: 0.5, share_floor: 5 });
    // yesterday: 38 identities make calls, then 22 others trip (a share of 0.37, admitted)
    const yesterday: string[] = [];
    for (let i = 0; i < 60; i++) {
      const id = `spiffe://restart.example/agent/${i}`;
      for (let k = 0; k < 2; k++) yesterday.push(decision(id, i >= 38 ? 'deny' : 'allow', i + k));
    }
    const first = runCli(['run', '--config', cfg, writeIn(dir, 'yesterday.ndjson', ndjson(yesterday))]);
    expect(first.stdout, first.stderr).toContain('22 new blocks, 0 invalid lines skipped');
    // restarted a day later with a handful of identities, one of which denies 12 of 12
    const day = 86_400;
    const today = [
      ...['a', 'b', 'c'].flatMap((n) => [decision(`spiffe://restart.example/quiet/${n}`, 'allow', day), decision(`spiffe://restart.example/quiet/${n}`, 'allow', day + 1)]),
      ...Array.from({ length: 12 }, (_, k) => decision('spiffe://restart.example/runaway', 'deny', day + 2 + k)),
    ];
    const second = runCli(['run', '--config', cfg, writeIn(dir, 'today.ndjson', ndjson(today))]);
    expect(second.stdout, second.stderr).toContain('1 new block, 0 invalid lines skipped');
    const kills = parseLines<{ agent_id: string }>(readFileSync(join(dir, 'data', 'kills.ndjson'), 'utf8'));
    expect(kills.at(-1)!.agent_id).toBe('spiffe://restart.example/runaway');
  });

  it('governor.enabled: false blocks every identity of the storm', () => {
    const dir = tempDir('governor-off-');
    const r = runCli(['run', '--config', config(dir, { enabled: false }), stormFile(dir)]);
    expect(r.stdout).toContain(`${N} new blocks, 0 invalid lines skipped`);
  });
});
