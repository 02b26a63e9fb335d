/**
 * Kafka mode (docs/spec.md#11-kafka-mode): decisions from a consumer group, outputs and input offsets in
 * Kafka transactions (exactly once), bad records to the DLQ, the kills topic followed by
 * every instance, windows rebuilt on assignment. This file wires the parts together:
 *
 * - the ledger follower (adapters/kafka/ledger-follower.ts): who is blocked, before any decision;
 * - the group's consumer and its assignments, with the restore plan of each new partition
 *   (adapters/kafka/restore.ts);
 * - per owned partition p, a PartitionPipeline (pipeline/partition-pipeline.ts: decode -> evaluate ->
 *   documents, decisions of other owners forwarded) and a TransactionalCommitter
 *   (adapters/kafka/transactional-committer.ts) whose transactional id is derived from p, so that when
 *   p moves its new owner fences the old one;
 * - the transactions of a partition one after another while the next batches are fetched and evaluated;
 *   batches evaluated while a transaction runs are committed together in the next one.
 */
import kafkajs, { recordDecoding } from '../adapters/kafka/kafkajs.js';
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { AddendumChains, type KillEvent, type ShadowEvent } from '../core/documents.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, type TripRuleConfig } from '../core/evaluator.js';
import { DecisionClass } from '../core/decision-class.js';
import { Governor } from '../core/governor.js';
import { LedgerFold } from '../core/ledger-fold.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import { dlqReason } from '../adapters/kafka/dlq.js';
import { ExpiryWatch } from '../adapters/kafka/expiry-watch.js';
import { LedgerFollower } from '../adapters/kafka/ledger-follower.js';
import { CO_PARTITIONED_ASSIGNER, coPartitionedAssigner, KafkaRouting, repartitionTopic } from '../adapters/kafka/repartition.js';
import { planRestore } from '../adapters/kafka/restore.js';
import { isFenced, TransactionalCommitter } from '../adapters/kafka/transactional-committer.js';
import { ensureTopics, type TopicNames } from '../adapters/kafka/topics.js';
import type { KafkaMetrics } from '../adapters/metrics/metrics.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import type { KafkaValueDecoder } from '../adapters/serde/kafka-value-decoder.js';
import { KILL_EVENT_REJECT_REASONS } from '../adapters/serde/kill-event-reader.js';
import { batchRecords, type BatchRecords, PartitionPipeline } from '../pipeline/partition-pipeline.js';
import { LedgerFeed } from '../core/ledger-feed.js';
import type { WindowView } from '../ports/operator-service.js';
import { windowView } from './operator-service.js';

export interface KafkaProcessorOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly topics: TopicNames;
  readonly partitions: number;
  readonly replicationFactor: number;
  /** `opa.dedup_size`, for the opa-ids topic when it is created */
  readonly opaDedupSize: number;
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
}

interface PartitionState {
  readonly pipeline: PartitionPipeline;
  readonly input: InputState;
  readonly repartition: InputState;
  readonly committer: TransactionalCommitter;
  /** when the group assigned the partition (performance.now()): restore duration runs from here to live */
  readonly assignedAt: number;
  /** both inputs restored */
  restored: boolean;
  liveEvictionsSeen: number;
  /** batches evaluated and not yet in a transaction, in order: the next transaction takes them all */
  readonly queued: BatchOutput[];
  /**
   * The partition's transactions (of both inputs), one after another until nothing is queued; resolved
   * when none runs (never rejects: a failure stops the processor or drops the partition inside).
   */
  committing: Promise<void>;
  /** a transaction runs */
  draining: boolean;
}

