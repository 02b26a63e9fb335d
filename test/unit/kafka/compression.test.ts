/**
 * The decompressors kafkajs gets for Snappy, LZ4 and Zstandard batches (src/adapters/kafka/compression.ts),
 * on inputs built by hand from the formats' descriptions: every kind of element each format has, and
 * damaged copies of them, which must fail with a CompressedBatchError (or decode to something), never with
 * another error or a hang. Batches from real producers (librdkafka's and the Java client's codecs) are in
 * test/integration/kafka-partitioners.test.ts.
 */
import { describe, expect, it } from 'vitest';
import kafkajs from '../../../src/adapters/kafka/kafkajs.js';
import { CompressedBatchError, lz4Decompress, MAX_INFLATED_BYTES, snappyDecompress, zstdDecompressBuffer } from '../../../src/adapters/kafka/compression.js';
import { seededRandom } from '../../helpers/random.js';

const bytes = (...parts: (number[] | string | Buffer)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.isBuffer(p) ? p : Buffer.from(p))));
const le32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const be32 = (n: number): number[] => le32(n).reverse();
const letters = (n: number): string => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7) % 26))).join('');

// Snappy: a varint length, then literals (tag 00) and copies with 1-, 2- and 4-byte offsets (01, 10, 11)
const SNAPPY_RUN = bytes([13], [0x08], 'abc', [0x15, 0x03], [0x00], 'X'); // "abc", 9 bytes from 3 back, "X"
const LONG = letters(100);
const SNAPPY_ALL = bytes(
  [100 + 5 + 6 + 3],
  [60 << 2, 99], LONG, // a 100-byte literal, its length in one extra byte
  [((5 - 1) << 2) | 2, 100, 0], // 5 bytes from 100 back, a 2-byte offset
  [((6 - 1) << 2) | 3, 50, 0, 0, 0], // 6 bytes from 50 back, a 4-byte offset
  [0x08], 'xyz',
);
const SNAPPY_ALL_TEXT = LONG + LONG.slice(0, 5) + LONG.slice(55, 61) + 'xyz';
// the Java client's xerial framing: magic, version, compatible version, then [int32 BE length][raw block] chunks
const XERIAL = bytes([0x82], 'SNAPPY', [0], be32(1), be32(1), be32(SNAPPY_RUN.length), SNAPPY_RUN, be32(SNAPPY_ALL.length), SNAPPY_ALL);

// LZ4 frames: magic, FLG (version 01, flags), BD, [content size], header checksum, blocks, end mark, [checksum]
const LZ4_RUN_BLOCK = bytes([0x35], 'abc', [3, 0], [0x10], 'X'); // 3 literals + a 9-byte match 3 back; then "X"
const LZ4_PLAIN = bytes(le32(0x184d2204), [0x60, 0x40, 0x82], le32(LZ4_RUN_BLOCK.length), LZ4_RUN_BLOCK, le32(0));
const LONG300 = letters(300);
// a 300-byte literal (15 + 255 + 30) and a 4 + 15 + 255 + 6 = 280-byte match 1 back (a run of one byte)
const LZ4_LONG_BLOCK = bytes([0xff, 255, 30], LONG300, [1, 0], [255, 6], [0x10], '!');
const LZ4_FLAGS = bytes(
  le32(0x184d2204), [0x60 | 0x10 | 0x08 | 0x04, 0x70], [583 & 0xff, 583 >>> 8, 0, 0, 0, 0, 0, 0], [0x11],
  le32(2 | 0x80000000), 'hi', le32(0xdeadbeef), // a block stored as is, and its (unchecked) checksum
  le32(LZ4_LONG_BLOCK.length), LZ4_LONG_BLOCK, le32(0x12345678),
  le32(0), le32(0xcafef00d),
);
const LZ4_FLAGS_TEXT = 'hi' + LONG300 + LONG300.slice(-1).repeat(280) + '!';

// Zstandard: magic, a single-segment header with a 1-byte content size, then raw (type 0) and RLE (type 1) blocks
const ZSTD = bytes(le32(0xfd2fb528), [0x20, 5 + 4], [(5 << 3) | 0, 0, 0], 'hello', [(4 << 3) | 2 | 1, 0, 0], '!');

describe('Snappy', () => {
  it('reads literals, overlapping copies and every offset size, raw and in the Java client\'s framing', () => {
    expect(snappyDecompress(SNAPPY_RUN).toString('latin1')).toBe('abcabcabcabcX');
    expect(snappyDecompress(SNAPPY_ALL).toString('latin1')).toBe(SNAPPY_ALL_TEXT);
    expect(snappyDecompress(XERIAL).toString('latin1')).toBe('abcabcabcabcX' + SNAPPY_ALL_TEXT);
  });

  it('refuses a copy from before the start and a block shorter than its header says', () => {
    expect(() => snappyDecompress(bytes([8], [0x15, 0x03]))).toThrow(/match 3 bytes back with 0 bytes written/);
    expect(() => snappyDecompress(bytes([20], [0x08], 'abc'))).toThrow(/block of 3 bytes where its header says 20/);
  });
});

