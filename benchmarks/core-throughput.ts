/**
 * Window + trip rule throughput on one thread, pre-parsed decisions, 100k identities (issue #2 figure:
 * >= 10M decisions/s), and heap growth over 10M+ decisions in steady state.
 */
import { createClassifier, DecisionClass } from '../src/core/decision-class.js';
import type { Decision } from '../src/core/decision.js';
import { Evaluator } from '../src/core/evaluator.js';
import { gc, mulberry32, report, tripConfig } from './util.js';

interface MutableDecision { decisionId: string; agentId: string | null; cls: DecisionClass; timeMs: number; sessionId: string | undefined }

export function run(): void {
  const identities = 100_000;
  const perRound = 2_000_000;
  const rounds = 8;
  const ratePerMs = Number(process.env.RATE_PER_MS ?? 1000);
  const ids = Array.from({ length: identities }, (_, i) => `spiffe://bench.example/agent/${i}`);
  const sessions = Array.from({ length: identities }, (_, i) => `s-${i}`);
  const rnd = mulberry32(42);
  const start = Date.UTC(2026, 0, 1);
  const decisions: MutableDecision[] = [];
  for (let i = 0; i < perRound; i++) {
    const r = rnd();
    // 85% allow, 13% deny, 2% advisory: below every threshold, so identities keep counting (no latch).
    const cls = r < 0.85 ? DecisionClass.Call : r < 0.98 ? DecisionClass.Deny : DecisionClass.AdvisoryDeny;
    const who = Math.floor(rnd() * identities);
    decisions.push({ decisionId: `d-${i}`, agentId: ids[who]!, cls, timeMs: start + Math.floor(i / ratePerMs), sessionId: sessions[who] });
  }
  const span = Math.ceil(perRound / ratePerMs);
  const evaluator = new Evaluator(tripConfig({ classifier: createClassifier() }));
  const clock = evaluator.openStream('bench', { file: 'bench' });

  const rates: number[] = [];
  const heaps: number[] = [];
  let trips = 0;
  for (let round = 0; round < rounds; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) {
      if (evaluator.accept(clock, decisions[i] as Decision, i) !== null) trips++;
    }
    const ns = Number(process.hrtime.bigint() - t0);
    rates.push(perRound / (ns / 1e9));
    for (const d of decisions) d.timeMs += span;
    gc();
    heaps.push(process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers);
  }
  const steady = rates.slice(2);
  report('core throughput (window + trip rule, pre-parsed, 100k identities, with session ids)', {
    'decisions/s (median of rounds 3..8)': Math.round(median(steady)),
    'decisions/s (best round)': Math.round(Math.max(...steady)),
    'decisions processed': perRound * rounds,
    trips,
    'tracked identities': evaluator.trackedIdentities,
    'heap+arrays after round 3 (MiB)': +(heaps[2]! / 2 ** 20).toFixed(1),
    'heap+arrays after round 8 (MiB)': +(heaps[rounds - 1]! / 2 ** 20).toFixed(1),
    'growth rounds 3..8 (KiB)': Math.round((heaps[rounds - 1]! - heaps[2]!) / 1024),
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
