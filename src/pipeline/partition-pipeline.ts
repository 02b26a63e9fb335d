/**
 * Kafka mode's decode -> evaluate -> documents path for one owned partition p
 * (docs/spec.md#11-kafka-mode). Its evaluator holds the windows of the identities p owns (murmur2 of
 * the agent_id): it evaluates what was produced to decisions partition p for them, and what other
 * partitions forwarded to repartition partition p, each in the stream of the decisions partition it was
 * produced to; decisions p reads for other owners it forwards to theirs. A batch is decoded whole, then
 * evaluated in one go (Evaluator.acceptAll reads ahead); its outputs are gathered as records for the
 * partition's transaction (src/adapters/kafka/transactional-committer.ts), which the caller commits.
 *
 * The trip rule, the documents and the bad-record rules are the file pipeline's (file-pipeline.ts):
 * trips become documents in trip-documents.ts, bad records keep their bytes and reason.
 */
import { canonicalJson } from '../core/canonical-json.js';
import type { AddendumChains, ShadowEvent } from '../core/documents.js';
import type { Decision } from '../core/decision.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, Evaluator, type StreamClock, type Trip, type TripRuleConfig } from '../core/evaluator.js';
import type { Governor } from '../core/governor.js';
import type { LedgerFold, LedgerLatch } from '../core/ledger-fold.js';
import { futureTimestampError } from '../core/time.js';
import type { ForwardPacker, ForwardUnpacker, InputRecord, OutputRecord, PartitionRouting } from '../ports/partition-records.js';
import type { Signer } from '../ports/signer.js';
import type { DecodeResult } from '../adapters/serde/decision-decoder.js';
import { ReusableDecision } from '../adapters/serde/fast-decision.js';
import type { KafkaValueDecoder } from '../adapters/serde/kafka-value-decoder.js';
import { BatchDecisions } from './batch-decisions.js';
import { tripOutput } from './trip-documents.js';

/** Stream name of an input partition: its addenda chain is named after it. */
export const partitionStream = (topic: string, partition: number): string => `${topic}/${partition}`;

/**
 * A source stream that forwarded nothing for this long (wall time) while its stream time is more than
 * window + lateness behind the owner's own stream is closed: its windows are all empty by the owner's
 * time, and an open stream whose time stands still would keep every idle identity's slot (the evaluator
 * reuses slots by the stream furthest behind), growing memory to limits.max_tracked_identities.
 */
const SOURCE_IDLE_MS = 60_000;

/** The clock of the decisions forwarded to this owner from one other decisions partition. */
interface SourceClock {
  clock: StreamClock;
  /** performance.now() of the last batch that brought one of its decisions */
  seenAt: number;
  /** closed as idle (closeIdleSources): left out of the evaluator's idle reference until its next decision */
  closed: boolean;
}

/** A batch's outputs as they are gathered while it is decoded and evaluated. */
export interface BatchRecords {
  readonly kills: OutputRecord[];
  readonly addenda: OutputRecord[];
  readonly shadows: OutputRecord[];
  readonly dlq: OutputRecord[];
  readonly held: ShadowEvent[];
  /** decisions of other owners, packed into records of their repartition partitions */
  readonly forwarded: OutputRecord[];
  /** how many decisions `forwarded` carries */
  forwardedDecisions: number;
  /** live decisions per class, counted into the metrics once per batch */
  readonly classes: number[];
  /** the last live offset of the batch (-1: none) */
  last: number;
  /** the blocks its trips latched into the ledger fold: retracted if the batch is not committed */
  readonly latches: LedgerLatch[];
}

export function batchRecords(): BatchRecords {
  return { kills: [], addenda: [], dlq: [], shadows: [], held: [], forwarded: [], forwardedDecisions: 0, classes: [0, 0, 0, 0], last: -1, latches: [] };
}

/** Decisions of a batch from `start` to `end` that go to one stream, all restored or all live. */
interface Run {
  readonly clock: StreamClock;
  readonly start: number;
  end: number;
  readonly restore: boolean;
}

