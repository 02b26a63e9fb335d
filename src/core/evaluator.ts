/**
 * The trip rule (docs/spec.md#2-the-trip-rule), pure: decisions in, trips out. Time is event time only.
 *
 * Per stream (an input partition or an input file) stream time S is the largest `occurred_at` seen; a
 * decision older than S - lateness is late and dropped. An accepted decision of identity X is counted in
 * X's window, then X is evaluated at T = S: it trips iff calls >= min_calls and denies / calls >=
 * threshold. A trip latches until the ledger says X is unblocked, which also empties X's window.
 */
import { DecisionClass, type DecisionClassifier } from './decision-class.js';
import type { Decision } from './decision.js';
import { type Evidence, type EvidenceSource, type KillSwitchSettings, MAX_ADDENDUM_SESSIONS } from './documents.js';
import { LedgerFold, type FoldChange, type LedgerEntry, type LedgerLatch } from './ledger-fold.js';
import { Governor } from './governor.js';
import { formatRfc3339 } from './time.js';
import { WindowStore, type WindowCounts } from './window-store.js';

/** `kill_switch.max_future_skew_seconds`'s default, in ms. */
export const DEFAULT_MAX_FUTURE_SKEW_MS = 300_000;

export interface TripRuleConfig {
  readonly enabled: boolean;
  readonly windowMs: number;
  readonly resolutionMs: number;
  readonly latenessMs: number;
  /**
   * How far ahead of its arrival a decision's event time may be (docs/spec.md#22-event-time-lateness-and-future-decisions).
   * Applied by the pipelines, which know the arrival, before a decision reaches the evaluator.
   * Default DEFAULT_MAX_FUTURE_SKEW_MS.
   */
  readonly maxFutureSkewMs?: number;
  readonly minCalls: number;
  readonly threshold: number;
  readonly classifier: DecisionClassifier;
  readonly maxTrackedIdentities: number;
  /** the `kill_switch` block recorded in documents */
  readonly settings: KillSwitchSettings;
  /** the blast-radius governor; absent = every trip blocks */
  readonly governor?: GovernorConfig;
  /** per-pattern rules, first match wins (README "Overrides and shadow rules") */
  readonly overrides?: readonly RuleOverride[];
}

/**
 * A rule for the identities a pattern matches: an exact SPIFFE ID, or a prefix (`spiffe://td/ns/prod/*`,
 * `spiffe://td/*`). `enforce` replaces the main rule for them; `shadow` leaves the main rule in force and
 * evaluates this one beside it, reporting its trips as shadow events that never block.
 */
export interface RuleOverride {
  /** the pattern as configured */
  readonly match: string;
  readonly mode: 'enforce' | 'shadow';
  /** at most the main window: the ring holds no more */
  readonly windowMs: number;
  readonly minCalls: number;
  readonly threshold: number;
  readonly settings: KillSwitchSettings;
}

/** Does a pattern match an identity? `.../*` matches every ID below the prefix; anything else only itself. */
export function overrideMatches(match: string, agentId: string): boolean {
  return match.endsWith('/*') ? agentId.startsWith(match.slice(0, -1)) : agentId === match;
}

/**
 * Limits on automatic blocks (README "Blast-radius governor"), in event time so replay holds the same
 * trips: at most `maxPerMinute` admitted per minute of stream time, and no more automatically blocked
 * identities than `maxShare` of the identities with a window (once `shareFloor` are blocked). A trip
 * beyond them is held: reported as a shadow event, not latched, and admitted on a later decision once
 * there is room.
 */
export interface GovernorConfig {
  readonly maxPerMinute: number;
  readonly maxShare: number;
  readonly shareFloor: number;
}

export type HeldReason = 'governor_rate' | 'governor_share' | 'shadow_rule';

export type StreamSource = { readonly topic: string; readonly partition: number } | { readonly file: string };

/** Event-time state of one input stream. Create with `Evaluator.openStream`. */
export interface StreamClock {
  readonly name: string;
  readonly source: StreamSource;
  /** stream time S, ms (-Infinity before the first decision) */
  time: number;
  /** per bucket (mod ring size): bucket number and the smallest input position seen in it */
  readonly bucketNo: Float64Array;
  readonly bucketMinPos: Float64Array;
  /**
   * The last bucket noted, its ring index and the event time it starts at: most decisions fall in the
   * bucket of the one before, which then costs a comparison and a subtraction instead of a division and
   * a remainder of floats.
   */
  notedBucket: number;
  notedIndex: number;
  notedFromMs: number;
  /** the window's cutoff bucket at stream time S (changes only when S does) */
  cutoff: number;
}

