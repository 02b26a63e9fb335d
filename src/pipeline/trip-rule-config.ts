import { createClassifier } from '../core/decision-class.js';
import type { TripRuleConfig } from '../core/evaluator.js';
import type { Config } from '../config/config.js';

/** The core's view of the validated config. */
export function tripRuleConfig(config: Config): TripRuleConfig {
  const ks = config.kill_switch;
  const g = config.governor;
  return {
    enabled: ks.enabled,
    windowMs: ks.window_seconds * 1000,
    resolutionMs: ks.resolution_ms,
    latenessMs: ks.allowed_lateness_seconds * 1000,
    maxFutureSkewMs: ks.max_future_skew_seconds * 1000,
    minCalls: ks.min_calls,
    threshold: ks.deny_rate_threshold,
    classifier: createClassifier(ks.call_decisions, ks.deny_decisions),
    maxTrackedIdentities: config.limits.max_tracked_identities,
    settings: {
      enabled: ks.enabled,
      window_seconds: ks.window_seconds,
      deny_rate_threshold: ks.deny_rate_threshold,
      min_calls: ks.min_calls,
    },
    overrides: config.overrides.map((o) => {
      const window = o.window_seconds ?? ks.window_seconds;
      const threshold = o.deny_rate_threshold ?? ks.deny_rate_threshold;
      const minCalls = o.min_calls ?? ks.min_calls;
      return {
        match: o.match, mode: o.mode, windowMs: window * 1000, minCalls, threshold,
        settings: { enabled: ks.enabled, window_seconds: window, deny_rate_threshold: threshold, min_calls: minCalls },
      };
    }),
    ...(g.enabled
      ? { governor: { maxPerMinute: g.max_blocks_per_minute, maxShare: g.max_blocked_share, shareFloor: g.share_floor } }
      : {}),
  };
}
