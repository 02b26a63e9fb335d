/**
 * The table of known SPIFFE IDs behind the fast decoder (src/adapters/serde/id-table.ts): whatever it
 * answers for some bytes is the string of exactly those bytes, through hash collisions, starting over
 * when full, and growing its arena. A wrong answer here would put a decision on another identity.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashOf, IdTable, sameBytes, type ByteHash } from '../../../src/adapters/serde/id-table.js';

/** A property run, shrinking a failure included, is cut off after a minute and then counts as failed. */
const BOUNDED = { interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true } as const;

/** `text` at an offset inside a larger buffer, as a record's field would be */
function placed(text: string, offset: number): { view: DataView; at: number } {
  const b = Buffer.alloc(offset + text.length + 3, 0x7e);
  b.write(text, offset, 'latin1');
  return { view: new DataView(b.buffer, b.byteOffset, b.length), at: offset };
}

describe('IdTable', () => {
  it('answers a remembered string for the same bytes anywhere, and nothing for others', () => {
    const t = new IdTable(8, 1024);
    const a = placed('spiffe://example.org/a', 5);
    t.add(a.view, a.at, 22, 'spiffe://example.org/a');
    const again = placed('spiffe://example.org/a', 1);
    expect(t.get(again.view, again.at, 22)).toBe('spiffe://example.org/a');
    expect(t.get(again.view, again.at, 21)).toBeUndefined();
    const other = placed('spiffe://example.org/b', 1);
    expect(t.get(other.view, other.at, 22)).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('never answers a string of other bytes, nor another string\'s tag: collisions, starting over when full, a growing arena', () => {
    // a tag that differs between the strings of the test alphabet
    const tagOf = (s: string): number => [...s].reduce((h, c) => h * 3 + 'ab/'.indexOf(c) + 1, s.length);
    // few short strings from a small alphabet and a tiny table: many equal hashes per slot and many clears
    const text = fc.string({ unit: fc.constantFrom('a', 'b', '/'), minLength: 0, maxLength: 9 });
    const op = fc.tuple(fc.boolean(), text, fc.nat(6));
    // hashes that collide: all the same, by the first byte, by the length, and the real one
    const hashes: ByteHash[] = [() => 7, (v, at, len) => (len > 0 ? v.getUint8(at) : 0), (_v, _at, len) => len, hashOf];
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 40 }), fc.nat(hashes.length - 1), fc.array(op, { maxLength: 60 }), (entries, bytes, h, ops) => {
        const t = new IdTable(entries, bytes, hashes[h]);
        for (const [add, s, offset] of ops) {
          const { view, at } = placed(s, offset);
          const got = t.get(view, at, s.length);
          if (got !== undefined) {
            expect(got).toBe(s);
            // the tag given with the string comes back with it
            const e = t.find(view, at, s.length);
            expect(t.value(e)).toBe(s);
            expect(t.tag(e)).toBe(tagOf(s));
          } else {
            expect(t.find(view, at, s.length)).toBe(-1);
          }
          if (add && got === undefined) {
            const added = t.add(view, at, s.length, s, tagOf(s));
            // just added, so found at the entry add gave, unless longer than the whole arena (then -1)
            if (s.length <= bytes) {
              expect(t.get(placed(s, 0).view, 0, s.length)).toBe(s);
              expect(t.find(placed(s, 0).view, 0, s.length)).toBe(added);
              expect(t.tag(added)).toBe(tagOf(s));
            } else {
              expect(added).toBe(-1);
            }
          }
          expect(t.size).toBeLessThanOrEqual(entries);
        }
      }),
      { numRuns: 3_000, ...BOUNDED },
    );
  });

  it('keeps every string while there is room, its arena grown several times', () => {
    const t = new IdTable(5000, 1 << 20);
    const ids = Array.from({ length: 5000 }, (_, i) => `spiffe://example.org/agent-${i}`);
    for (const id of ids) t.add(placed(id, 3).view, 3, id.length, id);
    for (const id of ids) expect(t.get(placed(id, 0).view, 0, id.length)).toBe(id);
  });
});

describe('sameBytes', () => {
  it('compares any length at any offsets, the last four bytes included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(40), fc.nat(5), fc.nat(5), (bytes, flip, o1, o2) => {
        const a = Buffer.alloc(o1 + bytes.length);
        a.set(bytes, o1);
        const b = Buffer.alloc(o2 + bytes.length);
        b.set(bytes, o2);
        const va = new DataView(a.buffer, a.byteOffset, a.length);
        const vb = new DataView(b.buffer, b.byteOffset, b.length);
        expect(sameBytes(va, o1, vb, o2, bytes.length)).toBe(true);
        if (bytes.length > 0) {
          const at = flip % bytes.length;
          b[o2 + at] = b[o2 + at]! ^ 1;
          expect(sameBytes(va, o1, vb, o2, bytes.length)).toBe(false);
        }
      }),
      { numRuns: 2_000, ...BOUNDED },
    );
  });
});
