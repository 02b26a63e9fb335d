import { createClassifier } from '../../src/core/decision-class.js';
import type { TripRuleConfig } from '../../src/core/evaluator.js';

/** A TripRuleConfig from the contract's snake_case keys (defaults per docs/spec.md#2-the-trip-rule, enabled). */
export function tripConfig(o: {
  window_seconds?: number; window_ms?: number; deny_rate_threshold?: number; min_calls?: number; resolution_ms?: number;
  allowed_lateness_ms?: number; enabled?: boolean; max_tracked_identities?: number;
} = {}): TripRuleConfig {
  const windowMs = o.window_ms ?? (o.window_seconds ?? 300) * 1000;
  const threshold = o.deny_rate_threshold ?? 0.9;
  const minCalls = o.min_calls ?? 10;
  const enabled = o.enabled ?? true;
  return {
    enabled,
    windowMs,
    resolutionMs: o.resolution_ms ?? Math.ceil(windowMs / 60),
    latenessMs: o.allowed_lateness_ms ?? 5000,
    minCalls,
    threshold,
    classifier: createClassifier(),
    maxTrackedIdentities: o.max_tracked_identities ?? 1_000_000,
    settings: { enabled, window_seconds: Math.ceil(windowMs / 1000), deny_rate_threshold: threshold, min_calls: minCalls },
  };
}
