/**
 * Partition ownership (docs/spec.md#11-kafka-mode, "Partitioning does not decide trips"): each identity
 * has an owner partition, murmur2(agent_id) mod N as Kafka's Java client (and kafkajs's default
 * partitioner) computes it. A decision read on another partition is forwarded to partition
 * owner(agent_id) of the repartition topic, in the transaction of its input offset, and the owner
 * evaluates it in the identity's one window. This file holds the pieces: the hash, the forwarded
 * record's headers, and the group assignor that gives each member the same partition numbers of the
 * decisions and the repartition topic.
 */
import kafkajs from 'kafkajs';
import type { PartitionAssigner } from 'kafkajs';
import type { ForwardedFrom, InputRecord, OutputRecord, PartitionRouting, RecordHeaders } from '../../ports/partition-records.js';
import { dlqRecord } from './dlq.js';

// kafkajs is CommonJS; AssignerProtocol is not among its ESM named exports.
const { AssignerProtocol } = kafkajs;

/** The repartition topic of a deployment: `kafka.topics.repartition`, by default `<decisions>.repartition`. */
export function repartitionTopic(topics: { readonly decisions: string; readonly repartition?: string | undefined }): string {
  return topics.repartition ?? `${topics.decisions}.repartition`;
}

const M = 0x5bd1e995;
const SEED = 0x9747b28c;

/** Bytes of ASCII keys, reused (a SPIFFE ID is at most 2048 bytes). */
let scratch = new Uint8Array(2048);

/**
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) of a string's UTF-8 bytes, as a signed
 * 32-bit integer. 32-bit arithmetic with Math.imul gives the Java int results exactly. SPIFFE IDs are
 * ASCII (docs/spec.md#spiffe-id-grammar): their characters are their bytes, copied to a reused array.
 */
export function murmur2(key: string): number {
  const length = key.length;
  if (length > scratch.length) scratch = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const c = key.charCodeAt(i);
    if (c > 0x7f) {
      const utf8 = Buffer.from(key, 'utf8');
      return murmur2Bytes(utf8, utf8.length);
    }
    scratch[i] = c;
  }
  return murmur2Bytes(scratch, length);
}

