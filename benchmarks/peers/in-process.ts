/**
 * In-process peer: our core (src/core window store + trip rule, as core-throughput.ts drives it) and a
 * port of the cMCP evaluator (cmcp-evaluator.ts: a deque of calls per identity, counted again on every
 * call), over the same pre-generated decision sequence, one after the other in this process.
 *
 * The sequence: 100,000 identities, uniform random identity per decision, 20,000 decisions per second of
 * event time (0.2 per identity per second: about 57 calls per identity in a 300 s window once it is
 * full), 10 rounds of 1M decisions = 500 s of event time; decisions/s is the median of the rounds after
 * the window is full (rounds 7..10), where cMCP drops as many calls as it appends. Mix: 85% allow, 10%
 * deny, 2% advisory_deny, 3% step_up (ignored), 1% anonymous; 1% of identities deny 95% of the time and
 * 1% 85% of the time, so a few thousand trip. Event times fall on bucket edges (multiples of g = 5 s),
 * where our bucketed window and cMCP's exact one are the same rule (test/unit/cmcp-port.test.ts), so
 * both must trip the same identities at the same decisions.
 */
import { DecisionClass } from '../../src/core/decision-class.js';
import type { Decision } from '../../src/core/decision.js';
import { Evaluator } from '../../src/core/evaluator.js';
import { gc, mulberry32, tripConfig } from '../util.js';
import { CmcpEvaluator } from './cmcp-evaluator.js';

const IDENTITIES = Number(process.env.PEERS_IDENTITIES ?? 100_000);
const PER_ROUND = 1_000_000;
const ROUNDS = Number(process.env.PEERS_ROUNDS ?? 10);
const RATE = 20_000;
const WINDOW_MS = 300_000;
const G = Math.ceil(WINDOW_MS / 60);
const MEMORY_IDENTITIES = 1_000_000;
const T0 = Date.UTC(2026, 0, 1);

interface Stream { who: Int32Array; cls: Uint8Array; ids: string[]; sessions: string[] }

function makeStream(): Stream {
  const rnd = mulberry32(7);
  const n = PER_ROUND * ROUNDS;
  const who = new Int32Array(n);
  const cls = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const w = Math.floor(rnd() * IDENTITIES);
    const r = rnd();
    const denyShare = w < IDENTITIES / 100 ? 0.95 : w < IDENTITIES / 50 ? 0.85 : 0;
    who[i] = rnd() < 0.01 ? -1 : w;
    if (denyShare > 0) cls[i] = r < denyShare ? DecisionClass.Deny : DecisionClass.Call;
    else cls[i] = r < 0.85 ? DecisionClass.Call : r < 0.95 ? DecisionClass.Deny : r < 0.97 ? DecisionClass.AdvisoryDeny : DecisionClass.Ignored;
  }
  return {
    who, cls,
    ids: Array.from({ length: IDENTITIES }, (_, i) => `spiffe://bench.example/ns/prod/sa/agent-${i}`),
    sessions: Array.from({ length: IDENTITIES }, (_, i) => `sess-${i}`),
  };
}

/** Event time of decision i: RATE per second, on bucket edges. */
const timeOf = (i: number): number => T0 + Math.floor((i * 1000) / RATE / G) * G;

/** One round's decisions as a batch of parsed records: fresh objects, the same for both evaluators. */
function batch(s: Stream, round: number): Decision[] {
  const out = new Array<Decision>(PER_ROUND);
  for (let k = 0; k < PER_ROUND; k++) {
    const i = round * PER_ROUND + k;
    const w = s.who[i]!;
    out[k] = { decisionId: `d-${i}`, agentId: w < 0 ? null : s.ids[w]!, cls: s.cls[i] as DecisionClass, timeMs: timeOf(i), sessionId: w < 0 ? undefined : s.sessions[w] };
  }
  return out;
}

function retained(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

export interface EvaluatorRun {
  /** decisions/s per round */
  readonly rates: number[];
  /** median of the rounds after the window is full */
  readonly steady: number;
  /** tripped identity -> index of the tripping decision */
  readonly trips: Map<string, number>;
  readonly tracked: number;
  /** bytes retained per tracked identity at the end (windows full) */
  readonly bytesPerIdentity: number;
}

interface Peer {
  accept(d: Decision, i: number): string | null;
  readonly tracked: number;
}

interface Rounds {
  readonly rates: number[];
  readonly trips: Map<string, number>;
}

type Peers = { ours?: Peer; cmcp?: Peer };

// Peers are touched only in helpers like this one: a reference left in a register of runBoth's frame
// would keep a dropped peer alive and hide its memory.
function timeRound(peers: Peers, name: keyof Peers, r: Rounds, decisions: readonly Decision[], first: number): void {
  const peer = peers[name]!;
  const trips = r.trips;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < decisions.length; k++) {
    const tripped = peer.accept(decisions[k]!, first + k);
    if (tripped !== null) trips.set(tripped, first + k);
  }
  r.rates.push(decisions.length / (Number(process.hrtime.bigint() - t0) / 1e9));
}

