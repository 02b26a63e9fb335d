/**
 * A bounded set of ASCII strings looked up by their bytes: the fast decoder keeps the SPIFFE IDs it has
 * validated here, so a known identity costs a hash and a comparison of its bytes, four at a time, and
 * gives back the string made the first time: no string is made or hashed per record (slicing the ID
 * and asking a Set made the fast path about a tenth slower in benchmarks/decode.ts), and a decision's
 * agentId is the same string object for every decision of an identity.
 *
 * Open addressing in typed arrays, the bytes in one arena. When either is full, everything is forgotten
 * and the table starts over; a forgotten ID is only validated again.
 */

export type ByteHash = (view: DataView, at: number, len: number) => number;

/** A random seed per process, so which IDs collide cannot be worked out in advance (as in BlockTable). */
const SEED = (Math.random() * 0x1_0000_0000) | 0;

/** FNV-style hash of the `len` bytes at view[at], four at a time (the last four may overlap) */
export function hashOf(view: DataView, at: number, len: number): number {
  let h = SEED ^ len;
  if (len < 4) {
    for (let i = 0; i < len; i++) h = Math.imul(h ^ view.getUint8(at + i), 0x01000193);
    return h;
  }
  const last = len - 4;
  for (let i = 0; i < last; i += 4) h = Math.imul(h ^ view.getInt32(at + i, true), 0x01000193) ^ (h >>> 15);
  return Math.imul(h ^ view.getInt32(at + last, true), 0x01000193) ^ (h >>> 15);
}

/** Whether the `len` bytes at a[ap] and at b[bp] are the same, four at a time (the last four may overlap). */
export function sameBytes(a: DataView, ap: number, b: DataView, bp: number, len: number): boolean {
  if (len < 4) {
    for (let i = 0; i < len; i++) if (a.getUint8(ap + i) !== b.getUint8(bp + i)) return false;
    return true;
  }
  const last = len - 4;
  for (let i = 0; i < last; i += 4) if (a.getInt32(ap + i, true) !== b.getInt32(bp + i, true)) return false;
  return a.getInt32(ap + last, true) === b.getInt32(bp + last, true);
}

/** Int32 cells per entry in IdTable.entries: hash, start in the arena, length, tag (16 bytes) */
const ENTRY = 4;

/** `T`: what is kept for each string (the string itself, or something that holds it). */
export class IdTable<T = string> {
  private readonly mask: number;
  /** per slot: entry number + 1, 0 = free */
  private readonly slots: Int32Array;
  /** per entry, side by side (one cache line for a lookup): hash, start in the arena, length, tag */
  private readonly entries: Int32Array;
  private readonly values: T[] = [];
  private arena = new Uint8Array(1 << 16);
  private arenaView = new DataView(this.arena.buffer);
  private used = 0;
  private count = 0;

  /**
   * @param maxEntries strings remembered at most
   * @param maxBytes their bytes at most (the arena grows to it)
   * @param hash tests pass a poor one, to have collisions
   */
  constructor(private readonly maxEntries: number, private readonly maxBytes: number, private readonly hash: ByteHash = hashOf) {
    const size = 2 ** Math.ceil(Math.log2(maxEntries * 2));
    this.mask = size - 1;
    this.slots = new Int32Array(size);
    this.entries = new Int32Array(maxEntries * ENTRY);
  }

  get size(): number {
    return this.count;
  }

  /** What is remembered for the `len` bytes at view[at], or undefined. */
  get(view: DataView, at: number, len: number): T | undefined {
    const e = this.find(view, at, len);
    return e < 0 ? undefined : this.values[e];
  }

  /**
   * The entry of the `len` bytes at view[at], or -1: for value() and tag(), until the next add (which
   * may start the table over).
   */
  find(view: DataView, at: number, len: number): number {
    const h = this.hash(view, at, len);
    for (let slot = h & this.mask; ; slot = (slot + 1) & this.mask) {
      const e = this.slots[slot]! - 1;
      if (e < 0) return -1;
      const m = e * ENTRY;
      if (this.entries[m] === h && this.entries[m + 2] === len && sameBytes(this.arenaView, this.entries[m + 1]!, view, at, len)) return e;
    }
  }

  /** What entry `e` (from find) remembers. */
  value(e: number): T {
    return this.values[e]!;
  }

  /** The number kept beside entry `e`'s value: it is in the cache line find() has just read, the value is not. */
  tag(e: number): number {
    return this.entries[e * ENTRY + 3]!;
  }

  /**
   * Remembers `value` and `tag` for the string of the `len` bytes at view[at] (not remembered yet), and
   * gives its entry (as find would), or -1: longer ones than the arena are not remembered. Entry numbers
   * start again from 0 when the table starts over.
   */
  add(view: DataView, at: number, len: number, value: T, tag = 0): number {
    if (len > this.maxBytes) return -1;
    if (this.used + len > this.arena.length) this.grow(this.used + len);
    if (this.count === this.maxEntries || this.used + len > this.arena.length) this.clear();
    const e = this.count++;
    for (let i = 0; i < len; i++) this.arena[this.used + i] = view.getUint8(at + i);
    const h = this.hash(view, at, len);
    this.entries[e * ENTRY] = h;
    this.entries[e * ENTRY + 1] = this.used;
    this.entries[e * ENTRY + 2] = len;
    this.entries[e * ENTRY + 3] = tag;
    this.values[e] = value;
    this.used += len;
    let slot = h & this.mask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
    this.slots[slot] = e + 1;
    return e;
  }

  private grow(needed: number): void {
    let size = this.arena.length;
    while (size < needed && size < this.maxBytes) size *= 2;
    const arena = new Uint8Array(Math.min(size, this.maxBytes));
    arena.set(this.arena.subarray(0, this.used));
    this.arena = arena;
    this.arenaView = new DataView(arena.buffer);
  }

  private clear(): void {
    this.slots.fill(0);
    this.values.length = 0;
    this.count = 0;
    this.used = 0;
  }
}
