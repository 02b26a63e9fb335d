import { createClassifier, type DecisionClassifier } from '../src/core/decision-class.js';
import type { TripRuleConfig } from '../src/core/evaluator.js';

export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error('run benchmarks with node --expose-gc (npm run bench does)');
  g();
  g();
}

/** The default kill_switch config (docs/spec.md#2-the-trip-rule) with the switch enabled. */
export function tripConfig(overrides: Partial<TripRuleConfig> & { classifier?: DecisionClassifier } = {}): TripRuleConfig {
  const windowMs = 300_000;
  return {
    enabled: true,
    windowMs,
    resolutionMs: Math.ceil(windowMs / 60),
    latenessMs: 5_000,
    minCalls: 10,
    threshold: 0.9,
    classifier: overrides.classifier ?? createClassifier(),
    maxTrackedIdentities: 2_000_000,
    settings: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 },
    ...overrides,
  };
}

export function report(title: string, figures: Record<string, number | string>): void {
  console.log(`\n## ${title}`);
  for (const [k, v] of Object.entries(figures)) console.log(`  ${k}: ${typeof v === 'number' ? v.toLocaleString('en-US') : v}`);
}

/** Small seeded PRNG so every run sees the same stream. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
