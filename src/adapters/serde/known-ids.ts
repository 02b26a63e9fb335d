/**
 * The SPIFFE IDs a reader has validated, looked up by their bytes (IdTable): a known ID costs a hash and
 * a comparison of its bytes and gives back the string made the first time, the same object for every
 * decision of the identity, with the identity handle drawn for it (identity-handle.ts). Beside each
 * ID, the session id string its last decision carried, reused while the bytes are the same, so the
 * evaluator's "same session as last time" is an identity comparison. The fast decoder reads records'
 * `agent_id` through it (fast-decision.ts), a repartition owner its forwarded entries' (repartition.ts).
 */
import { newIdentityHandle } from '../../core/identity-handle.js';
import { isSpiffeId } from '../../core/spiffe-id.js';
import { IdTable } from './id-table.js';

/** Validated SPIFFE IDs remembered (and their bytes at most); when there are more, the table starts over. */
export const MAX_CACHED_IDS = 100_000;
const MAX_CACHED_ID_BYTES = 8 << 20;
/** Longer session ids are not kept per identity: memory stays about what the IDs take. */
const MAX_KEPT_SESSION = 128;

/** The string slices Buffer has at run time (Node's own `toString('latin1' or 'utf8', s, e)` end in them). */
export interface Sliceable extends Buffer {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

export class KnownIds {
  // what the last valid() that answered true found: the ID, its handle and its entry (-1: not kept)
  id = '';
  handle = 0;
  entry = -1;
  private readonly table: IdTable;
  /**
   * By entry of the table: the session id string the identity's last decision carried (ASCII only).
   * Checked against the bytes every time, so an entry reused after the table starts over only costs a
   * new string.
   */
  private readonly sessionOf: (string | undefined)[] = [];

  /** @param maxIds bound on remembered valid IDs (tests make it small) */
  constructor(maxIds = MAX_CACHED_IDS) {
    this.table = new IdTable(maxIds, MAX_CACHED_ID_BYTES);
  }

  /**
   * Whether b[s..e) (at view[base + s]) is a valid SPIFFE ID; if so, `id`, `handle` and `entry` are the
   * ID, its identity handle and its entry. A SPIFFE ID is ASCII, so its bytes read as Latin-1 are its
   * characters, and a byte above 0x7f makes one the grammar refuses.
   */
  valid(view: DataView, b: Buffer, base: number, s: number, e: number): boolean {
    const entry = this.table.find(view, base + s, e - s);
    if (entry >= 0) {
      this.id = this.table.value(entry);
      this.handle = this.table.tag(entry);
      this.entry = entry;
      return true;
    }
    const id = (b as Sliceable).latin1Slice(s, e);
    if (!isSpiffeId(id)) return false;
    const handle = newIdentityHandle();
    this.entry = this.table.add(view, base + s, e - s, id, handle);
    this.id = id;
    this.handle = handle;
    return true;
  }

  /**
   * The session id in the UTF-8 bytes b[s..e) of a decision of the ID in entry `entry` (-1: none kept):
   * the string the ID's last decision carried when the bytes are the same, else a new one, kept for the
   * next decision when it is ASCII.
   */
  session(b: Buffer, s: number, e: number, entry: number): string {
    const last = entry >= 0 ? this.sessionOf[entry] : undefined;
    if (last !== undefined && sameAscii(last, b, s, e)) return last;
    const ascii = isAsciiBytes(b, s, e);
    const text = ascii ? (b as Sliceable).latin1Slice(s, e) : (b as Sliceable).utf8Slice(s, e);
    if (ascii && entry >= 0 && e - s <= MAX_KEPT_SESSION) this.sessionOf[entry] = text;
    return text;
  }
}

/** Whether b[s..e) are the ASCII characters of `text`. */
function sameAscii(text: string, b: Buffer, s: number, e: number): boolean {
  if (text.length !== e - s) return false;
  for (let i = 0; i < text.length; i++) {
    const c = b[s + i]!;
    if (c >= 0x80 || c !== text.charCodeAt(i)) return false;
  }
  return true;
}

function isAsciiBytes(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i]! >= 0x80) return false;
  return true;
}
