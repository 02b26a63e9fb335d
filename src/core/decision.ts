/** A policy decision (docs/spec.md#1-decision-events) after decoding: what the evaluator needs, pre-parsed. */
import type { DecisionClass, DecisionClassifier } from './decision-class.js';
import { parseRfc3339 } from './time.js';

/** The decision event as it is on the wire, once it has passed `schemas/policy-decision.schema.json`. */
export interface DecisionEvent {
  readonly decision_id: string;
  readonly agent_id?: string | null;
  readonly decision: string;
  readonly occurred_at: string;
  readonly session_id?: string;
  readonly tool_name?: string;
  readonly policy_rule?: string;
  readonly tenant?: string;
  readonly delegated_by?: string;
}

export interface Decision {
  readonly decisionId: string;
  /** null for anonymous calls */
  readonly agentId: string | null;
  readonly cls: DecisionClass;
  /** event time, ms since the epoch */
  readonly timeMs: number;
  readonly sessionId: string | undefined;
  /**
   * The identity handle of `agentId` (identity-handle.ts: an IdentityInterner's, or one the decoder drew
   * with newIdentityHandle and keeps with the validated ID), when the decoder has one: the window store
   * then finds the identity without hashing the ID. Must be the handle of exactly this agentId.
   */
  readonly identity?: number | undefined;
}

export function toDecision(event: DecisionEvent, classifier: DecisionClassifier): Decision | string {
  const timeMs = parseRfc3339(event.occurred_at);
  if (Number.isNaN(timeMs)) return `/occurred_at: must be an RFC 3339 date-time`;
  return {
    decisionId: event.decision_id,
    agentId: event.agent_id === undefined || event.agent_id === null || event.agent_id === '' ? null : event.agent_id,
    cls: classifier.classOf(event.decision),
    timeMs,
    sessionId: event.session_id,
  };
}
