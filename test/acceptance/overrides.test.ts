/** Overrides and shadow rules through `killswitch run` and `replay`, and their config errors. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validator } from '../../src/schemas.js';
import { decision, ndjson, parseLines, repeat, runCli, signedConfigFile, tempDir, writeIn } from '../helpers/cli.js';

const PROD = 'spiffe://example.org/ns/prod/sa/strict';
const DEV = 'spiffe://example.org/ns/dev/sa/loose';
const CANARY = 'spiffe://example.org/ns/canary/sa/trial';

function configWith(dir: string, overrides: unknown[]): string {
  const base = JSON.parse(readFileSync(signedConfigFile(dir, { min_calls: 10, deny_rate_threshold: 0.9 }), 'utf8')) as Record<string, unknown>;
  return writeIn(dir, 'overrides.json', JSON.stringify({ ...base, overrides }));
}

describe('overrides and shadow rules', () => {
  it('an enforced override blocks its identities by its own rule (recorded in the kill event); a shadow rule writes would-block events and never blocks', () => {
    const dir = tempDir('overrides-');
    const cfg = configWith(dir, [
      { match: 'spiffe://example.org/ns/prod/*', deny_rate_threshold: 0.5, min_calls: 4 },
      { match: 'spiffe://example.org/ns/canary/*', mode: 'shadow', deny_rate_threshold: 0.5, min_calls: 4 },
    ]);
    const input = writeIn(dir, 'd.ndjson', ndjson([
      ...repeat(PROD, 'allow', 2, 0), ...repeat(PROD, 'deny', 2, 2), // 2 of 4: trips the prod override
      ...repeat(DEV, 'allow', 2, 0), ...repeat(DEV, 'deny', 2, 2), // main rule: nothing
      ...repeat(CANARY, 'allow', 2, 0), ...repeat(CANARY, 'deny', 2, 2), // shadow only
      decision(CANARY, 'deny', 5),
    ]));
    const r = runCli(['run', '--config', cfg, input]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`BLOCKED ${PROD} (epoch 1)`);
    expect(r.stdout).toContain(`SHADOW ${CANARY}: the shadow rule spiffe://example.org/ns/canary/* would block it (2 of 4 calls denied); not blocked`);
    const kills = parseLines<{ agent_id: string; kill_switch: Record<string, unknown>; evidence: { calls: number } }>(readFileSync(join(dir, 'data', 'kills.ndjson'), 'utf8'));
    expect(kills.map((k) => k.agent_id)).toEqual([PROD]);
    expect(kills[0]!.kill_switch).toEqual({ enabled: true, window_seconds: 300, deny_rate_threshold: 0.5, min_calls: 4 });
    const shadow = parseLines<Record<string, unknown>>(readFileSync(join(dir, 'data', 'shadow.ndjson'), 'utf8'));
    expect(shadow).toHaveLength(1);
    expect(shadow[0]).toMatchObject({ agent_id: CANARY, action: 'would_block', reason: 'shadow_rule', rule: 'spiffe://example.org/ns/canary/*', kill_switch: { deny_rate_threshold: 0.5, min_calls: 4 } });
    expect(validator('shadowEvent')(shadow[0])).toBe(true);
    // replay gives the same kill events
    const replay = runCli(['replay', '--config', cfg, input]);
    expect(parseLines<{ agent_id: string }>(replay.stdout).map((k) => k.agent_id)).toEqual([PROD]);
  });

  it('config errors: a match that is not a SPIFFE ID pattern, a window longer than the main one', () => {
    const dir = tempDir('overrides-bad-');
    const cfg = configWith(dir, [{ match: 'spiffe://example.org/ns/*/x' }, { match: 'spiffe://example.org/*', window_seconds: 600 }]);
    const r = runCli(['run', '--config', cfg, '--check-config']);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l !== '')).toEqual([
      '/overrides/0/match: not a SPIFFE ID or a SPIFFE ID followed by /*: path segment characters are limited to letters, numbers, dots, dashes, and underscores',
      '/overrides/1/window_seconds: must be <= kill_switch.window_seconds (300): the windows keep no more',
    ]);
  });
});
