/**
 * Window + trip rule throughput on one thread, pre-parsed decisions, 100k identities (issue #2 figure:
 * >= 10M decisions/s), and heap growth over 16M decisions in steady state.
 *
 * Two identity mixes: uniform (every decision picks one of 100k identities at random: the worst case
 * for caches) and Zipf s=1 (a few identities make most calls, as in real fleets). Beside each, the
 * memory floor measured in the same run: a bare Map.get + one typed-array increment per decision over
 * the same sequence, which no per-identity store can beat.
 */
import { DecisionClass } from '../src/core/decision-class.js';
import type { Decision } from '../src/core/decision.js';
import { Evaluator } from '../src/core/evaluator.js';
import { gc, mulberry32, report, tripConfig } from './util.js';

interface MutableDecision { decisionId: string; agentId: string | null; cls: DecisionClass; timeMs: number; sessionId: string | undefined }

const IDENTITIES = 100_000;
const PER_ROUND = 2_000_000;
const ROUNDS = 8;
/** event time advances 1 ms per 1000 decisions: a 1M decisions/s stream, 10 decisions/s per identity */
const RATE_PER_MS = Number(process.env.RATE_PER_MS ?? 1000);

function zipfSampler(n: number, rnd: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / (i + 1);
  return () => {
    const x = rnd() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

function makeStream(pick: () => number, rnd: () => number): MutableDecision[] {
  const ids = Array.from({ length: IDENTITIES }, (_, i) => `spiffe://bench.example/ns/prod/sa/agent-${i}`);
  const sessions = Array.from({ length: IDENTITIES }, (_, i) => `sess-${i}`);
  const start = Date.UTC(2026, 0, 1);
  const out: MutableDecision[] = [];
  for (let i = 0; i < PER_ROUND; i++) {
    const r = rnd();
    // 85% allow, 13% deny, 2% advisory: below every threshold, so identities keep counting (no latch).
    const cls = r < 0.85 ? DecisionClass.Call : r < 0.98 ? DecisionClass.Deny : DecisionClass.AdvisoryDeny;
    const who = pick();
    out.push({ decisionId: `d-${i}`, agentId: ids[who]!, cls, timeMs: start + Math.floor(i / RATE_PER_MS), sessionId: sessions[who] });
  }
  return out;
}

/** The memory floor: one Map.get and one counter increment per decision, nothing else. */
function floorRate(decisions: MutableDecision[]): number {
  const index = new Map<string, number>();
  const counters = new Uint32Array(IDENTITIES * 4);
  for (const d of decisions) if (!index.has(d.agentId!)) index.set(d.agentId!, index.size);
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < decisions.length; i++) {
      const d = decisions[i]!;
      counters[index.get(d.agentId!)! * 4 + d.cls]!++;
    }
    best = Math.max(best, decisions.length / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  return best;
}

function measure(name: string, decisions: MutableDecision[]): void {
  const evaluator = new Evaluator(tripConfig());
  const clock = evaluator.openStream('bench', { file: 'bench' });
  const span = Math.ceil(PER_ROUND / RATE_PER_MS);
  const rates: number[] = [];
  const heaps: number[] = [];
  let trips = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PER_ROUND; i++) {
      if (evaluator.accept(clock, decisions[i] as Decision, i) !== null) trips++;
    }
    rates.push(PER_ROUND / (Number(process.hrtime.bigint() - t0) / 1e9));
    for (const d of decisions) d.timeMs += span;
    gc();
    const m = process.memoryUsage();
    heaps.push(m.heapUsed + m.arrayBuffers);
  }
  const steady = rates.slice(2);
  const floor = floorRate(decisions);
  const median = [...steady].sort((a, b) => a - b)[Math.floor(steady.length / 2)]!;
  report(`core throughput, ${name} (window + trip rule, pre-parsed, ${IDENTITIES.toLocaleString('en-US')} identities, session ids)`, {
    'decisions/s (median of rounds 3..8)': Math.round(median),
    'decisions/s (best round)': Math.round(Math.max(...steady)),
    'memory floor, same sequence (Map.get + 1 increment)': Math.round(floor),
    'ratio to the floor': +(median / floor).toFixed(2),
    'decisions processed': PER_ROUND * ROUNDS,
    trips,
    'tracked identities': evaluator.trackedIdentities,
    'heap+arrays after round 3 (MiB)': +(heaps[2]! / 2 ** 20).toFixed(1),
    'heap+arrays after round 8 (MiB)': +(heaps[ROUNDS - 1]! / 2 ** 20).toFixed(1),
    'growth over rounds 3..8, 12M decisions (KiB)': Math.round((heaps[ROUNDS - 1]! - heaps[2]!) / 1024),
  });
}

export function run(): void {
  const rnd = mulberry32(42);
  measure('uniform identities', makeStream(() => Math.floor(rnd() * IDENTITIES), rnd));
  gc();
  measure('Zipf s=1 identities', makeStream(zipfSampler(IDENTITIES, rnd), rnd));
}
