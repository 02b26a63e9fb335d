/**
 * SPIFFE ID parsing per the SPIFFE ID standard (CONTRACTS.md section 1).
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

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

function fail(reason: string): SpiffeParseResult {
  return { ok: false, reason };
}

export function parseSpiffeId(input: string): SpiffeParseResult {
  if (input.length === 0) return fail('SPIFFE ID is empty');
  if (utf8Length(input) > SPIFFE_ID_MAX_BYTES) return fail(`SPIFFE ID is longer than ${SPIFFE_ID_MAX_BYTES} bytes`);
  if (!input.startsWith(SCHEME)) return fail('scheme is missing or invalid (must be "spiffe://")');

  let i = SCHEME.length;
  const tdStart = i;
  for (; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c === 0x2f) break; // '/'
    if (!isTrustDomainChar(c)) {
      if (c === 0x3a) return fail('trust domain cannot contain a port');
      if (c === 0x40) return fail('trust domain cannot contain user info');
      if (c === 0x3f) return fail('SPIFFE ID cannot contain a query');
      if (c === 0x23) return fail('SPIFFE ID cannot contain a fragment');
      return fail('trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores');
    }
  }
  if (i === tdStart) return fail('trust domain is missing');
  const trustDomain = input.slice(tdStart, i);
  const path = input.slice(i);

  // Path: ('/' segment)*, segment = 1+ path chars, not '.' or '..'
  let segStart = i + 1;
  for (let j = i; j < input.length; j++) {
    const c = input.charCodeAt(j);
    if (c === 0x2f) {
      if (j !== i) {
        const r = checkSegment(input, segStart, j);
        if (r !== null) return fail(r);
      }
      segStart = j + 1;
      continue;
    }
    if (!isPathChar(c)) {
      if (c === 0x3f) return fail('SPIFFE ID cannot contain a query');
      if (c === 0x23) return fail('SPIFFE ID cannot contain a fragment');
      if (c === 0x25) return fail('path cannot contain percent-encoded characters');
      return fail('path segment characters are limited to letters, numbers, dots, dashes, and underscores');
    }
  }
  if (path.length > 0) {
    if (segStart === input.length) return fail('path cannot have a trailing slash');
    const r = checkSegment(input, segStart, input.length);
    if (r !== null) return fail(r);
  }
  return { ok: true, value: { id: input, trustDomain, path } };
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
  return parseSpiffeId(input).ok;
}