export interface Trip {
  readonly agentId: string;
  readonly epoch: number;
  readonly atMs: number;
  readonly evidence: Evidence;
  readonly sessionIds: readonly string[];
  readonly stream: string;
  /** set when the governor held the trip, or a shadow rule tripped: nothing is blocked, `epoch` is the one a block would get */
  readonly held?: HeldReason;
  /** the rule that tripped, when it is not the main one */
  readonly rule?: RuleOverride;
  /**
   * An admitted trip's block as latched into the ledger fold before its kill event is written: where the
   * event cannot be committed, `LedgerFold.retract` undoes it (docs/spec.md#11-kafka-mode).
   */
  readonly latch?: LedgerLatch;
}

export interface EvaluatorStats {
  accepted: number;
  calls: number;
  denies: number;
  advisoryDenies: number;
  ignored: number;
  anonymous: number;
  late: number;
  /** calls whose decision_id the identity's last calls already had (docs/spec.md#23-de-duplication): neither a call nor a deny */
  duplicates: number;
  /** accepted, but older than what the identity's window still holds (only with lateness > window) */
  outsideWindow: number;
  whileBlocked: number;
  trips: number;
  /** trips the governor held (reported as shadow events, not blocked) */
  held: number;
}

/** Sessions of one identity, first seen first, with the last bucket each was seen in. */
/**
 * Sessions remembered per identity. More than the 32 an addendum lists, so a session seen while 32 older
 * ones were still in the window is listed once they leave it; past this many sessions live in one
 * window, newer ones are not tracked.
 */
const MAX_TRACKED_SESSIONS = 4 * MAX_ADDENDUM_SESSIONS;

/** How `Evaluator.acceptAll` takes a batch. */
export interface AcceptAllOptions {
  /** called for each trip, in order */
  readonly onTrip?: (trip: Trip) => void;
  /** re-reading decisions processed before, to rebuild windows: nothing trips (see `accept`) */
  readonly restoring?: boolean;
  /** the decisions from index `from` (0 by default) up to, not including, `to` (all by default) */
  readonly from?: number;
  readonly to?: number;
}

/** Decisions per group in `acceptAll`: enough reads in flight at once, few enough that what they load stays in cache. */
const READ_AHEAD = 16;

interface SessionTracker {
  ids: string[];
  lastBucket: number[];
}

export class Evaluator {
  readonly config: TripRuleConfig;
  /** who is blocked; may be shared by several evaluators (one per input partition) */
  readonly ledger: LedgerFold;
  readonly stats: EvaluatorStats = {
    accepted: 0, calls: 0, denies: 0, advisoryDenies: 0, ignored: 0, anonymous: 0, late: 0, duplicates: 0, outsideWindow: 0,
    whileBlocked: 0, trips: 0, held: 0,
  };
  private readonly gov: Governor | undefined;
  private shadowMinute = -Infinity;
  /** identities whose shadow rule tripped in the current minute: reported once per minute */
  private readonly shadowThisMinute = new Set<string>();
  private readonly overrides: readonly RuleOverride[];
  /** per slot: the identity its override was looked up for, and the override (null: none) */
  private readonly overrideFor: (string | undefined)[] = [];
  private readonly overrideOfSlot: (RuleOverride | null)[] = [];
  private readonly overrideCounts: WindowCounts = { calls: 0, denies: 0, advisoryDenies: 0 };
  private readonly store: WindowStore;
  private readonly sessions: (SessionTracker | undefined)[] = [];
  // The session of an identity's latest decision, kept per slot so the common case (the same session
  // again) costs one comparison; the tracker is updated only when the session changes. Its newest bucket
  // is kept in the slot's header (store.sessionBucket).
  private readonly currentSession: (string | undefined)[] = [];
  private readonly counts: WindowCounts = { calls: 0, denies: 0, advisoryDenies: 0 };
  private readonly clocks = new Set<StreamClock>();
  private readonly ringSize: number;
  private readonly windowBuckets: number;
  /** decisions read ahead whose identity's session was already current: where the read-ahead's results go, so its reads have a use */
  private readAheadHits = 0;
  private readonly isBlockedId = (id: string): boolean => this.ledger.isBlocked(id);

