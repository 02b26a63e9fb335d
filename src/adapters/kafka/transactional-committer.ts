/**
 * The transactional committer of one owned decisions partition p (docs/spec.md#11-kafka-mode): a
 * producer whose transactional id is derived from p, so that when p moves its new owner's producer fences
 * the old owner's, and a zombie can neither commit outputs nor offsets for p. Each batch of either of
 * p's inputs (decisions p, repartition p), or a few of them taken together, is one transaction: their
 * kill events, addenda, shadow events, DLQ records and forwarded decisions, and the input offsets they
 * reach, each with its input's stream time at that offset.
 */
import type { Kafka, Message, Producer, Transaction } from 'kafkajs';
import { retrying } from './retry.js';

/** Retries inside a transaction start short (see the producer's `retry`); unlimited, as kafkajs's default for idempotent producers. */
const TXN_RETRY = { initialRetryTime: 5, maxRetryTime: 2000, retries: Number.MAX_SAFE_INTEGER };
/** Our own retries of transactional calls kafkajs does not retry (sendOffsets, commit): 5 ms first, 16 attempts (about 15 s). */
const inTransaction = <T>(fn: () => Promise<T>): Promise<T> => retrying(fn, 16, 5);
/** Each send of a sized group is one record batch per partition: kept under the broker's message size limit. */
const SEND_BYTES = 512 * 1024;

const byteLength = (v: Buffer | string | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length);

/** A record's bytes as a record batch holds them (key, value, header names and values), less the few bytes of framing. */
export function recordBytes(m: Message): number {
  let n = byteLength(m.key) + byteLength(m.value);
  for (const [name, v] of Object.entries(m.headers ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) n += Buffer.byteLength(name) + byteLength(one) + 8;
  }
  return n + 32;
}

/**
 * Messages in groups of at most `limit` bytes (keys, values and headers): each send is one record batch
 * per partition, under the broker's size limit even when every message goes to one partition.
 */
export function bySize(messages: Message[], limit: number): Message[][] {
  const groups: Message[][] = [];
  let current: Message[] = [];
  let size = 0;
  for (const m of messages) {
    const n = recordBytes(m);
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

/**
 * The metadata committed with a partition's input offset: the partition's stream time then, which is
 * where a restart's restore starts from (restore.ts). Kafka keeps it with the offset, in the same
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

export interface TopicMessages {
  readonly topic: string;
  readonly messages: Message[];
}

/** An input offset committed in a transaction: the offset after the last record consumed, and the input's stream time there. */
export interface CommittedInput {
  readonly topic: string;
  readonly partition: number;
  readonly next: number;
  /** the input's stream time once its records up to `next` were evaluated (-Infinity: none yet), kept with the offset */
  readonly streamTime: number;
}

/** What one transaction writes. */
export interface Commit {
  /** small outputs (kill events, addenda, shadow events) */
  readonly outputs: readonly TopicMessages[];
  /** outputs of any size (DLQ records, forwarded decisions): sent in groups under the broker's size limit, the first with the small outputs */
  readonly sized: readonly TopicMessages[];
  /** the inputs the outputs came from (at most one entry per topic and partition) */
  readonly inputs: readonly CommittedInput[];
}

export interface TransactionalCommitterOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly transactionalId: string;
  readonly transactionTimeoutMs: number;
}

/**
 * A transaction's records as few produce requests as the size limit allows: the first carries the small
 * outputs and the first group of each sized topic, the next ones each sized topic's next groups. A topic's
 * records keep their order, and no partition gets more than one group of a request (one record batch).
 */
export function produceRequests(c: Pick<Commit, 'outputs' | 'sized'>): TopicMessages[][] {
  const requests: TopicMessages[][] = [c.outputs.filter((t) => t.messages.length > 0)];
  for (const t of c.sized) {
    bySize(t.messages, SEND_BYTES).forEach((messages, i) => (requests[i] ??= []).push({ topic: t.topic, messages }));
  }
  return requests.filter((r) => r.length > 0);
}

export class TransactionalCommitter {
  private readonly producer: Producer;

  constructor(private readonly o: TransactionalCommitterOptions) {
    this.producer = o.kafka.producer({
      transactionalId: o.transactionalId,
      idempotent: true, maxInFlightRequests: 1, transactionTimeout: o.transactionTimeoutMs, allowAutoTopicCreation: false,
      // A transaction's first request right after the previous commit is answered CONCURRENT_TRANSACTIONS
      // until the broker has written the commit markers (a few ms); kafkajs would wait 100 ms and more
      // before it sends an AddPartitionsToTxn again (the AddOffsetsToTxn that starts each transaction is
      // retried by inTransaction, 5 ms first).
      retry: TXN_RETRY,
    });
  }

  /** Connect and fence every older producer of the transactional id (aborting its open transaction). */
  connect(): Promise<void> {
    return connectFenced(this.producer);
  }

  /**
   * Outputs and the input offsets they reach in one transaction. Rejects (after aborting it) when it
   * cannot commit: `isFenced(err)` tells that another instance owns the partition now.
   */
  async commit(c: Commit): Promise<void> {
    let trx: Transaction | undefined;
    try {
      const txn = await this.producer.transaction();
      trx = txn;
      // The offsets first, the records last, right before the commit: from a transaction's first record
      // on a partition until its commit marker, read_committed readers of that partition (the owners of
      // forwarded decisions, the ledger's followers) read nothing past it, so that time is kept to the
      // produce and the commit. The order changes nothing else: offsets and records commit or abort together.
      // CONCURRENT_TRANSACTIONS (the coordinator still finishing a fenced predecessor's transaction) and
      // other retriable answers are retried; the transaction stays the same.
      // kafkajs's types leave out the metadata its TxnOffsetCommit request sends
      type Committed = { partition: number; offset: string; metadata: string | null };
      const topics = c.inputs.map((i) => ({ topic: i.topic, partitions: [{ partition: i.partition, offset: String(i.next), metadata: offsetMetadata(i.streamTime) } satisfies Committed] }));
      await inTransaction(() => txn.sendOffsets({ consumerGroupId: this.o.groupId, topics }));
      for (const topicMessages of produceRequests(c)) await inTransaction(() => txn.sendBatch({ topicMessages }));
      await inTransaction(() => txn.commit());
    } catch (err) {
      await trx?.abort().catch(() => undefined);
      throw err;
    }
  }

  disconnect(): Promise<void> {
    return this.producer.disconnect();
  }
}
