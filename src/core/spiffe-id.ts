/**
 * SPIFFE ID parsing per the SPIFFE ID standard (docs/spec.md#1-decision-events).
 *
 * Validation is a single pass over char codes: this runs once per distinct identity on the decode path,
 * and its messages are what an operator reads in the DLQ reason, so each rule has its own message.
 */

export const SPIFFE_ID_MAX_BYTES = 2048;
const SCHEME = 'spiffe://';

export interface SpiffeId {
  readonly id: string;
  readonly trustDomain: string;
  /** '' for a trust-domain-only ID, else starts with '/' */
  readonly path: string;
}

export type SpiffeParseResult = { ok: true; value: SpiffeId } | { ok: false; reason: string };

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2e || c === 0x2d || c === 0x5f
  );
}

/**
 * Why `input` is not a SPIFFE ID, or null when it is one. One pass, no allocation: this runs on every
 * decision (schema format check), so it must cost little more than reading the string.
 */
export function spiffeIdError(input: string): string | null {
  const len = input.length;
  if (len === 0) return 'SPIFFE ID is empty';
  // Every valid character is ASCII, so the UTF-8 length of a valid ID is its length; a longer string
  // fails the length check whatever its encoding, a non-ASCII one fails the character rules below.
  if (len > SPIFFE_ID_MAX_BYTES) return `SPIFFE ID is longer than ${SPIFFE_ID_MAX_BYTES} bytes`;
  if (!input.startsWith(SCHEME)) return 'scheme is missing or invalid (must be "spiffe://")';

  let i = SCHEME.length;
  for (; i < len; i++) {
    const c = input.charCodeAt(i);
    if (c === 0x2f) break; // '/'
    if (!isTrustDomainChar(c)) {
      if (c === 0x3a) {
        const slash = input.indexOf('/', i);
        const at = input.indexOf('@', i);
        return at !== -1 && (slash === -1 || at < slash) ? 'trust domain cannot contain user info' : 'trust domain cannot contain a port';
      }
      if (c === 0x40) return 'trust domain cannot contain user info';
      if (c === 0x3f) return 'SPIFFE ID cannot contain a query';
      if (c === 0x23) return 'SPIFFE ID cannot contain a fragment';
      return tooLongInUtf8(input) ?? 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
    }
  }
  if (i === SCHEME.length) return 'trust domain is missing';
  if (i === len) return null; // trust-domain-only ID

  // Path: ('/' segment)+, segment = 1+ path chars, not '.' or '..'
  let segStart = i + 1;
  for (let j = i + 1; j < len; j++) {
    const c = input.charCodeAt(j);
    if (c === 0x2f) {
      const r = checkSegment(input, segStart, j);
      if (r !== null) return r;
      segStart = j + 1;
    } else if (!isPathChar(c)) {
      if (c === 0x3f) return 'SPIFFE ID cannot contain a query';
      if (c === 0x23) return 'SPIFFE ID cannot contain a fragment';
      if (c === 0x25) return 'path cannot contain percent-encoded characters';
      return tooLongInUtf8(input) ?? 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';
    }
  }
  if (segStart === len) return 'path cannot have a trailing slash';
  return checkSegment(input, segStart, len);
}

export function parseSpiffeId(input: string): SpiffeParseResult {
  const reason = spiffeIdError(input);
  if (reason !== null) return { ok: false, reason };
  const slash = input.indexOf('/', SCHEME.length);
  const end = slash === -1 ? input.length : slash;
  return { ok: true, value: { id: input, trustDomain: input.slice(SCHEME.length, end), path: input.slice(end) } };
}

/** On the error path only: name the length when non-ASCII characters push the ID past the byte limit. */
function tooLongInUtf8(s: string): string | null {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { n += 4; i++; }
    else n += 3;
  }
  return n > SPIFFE_ID_MAX_BYTES ? `SPIFFE ID is longer than ${SPIFFE_ID_MAX_BYTES} bytes` : null;
}

function checkSegment(s: string, start: number, end: number): string | null {
  const len = end - start;
  if (len === 0) return 'path cannot contain empty segments';
  if (len === 1 && s.charCodeAt(start) === 0x2e) return 'path cannot contain dot segments';
  if (len === 2 && s.charCodeAt(start) === 0x2e && s.charCodeAt(start + 1) === 0x2e) {
    return 'path cannot contain dot segments';
  }
  return null;
}

export function isSpiffeId(input: string): boolean {
  return spiffeIdError(input) === null;
}
