/**
 * Evaluator behaviour beyond the counts the property test checks: evidence source ranges, session ids
 * for the addendum, kill events applied from the ledger, the disabled switch, several streams, the
 * stats counters and deterministic output.
 */
import { describe, expect, it } from 'vitest';
import { DecisionClass } from '../../../src/core/decision-class.js';
import type { Decision } from '../../../src/core/decision.js';
import { Evaluator, type StreamClock, type Trip } from '../../../src/core/evaluator.js';
import { tripConfig } from '../../helpers/trip-config.js';

const T0 = Date.UTC(2026, 0, 1); // a multiple of every bucket width used here
const X = 'spiffe://eval.example/agent/x';
const Y = 'spiffe://eval.example/agent/y';
const O = 'spiffe://eval.example/agent/other';
const { Call, Deny, AdvisoryDeny, Ignored } = DecisionClass;

let seq = 0;
function dec(agentId: string | null, cls: DecisionClass, timeMs: number, sessionId?: string): Decision {
  return { decisionId: `d-${++seq}`, agentId, cls, timeMs, sessionId };
}

/** Feeds decisions at consecutive positions starting at `first`; returns every trip. */
function feed(ev: Evaluator, clock: StreamClock, ds: readonly Decision[], first = 1, step = 1): Trip[] {
  const trips: Trip[] = [];
  ds.forEach((d, i) => {
    const t = ev.accept(clock, d, first + i * step);
    if (t !== null) trips.push(t);
  });
  return trips;
}

describe('Evaluator: evidence source', () => {
  // W = 60 s, g = 1 s. The trip is at T = T0 + 130 s, so the window covers buckets >= T0 + 70 s.
  const config = tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 3, deny_rate_threshold: 1 });
  const stream = (): Decision[] => [
    dec(O, Call, T0), //                 1: before the window
    dec(O, Deny, T0 + 1000), //          2: before the window
    dec(X, Call, T0 + 2000), //          3: X, before the window
    dec(O, Call, T0 + 69_999), //        4: the bucket just below the cutoff
    dec(O, Call, T0 + 70_000), //        5: exactly T - W: the first input the window covers
    dec(X, Deny, T0 + 110_000), //       6
    dec(O, Call, T0 + 115_000), //       7: another identity inside the window
    dec(X, Deny, T0 + 120_000), //       8
    dec(X, Deny, T0 + 130_000), //       9: trips X
  ];

  it('names the file lines from the first line in the window to the tripping line', () => {
    const ev = new Evaluator(config);
    const ds = stream();
    const trips = feed(ev, ev.openStream('a.ndjson', { file: 'a.ndjson' }), ds);
    expect(trips).toHaveLength(1);
    const trip = trips[0]!;
    expect(trip.agentId).toBe(X);
    expect(trip.stream).toBe('a.ndjson');
    expect(trip.atMs).toBe(T0 + 130_000);
    expect(trip.evidence).toEqual({
      window_start: '2026-01-01T00:01:10.000Z',
      window_end: '2026-01-01T00:02:10.000Z',
      calls: 3,
      denies: 3,
      advisory_denies: 0,
      deny_rate: 1,
      tripping_decision_id: ds[8]!.decisionId,
      source: { file: 'a.ndjson', line_from: 5, line_to: 9 },
    });
  });

  it('names the topic, partition and offsets for a Kafka partition', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('policy.decisions/3', { topic: 'policy.decisions', partition: 3 });
    // Offsets 1000, 1010, ..., 1080: line n above is offset 1000 + 10 (n - 1).
    const trips = feed(ev, clock, stream(), 1000, 10);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.evidence.source).toEqual({ topic: 'policy.decisions', partition: 3, offset_from: 1040, offset_to: 1080 });
    expect(trips[0]!.stream).toBe('policy.decisions/3');
  });

  it('starts at the tripping position when nothing earlier is in the window', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 1, deny_rate_threshold: 1 }));
    const clock = ev.openStream('b.ndjson', { file: 'b.ndjson' });
    const trips = feed(ev, clock, [dec(O, Call, T0), dec(X, Deny, T0 + 600_000)], 41);
    expect(trips.map((t) => t.evidence.source)).toEqual([{ file: 'b.ndjson', line_from: 42, line_to: 42 }]);
  });
});

