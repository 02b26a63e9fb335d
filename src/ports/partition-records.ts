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

/** Where a forwarded record was read: the decisions partition and offset, and that stream's time then. */
export interface ForwardedFrom {
  readonly group: string;
  readonly partition: number;
  readonly offset: number;
  readonly streamTime: number;
}

/** A decision read on one partition and forwarded to its owner's. */
export interface Forwarded {
  readonly record: InputRecord;
  /** the record decoded (valid, not refused as future): what is forwarded */
  readonly decision: Decision;
  readonly owner: number;
  /** its offset in the partition it was read on */
  readonly offset: number;
  /** that partition's stream time after it */
  readonly streamTime: number;
}

/**
 * A forwarded decision as its owner reads it, and where it was read: the decision as its source decoded
 * it, or (forwarded by an older version) the record as it was read there, to decode again.
 */
export type ForwardedRecord =
  | { readonly decision: Decision; readonly record?: undefined; readonly from: ForwardedFrom }
  | { readonly record: InputRecord; readonly decision?: undefined; readonly from: ForwardedFrom };

/** What a record of the repartition input holds. */
export type Unpacked =
  | { readonly kind: 'entries'; readonly entries: ForwardedRecord[] }
  /** not forwarded by this deployment (another consumer group sharing the topic, a record without its headers): not its to evaluate */
  | { readonly kind: 'foreign' }
  /** forwarded by this deployment, and unreadable: a bad record */
  | { readonly kind: 'invalid'; readonly message: string };

export interface PartitionRouting {
  /** the input the decisions are produced to: evidence and addenda chains are named after it */
  readonly decisionsTopic: string;
  /** the partition whose owner evaluates the identity's decisions (`handle`: its identity handle, if any) */
  ownerOf(agentId: string, handle: number | undefined): number;
  /** the records that carry decisions read on `partition` to their owners (written in the batch's transaction) */
  pack(partition: number, forwarded: readonly Forwarded[]): OutputRecord[];
  /** the forwarded decisions a record of the repartition input carries */
  unpack(record: InputRecord): Unpacked;
  /**
   * A bad record for the DLQ, said to come from `at` of the decisions input (by default the record's
   * own offset), or of the repartition input (`at.forwarded`).
   */
  deadLetter(record: InputRecord, at: { readonly partition: number; readonly offset?: string; readonly forwarded?: boolean }, reason: string, message: string): OutputRecord;
}
