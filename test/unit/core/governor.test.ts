/** The blast-radius governor in the evaluator: trips beyond the limits are held, once per minute, and admitted when there is room. */
import { describe, expect, it } from 'vitest';
import { DecisionClass } from '../../../src/core/decision-class.js';
import { Evaluator, type GovernorConfig, type StreamClock, type Trip } from '../../../src/core/evaluator.js';
import { Governor } from '../../../src/core/governor.js';
import { LedgerFold } from '../../../src/core/ledger-fold.js';
import { tripConfig } from '../../helpers/trip-config.js';

const T0 = Date.UTC(2026, 0, 1);
const { Deny, Call } = DecisionClass;
let seq = 0;

function evaluator(governor: GovernorConfig): { ev: Evaluator; clock: StreamClock } {
  const ev = new Evaluator({ ...tripConfig({ min_calls: 2, deny_rate_threshold: 1, window_seconds: 300 }), governor });
  return { ev, clock: ev.openStream('s', { file: 's' }) };
}

/** Two denies for each identity at `at`: each identity reaches the rule once. */
function storm(ev: Evaluator, clock: StreamClock, ids: readonly string[], at: number): Trip[] {
  const out: Trip[] = [];
  for (const id of ids) {
    for (let k = 0; k < 2; k++) {
      const t = ev.accept(clock, { decisionId: `d${++seq}`, agentId: id, cls: Deny, timeMs: at, sessionId: undefined }, seq);
      if (t !== null) out.push(t);
    }
  }
  return out;
}

const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `spiffe://gov.example/${prefix}/${i}`);

