/**
 * The session guard's BlockTable against a plain Map (and LedgerFold.blockingScope's lookups against
 * a Set): whatever sequence of sets and deletes, it answers exactly what the Map answers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockTable, hashString } from '../../../src/session/block-table.js';

/** what BlockTable.firstStarPrefix promises, written the slow way (as LedgerFold.blockingScope builds its keys) */
function starPrefixReference(keys: ReadonlySet<string>, id: string, from: number): string | undefined {
  for (let i = id.indexOf('/', from); i !== -1; i = id.indexOf('/', i + 1)) {
    if (keys.has(`${id.slice(0, i)}/*`)) return `${id.slice(0, i)}/*`;
  }
  return keys.has(`${id}/*`) ? `${id}/*` : undefined;
}

function expectSame(t: BlockTable<number>, m: Map<string, number>, probes: readonly string[]): void {
  expect(t.size).toBe(m.size);
  for (const k of probes) expect(t.get(k)).toBe(m.get(k));
  for (const k of probes) expect(t.has(k)).toBe(m.has(k));
  expect(new Map(t.entries())).toEqual(m);
}

/** two different strings with the same 32-bit hash (the seed is random per process: searched for at run time) */
function hashCollision(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const s = `spiffe://collide.example/sa/${i}`;
    const h = hashString(s);
    const other = seen.get(h);
    if (other !== undefined) return [other, s];
    seen.set(h, s);
  }
}

describe('BlockTable', () => {
  it('answers like a Map for any sequence of sets and deletes (growth, shrinking, probe runs shifted back by deletes)', () => {
    // few distinct keys, so the same keys are set, deleted and set again; up to 300 ops, so the table grows and shrinks
    const key = fc.oneof(
      fc.integer({ min: 0, max: 150 }).map((i) => `spiffe://t.example/ns/prod/sa/agent-${i}`),
      fc.constantFrom('', 'a', 'spiffe://t.example/*', 'spiffe://t.example/ns/*', '\u00e9\u4e2d\ud83d\ude00'),
    );
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key, value: fc.integer() }),
      fc.record({ kind: fc.constant('delete' as const), key }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const t = new BlockTable<number>();
      const m = new Map<string, number>();
      const probes = new Set<string>(['spiffe://t.example/ns/prod/sa/agent-9999']);
      for (const o of ops) {
        probes.add(o.key);
        if (o.kind === 'set') {
          t.set(o.key, o.value);
          m.set(o.key, o.value);
        } else {
          expect(t.delete(o.key)).toBe(m.delete(o.key));
        }
        // a fresh string object with the same text finds the same entry
        expect(t.get(`${o.key} `.slice(0, -1))).toBe(m.get(o.key));
      }
      expectSame(t, m, [...probes]);
    }), { numRuns: 300 });
  });

  it('holds 200,000 keys, forgets exactly the deleted half, and shrinks back to empty', () => {
    const t = new BlockTable<number>();
    const n = 200_000;
    const id = (i: number): string => `spiffe://big.example/ns/n${i % 97}/sa/agent-${i}`;
    const wrong = (cond: (i: number) => boolean, from: number, to: number): number[] => {
      const bad: number[] = [];
      for (let i = from; i < to; i++) if (!cond(i)) bad.push(i);
      return bad.slice(0, 5);
    };
    for (let i = 0; i < n; i++) t.set(id(i), i);
    expect(wrong((i) => t.get(id(i)) === i, 0, n)).toEqual([]);
    expect(wrong((i) => i % 2 === 1 || t.delete(id(i)), 0, n)).toEqual([]);
    expect(t.size).toBe(n / 2);
    expect(wrong((i) => t.get(id(i)) === (i % 2 === 0 || i >= n ? undefined : i), 0, n + 10_000)).toEqual([]);
    for (let i = 1; i < n; i += 2) t.delete(id(i));
    expect(t.size).toBe(0);
    expect(wrong((i) => t.get(id(i)) === undefined, 0, n)).toEqual([]);
    t.set(id(5), 5);
    expect(t.get(id(5))).toBe(5);
  });

  it('tells apart two keys whose 32-bit hashes are equal', () => {
    const [a, b] = hashCollision();
    expect(a).not.toBe(b);
    const t = new BlockTable<string>();
    t.set(a, 'a');
    expect(t.get(b)).toBeUndefined();
    t.set(b, 'b');
    expect([t.get(a), t.get(b), t.size]).toEqual(['a', 'b', 2]);
    expect(t.delete(a)).toBe(true);
    expect([t.get(a), t.get(b), t.size]).toEqual([undefined, 'b', 1]);
    t.set(a, 'a2');
    expect(t.delete(b)).toBe(true);
    expect([t.get(a), t.get(b), t.size]).toEqual(['a2', undefined, 1]);
  });

  it('finds the same scope keys (`<prefix>/*`) as building each prefix string and looking it up', () => {
    const segment = fc.constantFrom('td', 'ns', 'prod', 'sa', 'x', '', 'agent-1', '*', '\u00e9');
    const id = fc.array(segment, { minLength: 0, maxLength: 6 }).map((parts) => `spiffe://${parts.join('/')}`);
    fc.assert(fc.property(fc.array(id, { maxLength: 12 }), fc.array(id, { maxLength: 12 }), fc.array(id, { maxLength: 6 }), fc.array(id, { maxLength: 12 }), (scopes, identities, lifted, asked) => {
      // the guard's table holds blocked identities as themselves and blocked scopes as `<agent_id>/*`
      const t = new BlockTable<number>();
      const keys = new Set<string>([...identities, ...scopes.map((s) => `${s}/*`)]);
      for (const k of keys) t.set(k, 1);
      for (const u of lifted) {
        t.delete(`${u}/*`);
        keys.delete(`${u}/*`);
      }
      for (const q of [...asked, ...scopes, ...identities, ...lifted]) {
        expect(t.firstStarPrefix(q, 'spiffe://'.length)).toBe(starPrefixReference(keys, q, 'spiffe://'.length));
      }
    }), { numRuns: 500 });
  });

  it('finds a scope key whose hash collides with another key only by its text', () => {
    const [a, b] = hashCollision(); // a and b differ; so do `${a}/*`... hashes of the starred forms are unrelated
    const t = new BlockTable<number>();
    t.set(a, 1);
    t.set(b, 2);
    expect(t.firstStarPrefix(a, 9)).toBeUndefined();
    t.set(`${a}/*`, 3);
    expect(t.firstStarPrefix(a, 9)).toBe(`${a}/*`);
    expect(t.firstStarPrefix(b, 9)).toBeUndefined();
    expect(t.firstStarPrefix(`${a}/child`, 9)).toBe(`${a}/*`);
  });

  it('finds scope keys longer than the lengths it counts one by one (4096), and forgets them when deleted', () => {
    const long = `spiffe://long.example/${'x'.repeat(5000)}`;
    const t = new BlockTable<number>();
    t.set(`${long}/*`, 1);
    expect(t.firstStarPrefix(`${long}/child`, 9)).toBe(`${long}/*`);
    expect(t.firstStarPrefix(long, 9)).toBe(`${long}/*`);
    expect(t.firstStarPrefix(`${long}x/child`, 9)).toBeUndefined();
    t.set('spiffe://long.example/*', 2);
    expect(t.firstStarPrefix(`${long}/child`, 9)).toBe('spiffe://long.example/*');
    t.delete('spiffe://long.example/*');
    t.delete(`${long}/*`);
    expect(t.firstStarPrefix(`${long}/child`, 9)).toBeUndefined();
    expect(t.size).toBe(0);
  });
});
