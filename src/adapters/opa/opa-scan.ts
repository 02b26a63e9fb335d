/**
 * One pass over the bytes of an OPA decision-log upload (a JSON array of events) that checks the whole
 * body and keeps only what the mapping reads. A strict check followed by `JSON.parse` built every event
 * whole (~1 KB of JSON and ~40 keys each, ~500 KB per upload of OPA's default size), and the mapping
 * then read five or six values of each: building the values was most of an upload's cost. This pass
 * builds none of them:
 *
 * - it checks the body against the JSON grammar (RFC 8259) and the rules of a strict document
 *   (docs/spec.md#6-strict-documents: no duplicate key in any object, keys compared after unescaping;
 *   at most `maxDepth` arrays and objects open at once), so it accepts exactly the texts that
 *   `parseJsonStrict` accepts. A refused body is handed to `parseJsonStrict`, which throws the
 *   refusal a request gets (its reason and message, from the first rule the text breaks);
 * - for each element of the array it records where the element is, and where the values at a fixed
 *   set of JSON Pointers (RFC 6901, as `opa-mapping.ts` reads them) are; only those values, a few
 *   short strings per event, are decoded. An element is kept as its bytes, so an event that gives no
 *   decision goes to the DLQ as OPA sent it.
 *
 * It reads bytes, not a decoded string: decoding the upload to a string costs about half as much as
 * walking it, and the only characters the grammar gives a meaning to are ASCII. The body must be valid
 * UTF-8 (the caller checks it first, `isUtf8`), so bytes 0x80 and above need no look: inside strings
 * they are text, anywhere else they break the grammar. test/unit/opa/opa-scan.test.ts holds this pass
 * against `parseJsonStrict` + `mapEvent` on generated and mutated uploads.
 */