/** One fetched batch of one of the partition's inputs, as handed to `decode`. */
export interface PartitionBatch {
  /** the repartition input (else decisions partition p) */
  readonly forwarded: boolean;
  readonly messages: readonly InputRecord[];
  /** messages from this index on are left for later (their input waits for the other to restore) */
  readonly upTo: number;
  /** offsets below this were processed before: re-read to restore windows, no output */
  readonly liveFrom: number;
  /** the batch is no longer ours to evaluate (a seek, a stop) */
  readonly isStale: () => boolean;
  /** performance.now() when the batch was handed over */
  readonly now: number;
}

export interface PartitionPipelineOptions {
  readonly partition: number;
  /** owners, forwarded records and dead letters: the log's rules (Kafka's in Kafka mode) */
  readonly routing: PartitionRouting;
  readonly tripConfig: TripRuleConfig;
  readonly fold: LedgerFold;
  readonly governor: Governor | undefined;
  readonly decoder: KafkaValueDecoder;
  /** the addenda chains of the instance: partition p's continues from its restored tip */
  readonly chains: AddendumChains;
  readonly signer: Signer | undefined;
}

/** Late and duplicate live decisions of one batch (restored ones are not counted). */
export interface BatchCounts {
  readonly late: number;
  readonly duplicates: number;
}

export class PartitionPipeline {
  readonly evaluator: Evaluator;
  /** the stream of decisions partition p itself */
  readonly clock: StreamClock;
  /** the streams of the decisions forwarded from other partitions, by source partition (opened on their first record) */
  private readonly sources = new Map<number, SourceClock>();
  /** the windows of recently unblocked identities emptied after the restore, before the first live decision (forgetBeforeUnblocks) */
  private unblocksApplied = false;
  /** the batch being decoded and evaluated, per input (reused from batch to batch) */
  private readonly batches = { decisions: new BatchDecisions(), forwarded: new BatchDecisions() };
  /** what decisions partition p forwards to other owners, packed as it is read */
  private readonly packer: ForwardPacker;
  /** the entries of a batch of repartition partition p */
  private readonly unpacker: ForwardUnpacker;
  private readonly maxFutureSkewMs: number;

  constructor(private readonly o: PartitionPipelineOptions) {
    this.evaluator = new Evaluator(o.tripConfig, o.fold, o.governor);
    const topic = o.routing.decisionsTopic;
    this.clock = this.evaluator.openStream(partitionStream(topic, o.partition), { topic, partition: o.partition });
    this.maxFutureSkewMs = o.tripConfig.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS;
    this.packer = o.routing.packer(o.partition);
    this.unpacker = o.routing.unpacker();
  }

  /** Restored with nothing to re-read: live from the start, no unblock to apply again. */
  markRestored(): void {
    this.unblocksApplied = true;
  }

  /**
   * Decode, evaluate and turn into records a batch: outputs gathered in `out`. Returns false (nothing
   * evaluated) when the batch went stale while a schema was fetched from the registry.
   */
  async process(b: PartitionBatch, out: BatchRecords): Promise<BatchCounts | false> {
    // The two inputs' batches are processed side by side (one may wait for the registry while the
    // other is evaluated): each has its own decisions and runs.
    const batch = b.forwarded ? this.batches.forwarded : this.batches.decisions;
    const runs: Run[] = [];
    // the batch's decisions hold its bytes until accepted: let go of them however this ends
    try {
      const decoded = b.forwarded ? this.decodeForwarded(b, batch, runs, out) : this.decodeDecisions(b, batch, runs, out);
      if (decoded instanceof Promise ? !(await decoded) || b.isStale() : !decoded) return false;
      const counts = this.evaluate(batch, runs, out);
      if (!b.forwarded && this.sources.size > 0) this.closeIdleSources(b.now);
      return counts;
    } finally {
      batch.release();
      if (b.forwarded) this.unpacker.release();
      // a batch that went stale: what it packed is not forwarded
      else if (this.packer.count > 0) this.packer.take();
    }
  }

