/**
 * Canonical JSON (docs/spec.md#5-canonical-json-and-signatures): equal to Python's
 * `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)` for every document we emit.
 *
 * Numbers: JavaScript and Python print the same shortest round-trip digits except where they switch to
 * exponent notation (JS below 1e-6 and from 1e21, Python below 1e-4 and from 1e16 for floats). We refuse
 * to encode a number in those ranges rather than emit bytes a regulator's Python check would not reproduce.
 */

export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

// Python's ensure_ascii escapes everything outside ' '..'~' that JSON.stringify leaves raw: DEL and non-ASCII.
const NON_ASCII = /[\u007f-\uffff]/g;

function escapeNonAscii(ch: string): string {
  return '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0');
}

export function canonicalString(s: string): string {
  // JSON.stringify escapes quotes, backslashes and control characters exactly as Python does (lowercase
  // \u00xx, short forms \b \f \n \r \t) and leaves lone surrogates as \udxxx; DEL and non-ASCII remain.
  return JSON.stringify(s).replace(NON_ASCII, escapeNonAscii);
}

export function canonicalNumber(n: number): string {
  if (!Number.isFinite(n)) throw new CanonicalJsonError(`cannot encode non-finite number ${n}`);
  if (Number.isInteger(n)) {
    if (!Number.isSafeInteger(n)) throw new CanonicalJsonError(`integer ${n} is outside the safe range`);
    return Object.is(n, -0) ? '0' : String(n);
  }
  const a = Math.abs(n);
  if (a < 1e-4 || a >= 1e16) {
    throw new CanonicalJsonError(`number ${n} has no representation shared by JavaScript and Python`);
  }
  return String(n);
}

/**
 * Compare by Unicode code point, as Python's sort does (JS's default sort compares UTF-16 units, which
 * puts astral characters before U+E000..U+FFFF). A lone surrogate counts as its own code point.
 */
export function compareCodePoints(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(j)!;
    if (x !== y) return x - y;
    i += x > 0xffff ? 2 : 1;
    j += y > 0xffff ? 2 : 1;
  }
  return (a.length - i) - (b.length - j);
}

export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return canonicalString(value);
    case 'number':
      return canonicalNumber(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (Array.isArray(value)) return '[' + value.map((v) => canonicalJson(v)).join(',') + ']';
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareCodePoints);
      return '{' + keys.map((k) => canonicalString(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
    }
    default:
      throw new CanonicalJsonError(`cannot encode a value of type ${typeof value}`);
  }
}