import { DEFAULT_MAX_DEPTH, parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';

/** Keys compared pairwise in place up to this many per object; a Set beyond. */
const SMALL_OBJECT = 8;

/** A node of the pointers' tree: the value at one path, and the members or items below it that are read. */
interface Node {
  /** the slot of the pointer that ends here, or -1 */
  slot: number;
  /** object members read below this value: their keys (as UTF-8 and as text) and nodes */
  readonly keys: Buffer[];
  readonly names: string[];
  readonly members: Node[];
  /** array items read below this value, by index */
  readonly items: Map<number, Node>;
}

const newNode = (): Node => ({ slot: -1, keys: [], names: [], members: [], items: new Map() });

/** What `at` (opa-mapping.ts) takes for an array index: no sign, no leading zero. */
const INDEX = /^(0|[1-9][0-9]*)$/;

/** JSON Pointers (as token lists, `parsePointer`) read in every element; null: a pointer not read. */
export class PointerSet {
  readonly root: Node = newNode();
  /** distinct pointers */
  size = 0;
  /** per pointer given: its slot (equal pointers share one), or -1 */
  readonly slots: Int32Array;

  constructor(pointers: readonly (readonly string[] | null)[]) {
    this.slots = new Int32Array(pointers.length).fill(-1);
    pointers.forEach((tokens, p) => {
      if (tokens === null) return;
      let node = this.root;
      for (const token of tokens) {
        const k = node.names.indexOf(token);
        let next: Node;
        if (k === -1) {
          next = newNode();
          node.keys.push(Buffer.from(token, 'utf8'));
          node.names.push(token);
          node.members.push(next);
        } else {
          next = node.members[k]!;
        }
        // the same token also reads an array item when it is an index
        if (INDEX.test(token) && !node.items.has(Number(token))) node.items.set(Number(token), next);
        node = next;
      }
      if (node.slot === -1) node.slot = this.size++;
      this.slots[p] = node.slot;
    });
  }
}

/** The elements of a scanned array and, per element, where the value at each pointer is. */
export class ScannedArray {
  constructor(
    private readonly body: Buffer,
    private readonly slots: Int32Array,
    /** per element: its start and end, then the start and end of each slot's value (-1: absent; ~end: a string with an escape) */
    private readonly marks: Int32Array,
    private readonly stride: number,
    readonly length: number,
  ) {}

  /** where in `marks` the value at pointer p of element i is; -1 for a pointer not read */
  private at(i: number, p: number): number {
    const slot = this.slots[p]!;
    return slot === -1 ? -1 : i * this.stride + 2 + 2 * slot;
  }

  /** Is element i a JSON object? */
  isObject(i: number): boolean {
    return this.body[this.marks[i * this.stride]!] === 0x7b;
  }

  /** Element i as it is in the body. */
  text(i: number): string {
    const m = i * this.stride;
    return this.body.toString('utf8', this.marks[m], this.marks[m + 1]);
  }

  /** Is the value at pointer p of element i an object? */
  isObjectAt(i: number, p: number): boolean {
    const m = this.at(i, p);
    return m !== -1 && this.marks[m]! !== -1 && this.body[this.marks[m]!] === 0x7b;
  }

  /**
   * Was the string at pointer p of element i written with an escape? When it was not, its value between
   * quotes is its JSON (as JSON.stringify writes it): it holds no quote, backslash or control character,
   * and no lone surrogate (the body is UTF-8).
   */
  escaped(i: number, p: number): boolean {
    const m = this.at(i, p);
    return m !== -1 && this.marks[m + 1]! < 0;
  }

  /** The value at pointer p of element i, as `JSON.parse` gives it; undefined when there is none. */
  value(i: number, p: number): unknown {
    const m = this.at(i, p);
    const start = m === -1 ? -1 : this.marks[m]!;
    if (start === -1) return undefined;
    const end = this.marks[m + 1]!;
    const b = this.body;
    switch (b[start]) {
      case 0x22 /* " */: return end < 0 ? (JSON.parse(b.toString('utf8', start, ~end)) as string) : b.toString('utf8', start + 1, end - 1);
      case 0x74 /* t */: return true;
      case 0x66 /* f */: return false;
      case 0x6e /* n */: return null;
      default: return JSON.parse(b.toString('utf8', start, end)) as unknown;
    }
  }
}

/**
 * Check `body` (valid UTF-8) as a strict JSON document and, when it is an array, find in each element
 * the values at `pointers`. Null when the document is not an array. A body that is not strict JSON
 * throws StrictJsonError, with `parseJsonStrict`'s reason and message.
 */
export function scanArray(body: Buffer, pointers: PointerSet, maxDepth = DEFAULT_MAX_DEPTH): ScannedArray | null {
  try {
    return walk(body, pointers, maxDepth);
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    // the refusal a request gets is parseJsonStrict's, which refuses every text refused here: the first
    // rule the text breaks, in JSON.parse's words for a syntax error
    parseJsonStrict(body.toString('utf8'), { maxDepth });
    throw err;
  }
}

const OBJECT = 1;
const ARRAY = 2;

const invalid = (message: string): StrictJsonError => new StrictJsonError('invalid_json', message);
const unexpected = (c: number | undefined, i: number): StrictJsonError => invalid(c === undefined ? 'unexpected end' : `unexpected byte ${c} at ${i}`);

/**
 * The walk: a value, then what may follow it (a comma, a closing bracket), until the outermost value
 * has ended. One function with its state in locals, the strings' plain runs stepped through inline: it
 * runs once per byte of the body, and each call or field access in it showed in the profile.
 */
function walk(b: Buffer, pointers: PointerSet, maxDepth: number): ScannedArray | null {
  const n = b.length;
  // a string that opens at or after the last quote is unterminated; one that opens before it stops there at the latest
  const last = b.lastIndexOf(0x22);
  const stride = 2 + 2 * pointers.size;
  /** per element: its start and end, then the start and end of each slot's value (-1: absent; ~end: a string with an escape) */
  let marks: Int32Array = new Int32Array(stride * 64);
  let count = 0;
  /** per open container (0: the outermost): OBJECT or ARRAY */
  const kind = new Uint8Array(maxDepth);
  /** per open container: its node when something below it is read, else null */
  const nodes = new Array<Node | null>(maxDepth).fill(null);
  /** per open container: the slot its value fills, or -1 */
  const slots = new Int32Array(maxDepth);
  /** per open array that is read below: the index of its current item */
  const items = new Int32Array(maxDepth);
  const keys = new ByteKeys(b, maxDepth);

  let i = 0;
  let c = b[0];
  while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
  const isArray = c === 0x5b;
  let depth = 0;
  /** the offset in `marks` of the element being walked */
  let base = 0;
  /** the node of the value that starts next, when it or something in it is read */
  let pending: Node | null = null;
  /** a key comes next (after `{` or a comma in an object) */
  let key = false;
  for (;;) {
    if (key) {
      key = false;
      if (c !== 0x22 /* " */) throw invalid(`expected a key at ${i}`);
      if (i >= last) throw invalid('unterminated string');
      let j = i + 1;
      c = b[j]!;
      while (c !== 0x22 && c !== 0x5c && c >= 0x20) c = b[++j]!;
      const escaped = c !== 0x22;
      if (escaped) j = escapedStringEnd(b, j, last);
      keys.add(depth - 1, i + 1, j, escaped);
      const node = nodes[depth - 1]!;
      if (node !== null) pending = matchKey(b, node, i + 1, j, escaped);
      c = b[i = j + 1];
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
      if (c !== 0x3a /* : */) throw invalid(`expected ':' at ${i}`);
      c = b[++i];
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
    }
    // a value starts at i
    if (depth === 1 && isArray) {
      base = count * stride;
      if (base + stride > marks.length) marks = grow(marks);
      marks[base] = i;
      marks.fill(-1, base + 1, base + stride);
      count++;
      pending = pointers.root;
    }
    const node = pending;
    pending = null;
    const slot = node === null ? -1 : node.slot;
    if (slot !== -1) marks[base + 2 + 2 * slot] = i;
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth === maxDepth) throw new StrictJsonError('too_deep', `nesting deeper than ${maxDepth}`);
      const object = c === 0x7b;
      kind[depth] = object ? OBJECT : ARRAY;
      nodes[depth] = node !== null && (object ? node.members.length > 0 : node.items.size > 0) ? node : null;
      slots[depth] = slot;
      if (object) keys.open(depth);
      depth++;
      c = b[++i];
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
      if (c !== (object ? 0x7d : 0x5d)) {
        if (object) {
          key = true;
        } else if (nodes[depth - 1] !== null) {
          items[depth - 1] = 0;
          pending = nodes[depth - 1]!.items.get(0) ?? null;
        }
        continue;
      }
      // empty: closed below
    } else {
      let escaped = false;
      if (c === 0x22 /* " */) {
        if (i >= last) throw invalid('unterminated string');
        let j = i + 1;
        c = b[j]!;
        while (c !== 0x22 && c !== 0x5c && c >= 0x20) c = b[++j]!;
        escaped = c !== 0x22;
        if (escaped) j = escapedStringEnd(b, j, last);
        i = j + 1;
      } else if (c === 0x2d /* - */ || (c !== undefined && c >= 0x30 && c <= 0x39)) {
        i = numberEnd(b, i);
      } else if (c === 0x74 /* t */ && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) {
        i += 4;
      } else if (c === 0x66 /* f */ && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) {
        i += 5;
      } else if (c === 0x6e /* n */ && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) {
        i += 4;
      } else {
        throw unexpected(c, i);
      }
      // the end of a string with an escape is kept as ~end: its value is to be unescaped
      if (slot !== -1) marks[base + 3 + 2 * slot] = escaped ? ~i : i;
      if (depth === 1 && isArray) marks[base + 1] = i;
      c = b[i];
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
    }
    // a value has ended; c = b[i] is what follows it
    for (;;) {
      if (depth === 0) {
        if (i !== n) throw unexpected(c, i);
        return isArray ? new ScannedArray(b, pointers.slots, marks, stride, count) : null;
      }
      const k = kind[depth - 1]!;
      if (c === 0x2c /* , */) {
        c = b[++i];
        while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
        if (k === OBJECT) {
          key = true;
        } else if (nodes[depth - 1] !== null) {
          const item = items[depth - 1]! + 1;
          items[depth - 1] = item;
          pending = nodes[depth - 1]!.items.get(item) ?? null;
        }
        break;
      }
      if (c !== (k === OBJECT ? 0x7d /* } */ : 0x5d /* ] */)) throw unexpected(c, i);
      depth--;
      i++;
      if (k === OBJECT) keys.close(depth);
      if (slots[depth] !== -1) marks[base + 3 + 2 * slots[depth]!] = i;
      if (depth === 1 && isArray) marks[base + 1] = i;
      c = b[i];
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
    }
  }
}