  /** The least stream time of the forwarded streams: committed with the repartition offset, where its restore reaches back from. */
  forwardedStreamTime(): number {
    let min = Infinity;
    // a closed source's windows are empty by the partition's own time: nothing of it needs restoring
    for (const s of this.sources.values()) if (!s.closed && s.clock.time !== -Infinity && s.clock.time < min) min = s.clock.time;
    return min === Infinity ? -Infinity : min;
  }

  /** The partition is no longer ours: its streams close (their slots are free for reuse). */
  close(): void {
    this.evaluator.closeStream(this.clock);
    for (const s of this.sources.values()) if (!s.closed) this.evaluator.closeStream(s.clock);
  }

  /** Evaluate the decoded runs in order; trips become documents. */
  private evaluate(batch: BatchDecisions, runs: readonly Run[], out: BatchRecords): BatchCounts {
    const { settings } = this.o.tripConfig;
    const { chains, signer } = this.o;
    const p = this.o.partition;
    const onTrip = (trip: Trip): void => {
      const t = tripOutput(trip, settings, chains, signer);
      if (t.held) {
        // keyed, not pinned to partition p: a shadow topic created with another partition count works too
        out.shadows.push({ key: trip.agentId, value: canonicalJson(t.shadow) });
        out.held.push(t.shadow);
      } else {
        out.kills.push({ key: trip.agentId, value: canonicalJson(t.killEvent) });
        // the chain of owner partition p, whichever stream the tripping decision came from
        out.addenda.push({ key: trip.agentId, value: canonicalJson(t.addendum), partition: p });
        if (trip.latch !== undefined) out.latches.push(trip.latch);
      }
    };
    const stats = this.evaluator.stats;
    let lateBefore = stats.late;
    let duplicatesBefore = stats.duplicates;
    let live = false;
    for (const run of runs) {
      if (!run.restore && !live) {
        live = true;
        lateBefore = stats.late;
        duplicatesBefore = stats.duplicates;
        if (!this.unblocksApplied) this.forgetBeforeUnblocks();
      }
      this.evaluator.acceptAll(run.clock, batch.decisions, batch.positions, run.restore ? { restoring: true, from: run.start, to: run.end } : { onTrip, from: run.start, to: run.end });
    }
    return live ? { late: stats.late - lateBefore, duplicates: stats.duplicates - duplicatesBefore } : { late: 0, duplicates: 0 };
  }

  /**
   * Decode a batch of decisions partition p. A decision whose identity's owner partition is another is
   * forwarded there (docs/spec.md#11-kafka-mode): here it only moves the stream time (and is late or
   * not, as the evaluator judges), and it travels with the stream time it leaves, so its owner judges
   * it as this stream would. Returns false when the batch went stale while a schema was fetched.
   */
  private async decodeDecisions(b: PartitionBatch, decided: BatchDecisions, runs: Run[], out: BatchRecords): Promise<boolean> {
    const { messages, upTo, liveFrom } = b;
    const { partition: p, routing, decoder } = this.o;
    const skewMs = this.maxFutureSkewMs;
    const latenessMs = this.o.tripConfig.latenessMs;
    // counted here and handed over once: this loop runs once per record
    const classes = out.classes;
    let last = out.last;
    // The stream time as the evaluator will have it before each record: the forwarded ones carry it.
    let streamTime = this.clock.time;
    let restoring = 0;
    const packer = this.packer;
    for (let i = 0; i < upTo; i++) {
      const m = messages[i]!;
      const offset = Number(m.offset);
      const restore = offset < liveFrom;
      const into = decided.next();
      const decoded = decoder.decodeInto(m.value, m.key, into);
      let r: DecodeResult | ReusableDecision;
      if (decoded instanceof Promise) {
        r = await decoded;
        // Only while awaiting (a schema fetched from the registry) can a seek or a stop happen: the
        // rest of the handler is synchronous up to the transaction, so checking here is checking before
        // anything of the batch is evaluated.
        if (b.isStale()) return false;
      } else {
        r = decoded;
      }
      if (!restore) last = offset;
      const d = r instanceof ReusableDecision ? r : r.ok ? r.decision : badRecord(routing, r, restore, out, m, { partition: p });
      if (d === null) continue;
      const t = d.timeMs;
      // The record's timestamp is its arrival: part of the record, so a restore (and a replay of the
      // topic) refuses exactly the decisions refused live.
      const timestamp = Number(m.timestamp);
      if (t > timestamp + skewMs) {
        if (!restore) out.dlq.push(routing.deadLetter(m, { partition: p }, 'future_timestamp', futureTimestampError(t, timestamp, skewMs)!));
        continue;
      }
      // docs/spec.md#22-event-time-lateness-and-future-decisions: late decisions never move the stream time
      const late = t < streamTime - latenessMs;
      if (!late && t > streamTime) streamTime = t;
      const agentId = d.agentId;
      if (agentId !== null) {
        const owner = routing.ownerOf(agentId, d.identity);
        if (owner !== p) {
          // a late one is dropped here as its owner would drop it (counted late by the evaluator)
          if (!restore && !late) packer.add(owner, d, offset, timestamp, streamTime);
          // here it only moves the stream time (and is late or not, as the evaluator judges)
          decided.addTimeOnly(t, offset);
          if (restore) restoring++;
          continue;
        }
      }
      decided.add(d, offset);
      if (restore) restoring++;
      else classes[d.cls]!++;
    }
    out.last = last;
    if (packer.count > 0) {
      out.forwardedDecisions += packer.count;
      out.forwarded.push(...packer.take());
    }
    if (restoring > 0) runs.push({ clock: this.clock, start: 0, end: restoring, restore: true });
    if (decided.count > restoring) runs.push({ clock: this.clock, start: restoring, end: decided.count, restore: false });
    return true;
  }

