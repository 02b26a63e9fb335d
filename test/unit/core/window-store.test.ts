/**
 * WindowStore on its own: 16-bit cells that overflow, idle reuse versus live eviction at the cap,
 * growth of the typed arrays, clear, the blocked flag, and bucket numbers below zero (before 1970).
 */
import { describe, expect, it, vi } from 'vitest';
import { DecisionClass } from '../../../src/core/decision-class.js';
import { type WindowCounts, WindowStore, type WindowStoreOptions } from '../../../src/core/window-store.js';

const never = (): boolean => false;
const LOW = -1e15; // a cutoff below every bucket used here: reads totals without dropping anything

function read(store: WindowStore, slot: number, cutoff = LOW): WindowCounts {
  return { ...store.counts(slot, cutoff, { calls: 0, denies: 0, advisoryDenies: 0 }) };
}

function addMany(store: WindowStore, slot: number, bucket: number, cls: DecisionClass, n: number): void {
  let added = 0;
  for (let i = 0; i < n; i++) if (store.add(slot, bucket, cls)) added++;
  expect(added).toBe(n);
}

const ZERO: WindowCounts = { calls: 0, denies: 0, advisoryDenies: 0 };

/**
 * 70,000 decisions in one bucket: 2,000 allows, 2,000 denies, 66,000 advisory denies, so the calls,
 * denies and advisory cells of that bucket all pass 65,535.
 */
function fillPast16Bits(store: WindowStore, slot: number, bucket: number): void {
  addMany(store, slot, bucket, DecisionClass.Call, 2000);
  addMany(store, slot, bucket, DecisionClass.Deny, 2000);
  addMany(store, slot, bucket, DecisionClass.AdvisoryDeny, 66_000);
}
const BIG: WindowCounts = { calls: 70_000, denies: 68_000, advisoryDenies: 66_000 };

