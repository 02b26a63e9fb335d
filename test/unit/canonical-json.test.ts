import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CanonicalJsonError,
  canonicalJson,
  canonicalNumber,
  canonicalString,
  compareCodePoints,
} from '../../src/core/canonical-json.js';
import { canonicalDigest, sha256Hex } from '../../src/core/hash.js';

// docs/spec.md#5-canonical-json-and-signatures: canonical JSON equals Python's
// json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).

const PYTHON_SCRIPT = `
import hashlib, json, sys
text = sys.stdin.buffer.read().decode("utf-8")
for line in text.split("\\n"):
    if not line:
        continue
    s = json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    sys.stdout.write(s + "\\t" + hashlib.sha256(s.encode("utf-8")).hexdigest() + "\\n")
`;

interface PythonResult {
  readonly canonical: string;
  readonly sha256: string;
}

/**
 * Canonical form and SHA-256 of each document according to Python. Documents travel as JSON lines;
 * JSON.stringify escapes lone surrogates and line breaks, and the split is on "\n" only (Python's
 * splitlines would also split on U+2028). Throws (never skips) when python3 is missing or fails.
 */
function python(docs: readonly unknown[]): PythonResult[] {
  const input = docs.map((d) => JSON.stringify(d)).join('\n') + '\n';
  const r = spawnSync('python3', ['-c', PYTHON_SCRIPT], { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw new Error(`python3 could not be run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`python3 exited with ${String(r.status)}: ${r.stderr}`);
  const lines = r.stdout.split('\n').filter((l) => l.length > 0);
  if (lines.length !== docs.length) throw new Error(`python3 printed ${lines.length} lines for ${docs.length} documents`);
  return lines.map((l) => {
    const tab = l.lastIndexOf('\t');
    return { canonical: l.slice(0, tab), sha256: l.slice(tab + 1) };
  });
}

const ASTRAL_KEYS = {
  '\u{1F600}': 'grinning face (astral)',
  '\uFFFD': 'replacement character',
  '\uE000': 'private use',
  '\uFF41': 'fullwidth a',
  '\u00e9': 'e acute',
  '\u{10000}': 'first astral',
  '\u{10FFFF}': 'last code point',
  a: 1,
  Z: 2,
  '': 3,
  '10': 4,
  '9': 5,
  aa: 6,
  'a\u{1F600}': 7,
  'a\uFFFF': 8,
};

const DOCUMENTS: ReadonlyArray<readonly [string, unknown]> = [
  ['nested objects', { b: { d: { f: 1, e: 2 }, c: [3, { z: 1, y: 2 }] }, a: { x: null } }],
  ['astral keys sort after BMP keys above U+E000', ASTRAL_KEYS],
  ['astral keys nested', { outer: ASTRAL_KEYS, list: [ASTRAL_KEYS] }],
  [
    'non-ASCII and astral values',
    { emoji: '\u{1F600}\u{1F92F}', cjk: '\u4e2d\u6587\u5b57', e: 'caf\u00e9', mixed: 'a\u00e9\u4e2d\u{1F600}z' },
  ],
  ['BMP edges in values', { v: '\u0080\u00ff\u0100\u07ff\u0800\ud7ff\ue000\ufeff\ufffd\uffff\u2028\u2029' }],
  ['astral edges in values', { v: '\u{10000}\u{1F600}\u{10FFFF}' }],
  [
    'control characters',
    {
      v: '\u0000\u0001\u0007\u0008\u0009\u000a\u000b\u000c\u000d\u000e\u001b\u001f',
      keys: { '\n': 1, '\t': 2, '\u0000': 3 },
    },
  ],
  ['quotes and backslashes', { v: 'say "hi" \\ back\\slash \\" \\\\', '"key"': '\\' }],
  ['slash', { v: '/a/b</script>', '/': '/' }],
  // regression: lone surrogates sort as their own code point, as in Python (U+D800 before U+E000)
  ['lone-surrogate keys sort by code point', { '\ue000': 1, '\ud800': 2, '\u{1F600}': 3, '\udc00': 4, a: 5 }],
  ['lone surrogates', { hi: 'a\ud800b', lo: 'a\udc00b', pairReversed: '\udc00\ud800', end: 'x\udbff', list: ['\ud83d'] }],
  ['integers', { n: [0, 1, -1, 42, 2 ** 31, 2 ** 32 + 1, 2 ** 53 - 1, -(2 ** 53 - 1), 1e15, 123456789012345] }],
  ['fractions', { n: [0.9, 0.8, 2 / 3, 0.1 + 0.2, 0.0001, 0.5, -0.5, 1.5, 3.141592653589793, 1 / 3] }],
  ['fraction edges', { n: [0.00012, 0.001, 123456.789, 4503599627370495.5, 9007199254740.99, 1e15 + 0.5, -0.0001] }],
  ['deny rates', { rates: [9 / 10, 20 / 25, 1, 0.95, 7 / 11] }],
  ['booleans and null', { t: true, f: false, n: null, list: [true, false, null] }],
  ['empty containers', { o: {}, a: [], nested: [{}, [], [[]], { x: {} }] }],
  ['top-level array', [3, 'b', { b: 1, a: 2 }, [], {}]],
  ['top-level string', 'caf\u00e9 \u{1F600}'],
  ['top-level number', 0.9],
  ['top-level null', null],
  ['top-level true', true],
  [
    'kill event shape',
    {
      type: 'killswitch.kill-event/v1',
      event_id: 'sha256:00',
      action: 'block',
      agent_id: 'spiffe://example.org/agent/a',
      epoch: 1,
      trigger: 'deny_rate',
      at: '2024-01-01T00:00:00.000Z',
      reason: 'deny_rate_threshold',
      kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 },
      evidence: {
        window_start: '2023-12-31T23:55:00.000Z',
        window_end: '2024-01-01T00:00:00.000Z',
        calls: 10,
        denies: 9,
        advisory_denies: 0,
        deny_rate: 0.9,
        tripping_decision_id: 'd-10',
        source: { file: 'in.ndjson', line_from: 1, line_to: 10 },
      },
      issuer: { kid: 'abc' },
    },
  ],
];

describe('canonicalJson matches Python json.dumps(sort_keys, compact, ensure_ascii)', () => {
  const expected = python(DOCUMENTS.map(([, d]) => d));

  it.each(DOCUMENTS.map(([name, doc], i) => [name, doc, i] as const))('%s', (_name, doc, i) => {
    const py = expected[i];
    expect(py).toBeDefined();
    expect(canonicalJson(doc)).toBe(py?.canonical);
    expect(sha256Hex(canonicalJson(doc))).toBe(py?.sha256);
    expect(canonicalDigest(doc)).toBe(`sha256:${py?.sha256 ?? ''}`);
  });

  it('produces ASCII only', () => {
    for (const [, doc] of DOCUMENTS) expect(canonicalJson(doc)).toMatch(/^[\x20-\x7e]*$/);
  });

  it('round-trips through JSON.parse', () => {
    for (const [, doc] of DOCUMENTS) expect(JSON.parse(canonicalJson(doc))).toEqual(doc);
  });

  it('escapes DEL (U+007F) as Python does', () => {
    // Python's ensure_ascii escapes everything outside ' '..'~', and that includes U+007F.
    const doc = { v: 'a\u007fb', '\u007f': 1 };
    const [py] = python([doc]);
    expect(py?.canonical).toBe('{"v":"a\\u007fb","\\u007f":1}');
    expect(canonicalJson(doc)).toBe(py?.canonical);
  });
});

describe('key order', () => {
  it('sorts astral keys after every BMP key (JS default sort does not)', () => {
    const keys = ['\u{1F600}', '\uFFFD', '\uE000', 'a'];
    // The trap: UTF-16 order puts U+1F600 (D83D DE00) before U+E000.
    expect([...keys].sort()).toEqual(['a', '\u{1F600}', '\uE000', '\uFFFD']);
    expect([...keys].sort(compareCodePoints)).toEqual(['a', '\uE000', '\uFFFD', '\u{1F600}']);
    expect(canonicalJson({ '\u{1F600}': 1, '\uFFFD': 2, '\uE000': 3, a: 4 })).toBe(
      '{"a":4,"\\ue000":3,"\\ufffd":2,"\\ud83d\\ude00":1}',
    );
  });

  it.each<[string, string, number]>([
    ['a', 'b', -1],
    ['b', 'a', 1],
    ['a', 'a', 0],
    ['', 'a', -1],
    ['a', 'aa', -1],
    ['Z', 'a', -1],
    ['10', '9', -1],
    ['\uE000', '\u{1F600}', -1],
    ['\uFFFF', '\u{10000}', -1],
    ['\u{10000}', '\u{10FFFF}', -1],
    ['\u{1F600}', '\u{1F601}', -1],
    ['a\uFFFF', 'a\u{1F600}', -1],
    ['\u{1F600}', '\u{1F600}', 0],
  ])('compareCodePoints(%j, %j) has sign %i', (a, b, sign) => {
    expect(Math.sign(compareCodePoints(a, b))).toBe(sign);
    expect(Math.sign(compareCodePoints(b, a))).toBe(sign === 0 ? 0 : -sign);
  });

  it('orders integer-like keys as strings, not by JS property order', () => {
    expect(canonicalJson({ b: 1, 10: 2, 9: 3, a: 4, 1: 5 })).toBe('{"1":5,"10":2,"9":3,"a":4,"b":1}');
  });
});

describe('strings', () => {
  it.each<[string, string]>([
    ['plain', '"plain"'],
    ['caf\u00e9', '"caf\\u00e9"'],
    ['\u4e2d', '"\\u4e2d"'],
    ['\uABCD', '"\\uabcd"'],
    ['\u{1F600}', '"\\ud83d\\ude00"'],
    ['\ud800', '"\\ud800"'],
    ['\udfff', '"\\udfff"'],
    ['"', '"\\""'],
    ['\\', '"\\\\"'],
    ['/', '"/"'],
    ['\n\r\t\b\f', '"\\n\\r\\t\\b\\f"'],
    ['\u0000\u001f', '"\\u0000\\u001f"'],
    ['\u2028', '"\\u2028"'],
  ])('canonicalString(%j) = %s', (input, out) => {
    expect(canonicalString(input)).toBe(out);
    expect(canonicalJson(input)).toBe(out);
  });
});

describe('numbers', () => {
  it.each<[number, string]>([
    [0, '0'],
    [-0, '0'],
    [1, '1'],
    [-1, '-1'],
    [2 ** 53 - 1, '9007199254740991'],
    [-(2 ** 53 - 1), '-9007199254740991'],
    [1e15, '1000000000000000'],
    [0.9, '0.9'],
    [0.8, '0.8'],
    [2 / 3, '0.6666666666666666'],
    [0.1 + 0.2, '0.30000000000000004'],
    [0.0001, '0.0001'],
    [-0.0001, '-0.0001'],
    [4503599627370495.5, '4503599627370495.5'],
  ])('canonicalNumber(%d) = %s', (n, out) => {
    expect(canonicalNumber(n)).toBe(out);
    expect(canonicalJson(n)).toBe(out);
  });

  it('encodes -0 as 0 inside documents', () => {
    expect(canonicalJson({ x: -0, y: [-0] })).toBe('{"x":0,"y":[0]}');
  });

  it.each<[string, number]>([
    ['1e-7', 1e-7],
    ['0.00001', 0.00001],
    ['0.0000999', 0.0000999],
    ['-0.00001', -0.00001],
    ['1.5e16', 1.5e16],
    ['1e16', 1e16],
    ['2**53', 2 ** 53],
    ['-(2**53)', -(2 ** 53)],
    ['1e21', 1e21],
    ['Number.MAX_VALUE', Number.MAX_VALUE],
    ['Number.MIN_VALUE', Number.MIN_VALUE],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['-Infinity', -Infinity],
  ])('refuses %s', (_name, n) => {
    expect(() => canonicalNumber(n)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(n)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson({ a: { b: [1, n] } })).toThrow(CanonicalJsonError);
    expect(() => canonicalDigest({ epoch: n })).toThrow(CanonicalJsonError);
  });

  it('refuses exactly the numbers whose JS and Python forms differ', () => {
    // Python's repr of these floats uses exponent notation or a ".0" suffix that JS does not print.
    const r = spawnSync('python3', ['-c', 'import sys\nfor x in (1e-7, 0.00001, 1.5e16, 1e16): print(repr(x))'], {
      encoding: 'utf8',
    });
    if (r.error) throw new Error(`python3 could not be run: ${r.error.message}`);
    expect(r.stdout.trim().split('\n')).toEqual(['1e-07', '1e-05', '1.5e+16', '1e+16']);
    expect([String(1e-7), String(0.00001), String(1.5e16), String(1e16)]).toEqual([
      '1e-7',
      '0.00001',
      '15000000000000000',
      '10000000000000000',
    ]);
  });

  it('CanonicalJsonError is an Error with its own name', () => {
    let caught: unknown;
    try {
      canonicalJson(NaN);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Error);
    expect(caught).toBeInstanceOf(CanonicalJsonError);
    expect((caught as Error).name).toBe('CanonicalJsonError');
  });
});

describe('other values', () => {
  it('omits undefined properties', () => {
    expect(canonicalJson({ a: undefined, b: 1, c: undefined })).toBe('{"b":1}');
    expect(canonicalJson({ a: undefined })).toBe('{}');
    expect(canonicalJson({ n: { x: undefined, y: null } })).toBe('{"n":{"y":null}}');
    expect(canonicalDigest({ a: 1, b: undefined })).toBe(canonicalDigest({ a: 1 }));
  });

  it('keeps null properties', () => {
    expect(canonicalJson({ a: null })).toBe('{"a":null}');
  });

  it.each<[string, unknown]>([
    ['undefined', undefined],
    ['bigint', 1n],
    ['function', () => 1],
    ['symbol', Symbol('s')],
    ['bigint in an object', { a: 1n }],
    ['undefined in an array', [undefined]],
  ])('refuses %s', (_name, v) => {
    expect(() => canonicalJson(v)).toThrow(CanonicalJsonError);
  });

  it('has no whitespace', () => {
    expect(canonicalJson({ a: [1, 2, { b: 'c d' }] })).toBe('{"a":[1,2,{"b":"c d"}]}');
  });
});

describe('hash', () => {
  it('sha256Hex matches the FIPS 180-2 vectors', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('sha256Hex hashes UTF-8 bytes', () => {
    expect(sha256Hex('\u00e9')).toBe(createHash('sha256').update(Buffer.from([0xc3, 0xa9])).digest('hex'));
  });

  it('canonicalDigest({agent_id, epoch, action}) equals sha256: + hex of the Python bytes', () => {
    const events = [
      { agent_id: 'spiffe://example.org/agent/a', epoch: 1, action: 'block' },
      { action: 'unblock', epoch: 1, agent_id: 'spiffe://example.org/agent/a' },
      { epoch: 12, action: 'block', agent_id: 'spiffe://example.org/ns/prod/sa/billing-agent' },
    ];
    const py = python(events);
    expect(py[0]?.canonical).toBe('{"action":"block","agent_id":"spiffe://example.org/agent/a","epoch":1}');
    events.forEach((e, i) => {
      const digest = canonicalDigest(e);
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(digest).toBe(`sha256:${py[i]?.sha256 ?? 'missing'}`);
    });
    // Field order does not matter; the action does.
    expect(canonicalDigest(events[0])).not.toBe(canonicalDigest(events[1]));
    expect(canonicalDigest(events[0])).toBe(
      canonicalDigest({ epoch: 1, action: 'block', agent_id: 'spiffe://example.org/agent/a' }),
    );
  });
});