  /**
   * @param ledger shared by the evaluators of one process
   * @param governor shared by the evaluators of one process (Kafka mode); by default this evaluator has
   *   its own when the config asks for one, with its own tracked identities as the active ones
   */
  constructor(config: TripRuleConfig, ledger: LedgerFold = new LedgerFold(), governor?: Governor) {
    this.config = config;
    this.ledger = ledger;
    this.gov = governor ?? (config.governor === undefined ? undefined : new Governor(config.governor, ledger, () => this.store.size, config.windowMs));
    this.overrides = config.overrides ?? [];
    const g = config.resolutionMs;
    this.windowBuckets = Math.ceil(config.windowMs / g);
    this.ringSize = this.windowBuckets + 1;
    this.store = new WindowStore({
      ringSize: this.ringSize,
      idleBuckets: this.windowBuckets + Math.ceil(config.latenessMs / g),
      maxIdentities: config.maxTrackedIdentities,
      onRelease: (slot) => {
        this.sessions[slot] = undefined;
        this.currentSession[slot] = undefined;
      },
    });
  }

  openStream(name: string, source: StreamSource): StreamClock {
    const clock: StreamClock = {
      name,
      source,
      time: -Infinity,
      bucketNo: new Float64Array(this.ringSize).fill(-Infinity),
      bucketMinPos: new Float64Array(this.ringSize),
      notedBucket: NaN,
      notedIndex: 0,
      notedFromMs: NaN,
      cutoff: -Infinity,
    };
    this.clocks.add(clock);
    return clock;
  }

  /** A stream that will deliver nothing more (input file read, partition revoked). */
  closeStream(clock: StreamClock): void {
    this.clocks.delete(clock);
  }

  /**
   * The stream-time bucket an identity must have been idle since for its slot to be reused: that of the
   * open stream furthest behind, so a stream far ahead never empties a lagging stream's live windows.
   */
  private idleReferenceBucket(current: StreamClock): number {
    let min = current.time;
    for (const c of this.clocks) if (c.time !== -Infinity && c.time < min) min = c.time;
    return Math.floor(min / this.config.resolutionMs);
  }

  get trackedIdentities(): number {
    return this.store.size;
  }

  get liveEvictions(): number {
    return this.store.liveEvictions;
  }

  get lastLiveEvicted(): string | undefined {
    return this.store.lastLiveEvicted;
  }

  /** Current window counts of an identity at the stream time of `clock` (for operators; no side effects on others). */
  /** Does this evaluator hold a window for the identity? */
  tracks(agentId: string): boolean {
    return this.store.peekSlot(agentId) >= 0;
  }

  windowOf(agentId: string, clock: StreamClock): { calls: number; denies: number; advisoryDenies: number } {
    const slot = this.store.peekSlot(agentId);
    if (slot < 0 || clock.time === -Infinity) return { calls: 0, denies: 0, advisoryDenies: 0 };
    const c = this.store.counts(slot, this.cutoffBucket(clock.time), { calls: 0, denies: 0, advisoryDenies: 0 });
    return { ...c };
  }