describe('WindowStore: a cell past 65535', () => {
  const opts: WindowStoreOptions = { ringSize: 4, idleBuckets: 10, maxIdentities: 4 };

  it('reports exact totals above 16 bits, and exact totals again after the bucket leaves and its ring position is refilled', () => {
    const store = new WindowStore(opts);
    const slot = store.slotFor('A', 0, never);
    fillPast16Bits(store, slot, 0);
    expect(read(store, slot)).toEqual(BIG);
    expect(read(store, slot, 0)).toEqual(BIG); // the cutoff at the bucket itself keeps it

    // One newer bucket, then a cutoff above bucket 0: bucket 0 is dropped cell by cell.
    expect(store.add(slot, 1, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot, 1)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });

    // Bucket 4 reuses bucket 0's ring position. If the overflow of bucket 0 were still there, dropping
    // bucket 4 later would take 65,536 too many from each total.
    addMany(store, slot, 4, DecisionClass.AdvisoryDeny, 5);
    expect(read(store, slot)).toEqual({ calls: 6, denies: 6, advisoryDenies: 5 });
    expect(read(store, slot, 5)).toEqual(ZERO); // cutoff above the head
    expect(store.add(slot, 6, DecisionClass.Call)).toBe(true);
    expect(store.add(slot, 8, DecisionClass.Call)).toBe(true); // head moves past 4's position (8 mod 4 = 0)
    expect(read(store, slot, 8)).toEqual({ calls: 1, denies: 0, advisoryDenies: 0 });
  });

  it('drops an overflowed bucket exactly when the head moves by less than the ring size', () => {
    const store = new WindowStore(opts);
    const slot = store.slotFor('A', 0, never);
    fillPast16Bits(store, slot, 0);
    expect(store.add(slot, 3, DecisionClass.Call)).toBe(true);
    expect(read(store, slot)).toEqual({ ...BIG, calls: BIG.calls + 1 });
    // Head 3 -> 4: bucket 0's position is reused, bucket 0 leaves.
    expect(store.add(slot, 4, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 2, denies: 1, advisoryDenies: 0 });
    // Head 4 -> 8 drops 4 (and 5..7, empty): only bucket 8 is left, counted from a clean cell.
    expect(store.add(slot, 8, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });
    expect(store.add(slot, 12, DecisionClass.Call)).toBe(true); // 12 mod 4 = 0 again, drops 8
    expect(read(store, slot)).toEqual({ calls: 1, denies: 0, advisoryDenies: 0 });
  });

  it('drops an overflowed bucket exactly when the head jumps past the whole ring, and overflows again from zero', () => {
    const store = new WindowStore(opts);
    const slot = store.slotFor('A', 0, never);
    fillPast16Bits(store, slot, 0);
    expect(store.add(slot, 100, DecisionClass.Call)).toBe(true); // 100 mod 4 = 0: same position
    expect(read(store, slot)).toEqual({ calls: 1, denies: 0, advisoryDenies: 0 });
    fillPast16Bits(store, slot, 100);
    expect(read(store, slot)).toEqual({ ...BIG, calls: BIG.calls + 1 });
    expect(store.add(slot, 101, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot, 101)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });
    expect(read(store, slot, 102)).toEqual(ZERO);
  });

  it('keeps the overflow of one identity out of another identity that gets its slot', () => {
    const store = new WindowStore(opts);
    const a = store.slotFor('A', 0, never);
    fillPast16Bits(store, a, 0);
    store.clear('A');
    const b = store.slotFor('B', 0, never);
    expect(b).toBe(a);
    expect(read(store, b)).toEqual(ZERO);
    addMany(store, b, 0, DecisionClass.Deny, 3);
    expect(store.add(b, 1, DecisionClass.Call)).toBe(true);
    expect(read(store, b, 1)).toEqual({ calls: 1, denies: 0, advisoryDenies: 0 });
  });

  it('keeps overflowed cells of two identities apart', () => {
    const store = new WindowStore(opts);
    const a = store.slotFor('A', 0, never);
    const b = store.slotFor('B', 0, never);
    addMany(store, a, 0, DecisionClass.Deny, 65_537);
    addMany(store, b, 0, DecisionClass.Call, 65_536);
    expect(read(store, a)).toEqual({ calls: 65_537, denies: 65_537, advisoryDenies: 0 });
    expect(read(store, b)).toEqual({ calls: 65_536, denies: 0, advisoryDenies: 0 });
    expect(store.add(a, 1, DecisionClass.Call)).toBe(true);
    expect(read(store, a, 1)).toEqual({ calls: 1, denies: 0, advisoryDenies: 0 });
    expect(read(store, b)).toEqual({ calls: 65_536, denies: 0, advisoryDenies: 0 });
  });
});

describe('WindowStore: buckets that leave the window', () => {
  it('refuses a bucket older than the ring holds and counts none of it', () => {
    const store = new WindowStore({ ringSize: 4, idleBuckets: 10, maxIdentities: 4 });
    const slot = store.slotFor('A', 10, never);
    expect(store.add(slot, 6, DecisionClass.Deny)).toBe(false); // ring holds 7..10
    expect(store.add(slot, 7, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });
    expect(read(store, slot, 8)).toEqual(ZERO);
    expect(store.add(slot, 7, DecisionClass.Deny)).toBe(false); // dropped for good by the cutoff
    expect(store.add(slot, 9, DecisionClass.Ignored)).toBe(false); // neither a call nor a deny
    expect(read(store, slot, 8)).toEqual(ZERO);
  });

  // BUG (report): a cutoff above the head sets lo > head; a later add to a bucket between head and lo
  // goes through advanceHead (bucket > head) and is counted although it is below the cutoff already
  // applied. In the evaluator this happens with allowed lateness > window: see evaluator.test.ts.
  it('refuses a bucket below a cutoff that was raised above the head', () => {
    const store = new WindowStore({ ringSize: 11, idleBuckets: 60, maxIdentities: 4 });
    const slot = store.slotFor('A', 0, never);
    expect(store.add(slot, 0, DecisionClass.Call)).toBe(true);
    expect(read(store, slot, 40)).toEqual(ZERO); // everything below bucket 40 is gone
    expect(store.add(slot, 20, DecisionClass.Deny)).toBe(false);
    expect(read(store, slot, 40)).toEqual(ZERO);
  });
});