function grow(a: Int32Array): Int32Array {
  const g = new Int32Array(a.length * 2);
  g.set(a);
  return g;
}

/**
 * The closing quote of a string whose plain run stopped at j (a backslash or a control character):
 * checks the escapes from there on. `last`: the body's last quote.
 */
function escapedStringEnd(b: Buffer, j: number, last: number): number {
  for (;;) {
    let c = b[j]!;
    while (c !== 0x22 && c !== 0x5c && c >= 0x20) c = b[++j]!;
    if (c === 0x22) return j;
    if (c !== 0x5c) throw invalid(`control character in a string at ${j}`);
    const e = b[j + 1];
    if (e === 0x75 /* u */) {
      if (!(hex(b[j + 2]) && hex(b[j + 3]) && hex(b[j + 4]) && hex(b[j + 5]))) throw invalid(`bad \\u escape at ${j}`);
      j += 6;
    } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
      j += 2;
    } else {
      throw invalid(`bad escape at ${j}`);
    }
    if (j > last) throw invalid('unterminated string');
  }
}

/** The end of the number that starts at i (RFC 8259's grammar: no leading zero, no lone `.` or `e`). */
function numberEnd(b: Buffer, i: number): number {
  let j = i;
  if (b[j] === 0x2d) j++;
  let c = b[j];
  if (c === 0x30) {
    c = b[++j];
  } else if (c !== undefined && c >= 0x31 && c <= 0x39) {
    do c = b[++j]; while (c !== undefined && c >= 0x30 && c <= 0x39);
  } else {
    throw invalid(`bad number at ${i}`);
  }
  if (c === 0x2e /* . */) {
    c = b[++j];
    if (c === undefined || c < 0x30 || c > 0x39) throw invalid(`bad number at ${i}`);
    do c = b[++j]; while (c !== undefined && c >= 0x30 && c <= 0x39);
  }
  if (c === 0x65 || c === 0x45 /* e E */) {
    c = b[++j];
    if (c === 0x2b || c === 0x2d) c = b[++j];
    if (c === undefined || c < 0x30 || c > 0x39) throw invalid(`bad number at ${i}`);
    do c = b[++j]; while (c !== undefined && c >= 0x30 && c <= 0x39);
  }
  return j;
}

