/**
 * JSON for documents whose meaning must be the same for every reader: signed documents, ledger lines,
 * key sets and request bodies. `JSON.parse` keeps the last of two equal keys while other parsers keep
 * the first (or refuse), so a signature over the parsed value would vouch for a text that another
 * verifier reads differently; and it recurses, so deep nesting overflows the stack. `parseJsonStrict`
 * refuses both before `JSON.parse` sees the text (docs/spec.md#6-strict-documents).
 *
 * The check is one iterative pass over the text (no recursion, no allocation but one set of keys per
 * open object); the value itself still comes from `JSON.parse`, so numbers and strings mean exactly
 * what they always meant.
 */

export const DEFAULT_MAX_DEPTH = 64;

export type StrictJsonReason = 'invalid_json' | 'duplicate_key' | 'too_deep';

export class StrictJsonError extends Error {
  constructor(readonly reason: StrictJsonReason, message: string) {
    super(message);
    this.name = 'StrictJsonError';
  }
}

export interface StrictJsonOptions {
  /** most arrays and objects open at once (default 64) */
  readonly maxDepth?: number;
}

/** `JSON.parse`, refusing duplicate keys in any object and nesting deeper than `maxDepth`. */
export function parseJsonStrict(text: string, options: StrictJsonOptions = {}): unknown {
  checkJsonStructure(text, options.maxDepth ?? DEFAULT_MAX_DEPTH);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new StrictJsonError('invalid_json', (err as Error).message);
  }
}

/**
 * Walks the text's structure: for each open object the set of keys seen (keys compared after JSON
 * unescaping, so `"a"` and `"\u0061"` are the same key). Syntax errors that do not matter to the walk
 * are left to `JSON.parse`; ones that do are reported here.
 */
function checkJsonStructure(text: string, maxDepth: number): void {
  // one entry per open container: a key set for an object, null for an array
  const open: (Set<string> | null)[] = [];
  // true when the next string in the innermost object is a key
  let expectKey = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (open.length >= maxDepth) throw new StrictJsonError('too_deep', `nesting deeper than ${maxDepth}`);
      open.push(c === 0x7b ? new Set() : null);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      open.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = open.length > 0 && open[open.length - 1] !== null;
    } else if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      if (expectKey) {
        const keys = open[open.length - 1]!;
        const raw = text.slice(i, end + 1);
        let key: string;
        try {
          key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        } catch (err) {
          throw new StrictJsonError('invalid_json', (err as Error).message);
        }
        if (keys.has(key)) throw new StrictJsonError('duplicate_key', `duplicate key ${JSON.stringify(key)}`);
        keys.add(key);
        expectKey = false;
      }
      i = end;
    }
  }
}

/** Index of the quote that closes the string opening at `start` (escapes stepped over). */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c /* \ */) i++;
    else if (c === 0x22) return i;
  }
  throw new StrictJsonError('invalid_json', 'unterminated string');
}
