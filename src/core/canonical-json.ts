/**
 * Canonical JSON (CONTRACTS.md section 5): equal to Python's
 * `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)` for every document we emit.
 *
 * Numbers: JavaScript and Python print the same shortest round-trip digits except where they switch to
 * exponent notation (JS below 1e-6 and from 1e21, Python below 1e-4 and from 1e16 for floats). We refuse
 * to encode a number in those ranges rather than emit bytes a regulator's Python check would not reproduce.
 */

export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

const NON_ASCII = /[\u0080-\uffff]/g;

function escapeNonAscii(ch: string): string {
  return '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0');
}

export function canonicalString(s: string): string {
  // JSON.stringify escapes quotes, backslashes and control characters exactly as Python does (lowercase
  // \u00xx, short forms \b \f \n \r \t) and leaves lone surrogates as \udxxx; only non-ASCII remains.
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

/** Compare by Unicode code point, as Python's sort does (JS's default sort compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    // A surrogate (astral code point) sorts after every BMP unit, including U+E000..U+FFFF.
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
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