describe('Evaluator: session ids', () => {
  it('lists at most 32 sessions, first seen first', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 40, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const ds = Array.from({ length: 40 }, (_, i) => dec(X, Deny, T0 + i * 100, `sess-${String(i).padStart(2, '0')}`));
    const trips = feed(ev, clock, ds);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.sessionIds).toEqual(Array.from({ length: 32 }, (_, i) => `sess-${String(i).padStart(2, '0')}`));
  });

  it('lists the sessions of the identity seen in the window once each, in first-seen order', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 7, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const trips = feed(ev, clock, [
      dec(X, Call, T0, 'old'), //                  left the window by the trip
      dec(X, Deny, T0 + 100_000, 'b'),
      dec(O, Call, T0 + 100_500, 'other-1'), //    another identity, inside the window
      dec(X, Deny, T0 + 101_000, 'a'),
      dec(X, Deny, T0 + 102_000, 'b'),
      dec(X, Deny, T0 + 102_500), //                no session
      dec(O, Deny, T0 + 103_000, 'a-of-other'),
      dec(X, Deny, T0 + 104_000, 'c'),
      dec(X, Deny, T0 + 105_000, 'c'),
      dec(X, Deny, T0 + 106_000, 'c'), //           trips: the current session, repeated
    ]);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.sessionIds).toEqual(['b', 'a', 'c']);
  });

  it('lists a session seen before the window only if it is seen again inside it', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 3, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const trips = feed(ev, clock, [
      dec(X, Call, T0, 'early-1'),
      dec(X, Call, T0 + 1000, 'early-2'),
      dec(X, Deny, T0 + 200_000, 'late'),
      dec(X, Deny, T0 + 201_000, 'early-2'),
      dec(X, Deny, T0 + 202_000, 'late'),
    ]);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.sessionIds).toEqual(['early-2', 'late']);
  });

  it('starts from no sessions after an unblock', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 60, resolution_ms: 1000, min_calls: 2, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const first = feed(ev, clock, [dec(X, Deny, T0, 'before-1'), dec(X, Deny, T0 + 1000, 'before-2')]);
    expect(first.map((t) => t.sessionIds)).toEqual([['before-1', 'before-2']]);
    ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' });
    const second = feed(ev, clock, [dec(X, Deny, T0 + 2000, 'after'), dec(X, Deny, T0 + 3000, 'after')]);
    expect(second.map((t) => [t.epoch, t.sessionIds])).toEqual([[2, ['after']]]);
  });

  // BUG (report): once 32 sessions are held, a new session is dropped for good unless some held session
  // has left the window measured from the new session's own last bucket. Sessions that leave the window
  // later do not make room again, so a session seen inside the window at trip time goes missing.
  // Here 32 sessions at T0 (allows) leave the window; 'new-1' and 'new-2' are the only sessions in the
  // window at the trip, but 'new-1' was dropped when it was flushed (the 32 were still in its window).
  it('lists a session seen in the window although 32 older sessions filled the list before leaving the window', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 10, resolution_ms: 1000, min_calls: 2, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const ds = Array.from({ length: 32 }, (_, i) => dec(X, Call, T0, `old-${i}`));
    ds.push(dec(X, Deny, T0 + 5000, 'new-1'), dec(X, Deny, T0 + 12_000, 'new-2'));
    const trips = feed(ev, clock, ds);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.evidence.calls).toBe(2);
    expect(trips[0]!.sessionIds).toEqual(['new-1', 'new-2']);
  });
});

