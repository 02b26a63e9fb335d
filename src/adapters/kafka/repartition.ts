/**
 * Partition ownership (docs/spec.md#11-kafka-mode, "Partitioning does not decide trips"): each identity
 * has an owner partition, murmur2(agent_id) mod N as Kafka's Java client (and kafkajs's default
 * partitioner) computes it. A decision read on another partition is forwarded to partition
 * owner(agent_id) of the repartition topic, in the transaction of its input offset, and the owner
 * evaluates it in the identity's one window. This file holds the pieces: the hash, the forwarded
 * record's headers, and the group assignor that gives each member the same partition numbers of the
 * decisions and the repartition topic.
 */
import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib';
import kafkajs from './kafkajs.js';
import type { PartitionAssigner } from 'kafkajs';
import type { ForwardPacker, ForwardUnpacker, InputRecord, OutputRecord, PartitionRouting, RecordHeaders, Unpacked } from '../../ports/partition-records.js';
import { DecisionClass } from '../../core/decision-class.js';
import type { Decision } from '../../core/decision.js';
import { NO_HANDLE } from '../../core/identity-handle.js';
import { ReusableDecision } from '../serde/fast-decision.js';
import { KnownIds } from '../serde/known-ids.js';
import { dlqRecord } from './dlq.js';

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
 * A record of the repartition topic carries the decisions one input batch of decisions partition q
 * forwards to one owner (docs/spec.md#11-kafka-mode): one record for many decisions, since encoding a
 * Kafka record with its headers costs kafkajs about as much CPU as evaluating a decision a dozen
 * times. Its headers say which deployment forwarded it from where; its value holds, per decision, what
 * its owner evaluates (the decision as decoded at q), its offset and timestamp in q, and the stream time
 * of q after it, which its owner judges it against, so its lateness and the window's evaluation time are
 * those of its source stream, as `killswitch replay` of q's records computes them.
 */
export const FORWARD_HEADERS = {
  /** the value's layout: FORWARD_FORMAT */
  format: 'killswitch.forwarded',
  topic: 'killswitch.source.topic',
  partition: 'killswitch.source.partition',
  /** the consumer group that forwarded it: a deployment evaluates only its own forwarded records */
  group: 'killswitch.source.group',
} as const;

/**
 * Format `v3` (what this version writes): Brotli (quality 1) of entries one after another, each, in
 * little-endian: [offset f64][timestamp f64][stream time f64][event time f64][class u8], then the
 * decision id, the agent id and the session id, each [UTF-8 length u32][bytes] (0xffffffff: no session
 * id). The decision travels decoded: its owner neither parses it again nor asks the registry, and the
 * entry is smaller than the record it came from. A forwarded decision is produced to the broker a
 * second time and fetched back, and kafkajs's producer spends about 10 ns of CPU per byte (copies,
 * zero-filled buffers, a CRC-32C in JavaScript): compressing costs less than the bytes it saves
 * (benchmarks/README.md, Kafka pipeline, all forwarded).
 *
 * Read, not written (records an older version left on the topic): `v2` and `v1`, the entries [key
 * length u32][key][value length u32][value][offset f64][timestamp f64][stream time f64] (0xffffffff: a
 * null key or value), Brotli-compressed (`v2`) or as they are (`v1`), whose records are decoded again.
 */
export const FORWARD_FORMAT = 'v3';
const FORMAT_RECORDS = 'v2';
const FORMAT_RECORDS_PLAIN = 'v1';
const NULL_LENGTH = 0xffffffff;
const DECISION_ENTRY_FIXED = 8 * 4 + 1 + 4 * 3;
/** Entries per repartition record at most, before compression (one entry may exceed it alone). */
const MAX_FORWARD_BYTES = 256 * 1024;
/**
 * What a value may inflate to at most: more than any record this version writes (256 KiB, or one
 * entry of a value up to the broker's message size), so only a damaged or foreign value reaches it.
 */
const MAX_INFLATED_BYTES = 8 << 20;
const BROTLI_PARAMS = { params: { [zlib.BROTLI_PARAM_QUALITY]: 1, [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_GENERIC } };
const MAX_CLASS = DecisionClass.AdvisoryDeny;

function header(headers: RecordHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  return one === undefined ? undefined : typeof one === 'string' ? one : one.toString('utf8');
}

/**
 * The partition pipeline's routing in Kafka mode (src/ports/partition-records.ts): owners by murmur2,
 * forwarded decisions packed per owner into records of the repartition topic, bad records with the DLQ
 * headers.
 */
export class KafkaRouting implements PartitionRouting {
  private readonly owners: OwnerCache;
  /**
   * The SPIFFE IDs forwarded decisions carried, validated, and their last session ids: an owner neither
   * makes nor validates a string per decision. Shared by the instance's unpackers (unpacking is synchronous).
   */
  readonly known = new KnownIds();

  constructor(private readonly o: { readonly decisionsTopic: string; readonly repartitionTopic: string; readonly partitions: number; readonly groupId: string }) {
    this.owners = new OwnerCache(o.partitions);
  }

  get decisionsTopic(): string {
    return this.o.decisionsTopic;
  }

  get groupId(): string {
    return this.o.groupId;
  }

  get partitions(): number {
    return this.o.partitions;
  }

  ownerOf(agentId: string, handle: number | undefined): number {
    return this.owners.ownerOf(agentId, handle);
  }

  packer(partition: number): ForwardPacker {
    return new RepartitionPacker({
      [FORWARD_HEADERS.format]: FORWARD_FORMAT,
      [FORWARD_HEADERS.topic]: this.o.decisionsTopic,
      [FORWARD_HEADERS.partition]: String(partition),
      [FORWARD_HEADERS.group]: this.o.groupId,
    });
  }

  unpacker(): ForwardUnpacker {
    return new RepartitionUnpacker(this);
  }

  deadLetter(m: InputRecord, at: { readonly partition: number; readonly offset?: string; readonly forwarded?: boolean }, reason: string, message: string): OutputRecord {
    const topic = at.forwarded === true ? this.o.repartitionTopic : this.o.decisionsTopic;
    return dlqRecord(m, { topic, partition: at.partition, ...(at.offset === undefined ? {} : { offset: at.offset }) }, reason, message);
  }
}

/** The entries being written for one owner: a buffer that grows, and their earliest record timestamp. */
interface OwnerEntries {
  buf: Buffer;
  at: number;
  earliest: number;
}

const FIRST_BUFFER_BYTES = 16 * 1024;

/**
 * The decisions a batch forwards, written as `v3` entries as they are read, one buffer per owner; a
 * buffer reaching MAX_FORWARD_BYTES becomes a record. A decision the fast decoder made has its id
 * copied from the record's bytes, never made a string.
 */
class RepartitionPacker implements ForwardPacker {
  count = 0;
  private owners: (OwnerEntries | undefined)[] = [];
  private records: OutputRecord[] = [];

  constructor(private readonly headers: RecordHeaders) {}

  add(owner: number, d: Decision, offset: number, timestamp: number, streamTime: number): void {
    let o = this.owners[owner];
    if (o === undefined) {
      o = { buf: Buffer.allocUnsafe(FIRST_BUFFER_BYTES), at: 0, earliest: Infinity };
      this.owners[owner] = o;
    }
    const reusable = d instanceof ReusableDecision;
    const decisionId = reusable ? undefined : d.decisionId;
    const agentId = d.agentId!;
    const sessionId = d.sessionId;
    // at most the entry's bytes (UTF-8 takes at most 3 bytes per UTF-16 unit)
    const bound = DECISION_ENTRY_FIXED + (reusable ? d.decisionIdBytes : 3 * decisionId!.length) + 3 * (agentId.length + (sessionId?.length ?? 0));
    if (o.at > 0 && o.at + bound > MAX_FORWARD_BYTES) this.cut(owner, o);
    if (o.at + bound > o.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * o.buf.length, o.at + bound));
      o.buf.copy(grown, 0, 0, o.at);
      o.buf = grown;
    }
    const buf = o.buf;
    let at = buf.writeDoubleLE(offset, o.at);
    at = buf.writeDoubleLE(timestamp, at);
    at = buf.writeDoubleLE(streamTime, at);
    at = buf.writeDoubleLE(d.timeMs, at);
    buf[at++] = d.cls;
    const idBytes = reusable ? d.copyDecisionId(buf, at + 4) : buf.write(decisionId!, at + 4, 'utf8');
    buf.writeUInt32LE(idBytes, at);
    at += 4 + idBytes;
    at = putText(buf, at, agentId);
    o.at = sessionId === undefined ? buf.writeUInt32LE(NULL_LENGTH, at) : putText(buf, at, sessionId);
    if (timestamp < o.earliest) o.earliest = timestamp;
    this.count++;
  }

  take(): OutputRecord[] {
    this.owners.forEach((o, owner) => {
      if (o !== undefined && o.at > 0) this.cut(owner, o);
    });
    const records = this.records;
    // the buffers go with the batch: an instance owning many partitions keeps none between batches
    this.owners = [];
    this.records = [];
    this.count = 0;
    return records;
  }

  /** One repartition record for what `o` holds, stamped with their earliest timestamp (a restore finds records by it). */
  private cut(owner: number, o: OwnerEntries): void {
    this.records.push({ key: null, value: brotliCompressSync(o.buf.subarray(0, o.at), BROTLI_PARAMS), partition: owner, timestamp: String(o.earliest), headers: this.headers });
    o.at = 0;
    o.earliest = Infinity;
  }
}

