/**
 * Kafka mode (issue #3): decisions from a consumer group, outputs and input offsets in one Kafka
 * transaction per batch (exactly once), bad records to the DLQ, the kills topic followed by every
 * instance, windows rebuilt on assignment.
 *
 * One evaluator per assigned input partition p, all sharing one ledger fold. It holds the windows of
 * the identities p owns (murmur2 of the agent_id, docs/spec.md#11-kafka-mode): it evaluates what was
 * produced to decisions partition p for them, and what other partitions forwarded to repartition
 * partition p; decisions p reads for other owners it forwards to theirs. One transactional producer per
 * input partition (for both of its inputs and what it forwards), with a transactional id derived from
 * the partition: when a partition moves, its new owner's producer fences the old owner's, so a zombie
 * can neither commit outputs nor offsets for it.
 */
import { retrying } from './retry.js';
import kafkajs from 'kafkajs';
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Message, Producer, Transaction } from 'kafkajs';
import { canonicalJson } from '../../core/canonical-json.js';
import { AddendumChains, type KillEvent, type ShadowEvent, type TraceAddendum } from '../../core/documents.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, Evaluator, type StreamClock, type Trip, type TripRuleConfig } from '../../core/evaluator.js';
import { parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';
import { futureTimestampError } from '../../core/time.js';
import { Governor } from '../../core/governor.js';
import { LedgerFold } from '../../core/ledger-fold.js';
import { LedgerFeed } from '../../service/ledger-feed.js';
import { windowView, type WindowView } from '../../service/operator-service.js';
import type { Logger } from '../../ports/logger.js';
import type { Signer } from '../../ports/signer.js';
import { shadowDocument, tripDocuments } from '../../pipeline/trip-documents.js';
import { checkSignature } from '../signing/ed25519-signer.js';
import type { TrustedKey } from '../signing/keys.js';
import type { DecodeResult } from '../serde/decision-decoder.js';
import type { KafkaValueDecoder } from '../serde/kafka-value-decoder.js';
import { ReusableDecision } from '../serde/fast-decision.js';
import { BatchDecisions } from './batch-decisions.js';
import { ExpiryWatch } from './expiry-watch.js';
import { PartitionReader, readTail } from './partition-reader.js';
import { ensureTopics, type TopicNames } from './topics.js';
import { CO_PARTITIONED_ASSIGNER, coPartitionedAssigner, forwardedFrom, forwardedRecord, type ForwardedFrom, OwnerCache, repartitionTopic } from './repartition.js';
import type { KafkaMetrics } from '../metrics/metrics.js';
import { DecisionClass } from '../../core/decision-class.js';
import type { Decision } from '../../core/decision.js';

export interface KafkaProcessorOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly topics: TopicNames;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly transactionTimeoutMs: number;
  readonly sessionTimeoutMs: number;
  /** most bytes per partition and in all that one fetch of decisions brings */
  readonly maxPartitionFetchBytes: number;
  readonly fetchMaxBytes: number;
  readonly tripConfig: TripRuleConfig;
  readonly decoder: KafkaValueDecoder;
  readonly signer: Signer | undefined;
  readonly trusted: ReadonlyMap<string, TrustedKey>;
  readonly log: Logger;
  readonly metrics: KafkaMetrics;
}

/**
 * One of the two inputs of an owned partition p (docs/spec.md#11-kafka-mode): decisions partition p,
 * or repartition partition p (the decisions other partitions forwarded to p's owner).
 */
interface InputState {
  readonly topic: string;
  /** the repartition input */
  readonly forwarded: boolean;
  /** offsets below this were processed before (restore mode: windows only, no output) */
  readonly liveFrom: number;
  /** every offset below liveFrom has been re-read */
  restored: boolean;
  /** paused: it reached its live records while the other input was still restoring */
  waiting: boolean;
  /** the offset after the last record this input's batches brought: a later batch starting past it left a gap */
  next: number;
  /** the batch being decoded and accepted (reused from batch to batch) */
  readonly batch: BatchDecisions;
}

/** The clock of the decisions forwarded to this owner from one other decisions partition. */
interface SourceClock {
  clock: StreamClock;
  /** performance.now() of the last batch that brought one of its decisions */
  seenAt: number;
  /** closed as idle (sourceIdle): left out of the evaluator's idle reference until its next decision */
  closed: boolean;
}

/**
 * A source stream that forwarded nothing for this long (wall time) while its stream time is more than
 * window + lateness behind the owner's own stream is closed: its windows are all empty by the owner's
 * time, and an open stream whose time stands still would keep every idle identity's slot (the evaluator
 * reuses slots by the stream furthest behind), growing memory to limits.max_tracked_identities.
 */
const SOURCE_IDLE_MS = 60_000;

interface PartitionState {
  readonly evaluator: Evaluator;
  /** the stream of decisions partition p itself */
  readonly clock: StreamClock;
  /** the streams of the decisions forwarded from other partitions, by source partition (opened on their first record) */
  readonly sources: Map<number, SourceClock>;
  readonly input: InputState;
  readonly repartition: InputState;
  readonly producer: Producer;
  /** when the group assigned the partition (performance.now()): restore duration runs from here to live */
  readonly assignedAt: number;
  /** both inputs restored */
  restored: boolean;
  /** the windows of recently unblocked identities emptied after the restore, before the first live decision (forgetBeforeUnblocks) */
  unblocksApplied: boolean;
  liveEvictionsSeen: number;
  /**
   * The partition's transactions (of both inputs), one after another: a batch's transaction is queued
   * here and runs while the next batch is fetched and evaluated (never rejects; a failure stops the
   * processor or drops the partition inside).
   */
  committing: Promise<void>;
}

/** What one batch writes in its transaction. */
interface BatchOutput {
  /** the input the batch came from: its offset is committed */
  readonly topic: string;
  readonly kills: Message[];
  /** decisions of other owners, to their repartition partitions */
  readonly forwarded: Message[];
  readonly addenda: Message[];
  readonly shadows: Message[];
  readonly dlq: Message[];
  readonly held: ShadowEvent[];
  /** the last live offset of the batch: the committed position becomes last + 1 */
  readonly last: number;
  readonly highWatermark: number;
  /** performance.now() when the batch was handed over */
  readonly started: number;
  /**
   * The input's stream time once the batch was evaluated (-Infinity: no decision yet); for the
   * repartition input the least of its source streams' times, which is where a restore must reach back from.
   */
  readonly streamTime: number;
}

/** A batch's outputs as they are gathered while it is decoded and evaluated. */
interface BatchRecords {
  readonly kills: Message[];
  readonly addenda: Message[];
  readonly shadows: Message[];
  readonly dlq: Message[];
  readonly held: ShadowEvent[];
  readonly forwarded: Message[];
  /** live decisions per class, counted into the metrics once per batch */
  readonly classes: number[];
  /** the last live offset of the batch (-1: none) */
  last: number;
}