describe('Evaluator: kill events from the ledger', () => {
  const config = tripConfig({ window_seconds: 300, resolution_ms: 1000, min_calls: 10, deny_rate_threshold: 0.9 });
  const denies = (id: string, n: number, from: number): Decision[] => Array.from({ length: n }, (_, i) => dec(id, Deny, from + i * 10));

  it('stops trips for an identity blocked by another instance, whether or not it is tracked', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    expect(feed(ev, clock, denies(X, 5, T0))).toEqual([]);
    expect(ev.applyLedger({ agent_id: X, epoch: 1, action: 'block' })).toBe('blocked');
    expect(ev.applyLedger({ agent_id: Y, epoch: 4, action: 'block' })).toBe('blocked'); // Y not tracked yet
    expect(feed(ev, clock, [...denies(X, 20, T0 + 1000), ...denies(Y, 20, T0 + 2000)])).toEqual([]);
    expect(ev.stats.whileBlocked).toBe(40);
    expect(ev.stats.trips).toBe(0);
    expect(ev.stats.denies).toBe(45);
  });

  it('needs a fresh min_calls after an unblock, and the next trip takes the next epoch', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    const first = feed(ev, clock, denies(X, 10, T0));
    expect(first.map((t) => t.epoch)).toEqual([1]);
    expect(feed(ev, clock, denies(X, 5, T0 + 200))).toEqual([]); // blocked
    expect(ev.windowOf(X, clock)).toEqual({ calls: 10, denies: 10, advisoryDenies: 0 });

    expect(ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' })).toBe('unblocked');
    expect(ev.windowOf(X, clock)).toEqual({ calls: 0, denies: 0, advisoryDenies: 0 });
    // All of these are inside the same 300 s window as the 10 denies before the unblock.
    expect(feed(ev, clock, denies(X, 9, T0 + 1000))).toEqual([]);
    const second = feed(ev, clock, denies(X, 1, T0 + 2000));
    expect(second.map((t) => [t.epoch, t.evidence.calls, t.evidence.denies])).toEqual([[2, 10, 10]]);
    expect(ev.ledger.get(X)).toMatchObject({ epoch: 2, blocked: true });
  });

  it('ignores an unblock of an older epoch: still blocked, window kept', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    ev.applyLedger({ agent_id: X, epoch: 1, action: 'block' });
    ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' });
    expect(feed(ev, clock, denies(X, 10, T0)).map((t) => t.epoch)).toEqual([2]);
    expect(ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' })).toBe('unchanged');
    expect(ev.ledger.isBlocked(X)).toBe(true);
    expect(ev.windowOf(X, clock)).toEqual({ calls: 10, denies: 10, advisoryDenies: 0 });
    expect(feed(ev, clock, denies(X, 10, T0 + 500))).toEqual([]);
    expect(ev.stats.whileBlocked).toBe(10);
  });

  it('does not clear the window of an unblocked identity on a replayed unblock', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    ev.applyLedger({ agent_id: X, epoch: 1, action: 'block' });
    ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' });
    feed(ev, clock, denies(X, 9, T0));
    expect(ev.applyLedger({ agent_id: X, epoch: 1, action: 'unblock' })).toBe('unchanged');
    expect(ev.applyLedger({ agent_id: X, epoch: 1, action: 'block' })).toBe('unchanged');
    expect(ev.windowOf(X, clock)).toEqual({ calls: 9, denies: 9, advisoryDenies: 0 });
    expect(feed(ev, clock, denies(X, 1, T0 + 100)).map((t) => t.epoch)).toEqual([2]);
  });

  it('numbers a local trip after the latest epoch restored from the ledger', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    ev.applyLedger({ agent_id: X, epoch: 7, action: 'unblock' });
    expect(feed(ev, clock, denies(X, 10, T0)).map((t) => t.epoch)).toEqual([8]);
  });
});

