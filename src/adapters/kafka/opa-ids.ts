/**
 * The OPA decision ids the instances have taken, in Kafka mode (docs/opa.md, "Retries and
 * de-duplication"). An instance's OPA receiver produces the `decision_id`s of a batch to the internal
 * opa-ids topic in the same transaction as the batch's decisions, and every instance reads that topic
 * whole and keeps following it. So a batch OPA sends again, to the instance that took it after that
 * instance crashed or restarted, or to another instance, finds its ids remembered: they are on the
 * topic exactly when the decisions are.
 *
 * Records: no key, the value a JSON array of the ids as the receiver remembers them (`memoryKey`: at
 * most 128 characters, a longer id by its digest), a batch's ids in records of at most
 * MAX_RECORD_BYTES. The topic is bounded in bytes (`retention.bytes`, no time limit), so reading it at
 * start costs at most that; it holds at least the last `opa.dedup_size` ids of up to ID_BYTES each
 * once written (a UUID takes 39).
 */
import type { Kafka, Message } from 'kafkajs';
import type { Logger } from '../../ports/logger.js';
import type { SharedDecisionIds } from '../../ports/operator-service.js';
import { PartitionReader } from './partition-reader.js';
import { retrying } from './retry.js';

/** The opa-ids topic of a deployment: `kafka.topics.opa_ids`, by default `<decisions>.opa-ids`. */
export function opaIdsTopic(topics: { readonly decisions: string; readonly opa_ids?: string | undefined }): string {
  return topics.opa_ids ?? `${topics.decisions}.opa-ids`;
}

const MAX_RECORD_BYTES = 256 * 1024;
/** bytes per id the topic is sized for: ids of up to 61 bytes once quoted (a UUID, 36 characters, takes 39) */
export const ID_BYTES = 64;
const MIN_RETENTION_BYTES = 16 << 20;
const MIN_SEGMENT_BYTES = 1 << 20;

/**
 * `retention.bytes` and `segment.bytes` of an opa-ids topic that keeps at least `dedupSize` ids of up
 * to ID_BYTES (and never less than 16 MiB: about 430,000 UUIDs), with no time limit. Every instance
 * reads it whole at start: sized for the ids OPA writes (UUIDs), not for the longest an id can be.
 */
export function opaIdsTopicConfig(dedupSize: number): Record<string, string> {
  const retention = Math.max(MIN_RETENTION_BYTES, dedupSize * ID_BYTES);
  // retention deletes whole segments, and only closed ones: the topic holds up to a segment more
  const segment = Math.max(MIN_SEGMENT_BYTES, Math.min(Math.floor(retention / 4), 1 << 30));
  return { 'cleanup.policy': 'delete', 'retention.bytes': String(retention), 'retention.ms': '-1', 'segment.bytes': String(segment) };
}

/** A batch's ids as records of the opa-ids topic (partition 0), each at most MAX_RECORD_BYTES. */
export function opaIdsMessages(ids: readonly string[]): Message[] {
  const messages: Message[] = [];
  let part: string[] = [];
  let bytes = 2;
  for (const id of ids) {
    const size = Buffer.byteLength(JSON.stringify(id)) + 1;
    if (part.length > 0 && bytes + size > MAX_RECORD_BYTES) {
      messages.push({ value: JSON.stringify(part), partition: 0 });
      part = [];
      bytes = 2;
    }
    part.push(id);
    bytes += size;
  }
  if (part.length > 0) messages.push({ value: JSON.stringify(part), partition: 0 });
  return messages;
}

/** The ids of one record, or null when it is not a JSON array of strings (not written by us). */
export function readOpaIds(value: Buffer | null): string[] | null {
  if (value === null) return null;
  try {
    const v = JSON.parse(value.toString('utf8')) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : null;
  } catch {
    return null;
  }
}

export interface OpaIdsFollowerOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  /** the follower's consumer group is named from this */
  readonly groupPrefix: string;
  readonly log: Logger;
}

/**
 * Reads the opa-ids topic from its start and follows it; started by the first `catchUp`, which (like
 * every later one) fails after a few seconds when the reader has not reached the topic's last committed
 * record (a long topic at start, a broker that does not answer), while the reader goes on. kafkajs
 * gives the last stable offset as the end: records committed after a transaction that is still open
 * (a crashed instance's, until it times out) are not waited for (docs/opa.md).
 */
export class OpaIdsFollower implements SharedDecisionIds {
  private listener: (ids: readonly string[]) => void = () => undefined;
  private reader: PartitionReader | undefined;
  private starting: Promise<PartitionReader> | undefined;
  private stopped = false;

  constructor(private readonly o: OpaIdsFollowerOptions) {}

  onIds(listener: (ids: readonly string[]) => void): void {
    this.listener = listener;
  }

  async catchUp(): Promise<void> {
    if (this.stopped) throw new Error('the opa-ids follower is stopped');
    const starting = (this.starting ??= this.start());
    let reader: PartitionReader;
    try {
      reader = await starting;
    } catch (err) {
      if (this.starting === starting) this.starting = undefined; // tried again at the next batch
      throw err;
    }
    await reader.catchUpNow({ strict: true });
  }

  private async start(): Promise<PartitionReader> {
    const { kafka, topic, log } = this.o;
    const admin = kafka.admin();
    await admin.connect();
    let partitions: number[];
    try {
      const meta = await retrying(() => admin.fetchTopicMetadata({ topics: [topic] }));
      partitions = meta.topics[0]?.partitions.map((p) => p.partitionId) ?? [];
    } finally {
      await admin.disconnect();
    }
    let dead = false;
    const reader = new PartitionReader({
      kafka, topic, groupPrefix: this.o.groupPrefix, follow: true, strict: true,
      from: partitions.map((partition) => ({ partition, offset: 0 })),
      onMessage: (partition, m) => {
        const ids = readOpaIds(m.value);
        if (ids === null) log.warn({ topic, partition, offset: m.offset }, 'opa-ids: a record that is not a JSON array of decision ids was skipped');
        else this.listener(ids);
      },
      // kafkajs gave up on its consumer: the next batch starts a new reader (from the start; the memory
      // only gains ids it has already)
      onStopped: (err) => {
        log.error({ topic, err: err.message }, 'opa-ids: the reader stopped; starting it again at the next OPA batch');
        dead = true;
        if (this.reader === reader) {
          this.reader = undefined;
          this.starting = undefined;
          void reader.stop().catch(() => undefined);
        }
      },
    });
    // not waiting for it to be read: catchUp does, with a deadline, while the reader goes on
    try {
      await reader.start();
    } catch (err) {
      await reader.stop().catch(() => undefined);
      throw err;
    }
    if (this.stopped || dead) {
      await reader.stop();
      throw new Error(dead ? `the reader of ${topic} stopped while starting` : 'the opa-ids follower is stopped');
    }
    this.reader = reader;
    return reader;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting?.catch(() => undefined);
    await this.reader?.stop();
    this.reader = undefined;
  }
}
