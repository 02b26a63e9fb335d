/**
 * Kafka mode (issue #3): decisions from a consumer group, outputs and input offsets in one Kafka
 * transaction per batch (exactly once), bad records to the DLQ, the kills topic followed by every
 * instance, windows rebuilt on assignment.
 *
 * One evaluator per assigned input partition (an identity's decisions share a partition, so windows
 * never span two), all sharing one ledger fold. One transactional producer per input partition, with a
 * transactional id derived from the partition: when a partition moves, its new owner's producer fences
 * the old owner's, so a zombie can neither commit outputs nor offsets for it.
 */
import { retrying } from './retry.js';
import kafkajs from 'kafkajs';
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Message, Producer, Transaction } from 'kafkajs';
import { canonicalJson } from '../../core/canonical-json.js';
import { AddendumChains, type KillEvent, type ShadowEvent, type TraceAddendum } from '../../core/documents.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, Evaluator, type StreamClock, type TripRuleConfig } from '../../core/evaluator.js';
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

interface PartitionState {
  readonly evaluator: Evaluator;
  readonly clock: StreamClock;
  /** offsets below this were processed before (restore mode: windows only, no output) */
  readonly liveFrom: number;
  readonly producer: Producer;
  /** when the group assigned the partition (performance.now()): restore duration runs from here to live */
  readonly assignedAt: number;
  restored: boolean;
  /** the offset after the last record this partition's batches brought: a later batch starting past it left a gap */
  next: number;
  liveEvictionsSeen: number;
  /**
   * The partition's transactions, one after another: a batch's transaction is queued here and runs while
   * the next batch is fetched and evaluated (never rejects; a failure stops the processor or drops the
   * partition inside).
   */
  committing: Promise<void>;
  /** the batch being decoded and accepted (reused from batch to batch) */
  readonly batch: BatchDecisions;
}

