import { describe, expect, it } from 'vitest';
import { SPIFFE_ID_MAX_BYTES, isSpiffeId, parseSpiffeId, spiffeIdError } from '../../src/core/spiffe-id.js';

// docs/spec.md#1-decision-events and the SPIFFE ID standard (SPIFFE-ID.md); the invalid forms mirror the tables
// of go-spiffe's `spiffeid` package. Each invalid case pins the exact reason, because that text is what an
// operator reads in the DLQ.

const EMPTY = 'SPIFFE ID is empty';
const TOO_LONG = `SPIFFE ID is longer than ${SPIFFE_ID_MAX_BYTES} bytes`;
const SCHEME = 'scheme is missing or invalid (must be "spiffe://")';
const TD_MISSING = 'trust domain is missing';
const TD_CHAR = 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
const PORT = 'trust domain cannot contain a port';
const USER_INFO = 'trust domain cannot contain user info';
const QUERY = 'SPIFFE ID cannot contain a query';
const FRAGMENT = 'SPIFFE ID cannot contain a fragment';
const PERCENT = 'path cannot contain percent-encoded characters';
const PATH_CHAR = 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';
const TRAILING = 'path cannot have a trailing slash';
const EMPTY_SEGMENT = 'path cannot contain empty segments';
const DOT_SEGMENT = 'path cannot contain dot segments';

const PREFIX = 'spiffe://example.org/';

/** An ID of exactly `bytes` UTF-8 bytes: PREFIX, 'a' padding, then `tail`. */
function idOfBytes(bytes: number, tail = ''): string {
  const tailBytes = Buffer.byteLength(tail, 'utf8');
  const id = PREFIX + 'a'.repeat(bytes - PREFIX.length - tailBytes) + tail;
  return id;
}

describe('parseSpiffeId: valid IDs', () => {
  it.each<[string, string, string]>([
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://trustdomain', 'trustdomain', ''],
    ['spiffe://example.org/path', 'example.org', '/path'],
    ['spiffe://domain.test/path/element', 'domain.test', '/path/element'],
    ['spiffe://example.org/ns/prod/sa/billing-agent', 'example.org', '/ns/prod/sa/billing-agent'],
    ['spiffe://example.org/UPPER/MiXeD/lower', 'example.org', '/UPPER/MiXeD/lower'],
    ['spiffe://example.org/0123456789', 'example.org', '/0123456789'],
    ['spiffe://example.org/a.b-c_d', 'example.org', '/a.b-c_d'],
    ['spiffe://example.org/...', 'example.org', '/...'],
    ['spiffe://example.org/.a', 'example.org', '/.a'],
    ['spiffe://example.org/..a', 'example.org', '/..a'],
    ['spiffe://example.org/a.', 'example.org', '/a.'],
    ['spiffe://example.org/a..', 'example.org', '/a..'],
    ['spiffe://example.org/.path/.../..x', 'example.org', '/.path/.../..x'],
    ['spiffe://example.org/-/_/.-_', 'example.org', '/-/_/.-_'],
    ['spiffe://a', 'a', ''],
    ['spiffe://0', '0', ''],
    ['spiffe://my-domain_1.example.org', 'my-domain_1.example.org', ''],
    ['spiffe://.', '.', ''],
    ['spiffe://..', '..', ''],
    ['spiffe://-_-/x', '-_-', '/x'],
  ])('%s', (input, trustDomain, path) => {
    const r = parseSpiffeId(input);
    expect(r).toEqual({ ok: true, value: { id: input, trustDomain, path } });
    expect(spiffeIdError(input)).toBeNull();
    expect(isSpiffeId(input)).toBe(true);
  });

  it('accepts an ID of exactly 2048 bytes', () => {
    const id = idOfBytes(2048);
    expect(id.length).toBe(2048);
    expect(SPIFFE_ID_MAX_BYTES).toBe(2048);
    const r = parseSpiffeId(id);
    expect(r.ok).toBe(true);
    expect(isSpiffeId(id)).toBe(true);
  });

  it('accepts a 2048-byte ID of many segments', () => {
    const segments = 'abc/'.repeat(600);
    const id = (PREFIX + segments).slice(0, 2047) + 'z';
    expect(Buffer.byteLength(id)).toBe(2048);
    expect(isSpiffeId(id)).toBe(true);
  });
});

