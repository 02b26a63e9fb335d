/**
 * Records for the dead-letter topic (docs/spec.md#8-bad-records-and-the-dlq): the bad record's key,
 * value bytes and headers as they were, and headers saying why and where it was produced. A DLQ write
 * that the broker refuses as too large would fail the batch's transaction, and the restarted processor
 * would read the same record and fail again: so a record never exceeds MAX_DLQ_RECORD_BYTES, and what
 * does not fit is kept as a sample with its length and SHA-256 (the original stays in the decisions
 * topic for its retention).
 */
import { createHash } from 'node:crypto';
import type { InputRecord, OutputRecord, RecordHeaders } from '../../ports/partition-records.js';
import { MAX_VALUE_BYTES } from '../serde/kafka-value-decoder.js';
import { recordBytes } from './transactional-committer.js';

export const DLQ_HEADERS = {
  reason: 'killswitch.reason',
  message: 'killswitch.message',
  topic: 'killswitch.source.topic',
  partition: 'killswitch.source.partition',
  offset: 'killswitch.source.offset',
} as const;

/** What a DLQ record keeps of a value (or key) that does not fit, and the headers that describe the whole. */
export const DLQ_SAMPLE_BYTES = 65_536;
const SAMPLED = {
  length: 'killswitch.original.length',
  sha256: 'killswitch.original.sha256',
  keyLength: 'killswitch.original.key_length',
  keySha256: 'killswitch.original.key_sha256',
  headers: 'killswitch.original.headers',
} as const;
/**
 * Key, value and headers of one DLQ record at most (as the committer counts them): under the broker's
 * default message size (message.max.bytes, 1,048,588 bytes for a record batch) with room for the
 * batch's and the record's framing.
 */
export const MAX_DLQ_RECORD_BYTES = 1_048_000;

type Bytes = Buffer | string | null;

const length = (b: Bytes): number => (b === null ? 0 : typeof b === 'string' ? Buffer.byteLength(b) : b.length);
const sample = (b: Buffer | string): Buffer => (typeof b === 'string' ? Buffer.from(b) : b).subarray(0, DLQ_SAMPLE_BYTES);
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/**
 * A DLQ record of `key`, `value` and `headers` (the original's, then ours): whole when it fits, else
 * the value (over MAX_VALUE_BYTES, or too large for the record), then the key, sampled, and last the
 * original headers left out (docs/spec.md#8-bad-records-and-the-dlq, "The DLQ").
 */
export function deadLetterRecord(key: Bytes, value: Bytes, original: RecordHeaders | undefined, ours: RecordHeaders): OutputRecord {
  let k = key;
  let v = value;
  let kept = original ?? {};
  /** the headers describing what was cut */
  const notes: RecordHeaders = {};
  const record = (): OutputRecord => ({ key: k, value: v, headers: { ...kept, ...ours, ...notes } });
  const fits = (): boolean => recordBytes(record()) <= MAX_DLQ_RECORD_BYTES;
  if (value !== null && (length(value) > MAX_VALUE_BYTES || !fits())) {
    v = sample(value);
    notes[SAMPLED.length] = String(length(value));
    notes[SAMPLED.sha256] = sha256(value);
  }
  if (key !== null && !fits()) {
    k = sample(key);
    notes[SAMPLED.keyLength] = String(length(key));
    notes[SAMPLED.keySha256] = sha256(key);
  }
  if (original !== undefined && !fits()) {
    kept = {};
    notes[SAMPLED.headers] = String(Object.keys(original).length);
  }
  return record();
}

/** A bad record for the DLQ, its headers saying where it was produced (`at.offset` by default the record's own). */
export function dlqRecord(m: InputRecord, at: { readonly topic: string; readonly partition: number; readonly offset?: string }, reason: string, message: string): OutputRecord {
  return deadLetterRecord(m.key, m.value, m.headers, {
    [DLQ_HEADERS.reason]: reason,
    [DLQ_HEADERS.message]: message.slice(0, 1000),
    [DLQ_HEADERS.topic]: at.topic,
    [DLQ_HEADERS.partition]: String(at.partition),
    [DLQ_HEADERS.offset]: at.offset ?? m.offset,
  });
}

/** The reason of a record made by dlqRecord. */
export function dlqReason(m: OutputRecord): string {
  return String(m.headers?.[DLQ_HEADERS.reason]);
}