function murmur2Bytes(data: Uint8Array, length: number): number {
  let h = (SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[tail]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** owner(agent_id) = (murmur2(agent_id) & 0x7fffffff) mod N: the partition the Java client's default partitioner picks for the key. */
export function ownerPartition(agentId: string, partitions: number): number {
  return (murmur2(agentId) & 0x7fffffff) % partitions;
}

const CACHE_BITS = 16;
const CACHE_MASK = (1 << CACHE_BITS) - 1;

/**
 * owner() per identity handle (Decision.identity), in a direct-mapped table: most decisions come from
 * identities seen a moment ago, and then the owner costs two array reads instead of a hash of the ID
 * (the murmur2 path must not get slower, docs/spec.md#11-kafka-mode).
 */
class OwnerCache {
  private readonly handles = new Uint32Array(1 << CACHE_BITS);
  private readonly owners = new Int32Array(1 << CACHE_BITS);

  constructor(private readonly partitions: number) {}

  ownerOf(agentId: string, handle: number | undefined): number {
    if (handle === undefined || handle === 0) return ownerPartition(agentId, this.partitions);
    const i = handle & CACHE_MASK;
    if (this.handles[i] === handle) return this.owners[i]!;
    const owner = ownerPartition(agentId, this.partitions);
    this.handles[i] = handle;
    this.owners[i] = owner;
    return owner;
  }
}

/**
 * Headers a forwarded record carries besides its original ones: where it was read, and the stream time
 * of its source partition once it was read there (docs/spec.md#11-kafka-mode). The owner judges it
 * against that stream time, so lateness and the window's evaluation time are those of its source
 * stream, as `killswitch replay` of the source partition's records computes them.
 */
export const FORWARD_HEADERS = {
  topic: 'killswitch.source.topic',
  partition: 'killswitch.source.partition',
  offset: 'killswitch.source.offset',
  timestamp: 'killswitch.source.timestamp',
  streamTime: 'killswitch.source.stream_time_ms',
  /** the consumer group that forwarded it: a deployment evaluates only its own forwarded records */
  group: 'killswitch.source.group',
} as const;

function header(headers: RecordHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  return one === undefined ? undefined : typeof one === 'string' ? one : one.toString('utf8');
}

function headerNumber(headers: RecordHeaders | undefined, name: string): number {
  const s = header(headers, name);
  return s === undefined || s.length === 0 ? NaN : Number(s);
}

/**
 * The partition pipeline's routing in Kafka mode (src/ports/partition-records.ts): owners by murmur2,
 * forwarded records with the FORWARD_HEADERS, bad records with the DLQ headers.
 */
export class KafkaRouting implements PartitionRouting {
  private readonly owners: OwnerCache;

  constructor(private readonly o: { readonly decisionsTopic: string; readonly partitions: number; readonly groupId: string }) {
    this.owners = new OwnerCache(o.partitions);
  }

  get decisionsTopic(): string {
    return this.o.decisionsTopic;
  }

  ownerOf(agentId: string, handle: number | undefined): number {
    return this.owners.ownerOf(agentId, handle);
  }

  /** The original value bytes and headers, key = agent_id, to the owner's repartition partition. */
  forward(m: InputRecord, o: { readonly agentId: string; readonly owner: number; readonly partition: number; readonly offset: number; readonly streamTime: number }): OutputRecord {
    const headers: RecordHeaders = {
      ...(m.headers ?? {}),
      [FORWARD_HEADERS.topic]: this.o.decisionsTopic,
      [FORWARD_HEADERS.partition]: String(o.partition),
      [FORWARD_HEADERS.offset]: String(o.offset),
      [FORWARD_HEADERS.timestamp]: m.timestamp,
      [FORWARD_HEADERS.streamTime]: String(o.streamTime),
      [FORWARD_HEADERS.group]: this.o.groupId,
    };
    // The original timestamp: the repartition partition's restore finds records by it, as the decisions'.
    return { key: o.agentId, value: m.value, partition: o.owner, timestamp: m.timestamp, headers };
  }

  /**
   * Where a record of the repartition topic was read, from its headers; null when they are missing or
   * not numbers, or when another consumer group sharing the topic forwarded it (or it was produced there by hand).
   */
  forwardedFrom(m: InputRecord): ForwardedFrom | null {
    const partition = headerNumber(m.headers, FORWARD_HEADERS.partition);
    const offset = headerNumber(m.headers, FORWARD_HEADERS.offset);
    const streamTime = headerNumber(m.headers, FORWARD_HEADERS.streamTime);
    const group = header(m.headers, FORWARD_HEADERS.group);
    if (group !== this.o.groupId || !Number.isInteger(partition) || partition < 0 || partition >= this.o.partitions ||
      !Number.isSafeInteger(offset) || offset < 0 || !Number.isFinite(streamTime)) return null;
    return { group, partition, offset, streamTime };
  }

  deadLetter(m: InputRecord, at: { readonly partition: number; readonly offset?: string }, reason: string, message: string): OutputRecord {
    return dlqRecord(m, { topic: this.o.decisionsTopic, ...at }, reason, message);
  }
}

export const CO_PARTITIONED_ASSIGNER = 'KillswitchCoPartitioned';

/**
 * The group's assignor: partition i of the decisions topic and partition i of the repartition topic go
 * to the same member, spread round robin over the members sorted by id. Every member of the group must
 * use it: kafkajs's default assignor spreads the two topics' partitions independently, so an identity's
 * forwarded decisions would be evaluated by an instance that does not hold its window.
 */
export function coPartitionedAssigner(decisions: string, repartition: string): PartitionAssigner {
  return ({ cluster }) => ({
    name: CO_PARTITIONED_ASSIGNER,
    version: 1,
    assign({ members }) {
      const n = cluster.findTopicPartitionMetadata(decisions).length;
      const sorted = members.map((m) => m.memberId).sort();
      const assignment = new Map<string, number[]>(sorted.map((id) => [id, []]));
      for (let p = 0; p < n; p++) assignment.get(sorted[p % sorted.length]!)!.push(p);
      return Promise.resolve(sorted.map((memberId) => {
        const parts = assignment.get(memberId)!;
        return {
          memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: 1, assignment: { [decisions]: parts, [repartition]: [...parts] }, userData: Buffer.alloc(0),
          }),
        };
      }));
    },
    protocol({ topics }) {
      return { name: CO_PARTITIONED_ASSIGNER, metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) };
    },
  });
}