describe('WindowStore: idle reuse and live eviction', () => {
  it('gives a new identity the slot of an idle one without a live eviction, and releases the idle identity', () => {
    const onRelease = vi.fn<(slot: number, id: string) => void>();
    const store = new WindowStore({ ringSize: 4, idleBuckets: 6, maxIdentities: 2, onRelease });
    const a = store.slotFor('A', 0, never);
    addMany(store, a, 0, DecisionClass.Deny, 3);
    const b = store.slotFor('B', 1, never);
    addMany(store, b, 1, DecisionClass.Deny, 2);

    // bucket 7 > A's head 0 + 6: A is idle.
    const c = store.slotFor('C', 7, never);
    expect(c).toBe(a);
    expect(store.liveEvictions).toBe(0);
    expect(store.lastLiveEvicted).toBeUndefined();
    expect(onRelease).toHaveBeenCalledTimes(1);
    expect(onRelease).toHaveBeenCalledWith(a, 'A');
    expect(store.peekSlot('A')).toBe(-1);
    expect(store.peekSlot('C')).toBe(c);
    expect(read(store, c)).toEqual(ZERO); // nothing of A's window is left in the slot
    expect(store.size).toBe(2);

    // A comes back: B (head 1, idle from bucket 8 on) gives up its slot; A starts from an empty window.
    const a2 = store.slotFor('A', 8, never);
    expect(a2).toBe(b);
    expect(read(store, a2)).toEqual(ZERO);
    expect(store.liveEvictions).toBe(0);
    expect(onRelease).toHaveBeenLastCalledWith(b, 'B');
    expect(store.peekSlot('B')).toBe(-1);
  });

  it('counts an identity exactly idleBuckets behind as live: taking its slot is a live eviction', () => {
    const onRelease = vi.fn<(slot: number, id: string) => void>();
    const store = new WindowStore({ ringSize: 4, idleBuckets: 6, maxIdentities: 2, onRelease });
    const a = store.slotFor('A', 0, never);
    store.add(a, 0, DecisionClass.Deny);
    store.slotFor('B', 0, never);
    const c = store.slotFor('C', 6, never);
    expect(c).toBe(a);
    expect(store.liveEvictions).toBe(1);
    expect(store.lastLiveEvicted).toBe('A');
    expect(onRelease).toHaveBeenCalledWith(a, 'A');
  });

  it('evicts the least recently advanced live identity at the cap, counts it and stays at the cap', () => {
    const onRelease = vi.fn<(slot: number, id: string) => void>();
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: 2, onRelease });
    const a = store.slotFor('A', 0, never);
    const b = store.slotFor('B', 0, never);
    store.add(a, 0, DecisionClass.Deny);
    store.add(b, 0, DecisionClass.Deny);
    store.add(a, 1, DecisionClass.Deny); // A's head moves: B is now the least recently advanced
    store.add(b, 0, DecisionClass.Deny); // adding to B's current head bucket does not move it

    const c = store.slotFor('C', 1, never);
    expect(store.liveEvictions).toBe(1);
    expect(store.lastLiveEvicted).toBe('B');
    expect(c).toBe(b);
    expect(onRelease).toHaveBeenCalledWith(b, 'B');
    expect(store.size).toBe(2);
    expect(store.peekSlot('B')).toBe(-1);
    expect(read(store, c)).toEqual(ZERO);
    expect(read(store, a)).toEqual({ calls: 2, denies: 2, advisoryDenies: 0 }); // A keeps its window

    // Next live eviction: A (advanced at bucket 1, before C was allocated).
    store.slotFor('D', 1, never);
    expect(store.liveEvictions).toBe(2);
    expect(store.lastLiveEvicted).toBe('A');
    expect(store.size).toBe(2);
  });
});