/** What one batch writes in a transaction, and what is reported once it is committed. */
interface BatchOutput {
  /** the input the batch came from: its offset is committed */
  readonly topic: string;
  readonly records: BatchRecords;
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

const CLASS_LABEL: Record<DecisionClass, string> = {
  [DecisionClass.Ignored]: 'ignored', [DecisionClass.Call]: 'call', [DecisionClass.Deny]: 'deny', [DecisionClass.AdvisoryDeny]: 'advisory_deny',
};

/** How long an input stays idle after a fetch of only transaction markers or aborted records before its offset is committed past them. */
const IDLE_COMMIT_MS = 500;

/**
 * Batches of a partition that may wait for a transaction besides the one running before the partition's
 * next batch waits too (and with it the consumer's next fetch, which waits for every batch of the last).
 */
const MAX_QUEUED_BATCHES = 2;

// kafkajs's default partitioner is the Java client's (murmur2 of the key)
const keyPartitioner = kafkajs.Partitioners.DefaultPartitioner();

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
  /** owners, forwarded records, dead letters (set once the partition count is known) */
  private routing: KafkaRouting | undefined;
  private ledgerLoadedResolve: (() => void) | undefined;
  /** the first read of the kills topic (start()); rejects if it fails */
  private ledgerRead: Promise<void> = Promise.resolve();
  private readonly ledgerLoaded = new Promise<void>((resolve) => {
    this.ledgerLoadedResolve = resolve;
  });
  private readonly chains = new AddendumChains();
  private readonly partitionsState = new Map<number, PartitionState>();
  private consumer: Consumer | undefined;
  private ledger: LedgerFollower | undefined;
  private admin: Admin | undefined;
  private stopping = false;
  /** group joins so far (GROUP_JOIN events): a fenced partition expects one soon (onFenced) */
  private joins = 0;
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
    // every reason's series from the start, so an alert's increase() sees the first rejection
    for (const reason of KILL_EVENT_REJECT_REASONS) o.metrics.ledgerRejected.inc({ reason }, 0);
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

  /** The consumer's rebalance timeout (see startConsumer); a fenced partition waits this and a session for a rebalance (expectRebalance). */
  private get rebalanceTimeoutMs(): number {
    return Math.max(10_000, 2 * this.o.sessionTimeoutMs);
  }

  private estimatedActiveIdentities(): number {
    let tracked = 0;
    for (const st of this.partitionsState.values()) tracked += st.pipeline.evaluator.trackedIdentities;
    const owned = this.partitionsState.size;
    return owned === 0 ? 0 : Math.round(tracked * Math.max(1, this.decisionsPartitions / owned));
  }