  /**
   * Accept one decision read at `position` (offset or line number) of `clock`'s stream.
   * Returns the trip it causes, or null. `restoring`: rebuild windows only, never trip.
   */
  accept(clock: StreamClock, d: Decision, position: number, restoring = false): Trip | null {
    const t = d.timeMs;
    const stats = this.stats;
    if (t < clock.time - this.config.latenessMs) {
      stats.late++;
      return null;
    }
    stats.accepted++;
    if (t > clock.time) {
      clock.time = t;
      clock.cutoff = this.cutoffBucket(t);
    }
    const bucket = this.notePosition(clock, t, position);

    const cls = d.cls;
    if (cls === DecisionClass.Ignored) {
      stats.ignored++;
      return null;
    }
    const agentId = d.agentId;
    if (agentId === null) {
      stats.anonymous++;
      return null;
    }
    if (!this.config.enabled) {
      this.countClass(cls);
      return null;
    }

    const cutoff = clock.cutoff;
    // Accepted (within lateness) but already outside the window (only when lateness > window): counted
    // nowhere, yet X is still evaluated (section 2: after accepting a decision for X, evaluate X at S),
    // and its window may have lost calls since X's last evaluation.
    const outside = bucket < cutoff;
    const handle = d.identity;
    let slot = handle === undefined ? -1 : this.store.slotOfHandle(handle);
    if (slot < 0) {
      slot = this.store.peekSlot(agentId);
      if (slot < 0) {
        if (outside) {
          this.countClass(cls);
          stats.outsideWindow++;
          return null; // not tracked: an empty window, which never trips (min_calls >= 1)
        }
        slot = this.store.slotFor(agentId, Math.floor(clock.time / this.config.resolutionMs), this.isBlockedId, this.idleReferenceBucket(clock));
      }
      if (handle !== undefined) this.store.bindHandle(slot, handle);
    }
    if (this.store.isBlocked(slot)) {
      this.countClass(cls);
      if (outside) stats.outsideWindow++;
      else stats.whileBlocked++;
      return null;
    }
    // A decision already outside the window counts nowhere, re-delivered or not: only those that would
    // count are remembered and checked (and none while blocked: an unblock empties the window anyway).
    if (!outside && this.store.seenDecisionId(slot, d.decisionId)) {
      stats.duplicates++;
      return null; // a re-delivery: neither a call nor a deny, and no evaluation
    }
    this.countClass(cls);
    const sid = d.sessionId;
    if (outside || !this.store.add(slot, bucket, cls)) {
      stats.outsideWindow++;
    } else if (sid !== undefined) {
      if (this.currentSession[slot] === sid) {
        if (bucket > this.store.sessionBucket(slot)) this.store.setSessionBucket(slot, bucket);
      } else {
        this.flushSession(slot, cutoff);
        this.currentSession[slot] = sid;
        this.store.setSessionBucket(slot, bucket);
      }
    }

    const c = this.store.counts(slot, cutoff, this.counts);
    const ov = this.overrides.length === 0 ? null : this.overrideOf(slot, agentId);
    if (ov !== null && ov.mode === 'enforce') {
      const oc = this.overrideWindow(slot, ov, clock.time, c);
      if (oc.calls < ov.minCalls || oc.denies / oc.calls < ov.threshold) return null;
      if (restoring) return null;
      return this.trip(clock, slot, agentId, d, position, this.cutoffFor(ov.windowMs, clock.time), oc, ov);
    }
    if (c.calls < this.config.minCalls || c.denies / c.calls < this.config.threshold) {
      return ov === null || restoring ? null : this.shadowRule(clock, slot, agentId, d, position, ov, c);
    }
    // Restoring (re-reading input already processed to rebuild windows): a trip that happened then is in
    // the ledger, so the identity is latched; one that did not happen must not be invented now.
    if (restoring) return null;
    return this.trip(clock, slot, agentId, d, position, cutoff, c);
  }

  /**
   * Accept `decisions` (the i-th read at `positions[i]`) in order, exactly as `accept` one by one would,
   * calling `options.onTrip` for each trip. Works in groups: before accepting a group it reads ahead the
   * window state the group's decisions will read (handle table, slot header, current session), so with
   * many identities, whose windows are mostly not in cache, the group's memory reads overlap instead of
   * taking turns (benchmarks/README.md, issue #2).
   */
  acceptAll(clock: StreamClock, decisions: readonly Decision[], positions: ArrayLike<number>, options: AcceptAllOptions = {}): void {
    const { onTrip, restoring = false, from: start = 0, to: end = decisions.length } = options;
    for (let from = start; from < end; from += READ_AHEAD) {
      const to = Math.min(end, from + READ_AHEAD);
      let seen = 0;
      for (let i = from; i < to; i++) {
        const d = decisions[i]!;
        const h = d.identity;
        if (h === undefined) continue;
        const slot = this.store.readAhead(h);
        if (slot >= 0 && this.currentSession[slot] === d.sessionId) seen++;
      }
      this.readAheadHits += seen;
      for (let i = from; i < to; i++) {
        const trip = this.accept(clock, decisions[i]!, positions[i]!, restoring);
        if (trip !== null && onTrip !== undefined) onTrip(trip);
      }
    }
  }

