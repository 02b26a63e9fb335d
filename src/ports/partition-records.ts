/**
 * What the partition pipeline (src/pipeline/partition-pipeline.ts) needs from the partitioned log it reads
 * and writes: records as a log record carries them, and the rules that route a decision to its
 * identity's owner partition (docs/spec.md#11-kafka-mode). Kafka mode provides them
 * (src/adapters/kafka/repartition.ts, KafkaRouting).
 */
import type { Decision } from '../core/decision.js';

export type RecordHeaders = { [key: string]: Buffer | string | (Buffer | string)[] | undefined };

/** A record read from an input partition. */
export interface InputRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** milliseconds since the epoch, in decimal: when the log took the record (its arrival) */
  readonly timestamp: string;
  /** its position in the partition, in decimal */
  readonly offset: string;
  readonly headers?: RecordHeaders;
}

/** A record to write in the batch's transaction. */
export interface OutputRecord {
  readonly key: string | Buffer | null;
  readonly value: string | Buffer | null;
  readonly partition?: number;
  readonly timestamp?: string;
  readonly headers?: RecordHeaders;
}

/**
 * Packs the decisions one batch of a decisions partition forwards, as the batch is read, into records of
 * their owners' repartition partitions. One per input partition, reused batch after batch.
 */
export interface ForwardPacker {
  /**
   * `d` (decoded, not refused as future) read at `offset` of the packer's partition, with the record's
   * `timestamp` and that partition's stream time after it, for `owner`. Copied now: `d` may be reused.
   */
  add(owner: number, d: Decision, offset: number, timestamp: number, streamTime: number): void;
  /** decisions added since the last take */
  readonly count: number;
  /** The records that carry them (written in the batch's transaction); the packer starts empty again. */
  take(): OutputRecord[];
}

/** What a record of the repartition input holds (its entries are in the unpacker). */
export type Unpacked =
  | { readonly kind: 'entries' }
  /** not forwarded by this deployment (another consumer group sharing the topic, a record without its headers): not its to evaluate */
  | { readonly kind: 'foreign' }
  /** forwarded by this deployment, and unreadable: a bad record, none of its entries kept */
  | { readonly kind: 'invalid'; readonly message: string };

/**
 * Unpacks the records of one batch of the repartition input into entries, in order: each a forwarded
 * decision (as its source decoded it) or, forwarded by an older version, the record as its source read
 * it (to decode again), with where it was read. One per owned partition, reused batch after batch.
 */
export interface ForwardUnpacker {
  /** Adds the entries of `record` after those unpacked since `release`. */
  unpack(record: InputRecord): Unpacked;
  /** entries unpacked since `release` */
  readonly count: number;
  /** entry i's decision, valid until `release`; undefined when the entry is a record (`record(i)`) */
  decision(i: number): Decision | undefined;
  record(i: number): InputRecord | undefined;
  /** the decisions partition entry i was read on, its offset there, and that stream's time after it */
  partition(i: number): number;
  offset(i: number): number;
  streamTime(i: number): number;
  /** After the batch is evaluated: the entries let go of the records' bytes, and the next batch starts empty. */
  release(): void;
}

export interface PartitionRouting {
  /** the input the decisions are produced to: evidence and addenda chains are named after it */
  readonly decisionsTopic: string;
  /** the partition whose owner evaluates the identity's decisions (`handle`: its identity handle, if any) */
  ownerOf(agentId: string, handle: number | undefined): number;
  /** the packer of the decisions read on decisions partition `partition` for other owners */
  packer(partition: number): ForwardPacker;
  /** an unpacker of records of the repartition input */
  unpacker(): ForwardUnpacker;
  /**
   * A bad record for the DLQ, said to come from `at` of the decisions input (by default the record's
   * own offset), or of the repartition input (`at.forwarded`).
   */
  deadLetter(record: InputRecord, at: { readonly partition: number; readonly offset?: string; readonly forwarded?: boolean }, reason: string, message: string): OutputRecord;
}