describe('WindowStore: growth', () => {
  const N = 5000;
  const id = (i: number): string => `spiffe://grow.example/agent/${i}`;
  // A distinct (allows, denies, advisory) triple per identity.
  const expected = (i: number): WindowCounts => {
    const allows = i % 10;
    const denies = Math.floor(i / 10) % 10;
    const advisory = Math.floor(i / 100);
    return { calls: allows + denies + advisory, denies: denies + advisory, advisoryDenies: advisory };
  };

  it('keeps every identity and its exact counts while the arrays double from 1 to the cap', () => {
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: N, initialCapacity: 1 });
    const bytesAtOne = store.arrayBytes;
    const slots = new Set<number>();
    // Interleaved: every identity gets part of its decisions before the arrays grow under it.
    for (let i = 0; i < N; i++) {
      const slot = store.slotFor(id(i), 0, never);
      slots.add(slot);
      addMany(store, slot, 0, DecisionClass.Call, i % 10);
    }
    for (let i = 0; i < N; i++) {
      const slot = store.slotFor(id(i), 0, never);
      const e = expected(i);
      addMany(store, slot, 1, DecisionClass.Deny, e.denies - e.advisoryDenies);
      addMany(store, slot, 2, DecisionClass.AdvisoryDeny, e.advisoryDenies);
    }
    expect(slots.size).toBe(N);
    expect(store.size).toBe(N);
    expect(store.liveEvictions).toBe(0);
    expect(store.arrayBytes).toBeGreaterThan(bytesAtOne * (N - 1));
    for (let i = 0; i < N; i++) expect(read(store, store.peekSlot(id(i)))).toEqual(expected(i));

    // The recency list survived the copies: at the cap the first identity allocated is the one evicted.
    store.slotFor('newcomer', 0, never);
    expect(store.liveEvictions).toBe(1);
    expect(store.lastLiveEvicted).toBe(id(0));
    expect(store.size).toBe(N);
  });
});

describe('WindowStore: clear', () => {
  it('empties the window, forgets the identity and gives its slot, zeroed, to the next identity', () => {
    const onRelease = vi.fn<(slot: number, id: string) => void>();
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: 8, onRelease });
    const a = store.slotFor('A', 5, never);
    const b = store.slotFor('B', 5, never);
    addMany(store, a, 5, DecisionClass.Deny, 7);
    addMany(store, b, 5, DecisionClass.Call, 2);
    store.clear('A');
    expect(onRelease).toHaveBeenCalledWith(a, 'A');
    expect(store.peekSlot('A')).toBe(-1);
    expect(store.size).toBe(1);

    const c = store.slotFor('C', 5, never);
    expect(c).toBe(a);
    expect(read(store, c)).toEqual(ZERO);
    addMany(store, c, 5, DecisionClass.AdvisoryDeny, 1);
    expect(read(store, c)).toEqual({ calls: 1, denies: 1, advisoryDenies: 1 });
    expect(read(store, b)).toEqual({ calls: 2, denies: 0, advisoryDenies: 0 });

    // A comes back as a new identity with an empty window.
    const a2 = store.slotFor('A', 5, never);
    expect(a2).not.toBe(b);
    expect(a2).not.toBe(c);
    expect(read(store, a2)).toEqual(ZERO);
  });

  it('ignores an identity it does not track', () => {
    const onRelease = vi.fn<(slot: number, id: string) => void>();
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: 8, onRelease });
    store.slotFor('A', 0, never);
    store.clear('nobody');
    expect(onRelease).not.toHaveBeenCalled();
    expect(store.size).toBe(1);
  });
});

