/**
 * The cMCP evaluator port used by the peers benchmark (benchmarks/peers/cmcp-evaluator.ts) must trip
 * exactly where our core does, or the benchmark compares two different rules. Random in-order streams
 * (cMCP reads a clock, so its time never goes back): with buckets of 1 ms our window is cMCP's exact
 * "t >= T - W"; with the default buckets of W / 60 it is the same whenever times fall on bucket edges,
 * which is how the benchmark generates its sequence.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CmcpEvaluator } from '../../benchmarks/peers/cmcp-evaluator.js';
import { DecisionClass } from '../../src/core/decision-class.js';
import { Evaluator } from '../../src/core/evaluator.js';
import { tripConfig } from '../helpers/trip-config.js';

type Op = { kind: 'decision'; id: number | null; cls: DecisionClass; advance: number } | { kind: 'unblock'; id: number };
interface Params { windowMs: number; g: number; minCalls: number; threshold: number; identities: number }
interface TripRecord { id: string; at: number; index: number; calls: number; denies: number }

const agent = (i: number): string => `spiffe://port.example/agent/${i}`;
const T0 = Date.UTC(2026, 0, 1);

function runCmcp(p: Params, ops: readonly Op[]): TripRecord[] {
  const ev = new CmcpEvaluator({ windowMs: p.windowMs, minCalls: p.minCalls, threshold: p.threshold });
  const trips: TripRecord[] = [];
  let t = T0;
  ops.forEach((op, index) => {
    if (op.kind === 'unblock') return ev.unblock(agent(op.id));
    t += op.advance;
    const trip = ev.record(op.id === null ? null : agent(op.id), op.cls, t);
    if (trip !== null) trips.push({ id: trip.agentId, at: trip.atMs, index, calls: trip.calls, denies: trip.denies });
  });
  return trips;
}

function runCore(p: Params, ops: readonly Op[]): TripRecord[] {
  const ev = new Evaluator(tripConfig({
    window_ms: p.windowMs, resolution_ms: p.g, allowed_lateness_ms: 0, min_calls: p.minCalls, deny_rate_threshold: p.threshold,
  }));
  const clock = ev.openStream('s', { file: 's' });
  const trips: TripRecord[] = [];
  let t = T0;
  ops.forEach((op, index) => {
    if (op.kind === 'unblock') {
      const st = ev.ledger.get(agent(op.id));
      if (st?.blocked === true) ev.applyLedger({ agent_id: agent(op.id), epoch: st.epoch, action: 'unblock' });
      return;
    }
    t += op.advance;
    const d = { decisionId: `d${index}`, agentId: op.id === null ? null : agent(op.id), cls: op.cls, timeMs: t, sessionId: undefined };
    const trip = ev.accept(clock, d, index);
    if (trip !== null) trips.push({ id: trip.agentId, at: trip.atMs, index, calls: trip.evidence.calls, denies: trip.evidence.denies });
  });
  return trips;
}

function opsArb(p: Params, step: fc.Arbitrary<number>): fc.Arbitrary<Op[]> {
  const cls = fc.constantFrom<DecisionClass>(
    DecisionClass.Call, DecisionClass.Deny, DecisionClass.Deny, DecisionClass.Deny, DecisionClass.AdvisoryDeny, DecisionClass.Ignored,
  );
  const id = fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: p.identities - 1 }) }, { weight: 1, arbitrary: fc.constant(null) });
  const decision = fc.record({ kind: fc.constant('decision' as const), id, cls, advance: step });
  const unblock = fc.record({ kind: fc.constant('unblock' as const), id: fc.integer({ min: 0, max: p.identities - 1 }) });
  return fc.array(fc.oneof({ weight: 20, arbitrary: decision }, { weight: 1, arbitrary: unblock }), { minLength: 1, maxLength: 150 });
}

const rule = fc.record({
  minCalls: fc.integer({ min: 1, max: 6 }),
  threshold: fc.constantFrom(0.5, 0.8, 0.9, 1, 1 / 3, 2 / 3),
  identities: fc.integer({ min: 1, max: 5 }),
});

describe('cMCP evaluator port (benchmarks/peers)', () => {
  it('trips exactly where the core does with 1 ms buckets (cMCP\'s exact window)', () => {
    const scenario = fc.record({ windowMs: fc.constantFrom(100, 400, 1000), r: rule }).chain(({ windowMs, r }) => {
      const p: Params = { windowMs, g: 1, ...r };
      // steps that land on the exact cutoff, just inside and just outside it, and idle gaps past the window
      const step = fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: 0, max: Math.floor(windowMs / 8) }) },
        { weight: 2, arbitrary: fc.constantFrom(0, windowMs, windowMs - 1, windowMs + 1, windowMs / 2) },
        { weight: 1, arbitrary: fc.integer({ min: windowMs, max: 3 * windowMs }) },
      );
      return opsArb(p, step).map((ops) => ({ p, ops }));
    });
    fc.assert(fc.property(scenario, ({ p, ops }) => {
      expect(runCmcp(p, ops)).toEqual(runCore(p, ops));
    }), { numRuns: 800 });
  }, 60_000);

  it('trips exactly where the core does with default buckets when times fall on bucket edges', () => {
    const windowMs = 300_000;
    const g = Math.ceil(windowMs / 60);
    const scenario = rule.chain((r) => {
      const p: Params = { windowMs, g, ...r };
      const step = fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(0, 0, g, 2 * g) },
        { weight: 2, arbitrary: fc.integer({ min: 0, max: 70 }).map((k) => k * g) },
      );
      return opsArb(p, step).map((ops) => ({ p, ops }));
    });
    fc.assert(fc.property(scenario, ({ p, ops }) => {
      expect(runCmcp(p, ops)).toEqual(runCore(p, ops));
    }), { numRuns: 1000 });
  });

  it('counts a call exactly at now - window, trips at 9 of 10 at 0.9, and trips once until unblocked', () => {
    const ev = new CmcpEvaluator({ windowMs: 1000, minCalls: 10, threshold: 0.9 });
    const a = agent(1);
    expect(ev.record(a, DecisionClass.Call, 0)).toBeNull();
    for (let i = 1; i <= 8; i++) expect(ev.record(a, DecisionClass.Deny, i)).toBeNull();
    // the allow at 0 is exactly at 1000 - 1000: still in the window, so 9 denies of 10 calls
    expect(ev.record(a, DecisionClass.AdvisoryDeny, 1000)).toEqual({ agentId: a, atMs: 1000, calls: 10, denies: 9 });
    expect(ev.record(a, DecisionClass.Deny, 1001)).toBeNull();
    expect(ev.trips).toBe(1);
    ev.unblock(a);
    for (let i = 0; i < 9; i++) expect(ev.record(a, DecisionClass.Deny, 1002 + i)).toBeNull();
    expect(ev.record(a, DecisionClass.Deny, 1011)?.calls).toBe(10);
  });

  it('drops a call older than the window: 1 ms past the cutoff it no longer counts', () => {
    const ev = new CmcpEvaluator({ windowMs: 1000, minCalls: 10, threshold: 0.9 });
    const a = agent(2);
    ev.record(a, DecisionClass.Deny, 0);
    for (let i = 1; i <= 8; i++) ev.record(a, DecisionClass.Deny, i);
    // at 1001 the deny at 0 is out: 9 calls < min_calls
    expect(ev.record(a, DecisionClass.Deny, 1001)).toBeNull();
    expect(ev.record(a, DecisionClass.Deny, 1001)?.calls).toBe(10);
  });
});
