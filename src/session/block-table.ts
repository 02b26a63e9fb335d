/**
 * The session guard's table of blocked identities: string -> value, answering `get` for a string it has
 * never seen before (a header value, a fresh string) without a JavaScript `Map`.
 *
 * Why not a `Map`: with a million keys, `Map.get` on a fresh string hashes it, then walks a bucket chain
 * whose entries and key strings are each a cache miss (about 1M lookups/s measured, benchmarks/README.md
 * "Issue #5"). Here:
 *
 * - a seeded 32-bit hash is computed over the query's char codes, its last 16 chars first: a bit array
 *   of those tail hashes (1 MB for a million keys, small enough to stay in cache) answers most absent
 *   identities after 16 chars; the rest of the string then completes the full hash, and a second bit
 *   array of full hashes answers most of the others;
 * - only then is a linear-probing table in one `Int32Array` (slot = [hash, entry index], load <= 1/2)
 *   probed, and the full string compared only where the stored 32-bit hash is equal.
 *
 * Exact, not probabilistic: a key is found iff it was set and not deleted (the bit array and the hashes
 * only decide when the string comparison can be skipped). Deletes shift the probe run back (no
 * tombstones); the bit array cannot forget a key, so it is rebuilt once enough keys were deleted.
 */

/** A random seed per process, so which strings collide cannot be worked out in advance. */
const SEED = (Math.random() * 0x1_0000_0000) | 0;
const M1 = 0x9e3779b1 | 0;
const M2 = 0x85ebca77 | 0;
const EMPTY = 0;
const MIN_CAPACITY = 16;
/** the tail hash covers the last TAIL chars (and the length) */
const TAIL = 16;
/** keys ending in '/*' up to this length are counted by length, so a scope walk hashes only prefixes of a length in use */
const MAX_STAR_LENGTH = 4096;
const SLASH = 0x2f;
const STAR = 0x2a;

function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/*
 * The hash of a string s of length n, in two stages over the same two lanes (char j of a stage goes
 * into lane j & 1):
 *   1. the tail, s[t, n) with t = max(0, n - TAIL), from a state seeded with n: `tail` = fmix of it;
 *   2. then the head, s[0, t): `full` = fmix of both lanes after it.
 * Identities usually differ near their end (the workload name), so the tail bits answer most absent
 * identities after reading at most 16 chars; identities alike at the end cost one more bit read.
 * The stages share the lanes, so the full hash reads each char once either way.
 */
let lastTail = 0;

function finish(a: number, b: number): number {
  const h = fmix(a ^ Math.imul(b, M2));
  return h === EMPTY ? 1 : h;
}

/** The full hash of `s` (never 0: 0 marks an empty slot); leaves the tail hash in `lastTail`. Exported for tests. */
export function hashString(s: string): number {
  const n = s.length;
  const t = n > TAIL ? n - TAIL : 0;
  let a = SEED ^ n;
  let b = SEED ^ M2;
  let j = t;
  for (; j + 1 < n; j += 2) {
    a = Math.imul(a ^ s.charCodeAt(j), M1);
    b = Math.imul(b ^ s.charCodeAt(j + 1), M1);
  }
  if (j < n) a = Math.imul(a ^ s.charCodeAt(j), M1);
  lastTail = fmix(a ^ Math.imul(b, M2));
  for (j = 0; j + 1 < t; j += 2) {
    a = Math.imul(a ^ s.charCodeAt(j), M1);
    b = Math.imul(b ^ s.charCodeAt(j + 1), M1);
  }
  if (j < t) a = Math.imul(a ^ s.charCodeAt(j), M1);
  return finish(a, b);
}

/**
 * `hashString` for a query, stopping after the tail when `tailBits` says no key has that tail: returns
 * 0 then (no key equals `s`), else the full hash.
 */
function hashIfTailKnown(s: string, tailBits: Int32Array, shift: number): number {
  const n = s.length;
  const t = n > TAIL ? n - TAIL : 0;
  let a = SEED ^ n;
  let b = SEED ^ M2;
  let j = t;
  for (; j + 1 < n; j += 2) {
    a = Math.imul(a ^ s.charCodeAt(j), M1);
    b = Math.imul(b ^ s.charCodeAt(j + 1), M1);
  }
  if (j < n) a = Math.imul(a ^ s.charCodeAt(j), M1);
  const tail = fmix(a ^ Math.imul(b, M2));
  if ((tailBits[tail >>> shift >>> 5]! & (1 << (tail & 31))) === 0) return 0;
  for (j = 0; j + 1 < t; j += 2) {
    a = Math.imul(a ^ s.charCodeAt(j), M1);
    b = Math.imul(b ^ s.charCodeAt(j + 1), M1);
  }
  if (j < t) a = Math.imul(a ^ s.charCodeAt(j), M1);
  return finish(a, b);
}

