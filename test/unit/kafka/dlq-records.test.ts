/**
 * DLQ records (docs/spec.md#8-bad-records-and-the-dlq, "The DLQ"): a bad record is kept byte for byte
 * when it fits; one that would not fit in the broker's default message size is kept as samples with the
 * length and SHA-256 of what was cut, so the DLQ write (and with it the batch's transaction) cannot fail
 * for the record's size.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DLQ_SAMPLE_BYTES, MAX_DLQ_RECORD_BYTES, dlqRecord } from '../../../src/adapters/kafka/dlq.js';
import { recordBytes } from '../../../src/adapters/kafka/transactional-committer.js';
import type { InputRecord, OutputRecord } from '../../../src/ports/partition-records.js';

const at = { topic: 'decisions', partition: 2 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const input = (key: Buffer | null, value: Buffer | null, headers?: InputRecord['headers']): InputRecord => ({ key, value, timestamp: '1790000000000', offset: '41', ...(headers === undefined ? {} : { headers }) });
const h = (r: OutputRecord, name: string): unknown => r.headers?.[name];

describe('DLQ records', () => {
  it('keep a bad record whole: key, value bytes and headers as they were, with the reason and the source', () => {
    const value = Buffer.from([0x7b, 0xe9, 0x7d]);
    const r = dlqRecord(input(Buffer.from('k'), value, { trace: 'abc' }), at, 'invalid_utf8', 'not UTF-8');
    expect(r.value).toBe(value);
    expect(r.key).toEqual(Buffer.from('k'));
    expect(r.headers).toEqual({
      trace: 'abc', 'killswitch.reason': 'invalid_utf8', 'killswitch.message': 'not UTF-8',
      'killswitch.source.topic': 'decisions', 'killswitch.source.partition': '2', 'killswitch.source.offset': '41',
    });
  });

  it('keep a value over 1,000,000 bytes as its first 65,536 bytes, its length and its SHA-256', () => {
    const value = Buffer.alloc(1_000_001, 'v');
    value[5] = 0x41;
    const r = dlqRecord(input(null, value), at, 'too_large', 'too large');
    expect((r.value as Buffer).equals(value.subarray(0, DLQ_SAMPLE_BYTES))).toBe(true);
    expect(h(r, 'killswitch.original.length')).toBe('1000001');
    expect(h(r, 'killswitch.original.sha256')).toBe(sha(value));
    expect(h(r, 'killswitch.original.key_length')).toBeUndefined();
  });

  it('sample a value under the limit whose copy would not fit beside the key and headers, then the key, then leave out the original headers', () => {
    const key = Buffer.alloc(60_000, 'k');
    const value = Buffer.alloc(999_000, 'v');
    const valueOnly = dlqRecord(input(key, value), at, 'invalid_json', 'not JSON');
    expect(recordBytes({ key, value })).toBeGreaterThan(MAX_DLQ_RECORD_BYTES - 100);
    expect((valueOnly.value as Buffer).length).toBe(DLQ_SAMPLE_BYTES);
    expect(valueOnly.key).toBe(key);

    const bigKey = Buffer.alloc(1_047_900, 'k');
    const keyToo = dlqRecord(input(bigKey, Buffer.from('x')), at, 'invalid_json', 'not JSON');
    expect(keyToo.value).toEqual(Buffer.from('x'));
    expect((keyToo.key as Buffer).length).toBe(DLQ_SAMPLE_BYTES);
    expect(h(keyToo, 'killswitch.original.key_length')).toBe('1047900');
    expect(h(keyToo, 'killswitch.original.key_sha256')).toBe(sha(bigKey));

    const headers = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`h${i}`, 'y'.repeat(60_000)]));
    const noHeaders = dlqRecord(input(null, Buffer.from('x'), headers), at, 'invalid_json', 'not JSON');
    expect(h(noHeaders, 'h0')).toBeUndefined();
    expect(h(noHeaders, 'killswitch.original.headers')).toBe('20');
    expect(h(noHeaders, 'killswitch.reason')).toBe('invalid_json');
  });

  it('never exceed the broker\'s default message size, whatever the record', () => {
    const sizes = [0, 1, 60_000, 999_999, 1_000_000, 1_048_000, 3_000_000];
    for (const k of sizes) {
      for (const v of sizes) {
        const r = dlqRecord(input(k === 0 ? null : Buffer.alloc(k, 'k'), v === 0 ? null : Buffer.alloc(v, 'v'), { a: 'b'.repeat(k % 7_000) }), at, 'too_large', 'm'.repeat(2000));
        expect(recordBytes(r), `key ${k}, value ${v}`).toBeLessThanOrEqual(MAX_DLQ_RECORD_BYTES);
      }
    }
  });
});
