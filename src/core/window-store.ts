/**
 * Per-identity sliding windows (README.md, "Development"; the memory per identity is measured in benchmarks/README.md).
 *
 * Counts live in struct-of-arrays typed arrays indexed by slot: per slot the head bucket's counts in a
 * header, a ring of the `ringSize - 1` buckets of width g before it (calls, denies, advisory denies as
 * 16-bit cells with a sparse overflow map), running totals, and the range of bucket numbers [lo, head]
 * counted. Buckets leave the ring lazily: when the head moves forward (the position is reused) or when
 * an evaluation raises the cutoff. No allocation per decision in steady state.
 *
 * Identity -> slot is a plain Map, with a shortcut for decisions that carry an identity handle
 * (identity-handle.ts): a direct-mapped handle -> slot array, checked against the handle in the slot's
 * header. Recency is an intrusive doubly linked list over slots, ordered by
 * the stream time at which each identity's head bucket last moved. The list head is therefore the
 * idlest identity: a new identity first takes the slot of one idle longer than window + lateness (its
 * window is empty, nothing is lost); only at the hard cap with every identity live is a live one evicted,
 * which is counted. (lru-cache was the first choice here; its get() moves the entry on every
 * decision and measured 0.87M decisions/s against the 10M/s target, so recency moves only when a
 * head bucket does; see benchmarks/README.md.)
 */
import { DecisionClass } from './decision-class.js';
import { NO_HANDLE } from './identity-handle.js';

export interface WindowStoreOptions {
  /** ring size in buckets: ceil(W / g) + 1 covers every bucket a window at any T can touch */
  readonly ringSize: number;
  /** buckets an identity must be idle before its slot may be reused without loss */
  readonly idleBuckets: number;
  /** hard cap on tracked identities */
  readonly maxIdentities: number;
  /** slots allocated up front; the arrays double up to maxIdentities as identities arrive */
  readonly initialCapacity?: number;
  /** called when a slot is given up (idle reuse, live eviction or explicit clear) */
  readonly onRelease?: (slot: number, id: string) => void;
}

export interface WindowCounts {
  calls: number;
  denies: number;
  advisoryDenies: number;
}

const CELL_MAX = 0xffff;
const CELL_SPAN = 0x10000;
const KINDS = 3; // calls, denies, advisory denies
// Per-slot header record of 56 bytes, read through two views of one buffer. Decisions in the head
// bucket (nearly all of them) are counted in the header only; the head bucket's counts move to the ring
// when the head advances. So the common path touches this record only (and, for a decision that comes
// with an identity handle, one read of the handle table instead of a hash lookup of the ID).
// Counts are 32-bit: one identity would need 4.3 billion decisions in one window to overflow them.
const HDR_BYTES = 56;
const F = HDR_BYTES / 8; // float64 stride
const HEAD = 0; // float64: newest bucket number counted
const LO = 1; // float64: oldest bucket number still counted
const SESSION_BUCKET = 2; // float64: kept for the owner (the evaluator: its current session's newest bucket)
const U = HDR_BYTES / 4; // uint32 stride
const TOT = 6; // uint32: running totals, TOT + kind
const CUR = 9; // uint32: counts of the head bucket, CUR + kind (its ring cells stay zero while it is the head)
const FLAGS = 12; // uint32: bit 0 set while the identity is blocked; bits 1..3 the next position in its ring of decision ids
const BLOCKED_BIT = 1;
const ID_CURSOR_SHIFT = 1;
const HANDLE = 13; // uint32: the identity handle bound to the slot (NO_HANDLE: none)
const NIL = -1;
/**
 * De-duplication (docs/spec.md#23-de-duplication): per slot a ring of the fingerprints of the decision
 * ids of the identity's last ID_RING counted decisions, 64 bits each (two uint32 cells, 0/0 = empty).
 * A re-delivery older than stream time - lateness is already late, so the ring only needs the calls of
 * the last few seconds; 8 of them cost 64 bytes per identity.
 */
export const ID_RING = 8;
const ID_CELLS = ID_RING * 2;

export class WindowStore {
  readonly ringSize: number;
  readonly maxIdentities: number;
  private readonly idleBuckets: number;
  private readonly onRelease: ((slot: number, id: string) => void) | undefined;