describe('parseSpiffeId: invalid IDs', () => {
  it.each<[string, string, string]>([
    // empty
    ['empty', '', EMPTY],
    // scheme
    ['uppercase scheme', 'SPIFFE://example.org/path', SCHEME],
    ['mixed-case scheme', 'Spiffe://example.org', SCHEME],
    ['http scheme', 'http://example.org/path/element', SCHEME],
    ['https scheme', 'https://example.org', SCHEME],
    ['single slash', 'spiffe:/example.org', SCHEME],
    ['single slash, path only', 'spiffe:/path/element', SCHEME],
    ['no slashes', 'spiffe:', SCHEME],
    ['no slashes, opaque', 'spiffe:path/element', SCHEME],
    ['no colon', 'spiffe//example.org', SCHEME],
    ['no scheme', 'example.org/path', SCHEME],
    ['host and port only', '192.168.2.2:6688', SCHEME],
    ['one letter', 's', SCHEME],
    ['leading space', ' spiffe://example.org', SCHEME],
    // trust domain
    ['scheme only', 'spiffe://', TD_MISSING],
    ['empty trust domain with path', 'spiffe:///path', TD_MISSING],
    ['empty trust domain with path, two segments', 'spiffe:///path/element', TD_MISSING],
    ['empty trust domain, just a slash', 'spiffe:///', TD_MISSING],
    ['uppercase trust domain', 'spiffe://Example.org', TD_CHAR],
    ['all-uppercase trust domain', 'spiffe://EXAMPLE.ORG/path', TD_CHAR],
    ['space in trust domain', 'spiffe://exa mple.org', TD_CHAR],
    ['non-ASCII trust domain', 'spiffe://exämple.org', TD_CHAR],
    ['emoji trust domain', 'spiffe://\u{1F92F}/path', TD_CHAR],
    ['percent-encoded trust domain', 'spiffe://%F0%9F%A4%AF/path', TD_CHAR],
    ['bracketed IPv6 trust domain', 'spiffe://[::1]/path', TD_CHAR],
    ['port', 'spiffe://example.org:8080/path/element', PORT],
    ['port, no path', 'spiffe://example.org:8080', PORT],
    ['empty port', 'spiffe://example.org:/path', PORT],
    ['user info', 'spiffe://user@example.org/path', USER_INFO],
    ['query on trust domain', 'spiffe://example.org?query=1', QUERY],
    ['fragment on trust domain', 'spiffe://example.org#fragment', FRAGMENT],
    // query and fragment in the path
    ['query', 'spiffe://example.org/path/element?query=1', QUERY],
    ['empty query', 'spiffe://example.org/path?', QUERY],
    ['query before fragment', 'spiffe://example.org/path/element?#fragment-1', QUERY],
    ['fragment', 'spiffe://example.org/path/element#fragment-1', FRAGMENT],
    ['empty fragment', 'spiffe://example.org/path#', FRAGMENT],
    // percent-encoding
    ['percent-encoded path', 'spiffe://example.org/%F0%9F%A4%AF', PERCENT],
    ['percent-encoded letter', 'spiffe://example.org/p%61th', PERCENT],
    ['invalid percent escape', 'spiffe://example.org/path/elem%5uent', PERCENT],
    ['percent at end', 'spiffe://example.org/path/element%5', PERCENT],
    // empty segments
    ['double slash only', 'spiffe://example.org//', EMPTY_SEGMENT],
    ['leading empty segment', 'spiffe://example.org//path', EMPTY_SEGMENT],
    ['inner empty segment', 'spiffe://example.org/path//element', EMPTY_SEGMENT],
    ['trailing empty segment', 'spiffe://example.org/path//', EMPTY_SEGMENT],
    ['path that is a SPIFFE ID', 'spiffe://example.org/spiffe://example.org/path', PATH_CHAR],
    // dot segments
    ['dot', 'spiffe://example.org/.', DOT_SEGMENT],
    ['dot dot', 'spiffe://example.org/..', DOT_SEGMENT],
    ['leading dot', 'spiffe://example.org/./path', DOT_SEGMENT],
    ['inner dot', 'spiffe://example.org/path/./other', DOT_SEGMENT],
    ['trailing dot', 'spiffe://example.org/path/.', DOT_SEGMENT],
    ['leading dot dot', 'spiffe://example.org/../path', DOT_SEGMENT],
    ['inner dot dot', 'spiffe://example.org/path/../other', DOT_SEGMENT],
    ['trailing dot dot', 'spiffe://example.org/path/..', DOT_SEGMENT],
    // trailing slash
    ['trailing slash after trust domain', 'spiffe://example.org/', TRAILING],
    ['trailing slash after path', 'spiffe://example.org/path/', TRAILING],
    ['trailing slash after two segments', 'spiffe://example.org/a/b/', TRAILING],
    // path characters
    ['space in path', 'spiffe://example.org/pa th', PATH_CHAR],
    ['trailing space', 'spiffe://example.org/path ', PATH_CHAR],
    ['tab in path', 'spiffe://example.org/pa\tth', PATH_CHAR],
    ['newline in path', 'spiffe://example.org/path\n', PATH_CHAR],
    ['NUL in path', 'spiffe://example.org/pa\u0000th', PATH_CHAR],
    ['colon in path', 'spiffe://example.org/pa:th/element', PATH_CHAR],
    ['at sign in path', 'spiffe://example.org/pa@th', PATH_CHAR],
    ['sub-delims in path', "spiffe://example.org/p!a$t&h'/(e)l*e+m,e;n=t", PATH_CHAR],
    ['open bracket in path', 'spiffe://example.org/path/elem[ent', PATH_CHAR],
    ['close bracket in path', 'spiffe://example.org/path/elem]ent', PATH_CHAR],
    ['tilde in path', 'spiffe://example.org/~user', PATH_CHAR],
    ['backslash in path', 'spiffe://example.org/a\\b', PATH_CHAR],
    ['é in path', 'spiffe://example.org/caf\u00e9', PATH_CHAR],
    ['CJK in path', 'spiffe://example.org/\u4e2d\u6587', PATH_CHAR],
    ['emoji in path', 'spiffe://example.org/\u{1F600}', PATH_CHAR],
    ['lone surrogate in path', 'spiffe://example.org/a\ud800', PATH_CHAR],
    ['fullwidth letter in path', 'spiffe://example.org/\uff41', PATH_CHAR],
    ['non-breaking space in path', 'spiffe://example.org/a\u00a0b', PATH_CHAR],
  ])('%s: %j', (_name, input, reason) => {
    expect(parseSpiffeId(input)).toEqual({ ok: false, reason });
    expect(spiffeIdError(input)).toBe(reason);
    expect(isSpiffeId(input)).toBe(false);
  });

  it('names user info that carries a password as user info, not a port', () => {
    expect(parseSpiffeId('spiffe://user:password@example.org/path/element')).toEqual({ ok: false, reason: USER_INFO });
    expect(parseSpiffeId('spiffe://example.org:8443/path')).toEqual({ ok: false, reason: 'trust domain cannot contain a port' });
  });
});