describe('Evaluator: disabled', () => {
  it('counts calls and denies but never trips or tracks anyone', () => {
    const ev = new Evaluator(tripConfig({ enabled: false, min_calls: 1, deny_rate_threshold: 0.5 }));
    const clock = ev.openStream('s', { file: 's' });
    const ds = [
      ...Array.from({ length: 30 }, (_, i) => dec(X, Deny, T0 + i)),
      ...Array.from({ length: 5 }, (_, i) => dec(X, AdvisoryDeny, T0 + 100 + i)),
      ...Array.from({ length: 4 }, (_, i) => dec(Y, Call, T0 + 200 + i)),
    ];
    expect(feed(ev, clock, ds)).toEqual([]);
    expect(ev.stats).toMatchObject({ accepted: 39, calls: 4, denies: 30, advisoryDenies: 5, trips: 0, whileBlocked: 0 });
    expect(ev.trackedIdentities).toBe(0);
    expect(ev.ledger.blocked).toBe(0);
  });
});

describe('Evaluator: several streams', () => {
  const config = tripConfig({ window_seconds: 60, resolution_ms: 1000, allowed_lateness_ms: 5000, min_calls: 3, deny_rate_threshold: 1 });

  it('keeps a stream time per stream: late on one stream is not late on another', () => {
    const ev = new Evaluator(config);
    const s1 = ev.openStream('one.ndjson', { file: 'one.ndjson' });
    const s2 = ev.openStream('two.ndjson', { file: 'two.ndjson' });
    expect(s1.time).toBe(-Infinity);
    feed(ev, s1, [dec(O, Call, T0 + 100_000)]);
    expect(s1.time).toBe(T0 + 100_000);
    expect(s2.time).toBe(-Infinity);

    expect(ev.accept(s1, dec(Y, Deny, T0), 2)).toBeNull();
    expect(ev.stats.late).toBe(1);

    const trips = feed(ev, s2, [dec(Y, Deny, T0), dec(Y, Deny, T0 + 1000), dec(Y, Deny, T0 + 2000)]);
    expect(ev.stats.late).toBe(1);
    expect(s2.time).toBe(T0 + 2000);
    expect(s1.time).toBe(T0 + 100_000);
    expect(trips).toHaveLength(1);
    expect(trips[0]!.stream).toBe('two.ndjson');
    expect(trips[0]!.evidence.source).toEqual({ file: 'two.ndjson', line_from: 1, line_to: 3 });
    expect(trips[0]!.evidence.window_end).toBe('2026-01-01T00:00:02.000Z');
  });

  // BUG (report, latent until several partitions share one evaluator): idle reuse compares an identity's
  // newest bucket with the clock of the stream that allocates a slot. A stream far ahead of another sees
  // the lagging stream's identities as idle and takes their slots without a live eviction, emptying windows
  // that the lagging stream still counts on. Y's third deny on s1 should trip Y (3 denies in its window).
  it("does not empty a lagging stream's live window when a stream far ahead needs a slot", () => {
    const ev = new Evaluator(config);
    const s1 = ev.openStream('p0', { topic: 'policy.decisions', partition: 0 });
    const s2 = ev.openStream('p1', { topic: 'policy.decisions', partition: 1 });
    feed(ev, s1, [dec(Y, Deny, T0), dec(Y, Deny, T0 + 1000)]);
    feed(ev, s2, [dec(O, Call, T0 + 3_600_000)]);
    expect(ev.liveEvictions).toBe(0);
    const trips = feed(ev, s1, [dec(Y, Deny, T0 + 2000)], 3);
    expect(trips.map((t) => t.agentId)).toEqual([Y]);
  });
});

