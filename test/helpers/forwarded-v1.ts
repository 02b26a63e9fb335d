import type { InputRecord } from '../../src/ports/partition-records.js';

/**
 * The entries of repartition format `v1` (docs/spec.md#11-kafka-mode: the records as read at their
 * source), written from the spec by hand, as the versions before `v3` wrote them; Brotli of these is `v2`.
 */
export function v1Entries(list: readonly { readonly record: InputRecord; readonly offset: number; readonly streamTime: number }[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  for (const f of list) {
    const { key, value } = f.record;
    parts.push(key === null ? u32(0xffffffff) : Buffer.concat([u32(key.length), key]), value === null ? u32(0xffffffff) : Buffer.concat([u32(value.length), value]));
    const tail = Buffer.alloc(24);
    tail.writeDoubleLE(f.offset, 0);
    tail.writeDoubleLE(Number(f.record.timestamp), 8);
    tail.writeDoubleLE(f.streamTime, 16);
    parts.push(tail);
  }
  return Buffer.concat(parts);
}