  /**
   * Decode a batch of repartition partition p: decisions other partitions read and forwarded to this
   * owner. Each is evaluated in the stream of the decisions partition it was read from, after that
   * stream's time is moved to the time it carries. Bad records were sent to the DLQ where they were
   * read; a record forwarded by an older version (decoded again here) found bad here (a registry that
   * changed its mind) goes to the DLQ from here.
   */
  private decodeForwarded(b: PartitionBatch, decided: BatchDecisions, runs: Run[], out: BatchRecords): boolean | Promise<boolean> {
    const { messages, upTo, liveFrom } = b;
    const { routing, decoder } = this.o;
    const entries = this.unpacker;
    // entries below this one are of records re-read to restore windows (offsets grow through the batch)
    let restoreEnd = 0;
    for (let i = 0; i < upTo; i++) {
      const m = messages[i]!;
      const restore = Number(m.offset) < liveFrom;
      if (!restore) out.last = Number(m.offset);
      const forwarded = entries.unpack(m);
      // forwarded by this deployment and unreadable: a bad record of the repartition input (a foreign
      // one, of another consumer group sharing the topic or produced there by hand, is not ours to evaluate)
      if (forwarded.kind === 'invalid' && !restore) out.dlq.push(routing.deadLetter(m, { partition: this.o.partition, offset: m.offset, forwarded: true }, 'invalid_forwarded', forwarded.message));
      if (restore) restoreEnd = entries.count;
    }
    const step = (k: number): boolean | Promise<boolean> => {
      for (; k < entries.count; k++) {
        const restore = k < restoreEnd;
        // decoded at its source (this version's format), or the record as read there (an older version's)
        const d = entries.decision(k);
        if (d !== undefined) {
          take(d, k, restore);
          continue;
        }
        const record = entries.record(k)!;
        const decoded = decoder.decodeInto(record.value, record.key, decided.next());
        if (decoded instanceof Promise) {
          const at = k;
          return decoded.then((r) => {
            if (b.isStale()) return false;
            take(decodedDecision(r, at, record, restore), at, restore);
            return step(at + 1);
          });
        }
        take(decodedDecision(decoded, k, record, restore), k, restore);
      }
      return true;
    };
    // a bad one is reported where it was produced, as if it had been found bad there
    const decodedDecision = (r: DecodeResult | ReusableDecision, k: number, record: InputRecord, restore: boolean): Decision | null =>
      r instanceof ReusableDecision ? r : r.ok ? r.decision : badRecord(routing, r, restore, out, record, { partition: entries.partition(k) });
    // the stream time the last entry moved its stream to, in this batch: an entry carrying the same
    // time into the same stream has no time of its own to move it to
    let movedClock: StreamClock | undefined;
    let movedTo = NaN;
    const take = (d: Decision | null, k: number, restore: boolean): void => {
      if (d === null) return;
      // The future check was made where the record was read, against the same timestamp.
      const clock = this.sourceClock(entries.partition(k), b.now);
      const start = decided.count;
      const offset = entries.offset(k);
      const streamTime = entries.streamTime(k);
      if (clock !== movedClock || streamTime !== movedTo) {
        decided.addTimeOnly(streamTime, offset);
        movedClock = clock;
        movedTo = streamTime;
      }
      decided.add(d, offset);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.clock === clock && last.restore === restore && last.end === start) last.end = decided.count;
      else runs.push({ clock, start, end: decided.count, restore });
      if (!restore) out.classes[d.cls]!++;
    };
    return step(0);
  }

  /** The stream of the decisions forwarded to partition p from decisions partition q (docs/spec.md#11-kafka-mode). */
  private sourceClock(q: number, now: number): StreamClock {
    let s = this.sources.get(q);
    if (s === undefined) {
      // Its trips chain with partition p's (one chain per owner partition); its evidence names the
      // decisions partition the records were produced to, and their offsets there.
      s = { clock: this.evaluator.openStream(this.clock.name, { topic: this.o.routing.decisionsTopic, partition: q }), seenAt: now, closed: false };
      this.sources.set(q, s);
    } else if (s.closed) {
      // back after an idle spell: open again, with its time and positions
      const old = s.clock;
      const clock = this.evaluator.openStream(old.name, old.source);
      clock.time = old.time;
      clock.cutoff = old.cutoff;
      clock.bucketNo.set(old.bucketNo);
      clock.bucketMinPos.set(old.bucketMinPos);
      s.clock = clock;
      s.closed = false;
    }
    s.seenAt = now;
    return s.clock;
  }

  /** Close the source streams that went idle far behind the partition's own (SOURCE_IDLE_MS). */
  private closeIdleSources(now: number): void {
    const behind = this.o.tripConfig.windowMs + this.o.tripConfig.latenessMs;
    for (const s of this.sources.values()) {
      if (!s.closed && now - s.seenAt > SOURCE_IDLE_MS && this.clock.time - s.clock.time > behind) {
        this.evaluator.closeStream(s.clock);
        s.closed = true;
      }
    }
  }

  /**
   * The restore re-read decisions of identities an operator unblocked since, and counted them again:
   * the next call would trip the identity from the evidence its unblock set aside. Where in the stream
   * the unblock fell is not recorded, so the window of every identity unblocked recently enough for such
   * decisions to be in it is emptied, as the unblock emptied it (docs/spec.md#25-latching-and-unblocking):
   * a trip may come later than without the restart, never from old evidence.
   */
  private forgetBeforeUnblocks(): void {
    this.unblocksApplied = true;
    const ks = this.o.tripConfig;
    const reach = this.clock.time - ks.windowMs - ks.latenessMs - Math.max(60_000, this.maxFutureSkewMs);
    for (const s of this.o.fold.unblockedIdentities()) {
      const at = s.entry.at === undefined ? Infinity : Date.parse(s.entry.at);
      if (!(at < reach) && this.evaluator.tracks(s.agentId)) this.evaluator.ledgerChanged(s.agentId, 'unblocked');
    }
  }
}

/** A record the decoder refused: to the DLQ when live, as `at` says where it was produced. Returns null (no decision). */
function badRecord(
  routing: PartitionRouting, r: { readonly reason: string; readonly message: string }, restore: boolean, out: BatchRecords, m: InputRecord,
  at: { readonly partition: number; readonly offset?: string },
): null {
  if (!restore) out.dlq.push(routing.deadLetter(m, at, r.reason, r.message));
  return null;
}
