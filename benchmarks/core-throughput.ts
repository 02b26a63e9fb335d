/**
 * Window + trip rule throughput on one thread, pre-parsed decisions, 100k identities (issue #2 figure:
 * >= 10M decisions/s), and heap growth over 16M decisions in steady state.
 *
 * Two identity mixes: uniform (every decision picks one of 100k identities at random: the worst case
 * for caches) and Zipf s=1 (a few identities make most calls, as in real fleets); each with decisions
 * carrying identity handles (as the Kafka decoder gives them) and without (the store hashes the ID
 * string). Beside each, measured in the same run: a bare Map.get by ID string + one typed-array
 * increment per decision over the same sequence, what any store keyed by the string costs at least.
 * Each round's decisions go through `Evaluator.acceptAll` as one batch (as the Kafka processor hands
 * over a fetched batch); the last rows repeat the handle runs with one `accept` call per decision, to
 * show what reading ahead gains.
 */
import { DecisionClass } from '../src/core/decision-class.js';
import type { Decision } from '../src/core/decision.js';
import { Evaluator } from '../src/core/evaluator.js';
import { IdentityInterner } from '../src/core/identity-handle.js';
import { gc, mulberry32, report, tripConfig } from './util.js';

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

/** The stream as identity indices and classes; each round materialises it as fresh decision objects. */
interface Stream { who: Int32Array; cls: Uint8Array; ids: string[]; handles: number[]; sessions: string[] }

function makeStream(pick: () => number, rnd: () => number): Stream {
  const who = new Int32Array(PER_ROUND);
  const cls = new Uint8Array(PER_ROUND);
  for (let i = 0; i < PER_ROUND; i++) {
    const r = rnd();
    // 85% allow, 13% deny, 2% advisory: below every threshold, so identities keep counting (no latch).
    cls[i] = r < 0.85 ? DecisionClass.Call : r < 0.98 ? DecisionClass.Deny : DecisionClass.AdvisoryDeny;
    who[i] = pick();
  }
  const ids = Array.from({ length: IDENTITIES }, (_, i) => `spiffe://bench.example/ns/prod/sa/agent-${i}`);
  // what the Kafka decoder's cache of validated SPIFFE IDs hands out with each decision
  const interner = new IdentityInterner();
  return {
    who, cls, ids,
    handles: ids.map((id) => interner.handleOf(id)),
    sessions: Array.from({ length: IDENTITIES }, (_, i) => `sess-${i}`),
  };
}

/** One round's decisions, allocated together as a batch of parsed records would be. */
function batch(s: Stream, round: number, withHandles: boolean, withSessions = true): Decision[] {
  const start = Date.UTC(2026, 0, 1) + round * Math.ceil(PER_ROUND / RATE_PER_MS);
  const out: Decision[] = new Array<Decision>(PER_ROUND);
  for (let i = 0; i < PER_ROUND; i++) {
    const w = s.who[i]!;
    out[i] = {
      decisionId: `d-${round}-${i}`, agentId: s.ids[w]!, cls: s.cls[i] as DecisionClass, timeMs: start + Math.floor(i / RATE_PER_MS), sessionId: withSessions ? s.sessions[w] : undefined,
      identity: withHandles ? s.handles[w] : undefined,
    };
  }
  return out;
}

/** The floor for a store keyed by the string: one Map.get and one counter increment per decision, nothing else. */
function floorRate(s: Stream): number {
  const index = new Map<string, number>();
  const counters = new Uint32Array(IDENTITIES * 4);
  for (const id of s.ids) index.set(id, index.size);
  const decisions = batch(s, 0, false);
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

/** positions (line numbers / offsets) of a round's decisions */
const POSITIONS = Float64Array.from({ length: PER_ROUND }, (_, i) => i);

/**
 * `batched`: decisions go through `Evaluator.acceptAll` (as the Kafka processor hands over a fetched
 * batch, reading ahead each group's window state); otherwise one `accept` call per decision.
 */
function measure(name: string, s: Stream, withHandles: boolean, withSessions = true, batched = true): void {
  const evaluator = new Evaluator(tripConfig());
  const clock = evaluator.openStream('bench', { file: 'bench' });
  const rates: number[] = [];
  const heaps: number[] = [];
  let trips = 0;
  const onTrip = (): void => {
    trips++;
  };
  const timeRound = (round: number): number => {
    const decisions = batch(s, round, withHandles, withSessions); // dropped when this returns, before the heap is measured
    const t0 = process.hrtime.bigint();
    if (batched) {
      evaluator.acceptAll(clock, decisions, POSITIONS, { onTrip });
    } else {
      for (let i = 0; i < PER_ROUND; i++) {
        if (evaluator.accept(clock, decisions[i]!, i) !== null) trips++;
      }
    }
    return PER_ROUND / (Number(process.hrtime.bigint() - t0) / 1e9);
  };
  for (let round = 0; round < ROUNDS; round++) {
    rates.push(timeRound(round));
    gc();
    const m = process.memoryUsage();
    heaps.push(m.heapUsed + m.external);
  }
  const steady = rates.slice(2);
  const floor = floorRate(s);
  const median = [...steady].sort((a, b) => a - b)[Math.floor(steady.length / 2)]!;
  const how = `${withHandles ? 'with identity handles' : 'by ID string'}, ${batched ? 'acceptAll' : 'one accept call per decision'}`;
  report(`core throughput, ${name}, ${how} (window + trip rule, pre-parsed, ${IDENTITIES.toLocaleString('en-US')} identities, ${withSessions ? 'session ids' : 'no session ids'})`, {
    'decisions/s (median of rounds 3..8)': Math.round(median),
    'decisions/s (best round)': Math.round(Math.max(...steady)),
    'memory floor, same sequence (Map.get + 1 increment)': Math.round(floor),
    'ratio to the floor': +(median / floor).toFixed(2),
    'decisions processed': PER_ROUND * ROUNDS,
    trips,
    'tracked identities': evaluator.trackedIdentities,
    'retained after round 3 (MiB)': +(heaps[2]! / 2 ** 20).toFixed(1),
    'retained after round 8 (MiB)': +(heaps[ROUNDS - 1]! / 2 ** 20).toFixed(1),
    'growth over rounds 3..8, 12M decisions (KiB)': Math.round((heaps[ROUNDS - 1]! - heaps[2]!) / 1024),
  });
}

export function run(): void {
  const rnd = mulberry32(42);
  const uniform = makeStream(() => Math.floor(rnd() * IDENTITIES), rnd);
  const zipf = makeStream(zipfSampler(IDENTITIES, rnd), rnd);
  for (const withHandles of [true, false]) {
    measure('uniform identities', uniform, withHandles);
    gc();
    measure('Zipf s=1 identities', zipf, withHandles);
    gc();
  }
  // What reading ahead gains: the same streams, one accept call per decision (no group read ahead).
  measure('uniform identities', uniform, true, true, false);
  gc();
  measure('Zipf s=1 identities', zipf, true, true, false);
  gc();
  // What the session evidence costs: the same uniform stream without session ids (the evaluator then
  // keeps no session per identity; comparing an identity's session with its last one reads a string
  // no cache holds).
  measure('uniform identities', uniform, true, false);
}