describe('LZ4 frames', () => {
  it('reads sequences with overlapping matches, long lengths, stored blocks, and the optional fields', () => {
    expect(lz4Decompress(LZ4_PLAIN).toString('latin1')).toBe('abcabcabcabcX');
    expect(lz4Decompress(LZ4_FLAGS).toString('latin1')).toBe(LZ4_FLAGS_TEXT);
  });

  it('refuses what is not an LZ4 frame, a frame with a dictionary, and one without its end mark', () => {
    expect(() => lz4Decompress(Buffer.from('not lz4 at all'))).toThrow(CompressedBatchError);
    expect(() => lz4Decompress(bytes(le32(0x184d2204), [0x61, 0x40], le32(7), [0]))).toThrow(/dictionary/);
    expect(() => lz4Decompress(LZ4_PLAIN.subarray(0, LZ4_PLAIN.length - 4))).toThrow(/end mark/);
  });
});

describe('Zstandard', () => {
  it('reads a frame (fzstd), and says what is wrong with one that is not', () => {
    expect(zstdDecompressBuffer(ZSTD).toString('latin1')).toBe('hello!!!!');
    expect(() => zstdDecompressBuffer(Buffer.from('not zstd'))).toThrow(/bad Zstandard data/);
  });
});

describe('damaged input', () => {
  const cases: [string, (b: Buffer) => Buffer, Buffer][] = [
    ['Snappy', snappyDecompress, SNAPPY_ALL], ['xerial Snappy', snappyDecompress, XERIAL],
    ['LZ4', lz4Decompress, LZ4_FLAGS], ['Zstandard', zstdDecompressBuffer, ZSTD],
  ];
  it.each(cases)('%s: a CompressedBatchError or some output, never another error', (_, decompress, good) => {
    const rnd = seededRandom(5);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(good);
      if (i % 3 === 0) {
        for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      }
      const damaged = i % 3 === 1 ? b.subarray(0, Math.floor(rnd() * b.length)) : b;
      if (i % 3 === 2) {
        const at = Math.floor(rnd() * damaged.length);
        damaged[at] = damaged[at]! ^ (1 << Math.floor(rnd() * 8));
      }
      try {
        const out = decompress(damaged);
        expect(out.length).toBeLessThanOrEqual(MAX_INFLATED_BYTES);
      } catch (err) {
        expect(err, `case ${i}: ${String(err)}`).toBeInstanceOf(CompressedBatchError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });

  it('a size that claims more than MAX_INFLATED_BYTES is refused before anything is written', () => {
    const huge = MAX_INFLATED_BYTES + 1;
    const varint = [0x80 | (huge & 0x7f), 0x80 | ((huge >>> 7) & 0x7f), 0x80 | ((huge >>> 14) & 0x7f), 0x80 | ((huge >>> 21) & 0x7f), huge >>> 28];
    expect(() => snappyDecompress(bytes(varint, [0x00], 'a'))).toThrow(/more than/);
    // a Zstandard frame whose header declares a 4-byte content size of 2^32 - 1
    expect(() => zstdDecompressBuffer(bytes(le32(0xfd2fb528), [0x80 | 0x20], le32(0xffffffff), [1, 0, 0]))).toThrow(/frame header says 4294967295/);
  });
});

describe('kafkajs reads batches in these codecs', () => {
  it('its codec table has a decompressor for Snappy, LZ4 and Zstandard once kafkajs is loaded through src/adapters/kafka/kafkajs.ts', async () => {
    const { CompressionCodecs, CompressionTypes } = kafkajs;
    const codec = (t: number): { decompress(b: Buffer): Promise<Buffer>; compress(e: unknown): Promise<Buffer> } =>
      (CompressionCodecs as unknown as Record<number, () => { decompress(b: Buffer): Promise<Buffer>; compress(e: unknown): Promise<Buffer> }>)[t]!();
    expect((await codec(CompressionTypes.Snappy).decompress(XERIAL)).toString('latin1')).toBe('abcabcabcabcX' + SNAPPY_ALL_TEXT);
    expect((await codec(CompressionTypes.LZ4).decompress(LZ4_PLAIN)).toString('latin1')).toBe('abcabcabcabcX');
    expect((await codec(CompressionTypes.ZSTD).decompress(ZSTD)).toString('latin1')).toBe('hello!!!!');
    await expect(codec(CompressionTypes.LZ4).decompress(Buffer.from('x'))).rejects.toThrow(CompressedBatchError);
    await expect(codec(CompressionTypes.ZSTD).compress({ buffer: Buffer.from('x') })).rejects.toThrow(/never writes them/);
  });
});
