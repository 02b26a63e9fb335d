/**
 * Identity handles: small numbers for SPIFFE IDs, handed out by a decoder once it has validated an ID,
 * and carried in the pre-parsed decision (`Decision.identity`). The window store finds an identity's slot
 * from its handle with one array read, checked against the handle kept in the slot's header, instead of
 * a hash lookup of the string: with many identities the lookup's cache misses are most of the cost of a
 * decision (benchmarks/README.md, issue #2).
 *
 * A handle stands for exactly one ID for the life of the process: numbers come from one process-wide
 * counter and are never reused, so two interners never give the same number to different IDs. After
 * 2^32 - 1 handles the counter stops and `handleOf` answers NO_HANDLE (decisions then go by string).
 */

/** "no handle": the store finds the slot by the ID string */
export const NO_HANDLE = 0;
const LAST_HANDLE = 0xffffffff;
let nextHandle = 1;

/** A handle no one has had yet, or NO_HANDLE once all 2^32 - 1 are given out. */
export function newIdentityHandle(): number {
  return nextHandle > LAST_HANDLE ? NO_HANDLE : nextHandle++;
}

export class IdentityInterner {
  private readonly handles = new Map<string, number>();

  /** @param maxEntries bound on remembered IDs; when reached the interner starts over (new numbers) */
  constructor(private readonly maxEntries = 1 << 20) {}

  /** The handle of `id`, given one if it has none. */
  handleOf(id: string): number {
    const known = this.handles.get(id);
    if (known !== undefined) return known;
    const h = newIdentityHandle();
    if (h === NO_HANDLE) return NO_HANDLE;
    if (this.handles.size >= this.maxEntries) this.handles.clear();
    this.handles.set(id, h);
    return h;
  }
}