function trackedOf(peers: Peers): { ours: number; cmcp: number } {
  return { ours: peers.ours!.tracked, cmcp: peers.cmcp!.tracked };
}

function summary(r: Rounds, tracked: number, bytes: number): EvaluatorRun {
  const full = Math.ceil((WINDOW_MS * RATE) / 1000 / PER_ROUND);
  const steady = r.rates.slice(Math.min(full, ROUNDS - 1)).sort((a, b) => a - b);
  return { rates: r.rates, steady: steady[Math.floor(steady.length / 2)]!, trips: r.trips, tracked, bytesPerIdentity: bytes / tracked };
}

/**
 * Both evaluators over the same batches, round by round, taking turns at going first, so that a busy
 * moment on the shared machine hits both. Then the memory each retains, by dropping them one at a time.
 */
function runBoth(s: Stream): { ours: EvaluatorRun; cmcp: EvaluatorRun } {
  const peers: Peers = { ours: ours(), cmcp: cmcp() };
  const rounds = { ours: { rates: [], trips: new Map() }, cmcp: { rates: [], trips: new Map() } } satisfies Record<string, Rounds>;
  for (let round = 0; round < ROUNDS; round++) {
    const decisions = batch(s, round);
    for (const name of round % 2 === 0 ? (['ours', 'cmcp'] as const) : (['cmcp', 'ours'] as const)) {
      timeRound(peers, name, rounds[name], decisions, round * PER_ROUND);
    }
  }
  const tracked = trackedOf(peers);
  const both = retained();
  delete peers.cmcp;
  const oursOnly = retained();
  delete peers.ours;
  const after = retained();
  return {
    ours: summary(rounds.ours, tracked.ours, oursOnly - after),
    cmcp: summary(rounds.cmcp, tracked.cmcp, both - oursOnly),
  };
}

function ours(): Peer {
  const evaluator = new Evaluator(tripConfig());
  const clock = evaluator.openStream('bench', { file: 'bench' });
  return {
    accept: (d, i) => evaluator.accept(clock, d, i)?.agentId ?? null,
    get tracked() {
      return evaluator.trackedIdentities;
    },
  };
}

function cmcp(): Peer {
  const evaluator = new CmcpEvaluator({ windowMs: WINDOW_MS, minCalls: 10, threshold: 0.9 });
  return {
    accept: (d) => evaluator.record(d.agentId, d.cls, d.timeMs)?.agentId ?? null,
    get tracked() {
      return evaluator.trackedIdentities;
    },
  };
}

/** memory-per-identity.ts for either peer: 1M identities with one call each (and a session). */
function bytesPerFreshIdentity(make: () => Peer): number {
  const before = retained();
  const peer = make();
  for (let i = 0; i < MEMORY_IDENTITIES; i++) {
    peer.accept({
      decisionId: `d-${i}`, agentId: `spiffe://bench.example/ns/prod/sa/agent-${i}`, cls: DecisionClass.Call,
      timeMs: T0 + Math.floor(i / 10_000), sessionId: `sess-${i}`,
    }, i);
  }
  const bytes = (retained() - before) / peer.tracked;
  if (peer.tracked !== MEMORY_IDENTITIES) throw new Error(`tracked ${peer.tracked} of ${MEMORY_IDENTITIES}`);
  return bytes;
}

export interface InProcessResult {
  readonly decisions: number;
  readonly identities: number;
  readonly callsPerWindow: number;
  readonly ours: EvaluatorRun;
  readonly cmcp: EvaluatorRun;
  readonly oursFreshBytes: number;
  readonly cmcpFreshBytes: number;
  /** identities tripped by one and not the other, or at another decision */
  readonly tripDifferences: number;
}

export function inProcess(): InProcessResult {
  const s = makeStream();
  let calls = 0;
  for (let i = 0; i < s.who.length; i++) if (s.who[i]! >= 0 && s.cls[i] !== DecisionClass.Ignored) calls++;
  const { ours: o, cmcp: c } = runBoth(s);
  let tripDifferences = 0;
  for (const [id, at] of o.trips) if (c.trips.get(id) !== at) tripDifferences++;
  for (const id of c.trips.keys()) if (!o.trips.has(id)) tripDifferences++;
  return {
    decisions: s.who.length, identities: IDENTITIES, callsPerWindow: (calls / s.who.length) * ((RATE * WINDOW_MS) / 1000) / IDENTITIES,
    ours: o, cmcp: c, oursFreshBytes: bytesPerFreshIdentity(ours), cmcpFreshBytes: bytesPerFreshIdentity(cmcp), tripDifferences,
  };
}