  private capacity: number;
  private nextFresh = 0;
  private readonly freeSlots: number[] = [];
  /** ring positions per slot: the buckets [head - ringSize + 1, head - 1]; the head's counts are in the header */
  private readonly positions: number;
  private cells: Uint16Array; // [(slot * positions + pos) * KINDS + kind]
  private hf: Float64Array; // header, float64 view: [slot * F + HEAD | LO]
  private hu: Uint32Array; // header, uint32 view: [slot * U + TOT.. | CUR.. | FLAGS]
  private ids: Uint32Array; // [slot * ID_CELLS + 2 * i | + 1]: fingerprint i of the slot's ring of decision ids
  private prev: Int32Array; // recency list, oldest first
  private next: Int32Array;
  private oldest = NIL;
  private newest = NIL;
  private slotIds: (string | undefined)[];
  /** identity handle -> slot, direct-mapped by the handle's low bits; an entry counts only if the slot's header holds the same handle */
  private handleSlots: Int32Array;
  private handleMask: number;
  private readonly overflow = new Map<number, number>(); // cell index -> multiples of 65536
  private readonly index = new Map<string, number>();

  /** live identities evicted because the cap was reached (their window was not empty) */
  liveEvictions = 0;
  lastLiveEvicted: string | undefined;

  constructor(options: WindowStoreOptions) {
    if (!(options.ringSize >= 2)) throw new RangeError('ringSize must be >= 2');
    this.ringSize = options.ringSize;
    this.positions = options.ringSize - 1;
    this.idleBuckets = options.idleBuckets;
    this.maxIdentities = options.maxIdentities;
    this.onRelease = options.onRelease;
    this.capacity = Math.max(1, Math.min(options.initialCapacity ?? 1024, options.maxIdentities));
    this.cells = new Uint16Array(this.capacity * this.positions * KINDS);
    const header = new ArrayBuffer(this.capacity * HDR_BYTES);
    this.hf = new Float64Array(header);
    this.hu = new Uint32Array(header);
    this.ids = new Uint32Array(this.capacity * ID_CELLS);
    this.prev = new Int32Array(this.capacity);
    this.next = new Int32Array(this.capacity);
    this.slotIds = new Array<string | undefined>(this.capacity);
    this.handleSlots = new Int32Array(pow2AtLeast(this.capacity));
    this.handleMask = this.handleSlots.length - 1;
  }

  get size(): number {
    return this.index.size;
  }

  /** Bytes held by the typed arrays (the per-identity part of the store's memory). */
  get arrayBytes(): number {
    return this.cells.byteLength + this.hf.byteLength + this.ids.byteLength + this.prev.byteLength +
      this.next.byteLength + this.handleSlots.byteLength;
  }

  /** Slot of an identity, or -1 when it is not tracked. */
  peekSlot(id: string): number {
    return this.index.get(id) ?? NIL;
  }

  /**
   * Slot of the identity with handle `h` (see identity-handle.ts), or -1 when no slot is bound to it (then
   * look the ID up with peekSlot / slotFor and bind the handle).
   */
  slotOfHandle(h: number): number {
    const slot = this.handleSlots[h & this.handleMask]!;
    return h !== NO_HANDLE && this.hu[slot * U + HANDLE] === h ? slot : NIL;
  }

  /**
   * Loads what counting a decision of the identity with handle `h` reads first (its handle-table entry and
   * slot header) and returns the slot as `slotOfHandle` does. Called for a group of decisions before they
   * are counted, so their memory reads overlap instead of taking turns (Evaluator.acceptAll).
   */
  readAhead(h: number): number {
    const slot = this.handleSlots[h & this.handleMask]!;
    // HEAD opens the header and HANDLE closes it: both of its cache lines are read
    return this.hu[slot * U + HANDLE] === h && this.hf[slot * F + HEAD]! > -Infinity ? slot : NIL;
  }

  /** From now on `h`, the handle of the identity in `slot`, finds the slot. */
  bindHandle(slot: number, h: number): void {
    if (h === NO_HANDLE) return;
    this.hu[slot * U + HANDLE] = h;
    this.handleSlots[h & this.handleMask] = slot;
  }