function putText(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at + 4, 'utf8');
  buf.writeUInt32LE(n, at);
  return at + 4 + n;
}

/**
 * The entries of a batch's repartition records, in columns. A `v3` entry becomes a ReusableDecision of
 * the unpacker's pool whose decision id stays in the inflated bytes until asked for; its SPIFFE ID is
 * validated once per identity (KafkaRouting.known).
 */
class RepartitionUnpacker implements ForwardUnpacker {
  count = 0;
  private readonly pool: ReusableDecision[] = [];
  private readonly decisions: (Decision | undefined)[] = [];
  private readonly records: (InputRecord | undefined)[] = [];
  private partitions = new Int32Array(1024);
  private offsets = new Float64Array(1024);
  private streamTimes = new Float64Array(1024);

  constructor(private readonly routing: KafkaRouting) {}

  decision(i: number): Decision | undefined {
    return this.decisions[i];
  }

  record(i: number): InputRecord | undefined {
    return this.records[i];
  }

  partition(i: number): number {
    return this.partitions[i]!;
  }

  offset(i: number): number {
    return this.offsets[i]!;
  }

  streamTime(i: number): number {
    return this.streamTimes[i]!;
  }

  release(): void {
    const n = Math.min(this.count, this.pool.length);
    for (let i = 0; i < n; i++) this.pool[i]!.release();
    // the records of older formats go too
    this.records.length = 0;
    this.count = 0;
  }