/** Decisions of a batch from `start` to `end` that go to one stream, all restored or all live. */
interface Run {
  readonly clock: StreamClock;
  readonly start: number;
  end: number;
  readonly restore: boolean;
}

interface DecodeBatch {
  readonly p: number;
  readonly st: PartitionState;
  readonly input: InputState;
  readonly messages: readonly KafkaMessage[];
  /** messages from this index on are left for later (their input waits for the other to restore) */
  readonly upTo: number;
  readonly first: number;
  readonly consecutive: boolean;
  readonly out: BatchRecords;
  readonly runs: Run[];
  /** the batch is no longer ours to evaluate (a seek, a stop) */
  readonly isStale: () => boolean;
  /** performance.now() when the batch was handed over */
  readonly now: number;
}

/**
 * A decision that only moves its stream's time: a decision read here but evaluated by its owner, and
 * the source stream time a forwarded decision carries (docs/spec.md#11-kafka-mode). It is of the ignored
 * class, so the evaluator checks its lateness, moves the stream time and notes its position, and
 * nothing else (docs/spec.md#2-the-trip-rule, steps 3 to 5).
 */
function timeOnly(timeMs: number): Decision {
  return { decisionId: '', agentId: null, cls: DecisionClass.Ignored, timeMs, sessionId: undefined };
}

/**
 * The metadata committed with a partition's input offset: the partition's stream time then, which is
 * where a restart's restore starts from (restoreStarts). Kafka keeps it with the offset, in the same
 * transaction.
 */
interface OffsetMetadata {
  readonly stream_time_ms: number;
}

function offsetMetadata(streamTime: number): string | null {
  return Number.isFinite(streamTime) ? JSON.stringify({ stream_time_ms: streamTime } satisfies OffsetMetadata) : null;
}

/** The stream time committed with an offset, or undefined (none, or committed by a version that kept none). */
export function committedStreamTime(metadata: string | null | undefined): number | undefined {
  if (metadata === null || metadata === undefined || !metadata.startsWith('{')) return undefined;
  try {
    const t = (JSON.parse(metadata) as Partial<OffsetMetadata>).stream_time_ms;
    return typeof t === 'number' && Number.isFinite(t) ? t : undefined;
  } catch {
    return undefined;
  }
}

const CLASS_LABEL: Record<DecisionClass, string> = {
  [DecisionClass.Ignored]: 'ignored', [DecisionClass.Call]: 'call', [DecisionClass.Deny]: 'deny', [DecisionClass.AdvisoryDeny]: 'advisory_deny',
};

/** Retries inside a transaction start short (see the producer's `retry`); unlimited, as kafkajs's default for idempotent producers. */
const TXN_RETRY = { initialRetryTime: 5, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER };
/** Our own retries of transactional calls kafkajs does not retry (sendOffsets, commit): 5 ms first, 16 attempts (about 15 s). */
const inTransaction = <T>(fn: () => Promise<T>): Promise<T> => retrying(fn, 16, 5);

// kafkajs is CommonJS; its default partitioner is the Java client's (murmur2 of the key)
const keyPartitioner = kafkajs.Partitioners.DefaultPartitioner();

export const DLQ_HEADERS = {
  reason: 'killswitch.reason',
  message: 'killswitch.message',
  topic: 'killswitch.source.topic',
  partition: 'killswitch.source.partition',
  offset: 'killswitch.source.offset',
} as const;