/** `hashString(id.slice(0, end) + '/*')` without building that string (scope walks only). */
function hashStar(id: string, end: number): number {
  const n = end + 2;
  const t = n > TAIL ? n - TAIL : 0;
  const at = (j: number): number => (j < end ? id.charCodeAt(j) : j === end ? SLASH : STAR);
  let a = SEED ^ n;
  let b = SEED ^ M2;
  let j = t;
  for (; j + 1 < n; j += 2) {
    a = Math.imul(a ^ at(j), M1);
    b = Math.imul(b ^ at(j + 1), M1);
  }
  if (j < n) a = Math.imul(a ^ at(j), M1);
  for (j = 0; j + 1 < t; j += 2) {
    a = Math.imul(a ^ id.charCodeAt(j), M1);
    b = Math.imul(b ^ id.charCodeAt(j + 1), M1);
  }
  if (j < t) a = Math.imul(a ^ id.charCodeAt(j), M1);
  return finish(a, b);
}

/** a[0, n) === b[0, n), without building the substrings */
function samePrefix(a: string, b: string, n: number): boolean {
  for (let j = 0; j < n; j++) if (a.charCodeAt(j) !== b.charCodeAt(j)) return false;
  return true;
}

const endsWithStar = (k: string): boolean => k.length >= 2 && k.charCodeAt(k.length - 1) === STAR && k.charCodeAt(k.length - 2) === SLASH;