  /**
   * `foreign` when this deployment did not forward it (another consumer group sharing the topic, a
   * record produced there by hand without the headers); `invalid` when it did and the value is not whole
   * entries of a known format, or holds a decision its source could not have forwarded
   * (docs/spec.md#8-bad-records-and-the-dlq): then none of its entries are kept.
   */
  unpack(m: InputRecord): Unpacked {
    const { groupId, partitions } = this.routing;
    if (header(m.headers, FORWARD_HEADERS.group) !== groupId) return FOREIGN;
    const partition = Number(header(m.headers, FORWARD_HEADERS.partition));
    if (!Number.isInteger(partition) || partition < 0 || partition >= partitions) return invalid(`source partition header ${JSON.stringify(header(m.headers, FORWARD_HEADERS.partition) ?? null)} is not one of the ${partitions} decisions partitions`);
    const format = header(m.headers, FORWARD_HEADERS.format);
    if (format === undefined) return this.unpackOne(m, partition);
    if (m.value === null) return invalid('no value');
    if (format !== FORWARD_FORMAT && format !== FORMAT_RECORDS && format !== FORMAT_RECORDS_PLAIN) return invalid(`unknown format ${JSON.stringify(format)}`);
    const v = format === FORMAT_RECORDS_PLAIN ? m.value : inflate(m.value);
    if (v === null) return invalid(`a ${format} value that is not Brotli or inflates to more than ${MAX_INFLATED_BYTES} bytes`);
    const before = this.count;
    if (format === FORWARD_FORMAT ? this.decisionEntries(v, partition) : this.recordEntries(v, partition)) return ENTRIES;
    // none of a bad record's entries are evaluated
    for (let i = before; i < this.count; i++) this.pool[i]?.release();
    this.count = before;
    return invalid(`its ${format} entries are not whole, or one holds a decision no source forwards`);
  }

  private push(d: Decision | undefined, r: InputRecord | undefined, partition: number, offset: number, streamTime: number): void {
    const i = this.count++;
    if (i === this.offsets.length) {
      const grow = <T extends Int32Array | Float64Array>(a: T, b: T): T => {
        b.set(a);
        return b;
      };
      this.partitions = grow(this.partitions, new Int32Array(2 * i));
      this.offsets = grow(this.offsets, new Float64Array(2 * i));
      this.streamTimes = grow(this.streamTimes, new Float64Array(2 * i));
    }
    this.decisions[i] = d;
    this.records[i] = r;
    this.partitions[i] = partition;
    this.offsets[i] = offset;
    this.streamTimes[i] = streamTime;
  }