  sessionBucket(slot: number): number {
    return this.hf[slot * F + SESSION_BUCKET]!;
  }

  setSessionBucket(slot: number, bucket: number): void {
    this.hf[slot * F + SESSION_BUCKET] = bucket;
  }

  /**
   * Slot of an identity, allocating one if needed, at stream-time bucket `nowBucket`. An identity whose
   * newest bucket is more than `idleBuckets` behind `idleReference` (default: nowBucket) may lose its slot
   * to this one. `isBlocked` is asked only when a new slot is allocated.
   */
  slotFor(id: string, nowBucket: number, isBlocked: (id: string) => boolean, idleReference = nowBucket): number {
    const found = this.index.get(id);
    if (found !== undefined) return found;
    const slot = this.allocate(idleReference);
    this.resetSlot(slot, nowBucket);
    this.hu[slot * U + FLAGS] = isBlocked(id) ? BLOCKED_BIT : 0;
    this.index.set(id, slot);
    this.slotIds[slot] = id;
    this.linkNewest(slot);
    return slot;
  }

  isBlocked(slot: number): boolean {
    return (this.hu[slot * U + FLAGS]! & BLOCKED_BIT) !== 0;
  }

  setBlocked(slot: number, blocked: boolean): void {
    const u = slot * U + FLAGS;
    this.hu[u] = blocked ? this.hu[u]! | BLOCKED_BIT : this.hu[u]! & ~BLOCKED_BIT;
  }

