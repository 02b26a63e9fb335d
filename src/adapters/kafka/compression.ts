/**
 * Reading record batches that producers compressed with Snappy, LZ4 or Zstandard.
 *
 * kafkajs reads gzip only: a batch in any other codec makes it throw while it decodes the fetch, so
 * one such batch would stop every partition of that fetch, again on every restart. Those are the
 * codecs producers set (`compression.type` of the Java client and librdkafka). This module gives
 * kafkajs a decompressor for each, through its public `CompressionCodecs` table: Snappy (the raw format librdkafka writes, and the Java client's xerial framing of it) and
 * LZ4 frames written here from their format descriptions, Zstandard by `fzstd`. The processor never
 * compresses with them (its producers write uncompressed batches), so their `compress` refuses.
 *
 * The broker validates a compressed batch when it is produced (it decompresses it to check its
 * records), so damaged bytes are not expected here; they are refused with an error all the same, and
 * so is output beyond MAX_INFLATED_BYTES.
 */
import { decompress as zstdDecompress } from 'fzstd';

/** Kafka's codec ids (record batch attributes, bits 0-2), as kafkajs's CompressionTypes. */
export const CODEC = { snappy: 2, lz4: 3, zstd: 4 } as const;

/**
 * What one batch may inflate to: far beyond what producers' batches hold (the broker's message.max.bytes
 * is 1 MiB of compressed bytes by default); a batch built to inflate further is refused rather than let
 * it exhaust the process's memory.
 */
export const MAX_INFLATED_BYTES = 256 << 20;

export class CompressedBatchError extends Error {
  override readonly name = 'CompressedBatchError';
}