describe('parseSpiffeId: the 2048-byte limit counts UTF-8 bytes', () => {
  it.each<[string, string, string]>([
    ['2049 ASCII bytes', idOfBytes(2049), TOO_LONG],
    ['4096 ASCII bytes', idOfBytes(4096), TOO_LONG],
    // With 2049 bytes the length rule wins over every other rule.
    ['2049 bytes with a bad scheme', 'x'.repeat(2049), TOO_LONG],
    ['2049 bytes ending in a trailing slash', idOfBytes(2049, '/'), TOO_LONG],
    // Exactly 2048 bytes: the length rule passes and the character rule reports.
    ['2048 bytes ending in é', idOfBytes(2048, '\u00e9'), PATH_CHAR],
    ['2048 bytes ending in CJK', idOfBytes(2048, '\u4e2d'), PATH_CHAR],
    ['2048 bytes ending in an emoji', idOfBytes(2048, '\u{1F600}'), PATH_CHAR],
  ])('%s', (_name, input, reason) => {
    expect(parseSpiffeId(input)).toEqual({ ok: false, reason });
    expect(spiffeIdError(input)).toBe(reason);
    expect(isSpiffeId(input)).toBe(false);
  });

  // A 2-, 3- or 4-byte character takes the ID over 2048 bytes though its UTF-16 length is below 2049.
  // Every valid character is ASCII, so such an ID is invalid either way; the implementation may report
  // the length (counting UTF-8 bytes) or the character (counting UTF-16 units), nothing else.
  it.each<[string, string]>([
    ['2049 bytes ending in é (2 bytes)', idOfBytes(2049, '\u00e9')],
    ['2049 bytes ending in CJK (3 bytes)', idOfBytes(2049, '\u4e2d')],
    ['2049 bytes ending in an emoji (4 bytes)', idOfBytes(2049, '\u{1F600}')],
    ['2049 bytes ending in a lone surrogate (3 bytes)', idOfBytes(2049, 'x').slice(0, -3) + '\ud800'],
  ])('%s', (_name, input) => {
    const r = parseSpiffeId(input);
    expect(r.ok).toBe(false);
    expect([TOO_LONG, PATH_CHAR]).toContain(r.ok ? 'accepted' : r.reason);
    expect(isSpiffeId(input)).toBe(false);
  });

  it('measures the test inputs as intended', () => {
    expect(Buffer.byteLength(idOfBytes(2049, '\u00e9'))).toBe(2049);
    expect(idOfBytes(2049, '\u00e9').length).toBe(2048);
    expect(idOfBytes(2049, '\u{1F600}').length).toBe(2047);
    expect(Buffer.byteLength(idOfBytes(2048, '\u{1F600}'))).toBe(2048);
  });
});

