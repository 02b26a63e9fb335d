/**
 * A record decoder for kafkajs that does its offset and timestamp arithmetic in numbers.
 *
 * kafkajs 2.2.4 decodes each fetched record with `Long.fromValue(firstOffset).add(delta).toString()` for
 * its offset and the same for its timestamp (the batch's first offset and timestamp are strings, parsed
 * again for every record, into BigInts), and reads the timestamp delta as a BigInt sum per byte. In the
 * Kafka benchmark that was a sixth of the processor's CPU per decision (benchmarks/README.md, "Kafka
 * pipeline"). The decoder here returns what kafkajs's returns, field for field, for the records it takes
 * (no headers, offsets and timestamps below 2^53, a timestamp delta of at most 7 varint bytes: every
 * record a producer writes today); it gives every other record, from the same bytes, to kafkajs's own
 * decoder.
 */

/** The part of kafkajs's `Decoder` the record decoder uses (src/protocol/decoder.js). */
export interface KafkajsDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarIntBytes(): Buffer | null;
}

/** What kafkajs's record-batch decoder hands to the record decoder for every record of one batch. */
export interface RecordBatchContext {
  readonly firstOffset?: unknown;
  readonly firstTimestamp?: unknown;
  readonly maxTimestamp?: unknown;
  readonly timestampType?: unknown;
  readonly magicByte?: unknown;
  readonly isControlBatch?: unknown;
}

/** kafkajs's src/protocol/recordBatch/record/v0/decoder.js: one record from `decoder`, for its batch. */
export type RecordDecoder = (decoder: KafkajsDecoder, context?: RecordBatchContext) => unknown;

/** kafkajs's TimestampTypes.LOG_APPEND_TIME: the broker's append time, the batch's max timestamp, stands for every record. */
const LOG_APPEND_TIME = 1;
/** the longest timestamp delta read here: 7 varint bytes hold 49 bits, exact in a number */
const MAX_DELTA_BYTES = 7;

/** The batch's first offset or timestamp as a number, or NaN when it is not a decimal string of a safe integer. */
function safeBase(value: unknown): number {
  if (typeof value !== 'string') return Number.NaN;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : Number.NaN;
}

export function numericRecordDecoder(kafkajsDecoder: RecordDecoder): RecordDecoder {
  // The context of the batch being decoded and its bases: kafkajs makes one context object per batch
  // and passes it to each of its records in turn.
  let batch: RecordBatchContext | undefined;
  let firstOffset = Number.NaN;
  let firstTimestamp = Number.NaN;

  return (decoder, context) => {
    if (context === undefined) return kafkajsDecoder(decoder, context);
    if (context !== batch) {
      batch = context;
      firstOffset = safeBase(context.firstOffset);
      firstTimestamp = safeBase(context.firstTimestamp);
    }
    const start = decoder.offset;
    const attributes = decoder.readInt8();

    // The timestamp delta: a zig-zag varint of up to MAX_DELTA_BYTES bytes, exact as a number.
    const bytes = decoder.buffer;
    let at = decoder.offset;
    let zigzag = 0;
    let scale = 1;
    let byte = 0;
    for (let i = 0; i < MAX_DELTA_BYTES; i++) {
      byte = bytes[at++] ?? -1;
      if (byte < 0) break;
      zigzag += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) break;
    }
    if (byte < 0 || byte >= 0x80) return retry(decoder, start, context);
    const delta = zigzag % 2 === 0 ? zigzag / 2 : -(zigzag + 1) / 2;
    decoder.offset = at;

    let timestamp: unknown;
    if (context.timestampType === LOG_APPEND_TIME && Boolean(context.maxTimestamp)) {
      timestamp = context.maxTimestamp;
    } else {
      const t = firstTimestamp + delta;
      if (!Number.isSafeInteger(t)) return retry(decoder, start, context);
      timestamp = String(t);
    }
    const offset = firstOffset + decoder.readVarInt();
    if (!Number.isSafeInteger(offset)) return retry(decoder, start, context);
    const key = decoder.readVarIntBytes();
    const value = decoder.readVarIntBytes();
    // Headers: a zig-zag varint count, 0 for none (one byte, 0). Any other count: kafkajs's decoder.
    if (decoder.buffer[decoder.offset] !== 0) return retry(decoder, start, context);
    decoder.offset++;
    return {
      magicByte: context.magicByte,
      attributes,
      timestamp,
      offset: String(offset),
      key,
      value,
      headers: {},
      isControlRecord: context.isControlBatch === undefined ? false : context.isControlBatch,
      batchContext: context,
    };
  };

  function retry(decoder: KafkajsDecoder, start: number, context: RecordBatchContext): unknown {
    decoder.offset = start;
    return kafkajsDecoder(decoder, context);
  }
}
