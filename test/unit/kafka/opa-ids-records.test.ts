/**
 * Records of the opa-ids topic (src/adapters/kafka/opa-ids.ts, docs/opa.md): a batch's OPA decision ids
 * in records a broker takes (each at most 256 KiB, so a transaction's batch stays under the broker's
 * 1 MiB), read back exactly; a topic that keeps at least opa.dedup_size ids.
 */
import { describe, expect, it } from 'vitest';
import { opaIdsMessages, opaIdsTopicConfig, readOpaIds } from '../../../src/adapters/kafka/opa-ids.js';

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
    // the longest id OPA can give us (128 characters of 4 bytes each), alone in a record
    const long = ['\u{1F600}'.repeat(128)];
    expect(read(long)).toEqual(long);
  });

  it('a record someone else wrote is no list of ids', () => {
    for (const v of ['{"a":1}', '[1,2]', 'not json', '["a",null]']) expect(readOpaIds(Buffer.from(v))).toBeNull();
    expect(readOpaIds(null)).toBeNull();
    expect(readOpaIds(Buffer.from('["a","b"]'))).toEqual(['a', 'b']);
  });

  it('the topic keeps at least opa.dedup_size ids of the longest kind, never compacted, and at least 16 MiB', () => {
    for (const n of [1, 100_000, 10_000_000]) {
      const c = opaIdsTopicConfig(n);
      expect(c['cleanup.policy']).toBe('delete');
      const retention = Number(c['retention.bytes']);
      const longest = Buffer.byteLength(JSON.stringify('\u0001'.repeat(128))) + 1;
      expect(retention).toBeGreaterThanOrEqual(Math.max(16 << 20, n * longest));
      expect(Number(c['segment.bytes'])).toBeGreaterThanOrEqual(1 << 20);
      expect(Number(c['segment.bytes'])).toBeLessThanOrEqual(retention);
    }
  });
});
