/**
 * Bytes per tracked identity at the default config (window 300 s, resolution 5 s: 61 buckets), measured
 * with 1M identities (issue #2 figure: <= 600 bytes). Counts everything the evaluator retains for an
 * identity: typed-array slots, the index entry and the SPIFFE ID string itself, and its session.
 */
import { DecisionClass } from '../src/core/decision-class.js';
import { Evaluator } from '../src/core/evaluator.js';
import { gc, report, tripConfig } from './util.js';

const N = 1_000_000;

function retained(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external; // external includes arrayBuffers
}

export function run(): void {
  const before = retained();
  const evaluator = new Evaluator(tripConfig({ maxTrackedIdentities: 2_000_000 }));
  const clock = evaluator.openStream('bench', { file: 'bench' });
  const start = Date.UTC(2026, 0, 1);
  for (let i = 0; i < N; i++) {
    // Fresh strings per decision, as JSON.parse makes them: only what the evaluator keeps stays alive.
    evaluator.accept(clock, {
      decisionId: `d-${i}`, agentId: `spiffe://bench.example/ns/prod/sa/agent-${i}`, cls: DecisionClass.Call,
      timeMs: start + Math.floor(i / 10_000), sessionId: `sess-${i}`,
    }, i);
  }
  const after = retained();
  report('memory per tracked identity (default config, 1M identities, each with a session)', {
    'tracked identities': evaluator.trackedIdentities,
    'retained (MiB)': +((after - before) / 2 ** 20).toFixed(1),
    'bytes per identity': Math.round((after - before) / evaluator.trackedIdentities),
    'example id length (chars)': 'spiffe://bench.example/ns/prod/sa/agent-123456'.length,
  });
}