  async start(): Promise<void> {
    const { kafka, topics, log, metrics } = this.o;
    const admin = kafka.admin();
    this.admin = admin;
    await admin.connect();
    const decisionsPartitions = await ensureTopics(admin, topics, { partitions: this.o.partitions, replicationFactor: this.o.replicationFactor, opaDedupSize: this.o.opaDedupSize });
    this.decisionsPartitions = decisionsPartitions;
    this.routing = new KafkaRouting({ decisionsTopic: topics.decisions, repartitionTopic: this.repartition, partitions: decisionsPartitions, groupId: this.o.groupId });
    log.info({ topics: { ...topics, repartition: this.repartition }, partitions: decisionsPartitions }, 'kafka topics ready');
    if (recordDecoding.decoder === 'kafkajs') log.info({ reason: recordDecoding.reason }, 'fetched records are decoded by kafkajs\'s own record decoder (the same records, more CPU per record)');

    // Who is blocked, before the first decision: a restart never lifts a block. Read while the consumer
    // below joins its group (each join can wait the broker's group.initial.rebalance.delay.ms, 3 s by
    // default); an assignment waits for it before anything else (onAssignment), so no decision is
    // evaluated before the ledger is read.
    const ledger = new LedgerFollower({
      kafka, topic: topics.kills, groupPrefix: `${this.o.groupId}.ledger`, trusted: this.o.trusted,
      onEvent: (ev, seq) => this.onLedgerEvent(ev, seq),
      onRejected: (r) => {
        metrics.ledgerRejected.inc({ reason: r.reason });
        log.warn({ offset: r.offset, reason: r.reason, ...(r.agentId === undefined ? {} : { agent_id: r.agentId }) }, `ignored a kill event: ${r.message}`);
      },
    });
    this.ledger = ledger;
    this.ledgerRead = (async () => {
      await ledger.start();
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
      // A partition's batch is committed in a transaction, whose requests cost about as much CPU as decoding a few
      // thousand records: kafkajs's 1 MiB per partition made 308 transactions per 1M decisions in
      // benchmarks/kafka-pipeline.ts, 4 MiB makes 77 (and fewer fetches).
      maxBytesPerPartition: this.o.maxPartitionFetchBytes, maxBytes: this.o.fetchMaxBytes,
      // A member killed mid-rebalance holds the group up to the rebalance timeout, not the session
      // timeout; our batches are short, so twice the session timeout is plenty to rejoin.
      sessionTimeout: this.o.sessionTimeoutMs, rebalanceTimeout: this.rebalanceTimeoutMs, heartbeatInterval: Math.max(500, Math.floor(this.o.sessionTimeoutMs / 10)),
      // Decisions partition p and repartition partition p to the same member (docs/spec.md#11-kafka-mode).
      // The only assignor offered: a member of an older version (kafkajs's round robin) cannot join the
      // group, rather than split an identity's decisions over two instances.
      partitionAssigners: [coPartitionedAssigner(topics.decisions, this.repartition)],
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joins++;
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
    // kafkajs reports a batch it filtered whole (batchSize 0) only to instrumentation
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const b = e.payload;
      // firstOffset is null when the fetch brought only records below the offset asked for (a compressed
      // batch read from its middle): then nothing at or after it was consumed
      const first = b.firstOffset as string | null;
      if (b.batchSize === 0 && first !== null) this.onFilteredBatch(b.topic, b.partition, Number(first), Number(b.lastOffset), Number(b.highWatermark));
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

  private onLedgerEvent(ev: KillEvent, seq: number): void {
    if (seq > this.feed.lastSeq) this.feed.append(ev, seq);
    const change = this.fold.apply(ev);
    if (change === 'unchanged') return;
    // An automatic block this instance did not latch itself (its own are in the fold already): it
    // counts against the governor's rate of its minute here too.
    if (change === 'blocked' && ev.trigger === 'deny_rate' && ev.scope === undefined) this.governor?.noteExternal(Date.parse(ev.at));
    for (const st of this.partitionsState.values()) st.pipeline.evaluator.ledgerChanged(ev.agent_id, change);
    this.o.metrics.blocked.set(this.fold.blocked);
    if (change === 'unblocked') this.o.metrics.unblocks.inc();
  }

  /** A partition this instance no longer owns: its state and its lag series go (another instance reports it now). */
  private forget(p: number, st: PartitionState): void {
    this.partitionsState.delete(p);
    st.pipeline.close();
    this.o.metrics.lag.remove({ partition: String(p) });
    this.o.metrics.repartitionLag.remove({ partition: String(p) });
  }

  /** New assignment (`at`: when the group made it): keep what we still own, drop what moved away, restore what is new. */
  private async onAssignment(assigned: readonly number[], at: number): Promise<void> {
    const { topics, log, metrics, tripConfig } = this.o;
    const repartition = this.repartition;
    await this.ledgerRead; // the first assignment can come before the ledger is read (start())
    const now = new Set(assigned);
    for (const [p, st] of this.partitionsState) {
      if (!now.has(p)) {
        this.forget(p, st);
        // its last batch's transaction may still be on its way: let it commit (or be fenced by the new owner)
        await bounded(st.committing, 'transaction of a revoked partition', this.o.log, this.o.transactionTimeoutMs);
        await st.committer.disconnect();
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
    const committers = new Map(fresh.map((p) => [p, new TransactionalCommitter({
      kafka: this.o.kafka, groupId: this.o.groupId, transactionalId: `${this.o.groupId}.${topics.decisions}.${p}`, transactionTimeoutMs: this.o.transactionTimeoutMs,
    })]));
    await settledAll([...committers.values()].map((c) => c.connect()));
    log.info({ partitions: fresh }, 'assignment: reading the ledger to its end');
    await this.ledger!.catchUpNow();
    log.info({ partitions: fresh }, 'assignment: reading chain tips and finding restore offsets');
    const { plans, tips } = await planRestore({
      kafka: this.o.kafka, admin: this.admin!, groupId: this.o.groupId, decisions: topics.decisions, repartition, addenda: topics.addenda, partitions: fresh,
      reach: { ...tripConfig, maxFutureSkewMs: tripConfig.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS },
    });
    for (const a of tips) this.chains.restoreTip(a);
    for (const p of fresh) {
      const plan = plans.get(p)!;
      const d = plan.decisions;
      const f = plan.repartition;
      this.expiry.atAssignment(p, d.committed, d.low);
      const pipeline = new PartitionPipeline({
        partition: p, routing: this.routing!, tripConfig, fold: this.fold, governor: this.governor, decoder: this.o.decoder, chains: this.chains, signer: this.o.signer,
      });
      const input: InputState = { topic: topics.decisions, forwarded: false, liveFrom: d.liveFrom, restored: d.restoreFrom >= d.liveFrom, waiting: false, next: Math.min(d.restoreFrom, d.liveFrom) };
      const forwarded: InputState = { topic: repartition, forwarded: true, liveFrom: f.liveFrom, restored: f.restoreFrom >= f.liveFrom, waiting: false, next: Math.min(f.restoreFrom, f.liveFrom) };
      const restored = input.restored && forwarded.restored;
      if (restored) pipeline.markRestored();
      this.partitionsState.set(p, { pipeline, input, repartition: forwarded, committer: committers.get(p)!, assignedAt: at, restored, liveEvictionsSeen: 0, queued: [], committing: Promise.resolve(), draining: false });
      // throws if the consumer stopped: the assignment chain fails the processor
      if (!input.restored) this.consumer!.seek({ topic: topics.decisions, partition: p, offset: String(d.restoreFrom) });
      if (!forwarded.restored) this.consumer!.seek({ topic: repartition, partition: p, offset: String(f.restoreFrom) });
      // Lag from the moment the partition is ours (during the restore too), not only after its first batch.
      metrics.lag.set({ partition: String(p) }, Math.max(0, d.high - d.liveFrom));
      metrics.repartitionLag.set({ partition: String(p) }, Math.max(0, f.high - f.liveFrom));
      // Nothing to re-read: live now; the restore took what fencing and finding the offsets took.
      if (restored) metrics.restoreSeconds.observe((performance.now() - at) / 1000);
      log.info({ partition: p, live_from: d.liveFrom, restore_from: d.restoreFrom, repartition_live_from: f.liveFrom, repartition_restore_from: f.restoreFrom }, 'partition assigned');
    }
    resume();
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const isStale = (): boolean => payload.isStale() || !payload.isRunning();
    const { metrics } = this.o;
    const p = batch.partition;
    const st = this.partitionsState.get(p);
    if (st === undefined || this.stopping || isStale()) return; // not ours (yet), a seek is pending, or stopping
    const forwardedInput = batch.topic === this.repartition;
    const input = forwardedInput ? st.repartition : st.input;
    const other = forwardedInput ? st.input : st.repartition;
    const started = performance.now();
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
    if (n > 0) {
      // Records between the previous batch and this one that were never delivered: deleted by
      // retention, or transaction markers (the watch tells which). Only live ones are evidence lost.
      const first = Number(messages[0]!.offset);
      if (!forwardedInput && first > input.next) this.expiry.noteGap(p, Math.max(input.next, input.liveFrom), first);
      // through the batch's last offset, which counts the transaction markers and aborted records kafkajs consumed and did not deliver
      input.next = Math.max(input.next, Number(batch.lastOffset()) + 1);
    }
    const out = batchRecords();
    // Decoded whole, then evaluated in one go. Offsets grow through the batch, so the records re-read to
    // restore windows all come before the live ones.
    const counts = await st.pipeline.process({ forwarded: forwardedInput, messages, upTo, liveFrom: input.liveFrom, isStale, now: started }, out);
    // a seek or a stop came while a schema was fetched: nothing of the batch was evaluated
    if (counts === false) return;
    const { classes, last } = out;
    for (let c = 0; c < classes.length; c++) if (classes[c]! > 0) metrics.decisions.inc({ class: CLASS_LABEL[c as DecisionClass] }, classes[c]);
    if (counts.late > 0) metrics.late.inc(counts.late);
    if (counts.duplicates > 0) metrics.duplicates.inc(counts.duplicates);
    if (out.forwardedDecisions > 0) metrics.forwarded.inc(out.forwardedDecisions);
    for (const m of out.dlq) metrics.dlq.inc({ reason: dlqReason(m) });
    if (out.kills.length > 0) metrics.trips.inc(out.kills.length);
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
    // Committed through the batch's last offset: a transaction's marker (and an aborted transaction's
    // records) after its last decision are consumed too, or the group's offset would stay behind them
    // while the partition is idle (a lag that never clears). Not while the other input still restores:
    // the stream time committed with it would be a partly restored one.
    const through = other.restored ? Math.max(last, Number(batch.lastOffset())) : last;
    if (through < input.liveFrom) return; // restore only: nothing to commit
    // Committed after the partition's running transaction, while the next batches are fetched and
    // evaluated: fetching, evaluating and committing overlap instead of taking turns, and a fetch does not
    // wait for the slowest partition's transaction. Evaluating ahead of a commit is safe: if a transaction
    // fails, the processor stops and a restart restores the windows from what was committed; if it is
    // fenced, the partition and its queue are dropped.
    this.queueCommit(p, st, this.batchOutput(st, input, out, through, Number(batch.highWatermark), started));
    if (st.queued.length > MAX_QUEUED_BATCHES) await st.committing;
    await payload.heartbeat();
  }

  private batchOutput(st: PartitionState, input: InputState, records: BatchRecords, last: number, highWatermark: number, started: number): BatchOutput {
    return { topic: input.topic, records, last, highWatermark, started, streamTime: input.forwarded ? st.pipeline.forwardedStreamTime() : st.pipeline.clock.time };
  }

  /** Queue a batch for the partition's next transaction; start one if none runs. */
  private queueCommit(p: number, st: PartitionState, out: BatchOutput): void {
    st.queued.push(out);
    if (st.draining) return;
    st.draining = true;
    // commit() handles its own failures; anything it lets through still stops the processor, never goes unhandled
    st.committing = this.drain(p, st).catch((err: unknown) => this.fail(err));
  }

  /** Transactions one after another, each taking every batch queued when it starts, until none is left. */
  private async drain(p: number, st: PartitionState): Promise<void> {
    try {
      while (st.queued.length > 0) await this.commit(p, st, st.queued.splice(0));
    } finally {
      st.draining = false;
    }
  }

  /**
   * A fetch that brought a partition nothing but records kafkajs does not deliver (transaction markers,
   * records of aborted transactions) never reaches onBatch. When it follows on from what the input's
   * batches brought (nothing in between is skipped), the input has consumed it: it may complete a
   * restore, and once the partition is live its offset is committed past it, alone in a transaction,
   * when no other batch came within IDLE_COMMIT_MS (the next batch's transaction commits past it anyway:
   * the repartition input, whose every record is followed by its transaction's marker, would otherwise
   * make a transaction of each marker fetched on its own).
   */
  private onFilteredBatch(topic: string, p: number, firstOffset: number, lastOffset: number, highWatermark: number): void {
    const st = this.partitionsState.get(p);
    if (st === undefined || this.stopping) return;
    const forwardedInput = topic === this.repartition;
    const input = forwardedInput ? st.repartition : st.input;
    const other = forwardedInput ? st.input : st.repartition;
    if (firstOffset > input.next || lastOffset < input.next) return;
    input.next = lastOffset + 1;
    if (!input.restored && input.next >= input.liveFrom) this.inputRestored(p, st, input, other);
    if (!input.restored || !other.restored || lastOffset < input.liveFrom) return;
    const next = input.next;
    setTimeout(() => {
      if (this.stopping || this.partitionsState.get(p) !== st || input.next !== next) return;
      this.queueCommit(p, st, this.batchOutput(st, input, batchRecords(), lastOffset, highWatermark, performance.now()));
    }, IDLE_COMMIT_MS).unref();
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
   * Queued batches' outputs and the input offsets they reach in one transaction of the partition's
   * committer: their records in their order, each input's offset and stream time from its last batch.
   */
  private async commit(p: number, st: PartitionState, outs: readonly BatchOutput[]): Promise<void> {
    const retractAll = (): void => {
      for (const out of outs) this.retract(p, out.records);
    };
    // dropped meanwhile (fenced, revoked, or the processor failed): nothing of the batches may be committed
    if (this.partitionsState.get(p) !== st) {
      retractAll();
      return;
    }
    const { topics, metrics } = this.o;
    const all = <K extends 'kills' | 'addenda' | 'shadows' | 'dlq' | 'forwarded'>(k: K): BatchRecords[K] => (outs.length === 1 ? outs[0]!.records[k] : outs.flatMap((o) => o.records[k]));
    // per input, its last batch (batches of one input are queued in offset order)
    const lastOf = new Map(outs.map((o) => [o.topic, o]));
    try {
      await st.committer.commit({
        // Kill events and addenda go in the first produce request, with the first group of the sized outputs.
        outputs: [{ topic: topics.kills, messages: all('kills') }, { topic: topics.addenda, messages: all('addenda') }, { topic: topics.shadow, messages: all('shadows') }],
        // Decisions of identities owned elsewhere, to their owners' repartition partitions: in the
        // transaction of their input offset, so each is forwarded exactly once (docs/spec.md#11-kafka-mode).
        sized: [{ topic: topics.dlq, messages: all('dlq') }, { topic: this.repartition, messages: all('forwarded') }],
        inputs: [...lastOf.values()].map((o) => ({ topic: o.topic, partition: p, next: o.last + 1, streamTime: o.streamTime })),
      });
    } catch (err) {
      if (this.partitionsState.get(p) !== st) {
        // revoked while committing: the new owner restores from what is committed
        retractAll();
        return;
      }
      if (isFenced(err)) {
        // The partition has a new owner, which fenced us: nothing of these batches was committed, and the
        // new owner restores them. Forget the partition here (the batches queued behind them are
        // dropped, and retract their latches, in the next transaction's turn).
        this.o.log.info({ partition: p }, 'partition taken over by another instance (fenced); dropping it');
        this.forget(p, st);
        retractAll();
        this.expectRebalance(p);
        await st.committer.disconnect().catch(() => undefined);
        return;
      }
      // The evaluator already counted these batches (and maybe the next) and may have latched trips that were
      // not committed: the only safe state is the committed one, which a restart restores. Stop consuming
      // and let the process exit (throwing here would make kafkajs restart the consumer on a state it cannot trust).
      this.partitionsState.clear();
      retractAll();
      this.fail(err);
      return;
    }
    const done = performance.now();
    metrics.transactions.inc();
    for (const out of outs) {
      for (const h of out.records.held) this.reportHeld(h);
      metrics.batchSeconds.observe((done - out.started) / 1000);
    }
    for (const out of lastOf.values()) {
      (out.topic === this.repartition ? metrics.repartitionLag : metrics.lag).set({ partition: String(p) }, Math.max(0, out.highWatermark - 1 - out.last));
    }
    metrics.tracked.set([...this.partitionsState.values()].reduce((n, s) => n + s.pipeline.evaluator.trackedIdentities, 0));
    const evaluator = st.pipeline.evaluator;
    const evicted = evaluator.liveEvictions - st.liveEvictionsSeen;
    if (evicted > 0) {
      st.liveEvictionsSeen += evicted;
      metrics.liveEvictions.inc(evicted);
      this.o.log.warn({ partition: p, evicted, last: evaluator.lastLiveEvicted }, 'tracked-identity cap reached: live windows evicted (raise limits.max_tracked_identities)');
    }
    metrics.blocked.set(this.fold.blocked);
  }

  /**
   * A fenced partition has a new owner, which took it in a rebalance that this instance's consumer joins
   * within the rebalance timeout. When no rebalance comes, no instance took the partition over: its
   * transaction was aborted for running past kafka.transaction_timeout_ms, or another process uses its
   * transactional id. The group still assigns it here, and dropped it would stay unread: stop, so the
   * restart takes it up again from what was committed.
   */
  private expectRebalance(p: number): void {
    const joins = this.joins;
    const waitMs = this.rebalanceTimeoutMs + this.o.sessionTimeoutMs;
    setTimeout(() => {
      if (this.stopping || this.joins !== joins) return;
      this.fail(new Error(`partition ${p} was fenced but no rebalance followed within ${waitMs} ms (a transaction ran past kafka.transaction_timeout_ms, or another process uses the transactional id ${this.o.groupId}.${this.o.topics.decisions}.${p}); stopping so a restart takes the partition up again`));
    }, waitMs).unref();
  }

  /**
   * A batch evaluated but not committed: the blocks its trips latched into the fold (the instance's view
   * of the ledger, shared by its partitions) go. Left in place, they would stand for kill events that
   * were never written: when the partition came back to this instance, its restore would re-read the
   * tripping decisions as live and not trip again (docs/spec.md#11-kafka-mode). A latch the ledger
   * already confirmed stays; one whose kill event is committed but not yet read comes back when the
   * ledger follower reads it, and an assignment reads the ledger to its end before restoring.
   */
  private retract(p: number, r: BatchRecords): void {
    for (const latch of r.latches) {
      if (this.fold.retract(latch) === 'unchanged') continue;
      // its admission no longer counts against the governor's minute: the kill event written for it
      // later (here again, or by the partition's new owner, seen on the ledger) counts once
      this.governor?.withdraw(latch.entry.agent_id);
      this.o.log.info({ partition: p, agent_id: latch.entry.agent_id, epoch: latch.entry.epoch }, 'trip not committed (partition dropped): its block is withdrawn until a kill event is');
    }
    this.o.metrics.blocked.set(this.fold.blocked);
  }

  private reportHeld(h: ShadowEvent): void {
    this.o.metrics.governorHeld.inc({ reason: h.reason });
    if (h.reason === 'shadow_rule') this.o.log.info({ agent_id: h.agent_id, rule: h.rule, event_id: h.event_id }, 'shadow rule tripped (not enforced)');
    else this.o.log.warn({ agent_id: h.agent_id, reason: h.reason, event_id: h.event_id }, 'governor engaged: trip held, not blocked');
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
      ...[...this.partitionsState.values()].map((st) => bounded(st.committer.disconnect(), 'producer', log)),
      bounded(this.ledger?.stop(), 'ledger follower', log),
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
    await this.ledger!.catchUpNow({ strict: true });
  }

  /**
   * An identity's window on this instance: the owned partition that tracks it, else the partition its
   * key hashes to with the Java client's partitioner (kafkajs's default); null when that partition is
   * owned by another instance.
   */
  identityWindow(agentId: string): { partition: number; owned: boolean; window: WindowView | null } {
    for (const [p, st] of this.partitionsState) {
      if (st.pipeline.evaluator.tracks(agentId)) return { partition: p, owned: true, window: windowView(st.pipeline.evaluator, agentId, st.pipeline.clock.time) };
    }
    const n = Math.max(1, this.decisionsPartitions);
    const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
    const p = keyPartitioner({ topic: this.o.topics.decisions, partitionMetadata, message: { key: agentId, value: null } });
    const st = this.partitionsState.get(p);
    return { partition: p, owned: st !== undefined, window: st === undefined ? null : windowView(st.pipeline.evaluator, agentId, st.pipeline.clock.time) };
  }

  get instanceId(): string {
    return this.instance;
  }
}