  private countClass(cls: DecisionClass): void {
    if (cls === DecisionClass.Call) this.stats.calls++;
    else if (cls === DecisionClass.Deny) this.stats.denies++;
    else this.stats.advisoryDenies++;
  }

  /** The override of the identity in `slot`, looked up once per identity that takes the slot. */
  private overrideOf(slot: number, agentId: string): RuleOverride | null {
    if (this.overrideFor[slot] !== agentId) {
      this.overrideFor[slot] = agentId;
      this.overrideOfSlot[slot] = this.overrides.find((o) => overrideMatches(o.match, agentId)) ?? null;
    }
    return this.overrideOfSlot[slot]!;
  }

  private cutoffFor(windowMs: number, streamTime: number): number {
    return Math.floor((streamTime - windowMs) / this.config.resolutionMs);
  }

  /** Counts over an override's window (a later cutoff in the same ring when it is shorter). */
  private overrideWindow(slot: number, ov: RuleOverride, streamTime: number, main: WindowCounts): WindowCounts {
    if (ov.windowMs === this.config.windowMs) return main;
    return this.store.counts(slot, this.cutoffFor(ov.windowMs, streamTime), this.overrideCounts);
  }

  /** A shadow rule beside the main one: its trip is reported (once per minute per identity), never blocks. */
  private shadowRule(clock: StreamClock, slot: number, agentId: string, d: Decision, position: number, ov: RuleOverride, main: WindowCounts): Trip | null {
    const oc = this.overrideWindow(slot, ov, clock.time, main);
    if (oc.calls < ov.minCalls || oc.denies / oc.calls < ov.threshold) return null;
    const minute = Math.floor(clock.time / 60_000);
    if (minute !== this.shadowMinute) {
      this.shadowMinute = minute;
      this.shadowThisMinute.clear();
    }
    if (this.shadowThisMinute.has(agentId)) return null;
    this.shadowThisMinute.add(agentId);
    this.stats.held++;
    const cutoff = this.cutoffFor(ov.windowMs, clock.time);
    return {
      agentId, epoch: this.ledger.nextEpoch(agentId), atMs: d.timeMs, evidence: this.evidence(clock, d, position, cutoff, oc, ov.windowMs),
      sessionIds: this.sessionsInWindow(slot, cutoff), stream: clock.name, held: 'shadow_rule', rule: ov,
    };
  }

  /**
   * Apply a kill event from the ledger (restore at start, another instance's trip, an operator action).
   * An unblock empties the identity's window so a fresh min_calls is needed before the next trip.
   */
  applyLedger(entry: LedgerEntry): FoldChange {
    const change = this.ledger.apply(entry);
    // a scope is enforced by session guards; windows are per identity and stay as they are
    if (entry.scope === undefined) this.ledgerChanged(entry.agent_id, change);
    return change;
  }

  /** Bring this evaluator's windows in line with a change already applied to a shared ledger fold. */
  ledgerChanged(agentId: string, change: FoldChange): void {
    if (change === 'unchanged') return;
    // a scope's block (folded as agent_id/*) leaves the identity agent_id itself unblocked: not ours to latch
    if (change === 'blocked' && !this.ledger.isBlocked(agentId)) return;
    const slot = this.store.peekSlot(agentId);
    if (slot < 0) return; // a new slot asks the fold
    if (change === 'unblocked') this.store.clear(agentId);
    else this.store.setBlocked(slot, true);
  }

  private cutoffBucket(streamTime: number): number {
    return Math.floor((streamTime - this.config.windowMs) / this.config.resolutionMs);
  }

  private evidence(clock: StreamClock, d: Decision, position: number, cutoff: number, c: WindowCounts, windowMs: number): Evidence {
    const T = clock.time;
    return {
      window_start: formatRfc3339(T - windowMs),
      window_end: formatRfc3339(T),
      calls: c.calls,
      denies: c.denies,
      advisory_denies: c.advisoryDenies,
      deny_rate: c.denies / c.calls,
      tripping_decision_id: d.decisionId,
      source: this.sourceOf(clock, cutoff, position),
    };
  }