describe('Evaluator: stats', () => {
  it('counts accepted, late, anonymous and ignored decisions exactly', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 300, allowed_lateness_ms: 5000 }));
    const clock = ev.openStream('s', { file: 's' });
    feed(ev, clock, [
      dec(X, Call, T0), //                accepted, call
      dec(X, Deny, T0 + 1000), //         accepted, deny
      dec(null, Deny, T0 + 2000), //      accepted, anonymous
      dec(X, Ignored, T0 + 3000), //      accepted, ignored
      dec(null, Ignored, T0 + 3000), //   accepted, ignored (not anonymous)
      dec(X, Deny, T0 + 10_000), //       accepted, deny; S = T0 + 10 s
      dec(X, Deny, T0 + 5000), //         exactly S - lateness: accepted, deny
      dec(X, Call, T0 + 4999), //         late
      dec(null, Call, T0), //             late (not anonymous)
      dec(X, AdvisoryDeny, T0 + 10_000), // accepted, advisory deny
    ]);
    expect(ev.stats).toEqual({
      accepted: 8, calls: 1, denies: 3, advisoryDenies: 1, ignored: 2, anonymous: 1, late: 2, duplicates: 0, outsideWindow: 0,
      whileBlocked: 0, trips: 0, held: 0,
    });
    expect(ev.windowOf(X, clock)).toEqual({ calls: 5, denies: 4, advisoryDenies: 1 });
    expect(ev.trackedIdentities).toBe(1);
  });

  // BUG (report): with allowed lateness > window, a cutoff raised above an identity's newest bucket is
  // forgotten by the next late decision whose bucket lies between the two. W = 1 s, lateness 5 s:
  // at S = T0 + 5 s the window is t >= T0 + 4 s, yet X's late deny at T0 + 2 s is counted and trips X.
  it('does not count a late decision older than the window (lateness > window)', () => {
    const ev = new Evaluator(tripConfig({ window_ms: 1000, resolution_ms: 100, allowed_lateness_ms: 5000, min_calls: 1, deny_rate_threshold: 1 }));
    const clock = ev.openStream('s', { file: 's' });
    const trips = feed(ev, clock, [
      dec(X, Call, T0), //          X tracked; rate 0
      dec(O, Call, T0 + 5000), //   S = T0 + 5 s
      dec(X, Deny, T0 + 1000), //   accepted (not late), outside X's window
      dec(X, Deny, T0 + 2000), //   accepted (not late), outside X's window
    ]);
    expect(trips).toEqual([]);
    expect(ev.stats.outsideWindow).toBe(2);
    expect(ev.windowOf(X, clock)).toEqual({ calls: 0, denies: 0, advisoryDenies: 0 });
  });

  // BUG (found by the property test, seed 805420978): a decision accepted outside the window was not
  // counted, rightly, but X was not evaluated either; section 2 evaluates X after every accepted decision,
  // and X's window may have lost calls since X's last evaluation.
  it('evaluates X on a decision accepted outside its window (lateness > window): the window left may trip', () => {
    const ev = new Evaluator(tripConfig({ window_ms: 1000, resolution_ms: 100, allowed_lateness_ms: 5000, min_calls: 1, deny_rate_threshold: 0.8 }));
    const clock = ev.openStream('s', { file: 's' });
    const trips = feed(ev, clock, [
      dec(X, Call, T0), //          X: 1 call
      dec(X, Deny, T0 + 900), //    X: 2 calls, 1 deny (0.5)
      dec(O, Call, T0 + 1500), //   S = T0 + 1.5 s: X's call at T0 leaves X's window; X is not evaluated here
      dec(X, Call, T0 + 100), //    accepted, outside the window: X evaluated, 1 call, 1 deny
      dec(Y, Deny, T0 + 100), //    the same for an identity without a window: nothing to evaluate
    ]);
    expect(trips.map((t) => [t.agentId, t.evidence.tripping_decision_id, t.evidence.calls, t.evidence.denies])).toEqual([[X, `d-${seq - 1}`, 1, 1]]);
    expect(ev.stats.outsideWindow).toBe(2);
    expect(ev.tracks(Y)).toBe(false);
  });
});

