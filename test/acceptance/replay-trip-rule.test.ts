/**
 * The cMCP trip-rule behaviours (docs/spec.md#2-the-trip-rule), checked through `killswitch replay` as a
 * user runs it: decisions in as NDJSON, kill events read back from stdout.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  configFile, decision, type KillEventLine, ndjson, parseLines, repeat, runCli, T0, tempDir, writeIn,
} from '../helpers/cli.js';

const A = 'spiffe://example.org/agent/a';
const B = 'spiffe://example.org/agent/b';

let dir: string;
beforeAll(() => {
  dir = tempDir('replay-rule-');
});

let n = 0;
/** Replay `lines` under the given kill_switch settings; returns the kill events printed. */
function replay(killSwitch: Record<string, unknown>, lines: readonly string[]): KillEventLine[] {
  n++;
  const cfg = configFile(dir, killSwitch);
  const input = writeIn(dir, `in-${n}.ndjson`, ndjson(lines));
  const r = runCli(['replay', '--config', cfg, input]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return parseLines<KillEventLine>(r.stdout);
}

const iso = (sec: number): string => new Date(T0 + sec * 1000).toISOString();

describe('killswitch replay: the trip rule', () => {
  it('never trips when the kill switch is disabled', () => {
    expect(replay({ enabled: false }, repeat(A, 'deny', 50, 0))).toEqual([]);
  });

  it('does not trip below min_calls, even at 100% denies (min_calls - 1)', () => {
    expect(replay({ min_calls: 10 }, repeat(A, 'deny', 9, 0))).toEqual([]);
  });

  it('does not trip below the threshold (8/10 at 0.9)', () => {
    expect(replay({}, [...repeat(A, 'allow', 2, 0), ...repeat(A, 'deny', 8, 2)])).toEqual([]);
  });

  it('trips exactly at the threshold: 9/10 at 0.9 with calls == min_calls', () => {
    const kills = replay({}, [decision(A, 'allow', 0), ...repeat(A, 'deny', 9, 1)]);
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 9, deny_rate: 0.9 });
  });

  it('trips above the threshold (10/10)', () => {
    const kills = replay({}, repeat(A, 'deny', 10, 0));
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence.deny_rate).toBe(1);
  });

  it('latches: one kill event per trip, however many denies follow', () => {
    const kills = replay({}, repeat(A, 'deny', 40, 0));
    expect(kills).toHaveLength(1);
    expect(kills[0]).toMatchObject({ action: 'block', agent_id: A, epoch: 1, trigger: 'deny_rate', reason: 'deny_rate_threshold' });
  });

  it('keeps identities independent', () => {
    const lines: string[] = [];
    for (let i = 0; i < 12; i++) {
      lines.push(decision(A, 'deny', i));
      lines.push(decision(B, i % 2 === 0 ? 'deny' : 'allow', i + 0.5));
    }
    const kills = replay({}, lines);
    expect(kills.map((k) => k.agent_id)).toEqual([A]);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10 });
  });

  it('accumulates: 5 allows then 20 denies at 0.8 / min 5 trips on the 20th deny (20/25)', () => {
    const lines = [...repeat(A, 'allow', 5, 0), ...repeat(A, 'deny', 20, 5)];
    const kills = replay({ deny_rate_threshold: 0.8, min_calls: 5 }, lines);
    expect(kills).toHaveLength(1);
    const lastDenyId = (JSON.parse(lines[24]!) as { decision_id: string }).decision_id;
    expect(kills[0]!.evidence).toMatchObject({ calls: 25, denies: 20, deny_rate: 0.8, tripping_decision_id: lastDenyId });
  });

  it('does not count decisions that left the window', () => {
    // 9 denies, then 61 s later (window 60 s) one deny: only 1 call is in the window.
    const kills = replay({ window_seconds: 60, resolution_ms: 1 }, [...repeat(A, 'deny', 9, 0), decision(A, 'deny', 70)]);
    expect(kills).toEqual([]);
    // control: the same tenth deny inside the window trips
    expect(replay({ window_seconds: 60, resolution_ms: 1 }, [...repeat(A, 'deny', 9, 0), decision(A, 'deny', 60)])).toHaveLength(1);
  });

  it('never counts anonymous decisions (threshold 0.5, min_calls 1)', () => {
    const kills = replay({ deny_rate_threshold: 0.5, min_calls: 1 }, [...repeat(null, 'deny', 20, 0), decision(A, 'allow', 21)]);
    expect(kills).toEqual([]);
  });

  it('counts advisory_deny as a deny, and reports it as advisory', () => {
    const kills = replay({}, [...repeat(A, 'advisory_deny', 4, 0), ...repeat(A, 'deny', 6, 4)]);
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10, advisory_denies: 4 });
  });

  it.each(['fault', 'redact', 'n/a', 'step_up', 'defer'])('does not count %s toward calls or min_calls', (ignored) => {
    // 9 denies + 1 allow would trip at 10; with the 10th call replaced by ignored decisions it must not.
    const lines = [...repeat(A, 'deny', 9, 0), ...repeat(A, ignored, 30, 9)];
    expect(replay({}, lines)).toEqual([]);
    // ...and they do not dilute the rate either: 9 denies + 30 ignored + 1 deny trips at 10/10.
    const kills = replay({}, [...lines, decision(A, 'deny', 40)]);
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10 });
  });

  it('counts an event exactly at T - W with resolution_ms: 1', () => {
    // window 10 s; the first deny at t=0, the tripping one at t=10 s: 0 >= 10 - 10 still counts.
    const lines = [...repeat(A, 'deny', 9, 0, 0.001), decision(A, 'deny', 10)];
    const kills = replay({ window_seconds: 10, resolution_ms: 1, min_calls: 10 }, lines);
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, window_start: iso(0), window_end: iso(10) });
    // one millisecond later the first event has left the window: 9 calls
    const later = [...repeat(A, 'deny', 9, 0, 0.001), decision(A, 'deny', 10.001)];
    expect(replay({ window_seconds: 10, resolution_ms: 1, min_calls: 10 }, later)).toEqual([]);
  });

  it('drops late events (older than stream time - allowed lateness)', () => {
    // Stream time reaches t=100; denies stamped t=90 are 10 s late with 5 s lateness: dropped.
    const lines = [decision(B, 'allow', 100), ...repeat(A, 'deny', 10, 90, 0.1)];
    expect(replay({ allowed_lateness_seconds: 5 }, lines)).toEqual([]);
    // Within lateness (t=96) they count.
    const ok = [decision(B, 'allow', 100), ...repeat(A, 'deny', 10, 96, 0.1)];
    expect(replay({ allowed_lateness_seconds: 5 }, ok)).toHaveLength(1);
  });

  it('writes evidence that re-derives the trip: counts, window, tripping decision, source lines', () => {
    const lines = [
      decision(B, 'allow', 0),
      ...repeat(A, 'allow', 2, 1),
      decision(A, 'advisory_deny', 3),
      ...repeat(A, 'deny', 17, 4),
    ];
    const kills = replay({ deny_rate_threshold: 0.85, min_calls: 20 }, lines);
    expect(kills).toHaveLength(1);
    const k = kills[0]!;
    expect(k.type).toBe('killswitch.kill-event/v1');
    expect(k.event_id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(k.at).toBe(iso(20));
    expect(k.kill_switch).toEqual({ enabled: true, window_seconds: 300, deny_rate_threshold: 0.85, min_calls: 20 });
    expect(k.evidence).toEqual({
      window_start: iso(20 - 300),
      window_end: iso(20),
      calls: 20,
      denies: 18,
      advisory_denies: 1,
      deny_rate: 0.9,
      tripping_decision_id: (JSON.parse(lines[20]!) as { decision_id: string }).decision_id,
      source: { file: join(dir, `in-${n}.ndjson`), line_from: 1, line_to: 21 },
    });
  });

  it('gives byte-identical kill events and addenda for the same input twice', () => {
    const lines: string[] = [];
    for (let i = 0; i < 200; i++) {
      const who = `spiffe://example.org/agent/${i % 7}`;
      lines.push(decision(who, i % 7 < 3 ? 'deny' : i % 3 === 0 ? 'deny' : 'allow', i * 0.5, { session_id: `s-${i % 7}-${i % 2}` }));
    }
    const cfg = configFile(dir, { min_calls: 5 });
    const input = writeIn(dir, 'same.ndjson', ndjson(lines));
    const runs = [1, 2].map((i) => {
      const addenda = join(dir, `addenda-${i}.ndjson`);
      const r = runCli(['replay', '--config', cfg, '--addenda', addenda, input]);
      expect(r.status).toBe(0);
      return { kills: r.stdout, addenda: readFileSync(addenda, 'utf8') };
    });
    expect(parseLines(runs[0]!.kills).length).toBe(3);
    expect(runs[1]!.kills).toBe(runs[0]!.kills);
    expect(runs[1]!.addenda).toBe(runs[0]!.addenda);
  });
});