  /**
   * Was `decisionId` among the identity's last ID_RING decision ids? If not, it is noted as the newest
   * (the oldest leaves the ring). Compares 64-bit fingerprints: two different ids collide with a
   * chance of about 2^-64 per pair, and a collision only ever drops a decision, never adds one.
   */
  seenDecisionId(slot: number, decisionId: string): boolean {
    let a = 0x9e3779b9;
    let b = 0x85ebca6b;
    for (let i = 0; i < decisionId.length; i++) {
      const c = decisionId.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    a = fmix32(a ^ decisionId.length);
    b = fmix32(b ^ a);
    if ((a | b) === 0) b = 1; // 0/0 marks an empty cell
    const base = slot * ID_CELLS;
    const ids = this.ids;
    for (let i = base; i < base + ID_CELLS; i += 2) {
      if (ids[i] === a && ids[i + 1] === b) return true;
    }
    const u = slot * U + FLAGS;
    const flags = this.hu[u]!;
    const at = (flags >>> ID_CURSOR_SHIFT) % ID_RING;
    ids[base + 2 * at] = a;
    ids[base + 2 * at + 1] = b;
    this.hu[u] = (flags & BLOCKED_BIT) | (((at + 1) % ID_RING) << ID_CURSOR_SHIFT);
    return false;
  }

  /** Count one decision of class `cls` in bucket `bucket`. Returns false if the bucket is no longer counted. */
  add(slot: number, bucket: number, cls: DecisionClass): boolean {
    if (cls === DecisionClass.Ignored) return false;
    const f = slot * F;
    // Below lo: already left the window. (lo can exceed head when a cutoff passed the newest bucket.)
    if (bucket < this.hf[f + LO]!) return false;
    const head = this.hf[f + HEAD]!;
    const u = slot * U;
    if (bucket >= head) {
      if (bucket > head) this.advanceHead(slot, bucket);
      const hu = this.hu;
      hu[u + CUR]!++;
      hu[u + TOT]!++;
      if (cls !== DecisionClass.Call) {
        hu[u + CUR + 1]!++;
        hu[u + TOT + 1]!++;
        if (cls === DecisionClass.AdvisoryDeny) {
          hu[u + CUR + 2]!++;
          hu[u + TOT + 2]!++;
        }
      }
      return true;
    }
    // A late decision in an older bucket still in the window: count it in the ring.
    const base = this.cellOf(slot, bucket);
    this.increment(base);
    this.hu[u + TOT]!++;
    if (cls !== DecisionClass.Call) {
      this.increment(base + 1);
      this.hu[u + TOT + 1]!++;
      if (cls === DecisionClass.AdvisoryDeny) {
        this.increment(base + 2);
        this.hu[u + TOT + 2]!++;
      }
    }
    return true;
  }

  /** Window counts of buckets >= cutoffBucket. Buckets below the cutoff are dropped for good. */
  counts(slot: number, cutoffBucket: number, out: WindowCounts): WindowCounts {
    if (cutoffBucket > this.hf[slot * F + LO]!) this.expireBelow(slot, cutoffBucket);
    const u = slot * U;
    out.calls = this.hu[u + TOT]!;
    out.denies = this.hu[u + TOT + 1]!;
    out.advisoryDenies = this.hu[u + TOT + 2]!;
    return out;
  }

  /** Empty an identity's window (an unblock) and forget the identity. */
  clear(id: string): void {
    const slot = this.index.get(id);
    if (slot !== undefined) this.release(slot);
  }

  private isLive(slot: number, nowBucket: number): boolean {
    return this.hf[slot * F + HEAD]! + this.idleBuckets >= nowBucket;
  }

  private allocate(nowBucket: number): number {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    // Reuse the slot of the idlest identity if its window is certainly empty.
    if (this.oldest !== NIL && !this.isLive(this.oldest, nowBucket)) return this.evict(this.oldest);
    if (this.nextFresh < this.capacity) return this.nextFresh++;
    if (this.capacity < this.maxIdentities) {
      this.grow(Math.min(this.maxIdentities, this.capacity * 2));
      return this.nextFresh++;
    }
    // At the cap and every tracked identity is live: the idlest one loses its window.
    this.liveEvictions++;
    this.lastLiveEvicted = this.slotIds[this.oldest];
    return this.evict(this.oldest);
  }

  private evict(slot: number): number {
    this.release(slot);
    return this.freeSlots.pop()!;
  }

  private release(slot: number): void {
    const id = this.slotIds[slot]!;
    this.index.delete(id);
    this.slotIds[slot] = undefined;
    this.hu[slot * U + HANDLE] = NO_HANDLE;
    this.unlink(slot);
    this.onRelease?.(slot, id);
    this.freeSlots.push(slot);
  }

  private linkNewest(slot: number): void {
    this.prev[slot] = this.newest;
    this.next[slot] = NIL;
    if (this.newest !== NIL) this.next[this.newest] = slot;
    else this.oldest = slot;
    this.newest = slot;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    if (p !== NIL) this.next[p] = n;
    else this.oldest = n;
    if (n !== NIL) this.prev[n] = p;
    else this.newest = p;
  }

  private grow(newCapacity: number): void {
    const cells = new Uint16Array(newCapacity * this.positions * KINDS);
    cells.set(this.cells);
    this.cells = cells;
    const header = new ArrayBuffer(newCapacity * HDR_BYTES);
    new Uint8Array(header).set(new Uint8Array(this.hf.buffer));
    this.hf = new Float64Array(header);
    this.hu = new Uint32Array(header);
    const ids = new Uint32Array(newCapacity * ID_CELLS);
    ids.set(this.ids);
    this.ids = ids;
    const prev = new Int32Array(newCapacity);
    prev.set(this.prev);
    this.prev = prev;
    const next = new Int32Array(newCapacity);
    next.set(this.next);
    this.next = next;
    this.slotIds.length = newCapacity;
    this.capacity = newCapacity;
    if (pow2AtLeast(newCapacity) > this.handleSlots.length) {
      this.handleSlots = new Int32Array(pow2AtLeast(newCapacity));
      this.handleMask = this.handleSlots.length - 1;
      for (let slot = 0; slot < this.nextFresh; slot++) {
        const h = this.hu[slot * U + HANDLE]!;
        if (h !== NO_HANDLE) this.handleSlots[h & this.handleMask] = slot;
      }
    }
  }

  private resetSlot(slot: number, bucket: number): void {
    this.zeroSlotCounts(slot);
    this.ids.fill(0, slot * ID_CELLS, (slot + 1) * ID_CELLS);
    this.hf[slot * F + HEAD] = bucket;
    this.hf[slot * F + LO] = bucket - this.ringSize + 1;
  }

  /** Move the head to `bucket`, dropping the buckets whose ring positions are reused. */
  private advanceHead(slot: number, bucket: number): void {
    const f = slot * F;
    const u = slot * U;
    const head = this.hf[f + HEAD]!;
    const lo = this.hf[f + LO]!;
    const n = this.ringSize;
    if (bucket - head >= n) {
      this.zeroSlotCounts(slot); // every counted bucket falls out of the ring
    } else {
      // Buckets head..bucket-1 take the ring positions of head+1-n..bucket-n (n - 1 positions), which
      // leave the window now: drop them first. The old head's position is among them.
      this.dropBuckets(slot, Math.max(lo, head + 1 - n), bucket - n + 1);
      // The old head's counts join the ring.
      const base = this.cellOf(slot, head);
      for (let k = 0; k < KINDS; k++) {
        const v = this.hu[u + CUR + k]!;
        if (v !== 0) {
          this.cells[base + k] = v % CELL_SPAN;
          if (v >= CELL_SPAN) this.overflow.set(base + k, Math.floor(v / CELL_SPAN));
          this.hu[u + CUR + k] = 0;
        }
      }
    }
    this.hf[f + HEAD] = bucket;
    this.hf[f + LO] = Math.max(lo, bucket - n + 1);
    if (this.newest !== slot) {
      this.unlink(slot);
      this.linkNewest(slot);
    }
  }

  private expireBelow(slot: number, cutoff: number): void {
    const f = slot * F;
    if (cutoff > this.hf[f + HEAD]!) {
      this.zeroSlotCounts(slot); // every counted bucket is below the cutoff
    } else {
      this.dropBuckets(slot, this.hf[f + LO]!, cutoff);
    }
    this.hf[f + LO] = cutoff;
  }

  private zeroSlotCounts(slot: number): void {
    const start = slot * this.positions * KINDS;
    const end = start + this.positions * KINDS;
    this.cells.fill(0, start, end);
    if (this.overflow.size > 0) {
      for (let c = start; c < end; c++) this.overflow.delete(c);
    }
    this.hu.fill(0, slot * U + TOT, slot * U + CUR + KINDS); // totals and head-bucket counts
  }

  /**
   * Drop the buckets [from, to) (all before the head, at most ringSize - 1 of them): their counts leave the
   * totals and their cells are zeroed. An identity seen once every few buckets has mostly empty ones, which
   * cost a read each.
   */
  private dropBuckets(slot: number, from: number, to: number): void {
    if (from >= to) return;
    const cells = this.cells;
    const rowStart = slot * this.positions * KINDS;
    const rowEnd = rowStart + this.positions * KINDS;
    const t = slot * U + TOT;
    const overflowed = this.overflow.size > 0;
    let cell = this.cellOf(slot, from);
    for (let b = from; b < to; b++) {
      if (overflowed || (cells[cell]! | cells[cell + 1]! | cells[cell + 2]!) !== 0) {
        for (let k = 0; k < KINDS; k++) {
          const v = this.take(cell + k);
          if (v !== 0) this.hu[t + k] = this.hu[t + k]! - v;
        }
      }
      cell += KINDS;
      if (cell === rowEnd) cell = rowStart;
    }
  }

  /** The first cell of a bucket before the head (one of the last ringSize - 1 buckets). */
  private cellOf(slot: number, bucket: number): number {
    return (slot * this.positions + mod(bucket, this.positions)) * KINDS;
  }

  private increment(cell: number): void {
    const v = this.cells[cell]!;
    if (v === CELL_MAX) {
      this.cells[cell] = 0;
      this.overflow.set(cell, (this.overflow.get(cell) ?? 0) + 1);
    } else {
      this.cells[cell] = v + 1;
    }
  }

  /** Read a cell's full value and zero it. */
  private take(cell: number): number {
    let v = this.cells[cell]!;
    this.cells[cell] = 0;
    if (this.overflow.size > 0) {
      const hi = this.overflow.get(cell);
      if (hi !== undefined) {
        v += hi * CELL_SPAN;
        this.overflow.delete(cell);
      }
    }
    return v;
  }
}

/** murmur3's finaliser: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function mod(a: number, n: number): number {
  const r = a % n;
  return r < 0 ? r + n : r;
}