  /** `v3` entries; false at the first that is not whole or not a decision its source could have forwarded. */
  private decisionEntries(v: Buffer, partition: number): boolean {
    const view = new DataView(v.buffer, v.byteOffset, v.length);
    const known = this.routing.known;
    const end = v.length;
    let at = 0;
    while (at < end) {
      if (at + DECISION_ENTRY_FIXED > end) return false;
      const offset = view.getFloat64(at, true);
      const timestamp = view.getFloat64(at + 8, true);
      const streamTime = view.getFloat64(at + 16, true);
      const timeMs = view.getFloat64(at + 24, true);
      const cls = v[at + 32]!;
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isFinite(timestamp) || !Number.isFinite(streamTime) || !Number.isFinite(timeMs) || cls > MAX_CLASS) return false;
      at += 33;
      // the decision id: 1 to 128 characters as the schema counts them (no more characters than bytes)
      const idLength = view.getUint32(at, true);
      const idStart = at + 4;
      at = idStart + idLength;
      if (idLength === 0 || idLength === NULL_LENGTH || at + 4 > end) return false;
      if (idLength > 128 && !decisionIdFits(v.toString('utf8', idStart, at))) return false;
      // the SPIFFE ID: what the source's decoder let through (valid, so in its canonical spelling)
      const agentLength = view.getUint32(at, true);
      const agentStart = at + 4;
      at = agentStart + agentLength;
      if (agentLength === NULL_LENGTH || at + 4 > end) return false;
      if (!known.valid(view, v, 0, agentStart, at)) return false;
      const agentId = known.id;
      const handle = known.handle;
      const entry = known.entry;
      const sessionLength = view.getUint32(at, true);
      at += 4;
      let sessionId: string | undefined;
      if (sessionLength !== NULL_LENGTH) {
        if (at + sessionLength > end) return false;
        sessionId = known.session(v, at, at + sessionLength, entry);
        at += sessionLength;
      }
      let d = this.pool[this.count];
      if (d === undefined) {
        d = new ReusableDecision();
        this.pool.push(d);
      }
      d.agentId = agentId;
      d.cls = cls as DecisionClass;
      d.timeMs = timeMs;
      d.sessionId = sessionId;
      d.identity = handle === NO_HANDLE ? undefined : handle;
      d.setDecisionId(v, idStart, idStart + idLength, true);
      this.push(d, undefined, partition, offset, streamTime);
    }
    return true;
  }

  /** `v1` and `v2` entries (the records as read at their source); false at the first that is not whole. */
  private recordEntries(v: Buffer, partition: number): boolean {
    let at = 0;
    const bytes = (): Buffer | null | undefined => {
      if (at + 4 > v.length) return undefined;
      const n = v.readUInt32LE(at);
      at += 4;
      if (n === NULL_LENGTH) return null;
      if (at + n > v.length) return undefined;
      at += n;
      return v.subarray(at - n, at);
    };
    while (at < v.length) {
      const key = bytes();
      const value = key === undefined ? undefined : bytes();
      if (key === undefined || value === undefined || at + 24 > v.length) return false;
      const offset = v.readDoubleLE(at);
      const timestamp = v.readDoubleLE(at + 8);
      const streamTime = v.readDoubleLE(at + 16);
      at += 24;
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isFinite(timestamp) || !Number.isFinite(streamTime)) return false;
      this.push(undefined, { key, value, timestamp: String(timestamp), offset: String(offset) }, partition, offset, streamTime);
    }
    return true;
  }

  /**
   * A record forwarded by the version before formats (one decision per record, its source in the
   * headers `killswitch.source.offset` and `killswitch.source.stream_time_ms`), still on the topic
   * after an upgrade: evaluated as it was meant to be, not skipped.
   */
  private unpackOne(m: InputRecord, partition: number): Unpacked {
    const offset = Number(header(m.headers, 'killswitch.source.offset') ?? NaN);
    const streamTime = Number(header(m.headers, 'killswitch.source.stream_time_ms') ?? NaN);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isFinite(streamTime)) return invalid(`no ${FORWARD_HEADERS.format} header, and no whole source offset and stream time headers of the layout before formats`);
    this.push(undefined, { key: m.key, value: m.value, timestamp: m.timestamp, offset: String(offset) }, partition, offset, streamTime);
    return ENTRIES;
  }
}

const ENTRIES: Unpacked = { kind: 'entries' };
const FOREIGN: Unpacked = { kind: 'foreign' };
const invalid = (message: string): Unpacked => ({ kind: 'invalid', message: `not a readable forwarded record: ${message}` });

/** 1 to 128 characters, as the decision schema counts them (code points: an astral character is two UTF-16 units). */
function decisionIdFits(id: string): boolean {
  if (id.length <= 128) return id.length > 0;
  let lowSurrogates = 0;
  for (let i = 0; i < id.length; i++) if ((id.charCodeAt(i) & 0xfc00) === 0xdc00) lowSurrogates++;
  return id.length - lowSurrogates <= 128;
}

/** A compressed value's entries; null when it is not Brotli or inflates to more than MAX_INFLATED_BYTES. */
function inflate(value: Buffer): Buffer | null {
  try {
    return brotliDecompressSync(value, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch {
    return null;
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