function hex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

/** The member of `node` whose key is b[from, to) (unescaped first when `escaped`), or null. */
function matchKey(b: Buffer, node: Node, from: number, to: number, escaped: boolean): Node | null {
  if (escaped) {
    const k = node.names.indexOf(JSON.parse(b.toString('utf8', from - 1, to + 1)) as string);
    return k === -1 ? null : node.members[k]!;
  }
  const length = to - from;
  for (let k = 0; k < node.keys.length; k++) {
    const key = node.keys[k]!;
    if (key.length === length && sameBytes(b, from, key, 0, length)) return node.members[k]!;
  }
  return null;
}

function sameBytes(a: Uint8Array, i: number, b: Uint8Array, j: number, length: number): boolean {
  for (let k = 0; k < length; k++) if (a[i + k] !== b[j + k]) return false;
  return true;
}

/**
 * The keys of the open objects, innermost last: (start, end) positions compared in place, as most
 * objects have a few short keys; a Set of unescaped keys per object once it has more than SMALL_OBJECT
 * keys (so a large object stays linear) or an escaped one (compared after unescaping).
 */
class ByteKeys {
  private start: Int32Array = new Int32Array(256);
  private end: Int32Array = new Int32Array(256);
  private count = 0;
  private readonly first: Int32Array;
  private readonly sets: (Set<string> | undefined)[] = [];

  constructor(private readonly b: Buffer, maxDepth: number) {
    this.first = new Int32Array(maxDepth + 1);
  }

  open(depth: number): void {
    this.first[depth] = this.count;
    this.sets[depth] = undefined;
  }

  close(depth: number): void {
    this.count = this.first[depth]!;
    this.sets[depth] = undefined;
  }

  /** Key b[from, to) of the object at `depth`; `escaped`: it has a backslash. */
  add(depth: number, from: number, to: number, escaped: boolean): void {
    const b = this.b;
    const first = this.first[depth]!;
    let set = this.sets[depth];
    if (set === undefined && !escaped && this.count - first < SMALL_OBJECT) {
      const length = to - from;
      for (let k = first; k < this.count; k++) {
        const s = this.start[k]!;
        if (this.end[k]! - s === length && sameBytes(b, s, b, from, length)) throw new StrictJsonError('duplicate_key', 'duplicate key');
      }
      this.push(from, to);
      return;
    }
    if (set === undefined) {
      set = new Set();
      for (let k = first; k < this.count; k++) set.add(b.toString('utf8', this.start[k], this.end[k]));
      this.sets[depth] = set;
    }
    const key = escaped ? (JSON.parse(b.toString('utf8', from - 1, to + 1)) as string) : b.toString('utf8', from, to);
    if (set.has(key)) throw new StrictJsonError('duplicate_key', 'duplicate key');
    set.add(key);
  }

  private push(from: number, to: number): void {
    if (this.count === this.start.length) {
      const grow = (a: Int32Array): Int32Array => {
        const g = new Int32Array(a.length * 2);
        g.set(a);
        return g;
      };
      this.start = grow(this.start);
      this.end = grow(this.end);
    }
    this.start[this.count] = from;
    this.end[this.count] = to;
    this.count++;
  }
}
