/**
 * Records of the opa-ids topic (src/adapters/kafka/opa-ids.ts, docs/opa.md): a batch's OPA decision ids
 * in records a broker takes (each at most 256 KiB, so a transaction's batch stays under the broker's
 * 1 MiB), read back exactly; a topic that keeps at least opa.dedup_size ids; however long an id OPA
 * sends, what is remembered of it is short.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ID_BYTES, opaIdsMessages, opaIdsTopicConfig, readOpaIds } from '../../../src/adapters/kafka/opa-ids.js';
import { memoryKey } from '../../../src/adapters/opa/opa-receiver.js';

const read = (ids: readonly string[]): string[] => opaIdsMessages(ids).flatMap((m) => readOpaIds(Buffer.from(m.value as string))!);

describe('opa-ids records', () => {
  it('carry every id once, in order, whatever its characters, in records of at most 256 KiB', () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => `${i}-${'é"\\\u2028\u{1F600}'.repeat(i % 20)}`);
    const messages = opaIdsMessages(ids);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) {
      expect(Buffer.byteLength(m.value as string)).toBeLessThanOrEqual(256 * 1024);
      expect(m.partition).toBe(0);
      expect(m.key ?? null).toBeNull();
    }
    expect(read(ids)).toEqual(ids);
    expect(opaIdsMessages([])).toEqual([]);
    // the longest id a decision may have, 128 characters of 4 bytes each, and lone surrogates (escaped, 6 bytes each)
    const long = ['\u{1F600}'.repeat(64), '\ud800'.repeat(128)];
    expect(read(long)).toEqual(long);
  });

  it('an id longer than any decision may have is remembered by its digest: a batch of 16 MiB ids stays small records', () => {
    const huge = 'x'.repeat(4 << 20);
    const keys = [memoryKey(huge), memoryKey(`${huge}y`), memoryKey('a'.repeat(128))];
    expect(keys[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(keys[1]).not.toBe(keys[0]);
    expect(keys[2]).toBe('a'.repeat(128));
    const messages = opaIdsMessages(keys);
    expect(messages).toHaveLength(1);
    expect(read(keys)).toEqual(keys);
  });

  it('a record someone else wrote is no list of ids', () => {
    for (const v of ['{"a":1}', '[1,2]', 'not json', '["a",null]']) expect(readOpaIds(Buffer.from(v))).toBeNull();
    expect(readOpaIds(null)).toBeNull();
    expect(readOpaIds(Buffer.from('["a","b"]'))).toEqual(['a', 'b']);
  });

  it('the topic keeps at least opa.dedup_size UUIDs, and at least 16 MiB, with no time limit, never compacted', () => {
    const uuid = opaIdsMessages(Array.from({ length: 1000 }, () => randomUUID()));
    expect(Buffer.byteLength(uuid[0]!.value as string) / 1000).toBeLessThanOrEqual(ID_BYTES);
    for (const n of [1, 100_000, 10_000_000]) {
      const c = opaIdsTopicConfig(n);
      expect(c['cleanup.policy']).toBe('delete');
      expect(c['retention.ms']).toBe('-1');
      const retention = Number(c['retention.bytes']);
      expect(retention).toBeGreaterThanOrEqual(Math.max(16 << 20, n * ID_BYTES));
      expect(Number(c['segment.bytes'])).toBeGreaterThanOrEqual(1 << 20);
      expect(Number(c['segment.bytes'])).toBeLessThanOrEqual(retention);
    }
  });
});