export class BlockTable<V> {
  /** [hash, entry] per slot; hash 0 = empty */
  private slots = new Int32Array(2 * MIN_CAPACITY);
  private mask = MIN_CAPACITY - 1;
  /** presence bits of the keys' tail hashes and full hashes, indexed by the hash's top `32 - bitShift` bits */
  private tailBits = new Int32Array(1 << 3);
  private fullBits = new Int32Array(1 << 3);
  private bitShift = 32 - 8;
  /** dense entries: keyValue[2e] the key, keyValue[2e + 1] its value (one cache line for both) */
  private keyValue: (string | V)[] = [];
  private hashOf = new Int32Array(MIN_CAPACITY);
  private tailOf = new Int32Array(MIN_CAPACITY);
  private count = 0;
  private deletedSinceBits = 0;
  /** how many keys ending in '/*' have each length (and how many are longer than MAX_STAR_LENGTH) */
  private readonly starLengths = new Int32Array(MAX_STAR_LENGTH + 1);
  private longStars = 0;
  private stars = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    const h = hashIfTailKnown(key, this.tailBits, this.bitShift);
    if (h === EMPTY || (this.fullBits[h >>> this.bitShift >>> 5]! & (1 << (h & 31))) === 0) return undefined;
    const e = this.find(key, h);
    return e < 0 ? undefined : (this.keyValue[2 * e + 1] as V);
  }

  has(key: string): boolean {
    return this.find(key, hashString(key)) >= 0;
  }

  set(key: string, value: V): void {
    const h = hashString(key);
    const tail = lastTail;
    const e = this.find(key, h);
    if (e >= 0) {
      this.keyValue[2 * e + 1] = value;
      return;
    }
    if (2 * (this.count + 1) > this.mask + 1) this.resize(2 * (this.mask + 1));
    const n = this.count++;
    this.keyValue.push(key, value);
    this.hashOf[n] = h;
    this.tailOf[n] = tail;
    this.place(h, n);
    this.addBits(h, tail);
    if (endsWithStar(key)) this.countStar(key, 1);
  }

  delete(key: string): boolean {
    const h = hashString(key);
    const slot = this.slotOf(key, h);
    if (slot < 0) return false;
    const e = this.slots[2 * slot + 1]!;
    this.removeSlot(slot);
    if (endsWithStar(key)) this.countStar(key, -1);
    // keep the entries dense: the last one moves into e's place
    const last = --this.count;
    if (e !== last) {
      const lastSlot = this.slotOf(this.keyValue[2 * last] as string, this.hashOf[last]!);
      this.slots[2 * lastSlot + 1] = e;
      this.keyValue[2 * e] = this.keyValue[2 * last]!;
      this.keyValue[2 * e + 1] = this.keyValue[2 * last + 1]!;
      this.hashOf[e] = this.hashOf[last]!;
      this.tailOf[e] = this.tailOf[last]!;
    }
    this.keyValue.length = 2 * last;
    if (++this.deletedSinceBits > 64 && 4 * this.deletedSinceBits > this.count) this.rebuildBits();
    if (this.mask + 1 > MIN_CAPACITY && 8 * this.count < this.mask + 1) this.resize((this.mask + 1) / 2);
    return true;
  }

  /**
   * The first key present among `id.slice(0, i) + '/*'` for i = each index of '/' in `id` at or after
   * `from`, in order, then i = id.length; undefined if none. Builds no strings: only prefixes of a
   * length some key ending in '/*' has are hashed, and a candidate key is compared char by char.
   */
  firstStarPrefix(id: string, from: number): string | undefined {
    if (this.stars === 0) return undefined;
    const n = id.length;
    for (let j = id.indexOf('/', from); ; j = id.indexOf('/', j + 1)) {
      const end = j === -1 ? n : j;
      if (end + 2 > MAX_STAR_LENGTH ? this.longStars > 0 : this.starLengths[end + 2] !== 0) {
        const h = hashStar(id, end);
        if ((this.fullBits[h >>> this.bitShift >>> 5]! & (1 << (h & 31))) !== 0) {
          const e = this.findPrefixStar(id, end, h);
          if (e >= 0) return this.keyValue[2 * e] as string;
        }
      }
      if (j === -1) return undefined;
    }
  }

  *entries(): IterableIterator<[string, V]> {
    for (let e = 0; e < this.count; e++) yield [this.keyValue[2 * e] as string, this.keyValue[2 * e + 1] as V];
  }

  /** the entry index of key, or -1 */
  private find(key: string, h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[2 * i]!;
      if (s === EMPTY) return -1;
      if (s === h) {
        const e = slots[2 * i + 1]!;
        if (this.keyValue[2 * e] === key) return e;
      }
    }
  }

  /** the entry index of the key id.slice(0, end) + '/*', or -1 */
  private findPrefixStar(id: string, end: number, h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[2 * i]!;
      if (s === EMPTY) return -1;
      if (s === h) {
        const e = slots[2 * i + 1]!;
        const k = this.keyValue[2 * e] as string;
        if (k.length === end + 2 && endsWithStar(k) && samePrefix(k, id, end)) return e;
      }
    }
  }

  /** the slot holding key, or -1 */
  private slotOf(key: string, h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[2 * i]!;
      if (s === EMPTY) return -1;
      if (s === h && this.keyValue[2 * slots[2 * i + 1]!] === key) return i;
    }
  }

  private place(h: number, e: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = h & mask;
    while (slots[2 * i] !== EMPTY) i = (i + 1) & mask;
    slots[2 * i] = h;
    slots[2 * i + 1] = e;
  }

  /** Empty a slot and move later entries of its probe run back, so no search stops early. */
  private removeSlot(slot: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let hole = slot;
    for (let j = (slot + 1) & mask; slots[2 * j] !== EMPTY; j = (j + 1) & mask) {
      const home = slots[2 * j]! & mask;
      // the entry at j may move to the hole only if its home is not cyclically within (hole, j]
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      slots[2 * hole] = slots[2 * j]!;
      slots[2 * hole + 1] = slots[2 * j + 1]!;
      hole = j;
    }
    slots[2 * hole] = EMPTY;
    slots[2 * hole + 1] = 0;
  }

  private countStar(key: string, by: number): void {
    this.stars += by;
    if (key.length > MAX_STAR_LENGTH) this.longStars += by;
    else this.starLengths[key.length]! += by;
  }

  private resize(capacity: number): void {
    this.slots = new Int32Array(2 * capacity);
    this.mask = capacity - 1;
    const hashOf = new Int32Array(capacity);
    hashOf.set(this.hashOf.subarray(0, this.count));
    this.hashOf = hashOf;
    const tailOf = new Int32Array(capacity);
    tailOf.set(this.tailOf.subarray(0, this.count));
    this.tailOf = tailOf;
    for (let e = 0; e < this.count; e++) this.place(hashOf[e]!, e);
    this.rebuildBits();
  }

  private addBits(h: number, tail: number): void {
    this.fullBits[h >>> this.bitShift >>> 5]! |= 1 << (h & 31);
    this.tailBits[tail >>> this.bitShift >>> 5]! |= 1 << (tail & 31);
  }

  /**
   * 4 bits per slot of capacity each (4 to 8 per key, 1 MB per bit array at a million keys, so both stay
   * in a 2 MB L2): about 1 absent key in 9 to 17 passes one of them. Rebuilt after growth, shrinking, or
   * enough deletes (a bit cannot be cleared: another key may share it).
   */
  private rebuildBits(): void {
    const bitsLog2 = Math.max(8, 31 - Math.clz32(this.mask + 1) + 2);
    this.bitShift = 32 - bitsLog2;
    this.tailBits = new Int32Array(1 << (bitsLog2 - 5));
    this.fullBits = new Int32Array(1 << (bitsLog2 - 5));
    for (let e = 0; e < this.count; e++) this.addBits(this.hashOf[e]!, this.tailOf[e]!);
    this.deletedSinceBits = 0;
  }
}