describe('Evaluator: duplicates (docs/spec.md#23-de-duplication)', () => {
  const config = tripConfig({ window_seconds: 300, min_calls: 10, deny_rate_threshold: 0.9 });

  it('counts a decision delivered ten times once: one call never trips an identity', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    const once = dec(X, Deny, T0);
    expect(feed(ev, clock, Array.from({ length: 10 }, () => once))).toEqual([]);
    expect(ev.windowOf(X, clock)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });
    expect(ev.stats.duplicates).toBe(9);
    expect(ev.stats.denies).toBe(1);
  });

  it('remembers the last 8 decision ids of each identity: the 8th last is a duplicate, the 9th is counted again', () => {
    const ev = new Evaluator(tripConfig({ window_seconds: 300, min_calls: 100 }));
    const clock = ev.openStream('s', { file: 's' });
    const xs = Array.from({ length: 9 }, (_, i) => dec(X, Call, T0 + i));
    feed(ev, clock, [...xs, dec(O, Call, T0 + 9)]); // another identity's decision does not push X's out
    feed(ev, clock, [xs[1]!]);
    expect(ev.stats.duplicates).toBe(1);
    feed(ev, clock, [xs[0]!]);
    expect(ev.stats.duplicates).toBe(1);
    expect(ev.windowOf(X, clock).calls).toBe(10);
  });

  it('does not take the same decision_id of two identities for a duplicate', () => {
    const ev = new Evaluator(config);
    const clock = ev.openStream('s', { file: 's' });
    feed(ev, clock, [{ ...dec(X, Deny, T0), decisionId: 'same' }, { ...dec(O, Deny, T0), decisionId: 'same' }]);
    expect(ev.stats.duplicates).toBe(0);
  });

  it('trips on ten distinct denies re-delivered in a burst exactly as on the ten alone, with the same evidence', () => {
    const ten = Array.from({ length: 10 }, (_, i) => dec(X, Deny, T0 + i * 1000));
    const a = new Evaluator(config);
    const tripsAlone = feed(a, a.openStream('s', { file: 's' }), ten);
    const b = new Evaluator(config);
    const withRetries = ten.flatMap((d, i) => (i % 3 === 0 ? [d, d, d] : [d]));
    const tripsRetried = feed(b, b.openStream('s', { file: 's' }), withRetries);
    expect(tripsRetried.map((t) => t.evidence.calls)).toEqual(tripsAlone.map((t) => t.evidence.calls));
    expect(tripsRetried[0]!.evidence.tripping_decision_id).toBe(tripsAlone[0]!.evidence.tripping_decision_id);
  });
});

describe('Evaluator: determinism', () => {
  it('gives deep-equal trips from two fresh evaluators fed the same decisions', () => {
    const ids = [X, Y, O, 'spiffe://eval.example/agent/z'];
    const ds: Decision[] = [];
    let t = T0;
    for (let i = 0; i < 600; i++) {
      t += (i * 7919) % 1300; // deterministic, irregular steps
      const id = (i * 31) % 11 === 0 ? null : ids[(i * 13) % ids.length]!;
      const cls = ([Deny, Deny, Deny, AdvisoryDeny, Call, Deny, Ignored] as const)[(i * 17) % 7]!;
      const back = i % 9 === 0 ? 3000 : 0;
      ds.push({ decisionId: `det-${i}`, agentId: id, cls, timeMs: t - back, sessionId: `sess-${(i * 5) % 23}` });
    }
    const run = (): Trip[] => {
      const ev = new Evaluator(tripConfig({ window_seconds: 30, min_calls: 5, deny_rate_threshold: 0.6 }));
      const clock = ev.openStream('k', { topic: 'policy.decisions', partition: 2 });
      const trips: Trip[] = [];
      ds.forEach((d, i) => {
        const trip = ev.accept(clock, d, 500 + i);
        if (trip !== null) trips.push(trip);
        if (trip !== null && trip.epoch < 3) ev.applyLedger({ agent_id: trip.agentId, epoch: trip.epoch, action: 'unblock' });
      });
      return trips;
    };
    const a = run();
    const b = run();
    expect(a.length).toBeGreaterThanOrEqual(4);
    expect(new Set(a.map((x) => x.agentId)).size).toBeGreaterThan(1);
    expect(a.some((x) => x.sessionIds.length > 1)).toBe(true);
    expect(b).toEqual(a);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });
});