  private trip(
    clock: StreamClock, slot: number, agentId: string, d: Decision, position: number, cutoff: number, c: WindowCounts, rule?: RuleOverride,
  ): Trip | null {
    const epoch = this.ledger.nextEpoch(agentId);
    const held = this.governor(clock.time, agentId);
    if (held === null) return null;
    const evidence = this.evidence(clock, d, position, cutoff, c, rule?.windowMs ?? this.config.windowMs);
    const sessionIds = this.sessionsInWindow(slot, cutoff);
    const ruled = rule === undefined ? {} : { rule };
    if (held !== undefined) {
      this.stats.held++;
      return { agentId, epoch, atMs: d.timeMs, evidence, sessionIds, stream: clock.name, held, ...ruled };
    }
    this.stats.trips++;
    const entry: LedgerEntry = { agent_id: agentId, epoch, action: 'block', at: formatRfc3339(d.timeMs), trigger: 'deny_rate' };
    const latch = this.ledger.latch(entry);
    this.store.setBlocked(slot, true);
    return { agentId, epoch, atMs: d.timeMs, evidence, sessionIds, stream: clock.name, ...ruled, latch };
  }

  /** undefined: admit the trip; a reason: hold it; null: already held this minute, say nothing. */
  private governor(T: number, agentId: string): HeldReason | undefined | null {
    return this.gov === undefined ? undefined : this.gov.decide(T, agentId);
  }

  /** The bucket of event time `t`; notes `position` as the smallest seen in it. */
  private notePosition(clock: StreamClock, t: number, position: number): number {
    let bucket = clock.notedBucket;
    let i = clock.notedIndex;
    const g = this.config.resolutionMs;
    if (!(t >= clock.notedFromMs && t - clock.notedFromMs < g)) {
      bucket = Math.floor(t / g);
      i = mod(bucket, this.ringSize);
      clock.notedBucket = bucket;
      clock.notedIndex = i;
      clock.notedFromMs = bucket * g;
    }
    const held = clock.bucketNo[i]!;
    if (held === bucket) {
      if (position < clock.bucketMinPos[i]!) clock.bucketMinPos[i] = position;
    } else if (bucket > held) {
      clock.bucketNo[i] = bucket;
      clock.bucketMinPos[i] = position;
    }
    return bucket;
  }

  /**
   * The input range holding every decision in the window: from the smallest position seen in any bucket
   * the window covers, to the tripping decision.
   */
  private sourceOf(clock: StreamClock, cutoff: number, position: number): EvidenceSource {
    let from = position;
    for (let i = 0; i < this.ringSize; i++) {
      if (clock.bucketNo[i]! >= cutoff && clock.bucketMinPos[i]! < from) from = clock.bucketMinPos[i]!;
    }
    const src = clock.source;
    return 'topic' in src
      ? { topic: src.topic, partition: src.partition, offset_from: from, offset_to: position }
      : { file: src.file, line_from: from, line_to: position };
  }

  private flushSession(slot: number, cutoff: number): void {
    const sid = this.currentSession[slot];
    if (sid !== undefined) this.noteSession(slot, sid, this.store.sessionBucket(slot), cutoff);
  }

  private noteSession(slot: number, sessionId: string, bucket: number, cutoff: number): void {
    let s = this.sessions[slot];
    if (s === undefined) {
      s = { ids: [sessionId], lastBucket: [bucket] };
      this.sessions[slot] = s;
      return;
    }
    const i = s.ids.indexOf(sessionId);
    if (i >= 0) {
      if (bucket > s.lastBucket[i]!) s.lastBucket[i] = bucket;
      return;
    }
    if (s.ids.length >= MAX_TRACKED_SESSIONS) {
      // Make room by forgetting sessions that have left the window (cutoffs only grow).
      for (let j = s.ids.length - 1; j >= 0; j--) {
        if (s.lastBucket[j]! < cutoff) {
          s.ids.splice(j, 1);
          s.lastBucket.splice(j, 1);
        }
      }
      if (s.ids.length >= MAX_TRACKED_SESSIONS) return;
    }
    s.ids.push(sessionId);
    s.lastBucket.push(bucket);
  }

  private sessionsInWindow(slot: number, cutoff: number): string[] {
    this.flushSession(slot, cutoff);
    const s = this.sessions[slot];
    if (s === undefined) return [];
    return s.ids.filter((_, i) => s.lastBucket[i]! >= cutoff).slice(0, MAX_ADDENDUM_SESSIONS);
  }
}

function mod(a: number, n: number): number {
  const r = a % n;
  return r < 0 ? r + n : r;
}
