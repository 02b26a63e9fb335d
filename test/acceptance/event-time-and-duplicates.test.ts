/**
 * Hostile timestamps and re-deliveries, through `killswitch replay` and `killswitch run` as a user runs
 * them (docs/spec.md#22-event-time-lateness-and-future-decisions, docs/spec.md#23-de-duplication): one
 * decision stamped far in the future must not switch enforcement off for everyone else on its stream,
 * and a decision delivered many times counts once.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { configFile, decision, type KillEventLine, ndjson, parseLines, repeat, runCli, signedConfigFile, tempDir, writeIn } from '../helpers/cli.js';

const A = 'spiffe://example.org/agent/a';
const B = 'spiffe://example.org/agent/b';

let dir: string;
beforeAll(() => {
  dir = tempDir('hostile-time-');
});

let n = 0;
function replay(lines: readonly string[], killSwitch: Record<string, unknown> = {}): { kills: KillEventLine[]; stderr: string; input: string } {
  n++;
  const input = writeIn(dir, `in-${n}.ndjson`, ndjson(lines));
  const r = runCli(['replay', '--config', configFile(dir, killSwitch), input]);
  expect(r.status).toBe(0);
  return { kills: parseLines<KillEventLine>(r.stdout), stderr: r.stderr, input };
}

const at = (iso: string, agent: string, verdict: string): string =>
  JSON.stringify({ decision_id: `far-${iso}-${verdict}`, agent_id: agent, decision: verdict, occurred_at: iso });

describe('decisions stamped in the future', () => {
  it('one decision in year 9999 does not make the rest of its stream late: B still trips, and the line is reported', () => {
    const lines = [...repeat(A, 'allow', 3, 0), at('9999-12-31T23:59:59Z', A, 'allow'), ...repeat(B, 'deny', 10, 10)];
    const { kills, stderr, input } = replay(lines);
    expect(kills.map((k) => k.agent_id)).toEqual([B]);
    expect(stderr).toContain(`${input}:4: future_timestamp: /occurred_at: 9999-12-31T23:59:59.000Z is more than 300 s ahead of its arrival`);
  });

  it('a decision ahead of the reader by more than max_future_skew_seconds is refused; one within it is counted', () => {
    const soon = new Date(Date.now() + 60_000).toISOString();
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const within = Array.from({ length: 10 }, (_, i) => JSON.stringify({ decision_id: `soon-${i}`, agent_id: A, decision: 'deny', occurred_at: soon }));
    const beyond = Array.from({ length: 10 }, (_, i) => JSON.stringify({ decision_id: `later-${i}`, agent_id: B, decision: 'deny', occurred_at: later }));
    const { kills, stderr } = replay([...within, ...beyond], { max_future_skew_seconds: 600 });
    expect(kills.map((k) => k.agent_id)).toEqual([A]);
    expect(stderr.match(/future_timestamp/g)).toHaveLength(10);
  });

  it('killswitch run keeps enforcing after a far-future decision, and its DLQ holds the line', () => {
    const runDir = tempDir('hostile-run-');
    const input = writeIn(runDir, 'run-input.ndjson', ndjson([at('9999-01-01T00:00:00Z', A, 'deny'), ...repeat(B, 'deny', 10, 0)]));
    const r = runCli(['run', '--config', signedConfigFile(runDir), input]);
    expect(r.status, r.stderr).toBe(0);
    const kills = parseLines<KillEventLine>(readFileSync(join(runDir, 'data', 'kills.ndjson'), 'utf8'));
    expect(kills.map((k) => k.agent_id)).toEqual([B]);
    expect(readFileSync(join(runDir, 'data', 'dlq.ndjson'), 'utf8')).toContain('future_timestamp');
  });
});

describe('decisions delivered more than once', () => {
  it('the same deny delivered ten times is one call: the identity does not trip', () => {
    const once = decision(A, 'deny', 0);
    expect(replay(Array.from({ length: 10 }, () => once)).kills).toEqual([]);
  });

  it('a shipper that delivers every decision twice trips the same identities, with the same evidence, as one that delivers once', () => {
    const lines = [...repeat(A, 'deny', 12, 0), ...repeat(B, 'allow', 5, 0), ...repeat(B, 'deny', 5, 5)];
    const single = replay(lines).kills;
    const doubled = replay(lines.flatMap((l) => [l, l])).kills;
    expect(single.map((k) => k.agent_id)).toEqual([A]);
    const evidence = (k: KillEventLine): unknown => ({ ...k.evidence, source: undefined });
    expect(doubled.map(evidence)).toEqual(single.map(evidence));
  });
});

describe('killswitch verify --decisions re-derives under the same rules', () => {
  it('verifies addenda of a run whose input had a far-future line and re-delivered decisions', () => {
    const runDir = tempDir('hostile-verify-');
    const input = writeIn(runDir, 'input.ndjson', ndjson([
      at('9999-01-01T00:00:00Z', A, 'deny'), ...repeat(B, 'deny', 6, 0).flatMap((l) => [l, l]), ...repeat(B, 'deny', 4, 6),
    ]));
    const r = runCli(['run', '--config', signedConfigFile(runDir), input]);
    expect(r.status, r.stderr).toBe(0);
    const v = runCli(['verify', '--jwks', join(runDir, 'keys', 'jwks.json'), '--decisions', input, join(runDir, 'data', 'addenda.ndjson')]);
    expect(v.status, v.stdout).toBe(0);
    expect((JSON.parse(v.stdout) as { valid: boolean }).valid).toBe(true);
    expect(parseLines<KillEventLine>(readFileSync(join(runDir, 'data', 'kills.ndjson'), 'utf8')).map((k) => [k.agent_id, k.evidence.calls])).toEqual([[B, 10]]);
  });

  it('says when lines of the decisions file are not decisions, and names a dump of registry-framed values', () => {
    const runDir = tempDir('verify-framed-');
    const lines = repeat(B, 'deny', 10, 0);
    const input = writeIn(runDir, 'input.ndjson', ndjson(lines));
    expect(runCli(['run', '--config', signedConfigFile(runDir), input]).status).toBe(0);
    // the same decisions as a kcat dump of a topic written through a registry serializer: 0x00, id, JSON
    const framed = Buffer.concat(lines.map((l) => Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from(`${l}\n`)])));
    const dump = join(runDir, 'framed.ndjson');
    writeFileSync(dump, framed);
    const v = runCli(['verify', '--jwks', join(runDir, 'keys', 'jwks.json'), '--decisions', dump, join(runDir, 'data', 'addenda.ndjson')]);
    expect(v.status).toBe(1);
    expect(v.stderr).toContain(`10 line(s) of ${dump} are not decisions and were skipped, 10 of them Schema Registry framed values: unframe the dump first`);
    const report = JSON.parse(v.stdout) as { rederived: { skipped: { count: number; framed: number } }; failures: { code: string }[] };
    expect(report.rederived.skipped).toMatchObject({ count: 10, framed: 10 });
    expect(report.failures.map((f) => f.code)).toEqual(['rederive_no_trip']);
  });
});

describe('killswitch run with an input that cannot be read', () => {
  it('checks every input before reading any: nothing is processed or blocked, one line per bad input, exit 2', () => {
    const runDir = tempDir('inputs-first-');
    const good = writeIn(runDir, 'good.ndjson', ndjson(repeat(B, 'deny', 10, 0)));
    const r = runCli(['run', '--config', signedConfigFile(runDir), good, join(runDir, 'missing.ndjson'), runDir]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`killswitch: ${join(runDir, 'missing.ndjson')}: cannot read input (ENOENT)\nkillswitch: ${runDir}: cannot read input (not a file)\n`);
    expect(existsSync(join(runDir, 'data', 'kills.ndjson')) ? readFileSync(join(runDir, 'data', 'kills.ndjson'), 'utf8') : '').toBe('');
  });
});