// Every code point 0..255 in the trust domain and in the path, as go-spiffe's tables do.
const TD_OK = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_OK = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

function tdReason(ch: string): string | null {
  if (TD_OK.has(ch)) return null;
  switch (ch) {
    case ':': return PORT;
    case '@': return USER_INFO;
    case '?': return QUERY;
    case '#': return FRAGMENT;
    default: return TD_CHAR;
  }
}

function pathReason(ch: string): string | null {
  if (PATH_OK.has(ch)) return null;
  switch (ch) {
    case '?': return QUERY;
    case '#': return FRAGMENT;
    case '%': return PERCENT;
    default: return PATH_CHAR;
  }
}

const codePoints = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).filter((c) => c !== '/');

describe('parseSpiffeId: every character 0..255 in the trust domain', () => {
  it.each(codePoints.map((c) => [c.charCodeAt(0), c] as const))('U+%i', (_code, ch) => {
    const input = `spiffe://trust${ch}domain/path`;
    const reason = tdReason(ch);
    if (reason === null) {
      expect(parseSpiffeId(input)).toEqual({
        ok: true,
        value: { id: input, trustDomain: `trust${ch}domain`, path: '/path' },
      });
    } else {
      expect(parseSpiffeId(input)).toEqual({ ok: false, reason });
    }
  });

  it('allows exactly 39 characters', () => {
    expect(codePoints.filter((c) => tdReason(c) === null)).toHaveLength(39);
  });
});

describe('parseSpiffeId: every character 0..255 in a path segment', () => {
  it.each(codePoints.map((c) => [c.charCodeAt(0), c] as const))('U+%i', (_code, ch) => {
    const input = `spiffe://example.org/pa${ch}th`;
    const reason = pathReason(ch);
    if (reason === null) {
      expect(parseSpiffeId(input)).toEqual({
        ok: true,
        value: { id: input, trustDomain: 'example.org', path: `/pa${ch}th` },
      });
    } else {
      expect(parseSpiffeId(input)).toEqual({ ok: false, reason });
    }
  });

  it('allows exactly 65 characters', () => {
    expect(codePoints.filter((c) => pathReason(c) === null)).toHaveLength(65);
  });
});