describe('WindowStore: blocked flag', () => {
  it('asks isBlocked only when it allocates a slot, and keeps the flag per slot', () => {
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: 8 });
    const isBlocked = vi.fn((id: string) => id === 'A');
    const a = store.slotFor('A', 0, isBlocked);
    const b = store.slotFor('B', 0, isBlocked);
    expect(isBlocked).toHaveBeenCalledTimes(2);
    expect(isBlocked.mock.calls).toEqual([['A'], ['B']]);
    expect(store.isBlocked(a)).toBe(true);
    expect(store.isBlocked(b)).toBe(false);

    // Known identities: no question asked, whatever the answer would be now.
    const flipped = vi.fn(() => true);
    expect(store.slotFor('A', 1, flipped)).toBe(a);
    expect(store.slotFor('B', 1, flipped)).toBe(b);
    expect(flipped).not.toHaveBeenCalled();
    expect(store.isBlocked(b)).toBe(false);

    store.setBlocked(a, false);
    store.setBlocked(b, true);
    expect(store.isBlocked(a)).toBe(false);
    expect(store.isBlocked(b)).toBe(true);

    // A cleared slot handed to a new identity takes that identity's answer, not the old flag.
    store.clear('B');
    const c = store.slotFor('C', 1, never);
    expect(c).toBe(b);
    expect(store.isBlocked(c)).toBe(false);
  });
});

describe('WindowStore: bucket numbers below zero (event times before 1970)', () => {
  it('counts, expires and moves the head across negative buckets and across zero', () => {
    const store = new WindowStore({ ringSize: 4, idleBuckets: 100, maxIdentities: 2 });
    const slot = store.slotFor('A', -10, never);
    expect(store.add(slot, -14, DecisionClass.Deny)).toBe(false); // ring holds -13 .. -10
    expect(store.add(slot, -12, DecisionClass.Deny)).toBe(true);
    expect(store.add(slot, -11, DecisionClass.Call)).toBe(true);
    expect(store.add(slot, -10, DecisionClass.AdvisoryDeny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 3, denies: 2, advisoryDenies: 1 });
    expect(read(store, slot, -11)).toEqual({ calls: 2, denies: 1, advisoryDenies: 1 });
    // Head -10 -> -8: -9 and -8 reuse the positions of -13 and -12, already gone; -11 and -10 stay.
    expect(store.add(slot, -8, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 3, denies: 2, advisoryDenies: 1 });
    expect(store.add(slot, -7, DecisionClass.Call)).toBe(true); // reuses -11's position
    expect(read(store, slot)).toEqual({ calls: 3, denies: 2, advisoryDenies: 1 });
    // Across zero: -8 .. 1 spans more than the ring, then -1, 0, 1, 2 share it.
    expect(store.add(slot, -1, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 1, denies: 1, advisoryDenies: 0 });
    expect(store.add(slot, 0, DecisionClass.Call)).toBe(true);
    expect(store.add(slot, 1, DecisionClass.Call)).toBe(true);
    expect(store.add(slot, 2, DecisionClass.Deny)).toBe(true);
    expect(read(store, slot)).toEqual({ calls: 4, denies: 2, advisoryDenies: 0 });
    expect(store.add(slot, 3, DecisionClass.Call)).toBe(true); // drops -1
    expect(read(store, slot)).toEqual({ calls: 4, denies: 1, advisoryDenies: 0 });
    expect(read(store, slot, 1)).toEqual({ calls: 3, denies: 1, advisoryDenies: 0 });
  });

  it('treats identities idle in negative bucket numbers like any other', () => {
    const store = new WindowStore({ ringSize: 4, idleBuckets: 6, maxIdentities: 1 });
    const a = store.slotFor('A', -100, never);
    store.add(a, -100, DecisionClass.Deny);
    store.slotFor('B', -94, never); // -100 + 6 >= -94: A is still live
    expect(store.liveEvictions).toBe(1);
    store.slotFor('C', -87, never); // B idle since -94 + 6 < -87
    expect(store.liveEvictions).toBe(1);
    expect(store.peekSlot('B')).toBe(-1);
  });
});