/** What one batch writes in its transaction. */
interface BatchOutput {
  readonly kills: Message[];
  readonly addenda: Message[];
  readonly shadows: Message[];
  readonly dlq: Message[];
  readonly held: ShadowEvent[];
  /** the last live offset of the batch: the committed position becomes last + 1 */
  readonly last: number;
  readonly highWatermark: number;
  /** performance.now() when the batch was handed over */
  readonly started: number;
  /** the partition's stream time once the batch was evaluated (-Infinity: no decision yet) */
  readonly streamTime: number;
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
    log.info({ topics, partitions: decisionsPartitions }, 'kafka topics ready');

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
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assigned = (e.payload.memberAssignment[topics.decisions] ?? []);
      // Not fetched until its state is ready (fenced, restore offsets known): without this the consumer
      // fetches, drops and refetches the same records in a busy loop while the assignment is prepared.
      const fresh = assigned.filter((p) => !this.partitionsState.has(p));
      if (fresh.length > 0) consumer.pause([{ topic: topics.decisions, partitions: fresh }]);
      const at = performance.now();
      // one assignment at a time, in the order the group gave them
      this.assignments = this.assignments.then(() => this.onAssignment(assigned, at)).catch((err: unknown) => this.fail(err));
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!this.stopping) this.fail(e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: topics.decisions, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Each partition has its own producer and transaction: while one partition's transaction waits for
      // the broker, the others' batches are decoded and evaluated. Batches of one partition stay in order.
      partitionsConsumedConcurrently: Math.max(1, decisionsPartitions),
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
    this.o.metrics.lag.remove({ partition: String(p) });
  }

  /** New assignment (`at`: when the group made it): keep what we still own, drop what moved away, restore what is new. */
  private async onAssignment(assigned: readonly number[], at: number): Promise<void> {
    const { topics, log, metrics } = this.o;
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
    const resume = (): void => this.consumer!.resume([{ topic: topics.decisions, partitions: [...assigned] }]);
    if (fresh.length === 0) {
      resume();
      return;
    }
    // Fence the previous owners first: initialising our transactional producer for a partition aborts
    // its old owner's open transaction and stops it from committing anything more. Only then are the
    // committed offsets, the ledger and the chain tips final.
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
    const committed = await retrying(() => admin.fetchOffsets({ groupId: this.o.groupId, topics: [topics.decisions] }));
    const committedOf = new Map((committed[0]?.partitions ?? []).map((x) => [x.partition, Number(x.offset)]));
    const streamTimeOf = new Map((committed[0]?.partitions ?? []).map((x) => [x.partition, committedStreamTime(x.metadata)]));
    const bounds = new Map((await retrying(() => admin.fetchTopicOffsets(topics.decisions))).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]));
    // Two reads of different topics, each a consumer group of its own (whose join can wait for the
    // broker's group.initial.rebalance.delay.ms): side by side.
    log.info({ partitions: fresh }, 'assignment: reading chain tips and finding restore offsets');
    const liveFromOf = new Map(fresh.map((p) => [p, Math.max(committedOf.get(p) ?? -1, bounds.get(p)?.low ?? 0, 0)]));
    const [, restoreFromOf] = await settledAll<[void, Map<number, number>]>([this.restoreChainTips(fresh), this.restoreStarts(liveFromOf, streamTimeOf)]);
    for (const p of fresh) {
      const liveFrom = liveFromOf.get(p)!;
      const restoreFrom = restoreFromOf.get(p)!;
      this.expiry.atAssignment(p, committedOf.get(p), bounds.get(p)?.low ?? 0);
      const evaluator = new Evaluator(this.o.tripConfig, this.fold, this.governor);
      const clock = evaluator.openStream(partitionStream(topics.decisions, p), { topic: topics.decisions, partition: p });
      const restored = restoreFrom >= liveFrom;
      this.partitionsState.set(p, { evaluator, clock, liveFrom, producer: producers.get(p)!, assignedAt: at, restored, next: Math.min(restoreFrom, liveFrom), liveEvictionsSeen: 0, committing: Promise.resolve(), batch: new BatchDecisions() });
      if (!restored) this.consumer!.seek({ topic: topics.decisions, partition: p, offset: String(restoreFrom) }); // throws if the consumer stopped: the assignment chain fails the processor
      // Lag from the moment the partition is ours (during the restore too), not only after its first batch.
      metrics.lag.set({ partition: String(p) }, Math.max(0, (bounds.get(p)?.high ?? 0) - liveFrom));
      // Nothing to re-read: live now; the restore took what fencing and finding the offsets took.
      if (restored) metrics.restoreSeconds.observe((performance.now() - at) / 1000);
      log.info({ partition: p, live_from: liveFrom, restore_from: restoreFrom }, 'partition assigned');
    }
    resume();
  }

  /**
   * Where to start re-reading each partition so every window open at its committed offset is rebuilt:
   * the first offset whose record timestamp is at or after (S - window - lateness - g - skew), S being
   * the partition's stream time committed with the offset. A decision still in a window occurred at or
   * after S - window - lateness (less up to a bucket, g, as buckets count whole), and a record's
   * timestamp is at most max_future_skew (at least 60 s, for producers' clocks) before its decision's
   * event time, or the decision was refused as future_timestamp; so no such record is left out, however
   * late producers sent their records. Not the wall clock: this stays right after any downtime.
   *
   * An offset committed without a stream time (by a version before it was kept) falls back to the
   * timestamp of the last record before it in place of S: right when records are stamped within 60 s of
   * their event time.
   */
  private async restoreStarts(liveFrom: ReadonlyMap<number, number>, streamTimes: ReadonlyMap<number, number | undefined>): Promise<Map<number, number>> {
    const lastTs = new Map<number, number>();
    for (const [p, t] of streamTimes) if (t !== undefined) lastTs.set(p, t);
    const from = [...liveFrom].filter(([p, off]) => off > 0 && !lastTs.has(p)).map(([partition, off]) => ({ partition, offset: off - 1 }));
    if (from.length > 0) {
      const reader = new PartitionReader({
        kafka: this.o.kafka, topic: this.o.topics.decisions, groupPrefix: `${this.o.groupId}.restore`, follow: false, firstBatchOnly: true, from,
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
      const offsets = await retrying(() => this.admin!.fetchTopicOffsetsByTimestamp(this.o.topics.decisions, ts));
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
    const started = performance.now();
    const kills: Message[] = [];
    const addenda: Message[] = [];
    const dlq: Message[] = [];
    const shadows: Message[] = [];
    const held: ShadowEvent[] = [];
    // live decisions per class and late ones, counted into the metrics once per batch
    const classes = [0, 0, 0, 0];
    const stats = st.evaluator.stats;
    let last = -1;
    // Decode the whole batch first, then evaluate it in one go (Evaluator.acceptAll reads ahead). Offsets
    // grow through the batch, so the records re-read to restore windows all come before the live ones.
    const decided = st.batch;
    const skewMs = this.o.tripConfig.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS;
    let restoring = 0;
    // late and duplicate live decisions are counted, not restored ones
    let lateBefore: number;
    let duplicatesBefore: number;
    // the batch's decisions hold its bytes until accepted: let go of them however this ends
    try {
      const messages = batch.messages;
      const n = messages.length;
      // A batch's offsets grow strictly, so n of them from first to first + n - 1 are exactly those:
      // then no offset string needs parsing (compaction or transaction markers leave gaps, parsed as they come).
      const first = n === 0 ? 0 : Number(messages[0]!.offset);
      const consecutive = n > 0 && Number(messages[n - 1]!.offset) - first === n - 1;
      // Records between the previous batch and this one that were never delivered: deleted by
      // retention, or transaction markers (the watch tells which). Only live ones are evidence lost.
      if (n > 0 && first > st.next) this.expiry.noteGap(p, Math.max(st.next, st.liveFrom), first);
      if (n > 0) st.next = Math.max(st.next, Number(messages[n - 1]!.offset) + 1);
      for (let i = 0; i < n; i++) {
        const m = messages[i]!;
        const offset = consecutive ? first + i : Number(m.offset);
        const restore = offset < st.liveFrom;
        const into = decided.next();
        const decoded = this.o.decoder.decodeInto(m.value, m.key, into);
        let r: DecodeResult | ReusableDecision;
        if (decoded instanceof Promise) {
          r = await decoded;
          // Only while awaiting (a schema fetched from the registry) can a seek or a stop happen: the
          // rest of the handler is synchronous up to the transaction, so checking here is checking before
          // anything of the batch is evaluated.
          if (isStale() || !isRunning()) return;
        } else {
          r = decoded;
        }
        if (!restore) last = offset;
        let d: Decision;
        if (r instanceof ReusableDecision) {
          d = r;
        } else if (r.ok) {
          d = r.decision;
        } else {
          if (!restore) {
            metrics.dlq.inc({ reason: r.reason });
            dlq.push(this.dlqRecord(m, p, r.reason, r.message));
          }
          continue;
        }
        // The record's timestamp is its arrival: part of the record, so a restore (and a replay of the
        // topic) refuses exactly the decisions refused live.
        if (d.timeMs > Number(m.timestamp) + skewMs) {
          if (!restore) {
            metrics.dlq.inc({ reason: 'future_timestamp' });
            dlq.push(this.dlqRecord(m, p, 'future_timestamp', futureTimestampError(d.timeMs, Number(m.timestamp), skewMs)!));
          }
          continue;
        }
        decided.add(d, offset);
        if (restore) restoring++;
        else classes[d.cls]!++;
      }
      if (restoring > 0) st.evaluator.acceptAll(st.clock, decided.decisions, decided.positions, null, true, 0, restoring);
      lateBefore = stats.late;
      duplicatesBefore = stats.duplicates;
      st.evaluator.acceptAll(st.clock, decided.decisions, decided.positions, (trip) => {
        if (trip.held !== undefined) {
          const shadow = shadowDocument({ ...trip, held: trip.held }, this.o.tripConfig.settings, this.o.signer);
          // keyed, not pinned to partition p: a shadow topic created with another partition count works too
          shadows.push({ key: trip.agentId, value: canonicalJson(shadow) });
          held.push(shadow);
        } else {
          const docs = tripDocuments(trip, this.o.tripConfig.settings, this.chains, this.o.signer);
          kills.push({ key: trip.agentId, value: canonicalJson(docs.killEvent) });
          addenda.push({ key: trip.agentId, value: canonicalJson(docs.addendum), partition: p });
          metrics.trips.inc();
        }
      }, false, restoring, decided.count);
    } finally {
      decided.release();
    }
    const late = stats.late - lateBefore;
    const duplicates = stats.duplicates - duplicatesBefore;
    if (!st.restored && Number(batch.lastOffset()) + 1 >= st.liveFrom) {
      st.restored = true;
      metrics.restoreSeconds.observe((performance.now() - st.assignedAt) / 1000);
    }
    for (let c = 0; c < classes.length; c++) if (classes[c]! > 0) metrics.decisions.inc({ class: CLASS_LABEL[c as DecisionClass] }, classes[c]);
    if (late > 0) metrics.late.inc(late);
    if (duplicates > 0) metrics.duplicates.inc(duplicates);
    // Processed (restore or live): the next fetch starts after them. Commits happen in the transaction.
    payload.resolveOffset(batch.lastOffset());
    if (last < 0) return; // restore only: nothing to commit
    // The transaction runs after the partition's previous one and while the next batch is fetched and
    // evaluated: fetching, evaluating and committing overlap instead of taking turns. At most one batch
    // waits for its transaction besides the one committing: this returns once the previous one is done.
    // Evaluating ahead of a commit is safe: if a transaction fails, the processor stops and a restart
    // restores the windows from what was committed; if it is fenced, the partition and its queue are dropped.
    const previous = st.committing;
    const output: BatchOutput = { kills, addenda, shadows, dlq, held, last, highWatermark: Number(batch.highWatermark), started, streamTime: st.clock.time };
    // commit() handles its own failures; anything it lets through still stops the processor, never goes unhandled
    st.committing = previous.then(() => this.commit(p, st, output)).catch((err: unknown) => this.fail(err));
    await previous;
    await payload.heartbeat();
  }

  /** One batch's outputs and its input offsets in one transaction of the partition's producer. */
  private async commit(p: number, st: PartitionState, out: BatchOutput): Promise<void> {
    // dropped meanwhile (fenced, revoked, or the processor failed): nothing of the batch may be committed
    if (this.partitionsState.get(p) !== st) return;
    const { topics, metrics } = this.o;
    const { kills, addenda, shadows, dlq, held, last } = out;
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
      // kafkajs's types leave out the metadata its TxnOffsetCommit request sends
      const committed: { partition: number; offset: string; metadata: string | null } = { partition: p, offset: String(last + 1), metadata: offsetMetadata(out.streamTime) };
      await inTransaction(() => txn.sendOffsets({ consumerGroupId: this.o.groupId, topics: [{ topic: topics.decisions, partitions: [committed] }] }));
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
    metrics.lag.set({ partition: String(p) }, Math.max(0, out.highWatermark - 1 - last));
    metrics.tracked.set([...this.partitionsState.values()].reduce((n, s) => n + s.evaluator.trackedIdentities, 0));
    const evicted = st.evaluator.liveEvictions - st.liveEvictionsSeen;
    if (evicted > 0) {
      st.liveEvictionsSeen += evicted;
      metrics.liveEvictions.inc(evicted);
      this.o.log.warn({ partition: p, evicted, last: st.evaluator.lastLiveEvicted }, 'tracked-identity cap reached: live windows evicted (raise limits.max_tracked_identities)');
    }
    metrics.blocked.set(this.fold.blocked);
  }

  private dlqRecord(m: KafkaMessage, partition: number, reason: string, message: string): Message {
    const headers: IHeaders = {
      ...(m.headers ?? {}),
      [DLQ_HEADERS.reason]: reason,
      [DLQ_HEADERS.message]: message.slice(0, 1000),
      [DLQ_HEADERS.topic]: this.o.topics.decisions,
      [DLQ_HEADERS.partition]: String(partition),
      [DLQ_HEADERS.offset]: m.offset,
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
