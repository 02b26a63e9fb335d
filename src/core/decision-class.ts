/** Decision outcomes (docs/spec.md#1-decision-events) and how the trip rule counts them (section 2). */

export const DECISIONS = ['allow', 'deny', 'advisory_deny', 'step_up', 'defer', 'redact', 'fault', 'n/a'] as const;
export type DecisionValue = (typeof DECISIONS)[number];

export const DEFAULT_CALL_DECISIONS: readonly DecisionValue[] = ['allow', 'deny', 'advisory_deny'];
export const DEFAULT_DENY_DECISIONS: readonly DecisionValue[] = ['deny', 'advisory_deny'];

/** How one decision counts. Small integers so the hot path switches on a number, not a string. */
export const DecisionClass = {
  /** neither a call nor a deny */
  Ignored: 0,
  /** a call that is not a deny */
  Call: 1,
  /** a call and a deny */
  Deny: 2,
  /** a call and a deny, reported separately in evidence as `advisory_denies` */
  AdvisoryDeny: 3,
} as const;
export type DecisionClass = (typeof DecisionClass)[keyof typeof DecisionClass];

export interface DecisionClassifier {
  readonly classOf: (decision: string) => DecisionClass;
  readonly callDecisions: readonly DecisionValue[];
  readonly denyDecisions: readonly DecisionValue[];
}

export function createClassifier(
  callDecisions: readonly DecisionValue[] = DEFAULT_CALL_DECISIONS,
  denyDecisions: readonly DecisionValue[] = DEFAULT_DENY_DECISIONS,
): DecisionClassifier {
  const table = new Map<string, DecisionClass>();
  for (const d of callDecisions) table.set(d, DecisionClass.Call);
  for (const d of denyDecisions) {
    // A deny is also a call (section 2), whether or not the call set names it.
    table.set(d, d === 'advisory_deny' ? DecisionClass.AdvisoryDeny : DecisionClass.Deny);
  }
  return {
    classOf: (decision) => table.get(decision) ?? DecisionClass.Ignored,
    callDecisions: [...new Set([...callDecisions, ...denyDecisions])],
    denyDecisions: [...denyDecisions],
  };
}
