/** Per-pattern rules: enforced overrides replace the main rule for the identities they match; shadow rules only report. */
import { describe, expect, it } from 'vitest';
import { DecisionClass } from '../../../src/core/decision-class.js';
import { Evaluator, overrideMatches, type RuleOverride, type Trip } from '../../../src/core/evaluator.js';
import { tripConfig } from '../../helpers/trip-config.js';

const T0 = Date.UTC(2026, 0, 1);
const { Deny, Call } = DecisionClass;
const PROD = 'spiffe://ov.example/ns/prod/sa/a';
const DEV = 'spiffe://ov.example/ns/dev/sa/b';

function rule(match: string, o: Partial<RuleOverride> = {}): RuleOverride {
  const windowMs = o.windowMs ?? 300_000;
  const minCalls = o.minCalls ?? 10;
  const threshold = o.threshold ?? 0.9;
  return { match, mode: 'enforce', windowMs, minCalls, threshold, settings: { enabled: true, window_seconds: windowMs / 1000, deny_rate_threshold: threshold, min_calls: minCalls }, ...o };
}

function run(overrides: RuleOverride[], decisions: [string, DecisionClass, number][]): Trip[] {
  const ev = new Evaluator({ ...tripConfig({ min_calls: 10, deny_rate_threshold: 0.9, window_seconds: 300, resolution_ms: 1000 }), overrides });
  const clock = ev.openStream('s', { file: 's' });
  const trips: Trip[] = [];
  decisions.forEach(([id, cls, at], i) => {
    const t = ev.accept(clock, { decisionId: `d${i + 1}`, agentId: id, cls, timeMs: T0 + at, sessionId: undefined }, i + 1);
    if (t !== null) trips.push(t);
  });
  return trips;
}

const denies = (id: string, n: number, from = 0, step = 1000): [string, DecisionClass, number][] =>
  Array.from({ length: n }, (_, i) => [id, Deny, from + i * step] as [string, DecisionClass, number]);

describe('overrides', () => {
  it('matches exact IDs and prefixes ending in /*', () => {
    expect(overrideMatches('spiffe://ov.example/ns/prod/*', PROD)).toBe(true);
    expect(overrideMatches('spiffe://ov.example/ns/prod/*', 'spiffe://ov.example/ns/production')).toBe(false);
    expect(overrideMatches('spiffe://ov.example/*', DEV)).toBe(true);
    expect(overrideMatches(PROD, PROD)).toBe(true);
    expect(overrideMatches(PROD, `${PROD}/x`)).toBe(false);
  });

  it('an enforced override replaces the main rule for the identities it matches, and is recorded in the trip', () => {
    const ov = rule('spiffe://ov.example/ns/prod/*', { minCalls: 3, threshold: 1 });
    const trips = run([ov], [...denies(PROD, 3), ...denies(DEV, 3)]);
    expect(trips.map((t) => `${t.agentId}@${t.evidence.calls}`)).toEqual([`${PROD}@3`]);
    expect(trips[0]!.rule).toBe(ov);
    expect(trips[0]!.held).toBeUndefined();
    // DEV keeps the main rule: 10 calls
    expect(run([ov], denies(DEV, 10)).map((t) => t.evidence.calls)).toEqual([10]);
  });

  it('the first matching override wins', () => {
    const trips = run([rule(PROD, { minCalls: 5, threshold: 1 }), rule('spiffe://ov.example/*', { minCalls: 2, threshold: 1 })], [...denies(PROD, 5), ...denies(DEV, 2)]);
    expect(trips.map((t) => `${t.agentId}@${t.evidence.calls}`)).toEqual([`${PROD}@5`, `${DEV}@2`]);
  });

  it('a shorter window counts only its own part of the ring', () => {
    // 3 denies long ago, then 3 calls and denies within the last 60 s. Over the whole 300 s ring the 4th
    // decision after the calls would trip (4 denies of 7); over 60 s it is 1 of 4.
    const ov = rule(PROD, { windowMs: 60_000, minCalls: 4, threshold: 0.5 });
    const ds: [string, DecisionClass, number][] = [...denies(PROD, 3, 0), [PROD, Call, 200_000], [PROD, Call, 201_000], [PROD, Call, 202_000], ...denies(PROD, 2, 203_000)];
    expect(run([ov], ds)).toEqual([]);
    const trips = run([ov], [...ds, ...denies(PROD, 1, 205_000)]);
    expect(trips.map((t) => [t.evidence.calls, t.evidence.denies, t.evidence.window_start])).toEqual([[6, 3, new Date(T0 + 205_000 - 60_000).toISOString()]]);
  });

  it('a shadow rule reports its trips once per minute and never blocks; the main rule still blocks', () => {
    const shadow = rule('spiffe://ov.example/ns/prod/*', { mode: 'shadow', minCalls: 3, threshold: 1 });
    const trips = run([shadow], denies(PROD, 10, 0, 1000));
    expect(trips.map((t) => `${t.held ?? 'block'}@${t.evidence.calls}`)).toEqual(['shadow_rule@3', 'block@10']);
    expect(trips[0]!.rule).toBe(shadow);
    expect(trips[0]!.epoch).toBe(1);
    expect(trips[1]!.epoch).toBe(1);
  });
});
