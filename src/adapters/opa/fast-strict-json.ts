/**
 * `parseJsonStrict` (src/core/strict-json.ts) for large bodies: the same rules and the same verdicts
 * (docs/spec.md#6-strict-documents: no duplicate key at any depth, keys compared after unescaping, at
 * most 64 levels of nesting; then the value from `JSON.parse`), with a structure walk about four times
 * cheaper. An OPA upload is ~500 KB of JSON whose every event has ~40 keys, and the general walk, which
 * steps through every character of every string and makes a Set and a key string per object, cost more
 * than `JSON.parse` itself (profile of benchmarks/opa-ingest.ts, issue #24).
 *
 * What makes it cheaper:
 * - a string is skipped by `indexOf('"')` (native) instead of character by character. Only a string
 *   with a backslash before that quote is stepped through, and the next backslash in the text is
 *   looked up once and kept, not searched per string;
 * - the keys of the open objects are kept as (start, end) positions in the text and compared in place,
 *   so no key string is made. An object with more than SMALL_OBJECT keys, or with an escaped key,
 *   switches to a Set of unescaped keys, so a large object stays linear.
 *
 * The walk is the general one's state machine, step for step: same keys recognised, same depth counted,
 * same errors thrown on the way, so the two agree on every text (test/unit/opa/fast-strict-json.test.ts
 * holds them against each other on generated and mutated texts).
 */
import { DEFAULT_MAX_DEPTH, StrictJsonError, stringEnd } from '../../core/strict-json.js';

/** Keys compared pairwise in place up to this many per object; a Set beyond. */
const SMALL_OBJECT = 8;

/** `JSON.parse`, refusing duplicate keys in any object and nesting deeper than `maxDepth`; as parseJsonStrict. */
export function parseJsonStrictFast(text: string, maxDepth = DEFAULT_MAX_DEPTH): unknown {
  checkStructure(text, maxDepth);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new StrictJsonError('invalid_json', (err as Error).message);
  }
}

/** The keys of the open objects, innermost last: positions of unescaped keys, or a Set per object. */
class OpenKeys {
  /** text[start[k], end[k]) is key k (without its quotes); the keys of the object opened at depth d start at `first[d]` */
  private start: Int32Array = new Int32Array(256);
  private end: Int32Array = new Int32Array(256);
  private count = 0;
  private readonly first: Int32Array;
  /** per depth: the object's keys as a Set, once it has more than SMALL_OBJECT or an escaped one */
  private readonly sets: (Set<string> | undefined)[] = [];

  constructor(private readonly text: string, maxDepth: number) {
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

  /** Key text[from, to) of the object at `depth` (from, to: inside the quotes); `escaped`: it has a backslash. */
  add(depth: number, from: number, to: number, escaped: boolean): void {
    const text = this.text;
    const first = this.first[depth]!;
    let set = this.sets[depth];
    if (set === undefined && !escaped && this.count - first < SMALL_OBJECT) {
      const length = to - from;
      for (let k = first; k < this.count; k++) {
        if (this.end[k]! - this.start[k]! === length && sameText(text, this.start[k]!, from, length)) throw duplicate(text.slice(from, to));
      }
      this.push(from, to);
      return;
    }
    if (set === undefined) {
      set = new Set();
      for (let k = first; k < this.count; k++) set.add(text.slice(this.start[k], this.end[k]));
      this.sets[depth] = set;
    }
    const key = escaped ? unescape(text.slice(from - 1, to + 1)) : text.slice(from, to);
    if (set.has(key)) throw duplicate(key);
    set.add(key);
  }

  private push(from: number, to: number): void {
    if (this.count === this.start.length) {
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.start = grow(this.start);
      this.end = grow(this.end);
    }
    this.start[this.count] = from;
    this.end[this.count] = to;
    this.count++;
  }
}

function checkStructure(text: string, maxDepth: number): void {
  const keys = new OpenKeys(text, maxDepth);
  /** per open container: is it an object? */
  const isObject: boolean[] = [];
  let depth = 0;
  // true when the next string in the innermost object is a key
  let expectKey = false;
  const n = text.length;
  // the next backslash in the text (n: none); a string that ends before it has no escape
  let backslash = nextBackslash(text, 0);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let end = text.indexOf('"', i + 1);
      if (end === -1) throw new StrictJsonError('invalid_json', 'unterminated string');
      // a backslash before this string is outside any string (not JSON): look again from here
      if (backslash < i) backslash = nextBackslash(text, i);
      const escaped = backslash < end;
      if (escaped) {
        end = stringEnd(text, i);
        backslash = nextBackslash(text, end);
      }
      if (expectKey) {
        keys.add(depth - 1, i + 1, end, escaped);
        expectKey = false;
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= maxDepth) throw new StrictJsonError('too_deep', `nesting deeper than ${maxDepth}`);
      expectKey = c === 0x7b;
      isObject[depth] = expectKey;
      if (expectKey) keys.open(depth);
      depth++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (depth > 0) {
        depth--;
        if (isObject[depth] === true) keys.close(depth);
      }
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = depth > 0 && isObject[depth - 1] === true;
    }
  }
}

function nextBackslash(text: string, from: number): number {
  const i = text.indexOf('\\', from);
  return i === -1 ? text.length : i;
}

function sameText(text: string, a: number, b: number, length: number): boolean {
  for (let k = 0; k < length; k++) if (text.charCodeAt(a + k) !== text.charCodeAt(b + k)) return false;
  return true;
}

/** A quoted key with escapes, unescaped as JSON.parse reads it. */
function unescape(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch (err) {
    throw new StrictJsonError('invalid_json', (err as Error).message);
  }
}

function duplicate(key: string): StrictJsonError {
  return new StrictJsonError('duplicate_key', `duplicate key ${JSON.stringify(key)}`);
}