/** Messages in groups of at most `limit` value bytes: each send is one record batch per partition, under the broker's size limit. */
export function bySize(messages: Message[], limit: number): Message[][] {
  const groups: Message[][] = [];
  let current: Message[] = [];
  let size = 0;
  for (const m of messages) {
    const n = m.value === null || m.value === undefined ? 0 : typeof m.value === 'string' ? Buffer.byteLength(m.value) : m.value.length;
    if (current.length > 0 && size + n > limit) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(m);
    size += n;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** Shutdown steps must not hang the process: each gets a bound, and a failure is only logged. */
async function bounded(step: Promise<unknown> | undefined, what: string, log: Logger, ms = 10_000): Promise<void> {
  if (step === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    const r = await Promise.race([step.then(() => 'done' as const), timeout]);
    if (r === 'timeout') log.warn({ step: what, ms }, 'shutdown step did not finish in time; going on');
  } catch (err) {
    log.debug({ step: what, err: (err as Error).message }, 'shutdown step failed');
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Promise.all that waits for every step to end before it fails with the first failure: nothing is left
 * running behind a failed assignment (Promise.all returns at the first failure with the rest still going).
 */
async function settledAll<T extends readonly unknown[]>(steps: { readonly [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(steps);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Connect a transactional producer and register its transactional id with the coordinator now. kafkajs
 * does that (InitProducerId, which aborts the id's open transaction and fences every older producer of
 * the id) only at the first `transaction()`, not at `connect()`: until then an old owner can still
 * commit. A transaction begun and aborted with nothing in it sends nothing else.
 */
export async function connectFenced(producer: Producer): Promise<void> {
  await producer.connect();
  const trx = await producer.transaction();
  await trx.abort();
}

export function isFenced(err: unknown): boolean {
  const e = err as { type?: string; name?: string; message?: string; cause?: unknown };
  if (e.type === 'INVALID_PRODUCER_EPOCH' || e.type === 'PRODUCER_FENCED' || e.type === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED') return true;
  if (typeof e.message === 'string' && /fenced|producer epoch/i.test(e.message)) return true;
  return e.cause !== undefined && e.cause !== err && isFenced(e.cause);
}

/** Stream name of an input partition: its addenda chain is named after it. */
export const partitionStream = (topic: string, partition: number): string => `${topic}/${partition}`;

export class KafkaProcessor {
  /** who is blocked, from the kills topic (every instance reads all of it) */
  readonly fold = new LedgerFold();
  /** the kills topic's verified events numbered by offset + 1: the operator API's changes and stream */
  readonly feed = new LedgerFeed();
  private readonly governor: Governor | undefined;
  /** partitions of the decisions topic (known once the topics are checked) */
  private decisionsPartitions = 0;
  /** the repartition topic: decisions read on a partition other than their owner's, forwarded to it */
  private readonly repartition: string;
  /** owner(agent_id) per identity (set once the partition count is known) */
  private owners = new OwnerCache(1);
  private ledgerLoadedResolve: (() => void) | undefined;
  /** the first read of the kills topic (start()); rejects if it fails */
  private ledgerRead: Promise<void> = Promise.resolve();
  private readonly ledgerLoaded = new Promise<void>((resolve) => {
    this.ledgerLoadedResolve = resolve;
  });
  private readonly chains = new AddendumChains();
  private readonly partitionsState = new Map<number, PartitionState>();
  private consumer: Consumer | undefined;
  private ledgerReader: PartitionReader | undefined;
  private admin: Admin | undefined;
  private stopping = false;
  private assignments: Promise<void> = Promise.resolve();
  private readonly instance = randomUUID();
  private failure: ((err: unknown) => void) | undefined;
  private readonly expiry: ExpiryWatch;
  /** resolves when the processor stops on its own because of an error it cannot recover from in place */
  readonly failed: Promise<unknown>;

  constructor(private readonly o: KafkaProcessorOptions) {
    this.failed = new Promise((resolve) => {
      this.failure = resolve;
    });
    this.repartition = repartitionTopic(o.topics);
    const g = o.tripConfig.governor;
    // One governor for all partitions of this instance. Active identities are estimated from this
    // instance's partitions (identities spread evenly over partitions by key); automatic blocks are
    // counted from the ledger, which every instance reads whole, so the share is the fleet's.
    this.governor = g === undefined ? undefined : new Governor(g, this.fold, () => this.estimatedActiveIdentities(), o.tripConfig.windowMs);
    this.expiry = new ExpiryWatch({
      logStartOffsets: async () => new Map((await this.admin!.fetchTopicOffsets(o.topics.decisions)).map((x) => [x.partition, Number(x.low)])),
      report: ({ partition, lost, from, to }) => {
        o.metrics.expired.inc({ partition: String(partition) }, lost);
        o.log.warn({ partition, lost, from_offset: from, to_offset: to },
          'decisions deleted by the broker before they were processed (consumer lag longer than the topic\'s retention): they were never evaluated');
      },
      onCheckFailed: (err) => o.log.warn({ err: (err as Error).message }, 'could not read the log start offsets to check a gap in the decisions for expired records'),
    });
  }

  private estimatedActiveIdentities(): number {
    let tracked = 0;
    for (const st of this.partitionsState.values()) tracked += st.evaluator.trackedIdentities;
    const owned = this.partitionsState.size;
    return owned === 0 ? 0 : Math.round(tracked * Math.max(1, this.decisionsPartitions / owned));
  }

  async start(): Promise<void> {
    const { kafka, topics, log } = this.o;
    const admin = kafka.admin();
    this.admin = admin;
    await admin.connect();
    const decisionsPartitions = await ensureTopics(admin, topics, { partitions: this.o.partitions, replicationFactor: this.o.replicationFactor });
    this.decisionsPartitions = decisionsPartitions;
    this.owners = new OwnerCache(decisionsPartitions);
    log.info({ topics: { ...topics, repartition: this.repartition }, partitions: decisionsPartitions }, 'kafka topics ready');

    // Who is blocked, before the first decision: a restart never lifts a block. Read while the consumer
    // below joins its group (each join can wait the broker's group.initial.rebalance.delay.ms, 3 s by
    // default); an assignment waits for it before anything else (onAssignment), so no decision is
    // evaluated before the ledger is read.
    const ledgerReader = new PartitionReader({
      kafka, topic: topics.kills, groupPrefix: `${this.o.groupId}.ledger`, follow: true,
      from: [{ partition: 0, offset: 0 }],
      onMessage: (_p, m) => this.onLedgerMessage(m),
    });
    this.ledgerReader = ledgerReader;
    this.ledgerRead = (async () => {
      await ledgerReader.start();
      await ledgerReader.caughtUp;
      this.ledgerLoadedResolve!();
      log.info({ blocked: this.fold.blocked }, 'block ledger read');
    })();
    this.ledgerRead.catch(() => undefined); // awaited below and by every assignment: never unhandled
    await Promise.all([this.ledgerRead, this.startConsumer()]);
  }

  /** The group's consumer: joins, and hands assignments to onAssignment and batches to onBatch. */
  private async startConsumer(): Promise<void> {
    const { kafka, topics } = this.o;
    const decisionsPartitions = this.decisionsPartitions;
    const consumer = kafka.consumer({
      groupId: this.o.groupId, readUncommitted: false, allowAutoTopicCreation: false,
      // With every assigned partition paused (while an assignment is prepared, see GROUP_JOIN) kafkajs
      // sleeps this long before it looks again: the default 5 s would hold a partition that is ready.
      // Also the longest an idle fetch waits for data; with data it returns at once either way.
      maxWaitTimeInMs: 250,
      // One partition's batch is one transaction, whose requests cost about as much CPU as decoding a few
      // thousand records: kafkajs's 1 MiB per partition made 308 transactions per 1M decisions in
      // benchmarks/kafka-pipeline.ts, 4 MiB makes 77 (and fewer fetches).
      maxBytesPerPartition: this.o.maxPartitionFetchBytes, maxBytes: this.o.fetchMaxBytes,
      // A member killed mid-rebalance holds the group up to the rebalance timeout, not the session
      // timeout; our batches are short, so twice the session timeout is plenty to rejoin.
      sessionTimeout: this.o.sessionTimeoutMs, rebalanceTimeout: Math.max(10_000, 2 * this.o.sessionTimeoutMs), heartbeatInterval: Math.max(500, Math.floor(this.o.sessionTimeoutMs / 10)),
      // Decisions partition p and repartition partition p to the same member (docs/spec.md#11-kafka-mode).
      // The only assignor offered: a member of an older version (kafkajs's round robin) cannot join the
      // group, rather than split an identity's decisions over two instances.
      partitionAssigners: [coPartitionedAssigner(topics.decisions, this.repartition)],
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assigned = (e.payload.memberAssignment[topics.decisions] ?? []);
      const forwarded = new Set(e.payload.memberAssignment[this.repartition] ?? []);
      if (assigned.length !== forwarded.size || assigned.some((p) => !forwarded.has(p))) {
        this.fail(new Error(`the group assigned decisions partitions [${assigned.join(',')}] but repartition partitions [${[...forwarded].join(',')}]: every member must use the ${CO_PARTITIONED_ASSIGNER} assignor`));
        return;
      }
      // Not fetched until its state is ready (fenced, restore offsets known): without this the consumer
      // fetches, drops and refetches the same records in a busy loop while the assignment is prepared.
      const fresh = assigned.filter((p) => !this.partitionsState.has(p));
      if (fresh.length > 0) consumer.pause([{ topic: topics.decisions, partitions: fresh }, { topic: this.repartition, partitions: fresh }]);
      const at = performance.now();
      // one assignment at a time, in the order the group gave them
      this.assignments = this.assignments.then(() => this.onAssignment(assigned, at)).catch((err: unknown) => this.fail(err));
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!this.stopping) this.fail(e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topics.decisions, this.repartition], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Each partition has its own producer and transaction: while one partition's transaction waits for
      // the broker, the others' batches are decoded and evaluated. Batches of one partition stay in order.
      partitionsConsumedConcurrently: Math.max(1, 2 * decisionsPartitions),
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  private fail(err: unknown): void {
    this.stopping = true;
    this.o.log.error({ err: (err as Error).message }, 'kafka processing failed; stopping so a restart restores from committed state');
    this.failure?.(err);
  }

  private onLedgerMessage(m: KafkaMessage): void {
    if (m.value === null) return;
    let ev: KillEvent;
    try {
      // strict (docs/spec.md#6-strict-documents): a signature vouches for one reading of the text only
      ev = parseJsonStrict(m.value.toString('utf8')) as KillEvent;
    } catch (err) {
      this.o.metrics.ledgerRejected.inc({ reason: err instanceof StrictJsonError ? err.reason : 'invalid_json' });
      this.o.log.warn({ offset: m.offset, err: (err as Error).message }, 'ignored a kill event that is not a strict JSON document');
      return;
    }
    if (this.o.trusted.size > 0) {
      const check = checkSignature(ev as unknown as Record<string, unknown>, this.o.trusted);
      if (!check.ok) {
        this.o.metrics.ledgerRejected.inc({ reason: check.code });
        this.o.log.warn({ agent_id: ev.agent_id, code: check.code }, 'ignored a kill event that does not verify');
        return;
      }
    }
    const seq = Number(m.offset) + 1;
    if (seq > this.feed.lastSeq) this.feed.append(ev, seq);
    const change = this.fold.apply(ev);
    if (change === 'unchanged') return;
    // An automatic block this instance did not latch itself (its own are in the fold already): it
    // counts against the governor's rate of its minute here too.
    if (change === 'blocked' && ev.trigger === 'deny_rate' && ev.scope === undefined) this.governor?.noteExternal(Date.parse(ev.at));
    for (const st of this.partitionsState.values()) st.evaluator.ledgerChanged(ev.agent_id, change);
    this.o.metrics.blocked.set(this.fold.blocked);
    if (change === 'unblocked') this.o.metrics.unblocks.inc();
  }

  /** A partition this instance no longer owns: its state and its lag series go (another instance reports it now). */
  private forget(p: number, st: PartitionState): void {
    this.partitionsState.delete(p);
    st.evaluator.closeStream(st.clock);
    for (const s of st.sources.values()) if (!s.closed) st.evaluator.closeStream(s.clock);
    this.o.metrics.lag.remove({ partition: String(p) });
    this.o.metrics.repartitionLag.remove({ partition: String(p) });
  }

  /** The stream of the decisions forwarded to partition p from decisions partition q (docs/spec.md#11-kafka-mode). */
  private sourceClock(p: number, st: PartitionState, q: number, now: number): StreamClock {
    let s = st.sources.get(q);
    if (s === undefined) {
      // Its trips chain with partition p's (one chain per owner partition); its evidence names the
      // decisions partition the records were produced to, and their offsets there.
      s = { clock: st.evaluator.openStream(partitionStream(this.o.topics.decisions, p), { topic: this.o.topics.decisions, partition: q }), seenAt: now, closed: false };
      st.sources.set(q, s);
    } else if (s.closed) {
      // back after an idle spell: open again, with its time and positions
      const old = s.clock;
      const clock = st.evaluator.openStream(old.name, old.source);
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
  private closeIdleSources(st: PartitionState, now: number): void {
    const behind = this.o.tripConfig.windowMs + this.o.tripConfig.latenessMs;
    for (const s of st.sources.values()) {
      if (!s.closed && now - s.seenAt > SOURCE_IDLE_MS && st.clock.time - s.clock.time > behind) {
        st.evaluator.closeStream(s.clock);
        s.closed = true;
      }
    }
  }

  /** New assignment (`at`: when the group made it): keep what we still own, drop what moved away, restore what is new. */
  private async onAssignment(assigned: readonly number[], at: number): Promise<void> {
    const { topics, log, metrics } = this.o;
    const repartition = this.repartition;
    await this.ledgerRead; // the first assignment can come before the ledger is read (start())
    const now = new Set(assigned);
    for (const [p, st] of this.partitionsState) {
      if (!now.has(p)) {
        this.forget(p, st);
        // its last batch's transaction may still be on its way: let it commit (or be fenced by the new owner)
        await bounded(st.committing, 'transaction of a revoked partition', this.o.log, this.o.transactionTimeoutMs);
        await st.producer.disconnect();
      }
    }
    const fresh = assigned.filter((p) => !this.partitionsState.has(p));
    const resume = (): void => this.consumer!.resume([{ topic: topics.decisions, partitions: [...assigned] }, { topic: repartition, partitions: [...assigned] }]);
    if (fresh.length === 0) {
      resume();
      return;
    }
    // Fence the previous owners first: initialising our transactional producer for a partition aborts
    // its old owner's open transaction and stops it from committing anything more. Only then are the
    // committed offsets, the ledger and the chain tips final. One producer per partition p covers both
    // of its inputs (decisions p and repartition p) and the records it forwards.
    // All at once: each waits for its old owner's open transaction to be aborted.
    log.info({ partitions: fresh }, 'assignment: fencing previous owners');
    const producers = new Map(fresh.map((p) => [p, this.o.kafka.producer({
      transactionalId: `${this.o.groupId}.${topics.decisions}.${p}`,
      idempotent: true, maxInFlightRequests: 1, transactionTimeout: this.o.transactionTimeoutMs, allowAutoTopicCreation: false,
      // The first send of a transaction right after the previous commit is answered CONCURRENT_TRANSACTIONS
      // until the broker has written the commit markers (a few ms); kafkajs would wait 100 ms and more.
      retry: TXN_RETRY,
    })]));
    await settledAll([...producers.values()].map((producer) => connectFenced(producer)));
    log.info({ partitions: fresh }, 'assignment: reading the ledger to its end');
    await this.ledgerReader!.catchUpNow();
    const admin = this.admin!;
    const committed = await retrying(() => admin.fetchOffsets({ groupId: this.o.groupId, topics: [topics.decisions, repartition] }));
    const partitionsOf = (topic: string): { partition: number; offset: string; metadata: string | null }[] => committed.find((c) => c.topic === topic)?.partitions ?? [];
    const committedOf = new Map(partitionsOf(topics.decisions).map((x) => [x.partition, Number(x.offset)]));
    const committedForwardedOf = new Map(partitionsOf(repartition).map((x) => [x.partition, Number(x.offset)]));
    // Where both inputs' restores reach back from: the least stream time of the partition's streams. A
    // window is shared by both inputs' decisions, so each input must be re-read as far back as any
    // stream's open windows reach.
    const forwardedTimes = new Map(partitionsOf(repartition).map((x) => [x.partition, committedStreamTime(x.metadata)]));
    const streamTimeOf = new Map(partitionsOf(topics.decisions).map((x) => [x.partition, committedStreamTime(x.metadata)]));
    for (const [p, t] of forwardedTimes) {
      const own = streamTimeOf.get(p);
      if (t !== undefined) streamTimeOf.set(p, own === undefined ? t : Math.min(own, t));
    }
    const boundsOf = async (topic: string): Promise<Map<number, { low: number; high: number }>> =>
      new Map((await retrying(() => admin.fetchTopicOffsets(topic))).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]));
    const [bounds, forwardedBounds] = await Promise.all([boundsOf(topics.decisions), boundsOf(repartition)]);
    // Reads of different topics, each a consumer group of its own (whose join can wait for the
    // broker's group.initial.rebalance.delay.ms): side by side.
    log.info({ partitions: fresh }, 'assignment: reading chain tips and finding restore offsets');
    const liveFromOf = new Map(fresh.map((p) => [p, Math.max(committedOf.get(p) ?? -1, bounds.get(p)?.low ?? 0, 0)]));
    const forwardedLiveFromOf = new Map(fresh.map((p) => [p, Math.max(committedForwardedOf.get(p) ?? -1, forwardedBounds.get(p)?.low ?? 0, 0)]));
    const [, restoreFromOf, forwardedRestoreFromOf] = await settledAll<[void, Map<number, number>, Map<number, number>]>([
      this.restoreChainTips(fresh), this.restoreStarts(topics.decisions, liveFromOf, streamTimeOf), this.restoreStarts(repartition, forwardedLiveFromOf, streamTimeOf),
    ]);
    for (const p of fresh) {
      const liveFrom = liveFromOf.get(p)!;
      const restoreFrom = restoreFromOf.get(p)!;
      const forwardedLiveFrom = forwardedLiveFromOf.get(p)!;
      const forwardedRestoreFrom = forwardedRestoreFromOf.get(p)!;
      this.expiry.atAssignment(p, committedOf.get(p), bounds.get(p)?.low ?? 0);
      const evaluator = new Evaluator(this.o.tripConfig, this.fold, this.governor);
      const clock = evaluator.openStream(partitionStream(topics.decisions, p), { topic: topics.decisions, partition: p });
      const input: InputState = {
        topic: topics.decisions, forwarded: false, liveFrom, restored: restoreFrom >= liveFrom, waiting: false, next: Math.min(restoreFrom, liveFrom), batch: new BatchDecisions(),
      };
      const forwarded: InputState = {
        topic: repartition, forwarded: true, liveFrom: forwardedLiveFrom, restored: forwardedRestoreFrom >= forwardedLiveFrom, waiting: false,
        next: Math.min(forwardedRestoreFrom, forwardedLiveFrom), batch: new BatchDecisions(),
      };
      const restored = input.restored && forwarded.restored;
      this.partitionsState.set(p, {
        evaluator, clock, sources: new Map(), input, repartition: forwarded, producer: producers.get(p)!, assignedAt: at, restored, unblocksApplied: restored, liveEvictionsSeen: 0, committing: Promise.resolve(),
      });
      // throws if the consumer stopped: the assignment chain fails the processor
      if (!input.restored) this.consumer!.seek({ topic: topics.decisions, partition: p, offset: String(restoreFrom) });
      if (!forwarded.restored) this.consumer!.seek({ topic: repartition, partition: p, offset: String(forwardedRestoreFrom) });
      // Lag from the moment the partition is ours (during the restore too), not only after its first batch.
      metrics.lag.set({ partition: String(p) }, Math.max(0, (bounds.get(p)?.high ?? 0) - liveFrom));
      metrics.repartitionLag.set({ partition: String(p) }, Math.max(0, (forwardedBounds.get(p)?.high ?? 0) - forwardedLiveFrom));
      // Nothing to re-read: live now; the restore took what fencing and finding the offsets took.
      if (restored) metrics.restoreSeconds.observe((performance.now() - at) / 1000);
      log.info({ partition: p, live_from: liveFrom, restore_from: restoreFrom, repartition_live_from: forwardedLiveFrom, repartition_restore_from: forwardedRestoreFrom }, 'partition assigned');
    }
    resume();
  }

  /**
   * Where to start re-reading each partition of `topic` so every window open at its committed offset is
   * rebuilt: the first offset whose record timestamp is at or after (S - window - lateness - g - skew), S
   * being the partition's stream time committed with the offset (the least of its streams'). A decision
   * still in a window occurred at or after S - window - lateness (less up to a bucket, g, as buckets
   * count whole), and a record's timestamp is at most max_future_skew (at least 60 s, for producers'
   * clocks) before its decision's event time, or the decision was refused as future_timestamp; so no
   * such record is left out, however late producers sent their records. A forwarded record keeps the
   * timestamp of the record it was read from. Not the wall clock: this stays right after any downtime.
   *
   * An offset committed without a stream time (by a version before it was kept) falls back to the
   * timestamp of the last record before it in place of S: right when records are stamped within 60 s of
   * their event time.
   */
  private async restoreStarts(topic: string, liveFrom: ReadonlyMap<number, number>, streamTimes: ReadonlyMap<number, number | undefined>): Promise<Map<number, number>> {
    const lastTs = new Map<number, number>();
    for (const [p, t] of streamTimes) if (t !== undefined && liveFrom.has(p)) lastTs.set(p, t);
    const from = [...liveFrom].filter(([p, off]) => off > 0 && !lastTs.has(p)).map(([partition, off]) => ({ partition, offset: off - 1 }));
    if (from.length > 0) {
      const reader = new PartitionReader({
        kafka: this.o.kafka, topic, groupPrefix: `${this.o.groupId}.restore`, follow: false, firstBatchOnly: true, from,
        onMessage: (p, m) => {
          if (!lastTs.has(p)) lastTs.set(p, Number(m.timestamp));
        },
      });
      await reader.start();
      await reader.caughtUp;
      await reader.stop();
    }
    const ks = this.o.tripConfig;
    const starts = await Promise.all([...liveFrom].map(async ([p, live]): Promise<[number, number]> => {
      if (live <= 0) return [p, live];
      const slack = ks.resolutionMs + Math.max(60_000, ks.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS);
      const ts = Math.min(lastTs.get(p) ?? Date.now(), Date.now()) - ks.windowMs - ks.latenessMs - slack;
      const offsets = await retrying(() => this.admin!.fetchTopicOffsetsByTimestamp(topic, ts));
      const at = Number(offsets.find((o) => o.partition === p)?.offset ?? 0);
      return [p, at < 0 ? live : Math.min(at, live)];
    }));
    return new Map(starts);
  }

  /** The chain of partition p continues from the last committed addendum of addenda partition p. */
  private async restoreChainTips(partitions: readonly number[]): Promise<void> {
    const last = new Map<number, TraceAddendum>();
    await readTail(this.o.kafka, this.o.topics.addenda, partitions, `${this.o.groupId}.tips`, (p, m) => {
      if (m.value !== null) last.set(p, JSON.parse(m.value.toString('utf8')) as TraceAddendum);
    });
    for (const a of last.values()) this.chains.restoreTip(a);
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const isStale = (): boolean => payload.isStale();
    const isRunning = (): boolean => payload.isRunning();
    const { metrics } = this.o;
    const p = batch.partition;
    const st = this.partitionsState.get(p);
    if (st === undefined || this.stopping || isStale() || !isRunning()) return; // not ours (yet), a seek is pending, or stopping
    const forwardedInput = batch.topic === this.repartition;
    const input = forwardedInput ? st.repartition : st.input;
    const other = forwardedInput ? st.input : st.repartition;
    const started = performance.now();
    const out: BatchRecords = { kills: [], addenda: [], dlq: [], shadows: [], held: [], forwarded: [], classes: [0, 0, 0, 0], last: -1 };
    const stats = st.evaluator.stats;
    // Decode the whole batch first, then evaluate it in one go (Evaluator.acceptAll reads ahead). Offsets
    // grow through the batch, so the records re-read to restore windows all come before the live ones.
    const decided = input.batch;
    const runs: Run[] = [];
    // late and duplicate live decisions are counted, not restored ones
    let lateBefore = stats.late;
    let duplicatesBefore = stats.duplicates;
    const messages = batch.messages;
    const n = messages.length;
    // Both inputs feed one set of windows: neither goes live before the other is restored, or a live
    // decision would be judged against a window still missing the other input's part
    // (docs/spec.md#11-kafka-mode, "Restore on assignment").
    let upTo = n;
    if (!other.restored && n > 0 && Number(messages[n - 1]!.offset) >= input.liveFrom) {
      upTo = 0;
      while (upTo < n && Number(messages[upTo]!.offset) < input.liveFrom) upTo++;
    }
    // the batch's decisions hold its bytes until accepted: let go of them however this ends
    try {
      // A batch's offsets grow strictly, so n of them from first to first + n - 1 are exactly those:
      // then no offset string needs parsing (compaction or transaction markers leave gaps, parsed as they come).
      const first = n === 0 ? 0 : Number(messages[0]!.offset);
      const consecutive = n > 0 && Number(messages[n - 1]!.offset) - first === n - 1;
      if (!forwardedInput) {
        // Records between the previous batch and this one that were never delivered: deleted by
        // retention, or transaction markers (the watch tells which). Only live ones are evidence lost.
        if (n > 0 && first > input.next) this.expiry.noteGap(p, Math.max(input.next, input.liveFrom), first);
      }
      if (n > 0) input.next = Math.max(input.next, Number(messages[n - 1]!.offset) + 1);
      const job: DecodeBatch = { p, st, input, messages, upTo, first, consecutive, out, runs, isStale: () => isStale() || !isRunning(), now: started };
      const r = forwardedInput ? this.decodeForwarded(job) : this.decodeDecisions(job);
      if (r instanceof Promise) {
        // a seek or a stop may have come while it was decoding
        if (!(await r) || isStale() || !isRunning()) return;
      } else if (!r) {
        return;
      }
      const onTrip = (trip: Trip): void => {
        if (trip.held !== undefined) {
          const shadow = shadowDocument({ ...trip, held: trip.held }, this.o.tripConfig.settings, this.o.signer);
          // keyed, not pinned to partition p: a shadow topic created with another partition count works too
          out.shadows.push({ key: trip.agentId, value: canonicalJson(shadow) });
          out.held.push(shadow);
        } else {
          const docs = tripDocuments(trip, this.o.tripConfig.settings, this.chains, this.o.signer);
          out.kills.push({ key: trip.agentId, value: canonicalJson(docs.killEvent) });
          // the chain of owner partition p, whichever stream the tripping decision came from
          out.addenda.push({ key: trip.agentId, value: canonicalJson(docs.addendum), partition: p });
          metrics.trips.inc();
        }
      };
      let counting = false;
      for (const run of runs) {
        if (!run.restore && !counting) {
          counting = true;
          lateBefore = stats.late;
          duplicatesBefore = stats.duplicates;
          if (!st.unblocksApplied) this.forgetBeforeUnblocks(st);
        }
        st.evaluator.acceptAll(run.clock, decided.decisions, decided.positions, run.restore ? null : onTrip, run.restore, run.start, run.end);
      }
      if (!counting) {
        lateBefore = stats.late;
        duplicatesBefore = stats.duplicates;
      }
      if (!forwardedInput && st.sources.size > 0) this.closeIdleSources(st, started);
    } finally {
      decided.release();
    }
    const late = stats.late - lateBefore;
    const duplicates = stats.duplicates - duplicatesBefore;
    const { classes, last } = out;
    for (let c = 0; c < classes.length; c++) if (classes[c]! > 0) metrics.decisions.inc({ class: CLASS_LABEL[c as DecisionClass] }, classes[c]);
    if (late > 0) metrics.late.inc(late);
    if (duplicates > 0) metrics.duplicates.inc(duplicates);
    if (out.forwarded.length > 0) metrics.forwarded.inc(out.forwarded.length);
    const lastProcessed = upTo === n ? Number(batch.lastOffset()) : upTo === 0 ? -1 : Number(messages[upTo - 1]!.offset);
    if (!input.restored && (upTo < n || lastProcessed + 1 >= input.liveFrom)) this.inputRestored(p, st, input, other);
    // Processed (restore or live): the next fetch starts after them. Commits happen in the transaction.
    if (lastProcessed >= 0) payload.resolveOffset(String(lastProcessed));
    if (upTo < n) {
      // At its live records while the other input still restores: wait for it (inputRestored resumes
      // this one). The other may have finished while a schema was fetched: then the next fetch goes on.
      if (!other.restored) {
        input.waiting = true;
        this.consumer?.pause([{ topic: input.topic, partitions: [p] }]);
      }
      return;
    }
    if (last < 0) return; // restore only: nothing to commit
    // The transaction runs after the partition's previous one and while the next batch is fetched and
    // evaluated: fetching, evaluating and committing overlap instead of taking turns. At most one batch
    // waits for its transaction besides the one committing: this returns once the previous one is done.
    // Evaluating ahead of a commit is safe: if a transaction fails, the processor stops and a restart
    // restores the windows from what was committed; if it is fenced, the partition and its queue are dropped.
    const previous = st.committing;
    const output: BatchOutput = {
      topic: input.topic, kills: out.kills, forwarded: out.forwarded, addenda: out.addenda, shadows: out.shadows, dlq: out.dlq, held: out.held, last,
      highWatermark: Number(batch.highWatermark), started, streamTime: forwardedInput ? this.forwardedStreamTime(st) : st.clock.time,
    };
    // commit() handles its own failures; anything it lets through still stops the processor, never goes unhandled
    st.committing = previous.then(() => this.commit(p, st, output)).catch((err: unknown) => this.fail(err));
    await previous;
    await payload.heartbeat();
  }

  /** An input has re-read everything below its live offset: the other one may go live, and the partition is live once both are. */
  private inputRestored(p: number, st: PartitionState, input: InputState, other: InputState): void {
    input.restored = true;
    if (other.waiting) {
      other.waiting = false;
      this.consumer?.resume([{ topic: other.topic, partitions: [p] }]);
    }
    if (!st.restored && other.restored) {
      st.restored = true;
      this.o.metrics.restoreSeconds.observe((performance.now() - st.assignedAt) / 1000);
    }
  }

  /**
   * The restore re-read decisions of identities an operator unblocked since, and counted them again:
   * the next call would trip the identity from the evidence its unblock set aside. Where in the stream
   * the unblock fell is not recorded, so the window of every identity unblocked recently enough for such
   * decisions to be in it is emptied, as the unblock emptied it (docs/spec.md#25-latching-and-unblocking):
   * a trip may come later than without the restart, never from old evidence.
   */
  private forgetBeforeUnblocks(st: PartitionState): void {
    st.unblocksApplied = true;
    const ks = this.o.tripConfig;
    const reach = st.clock.time - ks.windowMs - ks.latenessMs - Math.max(60_000, ks.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS);
    for (const s of this.fold.unblockedIdentities()) {
      const at = s.entry.at === undefined ? Infinity : Date.parse(s.entry.at);
      if (!(at < reach) && st.evaluator.tracks(s.agentId)) st.evaluator.ledgerChanged(s.agentId, 'unblocked');
    }
  }

  /** The least stream time of the forwarded streams: committed with the repartition offset, where its restore reaches back from. */
  private forwardedStreamTime(st: PartitionState): number {
    let min = Infinity;
    // a closed source's windows are empty by the partition's own time: nothing of it needs restoring
    for (const s of st.sources.values()) if (!s.closed && s.clock.time !== -Infinity && s.clock.time < min) min = s.clock.time;
    return min === Infinity ? -Infinity : min;
  }

  /**
   * Decode a batch of decisions partition p. A decision whose identity's owner partition is another is
   * forwarded there (docs/spec.md#11-kafka-mode): here it only moves the stream time (and is late or
   * not, as the evaluator judges), and it travels with the stream time it leaves, so its owner judges
   * it as this stream would. Returns false when the batch went stale while a schema was fetched.
   */
  private async decodeDecisions(b: DecodeBatch): Promise<boolean> {
    const { p, st, input, messages, upTo, first, consecutive, out, runs } = b;
    const decided = input.batch;
    const skewMs = this.o.tripConfig.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS;
    const latenessMs = this.o.tripConfig.latenessMs;
    const { metrics } = this.o;
    const topic = this.o.topics.decisions;
    const owners = this.owners;
    const liveFrom = input.liveFrom;
    // counted here and handed over once: this loop runs once per record
    const classes = out.classes;
    let last = out.last;
    // The stream time as the evaluator will have it before each record: the forwarded ones carry it.
    let streamTime = st.clock.time;
    let restoring = 0;
    for (let i = 0; i < upTo; i++) {
      const m = messages[i]!;
      const offset = consecutive ? first + i : Number(m.offset);
      const restore = offset < liveFrom;
      const into = decided.next();
      const decoded = this.o.decoder.decodeInto(m.value, m.key, into);
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
      const d = r instanceof ReusableDecision ? r : r.ok ? r.decision : this.badRecord(r, restore, out, { m, topic, partition: p });
      if (d === null) continue;
      const t = d.timeMs;
      // The record's timestamp is its arrival: part of the record, so a restore (and a replay of the
      // topic) refuses exactly the decisions refused live.
      if (t > Number(m.timestamp) + skewMs) {
        if (!restore) {
          metrics.dlq.inc({ reason: 'future_timestamp' });
          out.dlq.push(this.dlqRecord(m, topic, p, 'future_timestamp', futureTimestampError(t, Number(m.timestamp), skewMs)!));
        }
        continue;
      }
      // docs/spec.md#22-event-time-lateness-and-future-decisions: late decisions never move the stream time
      const late = t < streamTime - latenessMs;
      if (!late && t > streamTime) streamTime = t;
      const agentId = d.agentId;
      if (agentId !== null) {
        const owner = owners.ownerOf(agentId, d.identity);
        if (owner !== p) {
          decided.add(timeOnly(t), offset);
          if (restore) restoring++;
          // a late one is dropped here as its owner would drop it (counted late by the evaluator)
          else if (!late) out.forwarded.push(forwardedRecord({ message: m, agentId, owner, topic, partition: p, offset, streamTime, group: this.o.groupId }));
          continue;
        }
      }
      decided.add(d, offset);
      if (restore) restoring++;
      else classes[d.cls]!++;
    }
    out.last = last;
    if (restoring > 0) runs.push({ clock: st.clock, start: 0, end: restoring, restore: true });
    if (decided.count > restoring) runs.push({ clock: st.clock, start: restoring, end: decided.count, restore: false });
    return true;
  }

  /**
   * Decode a batch of repartition partition p: decisions other partitions read and forwarded to this
   * owner. Each is evaluated in the stream of the decisions partition it was read from, after that
   * stream's time is moved to the time it carries. Bad records were sent to the DLQ where they were
   * read; one found bad here (a registry that changed its mind) goes to the DLQ from here.
   */
  private decodeForwarded(b: DecodeBatch): boolean | Promise<boolean> {
    const { p, st, input, messages, upTo, first, consecutive, out, runs } = b;
    const decided = input.batch;
    const { log } = this.o;
    const partitions = this.decisionsPartitions;
    const step = (i: number): boolean | Promise<boolean> => {
      for (; i < upTo; i++) {
        const m = messages[i]!;
        const offset = consecutive ? first + i : Number(m.offset);
        const restore = offset < input.liveFrom;
        if (!restore) out.last = offset;
        const from = forwardedFrom(m, partitions);
        if (from === null || from.group !== this.o.groupId) {
          // Not forwarded by this deployment (another consumer group sharing the topic, or a record
          // produced to it by hand): not ours to evaluate.
          if (!restore) log.debug({ partition: p, offset }, 'ignored a repartition record this consumer group did not forward');
          continue;
        }
        const into = decided.next();
        const decoded = this.o.decoder.decodeInto(m.value, m.key, into);
        if (decoded instanceof Promise) {
          const at = i;
          return decoded.then((r) => {
            if (b.isStale()) return false;
            take(r, m, offset, restore, from);
            return step(at + 1);
          });
        }
        take(decoded, m, offset, restore, from);
      }
      return true;
    };
    const take = (r: DecodeResult | ReusableDecision, m: KafkaMessage, offset: number, restore: boolean, from: ForwardedFrom): void => {
      // a bad one is reported where it was produced, as if it had been found bad there
      const d = r instanceof ReusableDecision ? r : r.ok ? r.decision : this.badRecord(r, restore, out, { m, topic: this.o.topics.decisions, partition: from.partition, offset: String(from.offset) });
      if (d === null) return;
      // The future check was made where the record was read, against the same timestamp.
      const clock = this.sourceClock(p, st, from.partition, b.now);
      const start = decided.count;
      decided.add(timeOnly(from.streamTime), from.offset);
      decided.add(d, from.offset);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.clock === clock && last.restore === restore && last.end === start) last.end = decided.count;
      else runs.push({ clock, start, end: decided.count, restore });
      if (!restore) out.classes[d.cls]!++;
    };
    return step(0);
  }

  /** One batch's outputs and its input offsets in one transaction of the partition's producer. */
  private async commit(p: number, st: PartitionState, out: BatchOutput): Promise<void> {
    // dropped meanwhile (fenced, revoked, or the processor failed): nothing of the batch may be committed
    if (this.partitionsState.get(p) !== st) return;
    const { topics, metrics } = this.o;
    const { kills, addenda, shadows, dlq, held, last, forwarded } = out;
    let trx: Transaction | undefined;
    try {
      const txn = await st.producer.transaction();
      trx = txn; // aborted below if anything fails
      // CONCURRENT_TRANSACTIONS (the coordinator still finishing a fenced predecessor's transaction) and
      // other retriable answers are retried; the transaction stays the same.
      // Kill events and addenda in one request (one AddPartitionsToTxn, one Produce).
      const outputs = [{ topic: topics.kills, messages: kills }, { topic: topics.addenda, messages: addenda }, { topic: topics.shadow, messages: shadows }].filter((t) => t.messages.length > 0);
      if (outputs.length > 0) await inTransaction(() => txn.sendBatch({ topicMessages: outputs }));
      // Each send is its own record batch: keep every batch under the broker's message size limit.
      for (const group of bySize(dlq, 512 * 1024)) await inTransaction(() => txn.send({ topic: topics.dlq, messages: group }));
      // Decisions of identities owned elsewhere, to their owners' repartition partitions: in the
      // transaction of their input offset, so each is forwarded exactly once (docs/spec.md#11-kafka-mode).
      for (const group of bySize(forwarded, 512 * 1024)) await inTransaction(() => txn.send({ topic: this.repartition, messages: group }));
      // kafkajs's types leave out the metadata its TxnOffsetCommit request sends
      const committed: { partition: number; offset: string; metadata: string | null } = { partition: p, offset: String(last + 1), metadata: offsetMetadata(out.streamTime) };
      await inTransaction(() => txn.sendOffsets({ consumerGroupId: this.o.groupId, topics: [{ topic: out.topic, partitions: [committed] }] }));
      await inTransaction(() => txn.commit());
    } catch (err) {
      await trx?.abort().catch(() => undefined);
      if (this.partitionsState.get(p) !== st) return; // revoked while committing: the new owner restores from what is committed
      if (isFenced(err)) {
        // The partition has a new owner, which fenced us: nothing of this batch was committed, and the
        // new owner restores it. Forget the partition here.
        this.o.log.info({ partition: p }, 'partition taken over by another instance (fenced); dropping it');
        this.forget(p, st);
        await st.producer.disconnect().catch(() => undefined);
        return;
      }
      // The evaluator already counted this batch (and maybe the next) and may have latched trips that were
      // not committed: the only safe state is the committed one, which a restart restores. Stop consuming
      // and let the process exit (throwing here would make kafkajs restart the consumer on a state it cannot trust).
      this.partitionsState.clear();
      this.fail(err);
      return;
    }
    for (const h of held) {
      metrics.governorHeld.inc({ reason: h.reason });
      if (h.reason === 'shadow_rule') this.o.log.info({ agent_id: h.agent_id, rule: h.rule, event_id: h.event_id }, 'shadow rule tripped (not enforced)');
      else this.o.log.warn({ agent_id: h.agent_id, reason: h.reason, event_id: h.event_id }, 'governor engaged: trip held, not blocked');
    }
    metrics.batchSeconds.observe((performance.now() - out.started) / 1000);
    (out.topic === this.repartition ? metrics.repartitionLag : metrics.lag).set({ partition: String(p) }, Math.max(0, out.highWatermark - 1 - last));
    metrics.tracked.set([...this.partitionsState.values()].reduce((n, s) => n + s.evaluator.trackedIdentities, 0));
    const evicted = st.evaluator.liveEvictions - st.liveEvictionsSeen;
    if (evicted > 0) {
      st.liveEvictionsSeen += evicted;
      metrics.liveEvictions.inc(evicted);
      this.o.log.warn({ partition: p, evicted, last: st.evaluator.lastLiveEvicted }, 'tracked-identity cap reached: live windows evicted (raise limits.max_tracked_identities)');
    }
    metrics.blocked.set(this.fold.blocked);
  }

  /** A record the decoder refused: to the DLQ when live, as `at` says where it was produced. Returns null (no decision). */
  private badRecord(
    r: { readonly reason: string; readonly message: string }, restore: boolean, out: BatchRecords, at: { m: KafkaMessage; topic: string; partition: number; offset?: string },
  ): null {
    if (!restore) {
      this.o.metrics.dlq.inc({ reason: r.reason });
      out.dlq.push(this.dlqRecord(at.m, at.topic, at.partition, r.reason, r.message, at.offset ?? at.m.offset));
    }
    return null;
  }

  /** A bad record for the DLQ, its headers saying where it was produced (`offset` by default the record's own). */
  private dlqRecord(m: KafkaMessage, topic: string, partition: number, reason: string, message: string, offset: string = m.offset): Message {
    const headers: IHeaders = {
      ...(m.headers ?? {}),
      [DLQ_HEADERS.reason]: reason,
      [DLQ_HEADERS.message]: message.slice(0, 1000),
      [DLQ_HEADERS.topic]: topic,
      [DLQ_HEADERS.partition]: String(partition),
      [DLQ_HEADERS.offset]: offset,
    };
    return { key: m.key, value: m.value, headers };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const log = this.o.log;
    await this.expiry.stop();
    // Disconnecting the consumer waits for the batch in hand.
    await bounded(this.consumer?.disconnect(), 'consumer', log);
    // The transactions of batches already handed over commit (or fail) before the producers go.
    await Promise.all([...this.partitionsState.values()].map((st) => bounded(st.committing, 'open transactions', log, this.o.transactionTimeoutMs)));
    // The rest in parallel, each bounded: a client that does not let go must not hold the shutdown.
    await Promise.all([
      bounded(this.assignments, 'assignment in progress', log),
      ...[...this.partitionsState.values()].map((st) => bounded(st.producer.disconnect(), 'producer', log)),
      bounded(this.ledgerReader?.stop(), 'ledger reader', log),
    ]);
    this.partitionsState.clear();
    await bounded(this.admin?.disconnect(), 'admin', log, 3000);
  }

  /**
   * Wait until what the kills topic holds now is folded (before and after an operator action); at
   * start, until it is read. Throws when it cannot be read to its end within a few seconds.
   */
  async catchUpLedger(): Promise<void> {
    await this.ledgerLoaded;
    await this.ledgerReader!.catchUpNow({ strict: true });
  }

  /**
   * An identity's window on this instance: the owned partition that tracks it, else the partition its
   * key hashes to with the Java client's partitioner (kafkajs's default); null when that partition is
   * owned by another instance.
   */
  identityWindow(agentId: string): { partition: number; owned: boolean; window: WindowView | null } {
    for (const [p, st] of this.partitionsState) {
      if (st.evaluator.tracks(agentId)) return { partition: p, owned: true, window: windowView(st.evaluator, agentId, st.clock.time) };
    }
    const n = Math.max(1, this.decisionsPartitions);
    const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
    const p = keyPartitioner({ topic: this.o.topics.decisions, partitionMetadata, message: { key: agentId, value: null } });
    const st = this.partitionsState.get(p);
    return { partition: p, owned: st !== undefined, window: st === undefined ? null : windowView(st.evaluator, agentId, st.clock.time) };
  }

  get instanceId(): string {
    return this.instance;
  }
}