/** Output that grows as it is written, for formats that do not say their size up front. */
class Output {
  buf: Buffer;
  at = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, Math.min(size, MAX_INFLATED_BYTES)));
  }

  room(n: number): void {
    const need = this.at + n;
    if (need <= this.buf.length) return;
    if (need > MAX_INFLATED_BYTES) throw new CompressedBatchError(`inflates to more than ${MAX_INFLATED_BYTES} bytes`);
    const next = Buffer.allocUnsafe(Math.min(MAX_INFLATED_BYTES, Math.max(need, 2 * this.buf.length)));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  /** `n` bytes from `from` bytes back in the output; they may overlap what they write (a run). */
  copyBack(from: number, n: number): void {
    if (from <= 0 || from > this.at) throw new CompressedBatchError(`a match ${from} bytes back with ${this.at} bytes written`);
    this.room(n);
    const b = this.buf;
    let src = this.at - from;
    const end = this.at + n;
    for (let i = this.at; i < end; i++) b[i] = b[src++]!;
    this.at = end;
  }

  literal(input: Buffer, start: number, n: number): void {
    if (start + n > input.length) throw new CompressedBatchError('literal runs past the end');
    this.room(n);
    input.copy(this.buf, this.at, start, start + n);
    this.at += n;
  }

  result(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

// --- Snappy: https://github.com/google/snappy/blob/main/format_description.txt ----------------------

const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
/** magic, then a version and a compatible version (int32 each) */
const XERIAL_HEADER = 16;

/** One raw Snappy block from input[start, end), appended to `out`. */
function snappyBlock(input: Buffer, start: number, end: number, out: Output): void {
  let at = start;
  // the uncompressed length, a little-endian varint of at most 5 bytes
  let length = 0;
  for (let shift = 0; ; shift += 7) {
    if (at >= end || shift > 28) throw new CompressedBatchError('bad Snappy length');
    const b = input[at++]!;
    length += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  const expected = out.at + length;
  out.room(length);
  while (at < end) {
    const tag = input[at++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let n = tag >>> 2;
      if (n >= 60) {
        const bytes = n - 59;
        if (at + bytes > end) throw new CompressedBatchError('Snappy literal length runs past the end');
        n = input.readUIntLE(at, bytes);
        at += bytes;
      }
      n += 1;
      if (at + n > end) throw new CompressedBatchError('Snappy literal runs past the end');
      out.literal(input, at, n);
      at += n;
    } else {
      let n: number;
      let offset: number;
      if (kind === 1) {
        if (at + 1 > end) throw new CompressedBatchError('Snappy copy runs past the end');
        n = 4 + ((tag >>> 2) & 7);
        offset = ((tag >>> 5) << 8) | input[at]!;
        at += 1;
      } else {
        const bytes = kind === 2 ? 2 : 4;
        if (at + bytes > end) throw new CompressedBatchError('Snappy copy runs past the end');
        n = 1 + (tag >>> 2);
        offset = input.readUIntLE(at, bytes);
        at += bytes;
      }
      out.copyBack(offset, n);
    }
  }
  if (out.at !== expected) throw new CompressedBatchError(`Snappy block of ${out.at - expected + length} bytes where its header says ${length}`);
}

export function snappyDecompress(input: Buffer): Buffer {
  if (input.length >= XERIAL_HEADER && input.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC)) {
    // the Java client's framing: after the header, chunks of [int32 length][raw Snappy]
    const out = new Output(input.length * 4);
    let at = XERIAL_HEADER;
    while (at < input.length) {
      if (at + 4 > input.length) throw new CompressedBatchError('xerial Snappy chunk length runs past the end');
      const n = input.readInt32BE(at);
      at += 4;
      if (n < 0 || at + n > input.length) throw new CompressedBatchError('xerial Snappy chunk runs past the end');
      snappyBlock(input, at, at + n, out);
      at += n;
    }
    return out.result();
  }
  const out = new Output(input.length * 4);
  snappyBlock(input, 0, input.length, out);
  return out.result();
}

// --- LZ4 frames: https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md and lz4_Block_format.md --

const LZ4_MAGIC = 0x184d2204;

/** One LZ4 block from input[start, end), appended to `out` (matches may reach into earlier blocks). */
function lz4Block(input: Buffer, start: number, end: number, out: Output): void {
  let at = start;
  /** A token's 4-bit length, and when it is 15 the bytes after it: each adds itself, 255 means another follows. */
  const length = (n: number, what: string): number => {
    if (n !== 15) return n;
    let b: number;
    do {
      if (at >= end) throw new CompressedBatchError(`LZ4 ${what} length runs past the end`);
      b = input[at++]!;
      n += b;
    } while (b === 255);
    return n;
  };
  for (;;) {
    if (at >= end) throw new CompressedBatchError('LZ4 block ends inside a sequence');
    const token = input[at++]!;
    const literals = length(token >>> 4, 'literal');
    if (at + literals > end) throw new CompressedBatchError('LZ4 literals run past the end');
    out.literal(input, at, literals);
    at += literals;
    if (at === end) return; // the last sequence has literals only
    if (at + 2 > end) throw new CompressedBatchError('LZ4 match offset runs past the end');
    const offset = input.readUInt16LE(at);
    at += 2;
    out.copyBack(offset, length(token & 15, 'match') + 4);
  }
}

export function lz4Decompress(input: Buffer): Buffer {
  if (input.length < 7 || input.readUInt32LE(0) !== LZ4_MAGIC) throw new CompressedBatchError('not an LZ4 frame');
  const flags = input[4]!;
  if (flags >>> 6 !== 1) throw new CompressedBatchError(`LZ4 frame version ${flags >>> 6}`);
  if ((flags & 1) !== 0) throw new CompressedBatchError('LZ4 frame with a dictionary');
  const blockChecksums = (flags & 0x10) !== 0;
  const contentSize = (flags & 0x08) !== 0;
  const contentChecksum = (flags & 0x04) !== 0;
  // FLG, BD, the content size if given, then the header checksum (not checked: Kafka's LZ4 before
  // message format 1 computed it wrongly, and the batch's CRC covers these bytes)
  let at = 6 + (contentSize ? 8 : 0) + 1;
  if (at > input.length) throw new CompressedBatchError('LZ4 frame header runs past the end');
  const out = new Output(contentSize ? Number(input.readBigUInt64LE(6)) : input.length * 4);
  for (;;) {
    if (at + 4 > input.length) throw new CompressedBatchError('LZ4 frame ends without its end mark');
    const word = input.readUInt32LE(at);
    at += 4;
    if (word === 0) break;
    const n = word & 0x7fffffff;
    if (at + n > input.length) throw new CompressedBatchError('LZ4 block runs past the end');
    if ((word & 0x80000000) !== 0) out.literal(input, at, n);
    else lz4Block(input, at, at + n, out);
    at += n + (blockChecksums ? 4 : 0);
  }
  if (contentChecksum) at += 4;
  if (at > input.length) throw new CompressedBatchError('LZ4 frame ends inside its checksum');
  return out.result();
}

// --- Zstandard ----------------------------------------------------------------------------------------

const ZSTD_MAGIC = 0xfd2fb528;

/** The content size a Zstandard frame header declares (RFC 8878, 3.1.1.1), or undefined when it has none. */
function zstdDeclaredSize(input: Buffer): number | undefined {
  if (input.length < 5 || input.readUInt32LE(0) !== ZSTD_MAGIC) return undefined;
  const descriptor = input[4]!;
  const singleSegment = (descriptor & 0x20) !== 0;
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >>> 6]!;
  if (sizeBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  if (at + sizeBytes > input.length) return undefined;
  if (sizeBytes === 8) return Number(input.readBigUInt64LE(at));
  return input.readUIntLE(at, sizeBytes) + (sizeBytes === 2 ? 256 : 0);
}

export function zstdDecompressBuffer(input: Buffer): Buffer {
  const declared = zstdDeclaredSize(input);
  if (declared !== undefined && declared > MAX_INFLATED_BYTES) throw new CompressedBatchError(`inflates to more than ${MAX_INFLATED_BYTES} bytes (its frame header says ${declared})`);
  try {
    const out = zstdDecompress(input);
    if (out.length > MAX_INFLATED_BYTES) throw new CompressedBatchError(`inflates to more than ${MAX_INFLATED_BYTES} bytes`);
    return Buffer.from(out.buffer, out.byteOffset, out.length);
  } catch (err) {
    if (err instanceof CompressedBatchError) throw err;
    throw new CompressedBatchError(`bad Zstandard data: ${(err as Error).message}`);
  }
}

/** kafkajs's codec shape: a factory of { compress(encoder), decompress(buffer) }. */
export interface KafkajsCodec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
}

function decompressOnly(name: string, decompress: (b: Buffer) => Buffer): () => KafkajsCodec {
  const codec: KafkajsCodec = {
    compress: () => Promise.reject(new Error(`${name}: this processor reads ${name} batches and never writes them`)),
    // a promise that rejects with what the decompressor throws
    decompress: (b) => new Promise((resolve) => resolve(decompress(b))),
  };
  return () => codec;
}

/** Put the three decompressors into kafkajs's codec table (its public CompressionCodecs). */
export function installDecompressors(codecs: Record<number, () => unknown>): void {
  codecs[CODEC.snappy] = decompressOnly('Snappy', snappyDecompress);
  codecs[CODEC.lz4] = decompressOnly('LZ4', lz4Decompress);
  codecs[CODEC.zstd] = decompressOnly('Zstandard', zstdDecompressBuffer);
}