describe('blast-radius governor', () => {
  it('admits at most max_blocks_per_minute automatic blocks per minute of event time; the rest are held, not blocked', () => {
    const { ev, clock } = evaluator({ maxPerMinute: 3, maxShare: 1, shareFloor: 0 });
    const trips = storm(ev, clock, ids('a', 5), T0);
    expect(trips.map((t) => t.held ?? 'block')).toEqual(['block', 'block', 'block', 'governor_rate', 'governor_rate']);
    expect(ev.ledger.blocked).toBe(3);
    expect(trips[3]!.epoch).toBe(1); // the epoch a block would have; nothing consumed it
    expect(ev.stats).toMatchObject({ trips: 3, held: 2 });
  });

  it('reports a held identity once per minute, and blocks it on its next decision once a new minute has room', () => {
    const { ev, clock } = evaluator({ maxPerMinute: 1, maxShare: 1, shareFloor: 0 });
    const [a, b] = ids('b', 2) as [string, string];
    expect(storm(ev, clock, [a, b], T0).map((t) => t.held ?? 'block')).toEqual(['block', 'governor_rate']);
    // b keeps denying within the same minute: no new report
    expect(ev.accept(clock, { decisionId: 'x1', agentId: b, cls: Deny, timeMs: T0 + 30_000, sessionId: undefined }, 100)).toBeNull();
    // the next minute has room: b is blocked now, epoch 1
    const next = ev.accept(clock, { decisionId: 'x2', agentId: b, cls: Deny, timeMs: T0 + 60_000, sessionId: undefined }, 101);
    expect(next).toMatchObject({ agentId: b, epoch: 1 });
    expect(next!.held).toBeUndefined();
    expect(ev.ledger.isBlocked(b)).toBe(true);
  });

  it('holds trips that would block more than max_blocked_share of the identities with a window, above the floor', () => {
    const { ev, clock } = evaluator({ maxPerMinute: 1000, maxShare: 0.1, shareFloor: 2 });
    // 40 well-behaved identities with a window: 40 + the 10 below = 50 tracked; 10% of 50 = 5 may be blocked
    for (const id of ids('calm', 40)) ev.accept(clock, { decisionId: `c${++seq}`, agentId: id, cls: Call, timeMs: T0, sessionId: undefined }, seq);
    const trips = storm(ev, clock, ids('c', 10), T0);
    expect(trips.filter((t) => t.held === undefined)).toHaveLength(5);
    expect(trips.filter((t) => t.held === 'governor_share')).toHaveLength(5);
    expect(ev.ledger.automaticallyBlocked).toBe(5);
  });

  it('the share floor lets small deployments block a few identities whatever their share', () => {
    const { ev, clock } = evaluator({ maxPerMinute: 1000, maxShare: 0.01, shareFloor: 3 });
    const trips = storm(ev, clock, ids('d', 4), T0);
    expect(trips.map((t) => t.held ?? 'block')).toEqual(['block', 'block', 'block', 'governor_share']);
  });

  it('without a governor every trip blocks', () => {
    const ev = new Evaluator(tripConfig({ min_calls: 2, deny_rate_threshold: 1 }));
    const trips = storm(ev, ev.openStream('s', { file: 's' }), ids('e', 50), T0);
    expect(trips.every((t) => t.held === undefined)).toBe(true);
    expect(ev.ledger.blocked).toBe(50);
  });

  it('one governor shared by several evaluators (Kafka mode: one per partition) holds their trips to one limit', () => {
    const cfg = { maxPerMinute: 4, maxShare: 1, shareFloor: 0 };
    const fold = new LedgerFold();
    let evs: Evaluator[] = [];
    const gov = new Governor(cfg, fold, () => evs.reduce((n, e) => n + e.trackedIdentities, 0), 300_000);
    evs = [0, 1].map(() => new Evaluator({ ...tripConfig({ min_calls: 2, deny_rate_threshold: 1, window_seconds: 300 }), governor: cfg }, fold, gov));
    const [p0, p1] = evs as [Evaluator, Evaluator];
    const trips = [...storm(p0, p0.openStream('p0', { topic: 't', partition: 0 }), ids('p0', 3), T0), ...storm(p1, p1.openStream('p1', { topic: 't', partition: 1 }), ids('p1', 3), T0)];
    expect(trips.map((t) => t.held ?? 'block')).toEqual(['block', 'block', 'block', 'block', 'governor_rate', 'governor_rate']);
    expect(fold.automaticallyBlocked).toBe(4);
  });

  it('does not count a trip whose block was withdrawn (its kill event never written) against the minute: the block written for it instead counts once', () => {
    const fold = new LedgerFold();
    const gov = new Governor({ maxPerMinute: 2, maxShare: 1, shareFloor: 0 }, fold, () => 100, 300_000);
    const x = 'spiffe://gov.example/x/1';
    expect(gov.decide(T0 + 1000, x)).toBeUndefined();
    // fenced: the trip's transaction never committed; the partition's new owner trips x and writes its kill event
    gov.withdraw(x);
    gov.noteExternal(T0 + 2000);
    expect(gov.decide(T0 + 3000, 'spiffe://gov.example/x/2')).toBeUndefined();
    expect(gov.decide(T0 + 3000, 'spiffe://gov.example/x/3')).toBe('governor_rate');
    // only what was admitted, once per admission, in the current minute
    gov.withdraw('spiffe://gov.example/never-admitted');
    gov.withdraw(x);
    expect(gov.decide(T0 + 4000, 'spiffe://gov.example/x/4')).toBe('governor_rate');
    expect(gov.decide(T0 + 61_000, 'spiffe://gov.example/x/5')).toBeUndefined();
    gov.withdraw('spiffe://gov.example/x/2'); // admitted in the minute before: counts nowhere now
    expect(gov.decide(T0 + 61_000, 'spiffe://gov.example/x/6')).toBeUndefined();
    expect(gov.decide(T0 + 61_000, 'spiffe://gov.example/x/7')).toBe('governor_rate');
  });

  it('counts blocks admitted elsewhere (seen on the ledger) against the minute they fall in; minutes never go back', () => {
    const fold = new LedgerFold();
    const gov = new Governor({ maxPerMinute: 3, maxShare: 1, shareFloor: 0 }, fold, () => 100, 300_000);
    gov.noteExternal(T0 + 1000);
    gov.noteExternal(T0 + 2000);
    expect(gov.decide(T0 + 3000, 'spiffe://gov.example/x/1')).toBeUndefined();
    expect(gov.decide(T0 + 3000, 'spiffe://gov.example/x/2')).toBe('governor_rate');
    // a lagging stream's trip from the minute before counts against the current minute: still full
    expect(gov.decide(T0 - 30_000, 'spiffe://gov.example/x/3')).toBe('governor_rate');
    // an external block from an older minute does not reopen it, nor count now
    gov.noteExternal(T0 - 90_000);
    // a new minute: room again; an external block in it takes a place
    gov.noteExternal(T0 + 61_000);
    expect(gov.decide(T0 + 62_000, 'spiffe://gov.example/x/4')).toBeUndefined();
    expect(gov.decide(T0 + 62_000, 'spiffe://gov.example/x/5')).toBeUndefined();
    expect(gov.decide(T0 + 62_000, 'spiffe://gov.example/x/6')).toBe('governor_rate');
  });
});
