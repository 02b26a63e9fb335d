/**
 * The fast path for plain Kafka values (src/adapters/serde/fast-decision.ts) held against the full
 * decoder (JSON.parse + schema + key check) on random records: valid ones of many shapes and broken
 * ones (escapes, non-ASCII, other value types, duplicate and missing fields, bad SPIFFE IDs and
 * timestamps, key mismatches, truncated and mangled bytes). Whenever the fast path answers, the full
 * decoder answers the same decision; whenever the full decoder refuses, the fast path declined. The
 * example tests pin that it does answer for the common shape, so a fast path that always declines fails.
 */
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { createClassifier, DECISIONS } from '../../../src/core/decision-class.js';
import type { Decision } from '../../../src/core/decision.js';
import { SPIFFE_ID_MAX_BYTES } from '../../../src/core/spiffe-id.js';
import { DecisionDecoder, type DecodeResult } from '../../../src/adapters/serde/decision-decoder.js';
import { FastDecisionDecoder, ReusableDecision } from '../../../src/adapters/serde/fast-decision.js';
import { KafkaValueDecoder } from '../../../src/adapters/serde/kafka-value-decoder.js';

/** A property run, shrinking a failure included, is cut off after a minute and then counts as failed. */
const BOUNDED = { interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true } as const;

// a classifier other than the default, so a fast path that ignored the configured one would show
const classifier = createClassifier(['allow', 'step_up'], ['deny', 'advisory_deny', 'fault']);
const full = new DecisionDecoder(classifier);

function slow(value: Buffer, key: Buffer | null): DecodeResult {
  // bytes that are not UTF-8 are a bad record of their own (docs/spec.md#1-decision-events), the value's before the key's
  if (!isUtf8(value)) return { ok: false, reason: 'invalid_utf8', message: 'the value is not valid UTF-8' };
  if (key !== null && !isUtf8(key)) return { ok: false, reason: 'invalid_utf8', message: 'the record key is not valid UTF-8' };
  return full.decodeText(value.toString('utf8'), key === null || key.length === 0 ? undefined : key.toString('utf8'));
}

/**
 * A decision without its identity handle (which only the fast path gives: a shortcut for the window store
 * that cannot change a result, test/unit/core/window-property.test.ts), checked to be there when it should.
 */
function unhandled(d: Decision): Decision {
  const { identity, ...rest } = d;
  if (d.agentId === null) expect(identity).toBeUndefined();
  else if (identity !== undefined) expect(Number.isInteger(identity) && identity > 0).toBe(true);
  return rest;
}

function unhandledResult(r: DecodeResult | Promise<DecodeResult>): DecodeResult | Promise<DecodeResult> {
  return r instanceof Promise || !r.ok ? r : { ok: true, decision: unhandled(r.decision) };
}

/** The fast path's answer must be a decline or the full decoder's decision; a refusal must be a decline. */
function agrees(fast: Decision | null, expected: DecodeResult): void {
  if (fast === null) return;
  expect(expected.ok, 'the fast path answered a record the full decoder refuses').toBe(true);
  if (fast.agentId !== null) expect(fast.identity, 'a handle with every identified decision').toBeDefined();
  if (expected.ok) expect(unhandled(fast)).toStrictEqual(expected.decision);
}

// --- generators --------------------------------------------------------------------------------
//
// A record is drawn clean (every field as the contract wants it, in the shapes producers really send:
// any order, whitespace, anonymous, extra fields, fractions and offsets) and then gets zero to two
// faults: a field set to a bad or edge value, a field dropped or repeated, an escape, non-ASCII,
// whitespace JSON does not allow, a mangled byte, a key that differs. Most faults make the record
// invalid, some leave it valid but outside the fast path's shape, a few change nothing.

const VALID_IDS = [
  'spiffe://example.org', 'spiffe://example.org/a', 'spiffe://bench.example/ns/prod/sa/agent-1', 'spiffe://a_b.c-d/Path.With-Caps_9/x',
  'spiffe://example.org/.../a..b/.c', 'spiffe://1.2.3.4/x', 'spiffe://example.org/' + 'a'.repeat(SPIFFE_ID_MAX_BYTES - 21),
];
const INVALID_IDS = [
  '', 'spiffe://', 'spiffe:///a', 'spiffe://Example.org/a', 'spiffe://example.org/', 'spiffe://example.org//a', 'spiffe://example.org/./a',
  'spiffe://example.org/a/..', 'spiffe://example.org/a?b', 'spiffe://example.org/a#b', 'spiffe://example.org:8080/a', 'spiffe://u@example.org/a',
  'spiffe://example.org/a%20b', 'spiffe://example.org/a b', 'http://example.org/a', 'SPIFFE://example.org/a', 'spiffe:/example.org/a',
  'spiffe://example.org/' + 'a'.repeat(SPIFFE_ID_MAX_BYTES - 20), 'spiffe://example.org/ä', 'spiffe://exämple.org/a', 'spiffe://example.org/a\u0000',
];
const validId = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...VALID_IDS.slice(0, 4)) }, // a few identities: keys repeat, the cache is hit
  { weight: 1, arbitrary: fc.constantFrom(...VALID_IDS) },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.string({ unit: fc.constantFrom(...'abz09.-_'), minLength: 1, maxLength: 8 }),
      fc.array(fc.string({ unit: fc.constantFrom(...'aZ09.-_'), minLength: 1, maxLength: 6 }).filter((s) => s !== '.' && s !== '..'), { maxLength: 3 }),
    ).map(([td, segments]) => `spiffe://${td}${segments.map((s) => '/' + s).join('')}`),
  },
);
const anyId = fc.oneof(
  { weight: 2, arbitrary: validId },
  { weight: 2, arbitrary: fc.constantFrom(...INVALID_IDS) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.string({ unit: fc.constantFrom(...'abz09.-_A:@/%'), maxLength: 8 }), fc.string({ unit: fc.constantFrom(...'aZ09.-_/%?# '), maxLength: 12 }))
      .map(([td, path]) => `spiffe://${td}${path === '' ? '' : '/' + path}`),
  },
);

const pad = (n: number, width: number): string => String(n).padStart(width, '0');
interface TimeParts { year: number; month: number; day: number; hour: number; minute: number; second: number; fraction: string | null; zone: string; t: string; narrow: boolean }
const formatTime = (p: TimeParts): string =>
  // narrow: a one-digit month, which RFC 3339 does not allow
  `${pad(p.year, 4)}-${p.narrow ? String(p.month) : pad(p.month, 2)}-${pad(p.day, 2)}${p.t}${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}` +
  `${p.fraction === null ? '' : '.' + p.fraction}${p.zone}`;
const digits = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });
const offset = (maxH: number, maxM: number): fc.Arbitrary<string> =>
  fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: maxH }), fc.integer({ min: 0, max: maxM })).map(([s, h, m]) => `${s}${pad(h, 2)}:${pad(m, 2)}`);
const YEARS = [0, 1900, 1969, 1970, 2000, 2023, 2024, 2026, 2100, 9999];
/** valid RFC 3339 date-times: fractions of any length, offsets, lower-case t/z, leap days, leap seconds */
const validTime = fc.oneof(
  { weight: 2, arbitrary: fc.date({ min: new Date(Date.UTC(1900, 0, 1)), max: new Date(Date.UTC(2200, 0, 1)), noInvalidDate: true }).map((d) => d.toISOString()) },
  {
    weight: 3,
    arbitrary: fc.record({
      year: fc.constantFrom(...YEARS), month: fc.integer({ min: 1, max: 12 }), day: fc.integer({ min: 1, max: 28 }),
      hour: fc.integer({ min: 0, max: 23 }), minute: fc.integer({ min: 0, max: 59 }), second: fc.integer({ min: 0, max: 60 }),
      fraction: fc.option(digits(1, 10)), zone: fc.oneof(fc.constantFrom('Z', 'z', '+00:00', '-00:00'), offset(23, 59)), t: fc.constantFrom('T', 't'), narrow: fc.constant(false),
    }).map(formatTime),
  },
  { weight: 1, arbitrary: fc.constantFrom('2024-02-29T00:00:00Z', '2000-02-29T23:59:60.5+01:00', '2024-12-31T23:59:59.999999999-23:59', '0000-01-01T00:00:00Z') },
);
/** date-times of every part in and just out of range */
const anyTime = fc.oneof(
  validTime,
  fc.record({
    year: fc.constantFrom(...YEARS), month: fc.integer({ min: 0, max: 13 }), day: fc.integer({ min: 0, max: 32 }),
    hour: fc.integer({ min: 0, max: 24 }), minute: fc.integer({ min: 0, max: 60 }), second: fc.integer({ min: 0, max: 61 }),
    fraction: fc.option(digits(0, 10)), zone: fc.oneof(fc.constantFrom('Z', 'z', '', '+0530', 'UTC', ' Z', 'Zz'), offset(24, 60)),
    t: fc.constantFrom('T', 't', ' ', '_'), narrow: fc.boolean(),
  }).map(formatTime),
  fc.constantFrom('2023-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2024-04-31T00:00:00Z', '2024-01-01', '', '2024-01-01T00:00:00.Z', '2024-01-01T00:00:00Z '),
);

const asciiText = fc.string({ unit: 'grapheme-ascii', maxLength: 20 });
/** printable ASCII that JSON.stringify writes without an escape */
const plainUnit = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }).filter((c) => c !== '"' && c !== '\\');
const plainText = (minLength = 0, maxLength = 20): fc.Arbitrary<string> => fc.string({ unit: plainUnit, minLength, maxLength });
const anyText = fc.oneof(
  asciiText,
  fc.string({ unit: 'binary-ascii', maxLength: 10 }), // control characters
  fc.string({ unit: 'grapheme', maxLength: 10 }), // non-ASCII
  fc.string({ unit: 'binary', maxLength: 6 }), // lone surrogates too
);
const anyDecisionId = fc.oneof(asciiText, anyText, fc.constantFrom('', 'x'.repeat(127), 'x'.repeat(128), 'x'.repeat(129), 'é'.repeat(128), 'é'.repeat(129)));
const anyDecision = fc.oneof(fc.constantFrom(...DECISIONS), fc.constantFrom('Allow', 'DENY', 'denied', '', 'allow ', 'n/a/', 'n'));

/** any JSON value but a string, and a few near-misses of `null` that are not JSON */
const otherValue = fc.oneof(
  fc.constantFrom('null', 'true', 'false', '0', '-1', '1.5e3', '{}', '[]', '["x"]', '{"a":"b"}', 'nulx', 'nUll', 'nul', 'nill', 'NULL'),
  fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'string').map((v) => JSON.stringify(v)),
);

const ESCAPES = ['u-escape', 'slash-escape', 'ascii-only'] as const;
type Escape = (typeof ESCAPES)[number];
/** `text` as JSON with an escape the full decoder undoes (so the value may stay valid) */
function escaped(text: string, how: Escape, at: number): string {
  const plain = JSON.stringify(text);
  if (how === 'slash-escape') return plain.replaceAll('/', '\\/');
  if (how === 'ascii-only') return plain.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (text.length === 0) return plain;
  const i = at % text.length;
  return JSON.stringify(text.slice(0, i)).slice(0, -1) + `\\u${text.charCodeAt(i).toString(16).padStart(4, '0')}` + JSON.stringify(text.slice(i + 1)).slice(1);
}

const KNOWN = ['decision_id', 'agent_id', 'decision', 'occurred_at', 'session_id', 'tool_name', 'policy_rule', 'tenant', 'delegated_by'] as const;
const EXTRA_NAMES = fc.oneof(plainText(0, 12), fc.constantFrom('__proto__', 'constructor', 'toString', 'agent_ID', 'decision_id ', 'decisio'));
/** a bad or edge value for each field, as JSON text */
const badValue: Record<string, fc.Arbitrary<string>> = {
  decision_id: fc.oneof(anyDecisionId.map((s) => JSON.stringify(s)), otherValue),
  agent_id: fc.oneof(anyId.map((s) => JSON.stringify(s)), otherValue),
  decision: fc.oneof(anyDecision.map((s) => JSON.stringify(s)), otherValue),
  occurred_at: fc.oneof(anyTime.map((s) => JSON.stringify(s)), otherValue),
  session_id: fc.oneof(anyText.map((s) => JSON.stringify(s)), otherValue),
  tool_name: fc.oneof(anyText.map((s) => JSON.stringify(s)), otherValue),
  policy_rule: fc.oneof(anyText.map((s) => JSON.stringify(s)), otherValue),
  tenant: fc.oneof(anyText.map((s) => JSON.stringify(s)), otherValue),
  delegated_by: fc.oneof(anyId.map((s) => JSON.stringify(s)), otherValue),
};

type KeyMode = 'none' | 'empty' | 'agent' | 'other' | 'prefix' | 'not-utf8' | 'upper';
type Mutation = { kind: 'truncate'; at: number } | { kind: 'replace'; at: number; byte: number } | { kind: 'insert'; at: number; byte: number } | { kind: 'append'; text: string } | { kind: 'bom' };
type Fault =
  | { kind: 'set'; field: string; raw: string }
  | { kind: 'remove'; field: string }
  | { kind: 'repeat'; at: number; raw: string | null }
  | { kind: 'escape'; at: number; how: Escape; pos: number }
  | { kind: 'escape-key' }
  | { kind: 'bad-whitespace'; at: number; ws: string }
  | { kind: 'key'; mode: KeyMode; other: string }
  | { kind: 'bytes'; mutation: Mutation };

const fault: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...KNOWN).chain((field) => badValue[field]!.map((raw): Fault => ({ kind: 'set', field, raw }))) },
  { weight: 1, arbitrary: fc.tuple(EXTRA_NAMES, fc.oneof(otherValue, anyText.map((s) => JSON.stringify(s)))).map(([field, raw]): Fault => ({ kind: 'set', field, raw })) },
  { weight: 1, arbitrary: fc.constantFrom(...KNOWN).map((field): Fault => ({ kind: 'remove', field })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.option(asciiText.map((s) => JSON.stringify(s)))).map(([at, raw]): Fault => ({ kind: 'repeat', at, raw })) },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), fc.constantFrom(...ESCAPES), fc.nat()).map(([at, how, pos]): Fault => ({ kind: 'escape', at, how, pos })) },
  { weight: 1, arbitrary: fc.constant<Fault>({ kind: 'escape-key' }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.constantFrom('\f', '\v', '\u00a0', '\u2028', '\u0000')).map(([at, ws]): Fault => ({ kind: 'bad-whitespace', at, ws })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom<KeyMode>('none', 'empty', 'other', 'prefix', 'not-utf8', 'upper'), anyId).map(([mode, other]): Fault => ({ kind: 'key', mode, other })) },
  {
    weight: 3,
    arbitrary: fc.oneof(
      fc.nat().map<Mutation>((at) => ({ kind: 'truncate', at })),
      fc.tuple(fc.nat(), fc.nat(255)).map<Mutation>(([at, byte]) => ({ kind: 'replace', at, byte })),
      fc.tuple(fc.nat(), fc.constantFrom(0x22, 0x5c, 0x2c, 0x7b, 0x7d, 0x3a, 0x5b, 0x00, 0x7f, 0x80, 0xff, 0x20)).map<Mutation>(([at, byte]) => ({ kind: 'insert', at, byte })),
      fc.constantFrom<Mutation>({ kind: 'append', text: 'x' }, { kind: 'append', text: ',' }, { kind: 'append', text: '}' }, { kind: 'append', text: '{}' }),
      fc.constant<Mutation>({ kind: 'bom' }),
    ).map((mutation): Fault => ({ kind: 'bytes', mutation })),
  },
);

/** null (n - 1) times in n, else a value of `arb` */
const rarely = <T>(arb: fc.Arbitrary<T>, n: number): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(arb, { freq: 2 });

const cleanEvent = fc.record({
  decision_id: fc.oneof({ weight: 9, arbitrary: plainText(1, 40) }, { weight: 1, arbitrary: fc.constantFrom('x', 'x'.repeat(128)) }),
  agent_id: fc.oneof({ weight: 8, arbitrary: validId }, { weight: 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constant(undefined) }),
  decision: fc.constantFrom(...DECISIONS),
  occurred_at: validTime,
  session_id: sometimes(plainText()),
  tool_name: sometimes(plainText()),
  policy_rule: sometimes(plainText()),
  tenant: sometimes(plainText()),
  delegated_by: rarely(validId, 5),
  extra: fc.array(fc.tuple(EXTRA_NAMES, plainText()), { maxLength: 2 }),
});

const WS = ['', '', '', '', ' ', '\n', '\t', '\r\n  ', '  '];

interface KafkaRecord {
  value: Buffer;
  key: Buffer | null;
}

/** a copy in memory of its own (Buffer.alloc does not take from the pool) */
function ownBuffer(b: Buffer): Buffer {
  const own = Buffer.alloc(b.length);
  b.copy(own);
  return own;
}

function applyBytes(value: Buffer, m: Mutation): Buffer {
  switch (m.kind) {
    case 'truncate': return value.subarray(0, m.at % value.length);
    case 'replace': { const v = Buffer.from(value); v[m.at % v.length] = m.byte; return v; }
    case 'insert': { const at = m.at % (value.length + 1); return Buffer.concat([value.subarray(0, at), Buffer.from([m.byte]), value.subarray(at)]); }
    case 'append': return Buffer.concat([value, Buffer.from(m.text)]);
    case 'bom': return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), value]);
  }
}

const recordWith = (faults: fc.Arbitrary<Fault[]>): fc.Arbitrary<KafkaRecord> => fc
  .record({
    event: cleanEvent,
    faults,
    ws: fc.array(fc.nat(WS.length - 1), { minLength: 1, maxLength: 40 }),
    unkeyed: fc.nat(5).map((n) => n === 0), // keyed records may also go without a key
    order: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
    // bytes before the key in one buffer, as a fetch hands key and value (at any alignment), or none: separate buffers
    fetched: fc.option(fc.nat(7)),
  })
  .map(({ event, faults, ws, unkeyed, order, fetched }) => {
    const { extra, ...fields } = event;
    let entries: [string, string][] = [];
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined || (v === null && k !== 'agent_id')) continue;
      entries.push([k, JSON.stringify(v)]);
    }
    for (const [k, v] of extra) if (!entries.some(([e]) => e === k)) entries.push([k, JSON.stringify(v)]);
    // any field order
    entries = entries.map((e, i) => [order[i % order.length]! + i, e] as const).sort((a, b) => a[0] - b[0]).map(([, e]) => e);
    let keyText = typeof event.agent_id === 'string' && !unkeyed ? event.agent_id : null;
    let keyBytes: Buffer | null = null;
    let escapeKey = false;
    const spaces = ws.map((w) => WS[w]!);
    const mutations: Mutation[] = [];
    for (const f of faults) {
      switch (f.kind) {
        case 'set': {
          const at = entries.findIndex(([k]) => k === f.field);
          if (at >= 0) entries[at] = [f.field, f.raw];
          else entries.push([f.field, f.raw]);
          break;
        }
        case 'remove': entries = entries.filter(([k]) => k !== f.field); break;
        case 'repeat': if (entries.length > 0) { const e = entries[f.at % entries.length]!; entries.push([e[0], f.raw ?? e[1]]); } break;
        case 'escape': {
          if (entries.length === 0) break;
          const i = f.at % entries.length;
          const [k, raw] = entries[i]!;
          if (raw.startsWith('"')) entries[i] = [k, escaped(JSON.parse(raw) as string, f.how, f.pos)];
          break;
        }
        case 'escape-key': escapeKey = true; break;
        case 'bad-whitespace': spaces[f.at % spaces.length] = f.ws; break;
        case 'key': {
          const agent = typeof event.agent_id === 'string' ? event.agent_id : f.other;
          keyText = null;
          if (f.mode === 'empty') keyBytes = Buffer.alloc(0);
          else if (f.mode === 'other') keyText = f.other;
          else if (f.mode === 'prefix') keyText = agent.slice(0, -1);
          else if (f.mode === 'upper') keyText = agent.toUpperCase();
          else if (f.mode === 'not-utf8') keyBytes = Buffer.concat([Buffer.from(agent), Buffer.from([0xff])]);
          break;
        }
        case 'bytes': mutations.push(f.mutation); break;
      }
    }
    let n = 0;
    const space = (): string => spaces[n++ % spaces.length]!;
    const name = (k: string): string => (escapeKey && k === 'decision' ? '"decisio\\u006e"' : JSON.stringify(k));
    const text = `${space()}{${space()}${entries.map(([k, v]) => `${name(k)}${space()}:${space()}${v}${space()}`).join(`,${space()}`)}}${space()}`;
    let value: Buffer = Buffer.from(text, 'utf8');
    for (const m of mutations) value = applyBytes(value, m);
    const key = keyBytes ?? (keyText === null ? null : Buffer.from(keyText, 'utf8'));
    // not from Node's buffer pool, where small buffers would share their memory after all
    if (fetched === null) return { value, key: key === null ? null : ownBuffer(key) };
    const k = key ?? Buffer.alloc(0);
    const fetch = Buffer.concat([Buffer.alloc(fetched, 0x22), k, value, Buffer.from('"}')]);
    return { value: fetch.subarray(fetched + k.length, fetched + k.length + value.length), key: key === null ? null : fetch.subarray(fetched, fetched + k.length) };
  });

const record = recordWith(fc.oneof({ weight: 2, arbitrary: fc.constant<Fault[]>([]) }, { weight: 3, arbitrary: fc.array(fault, { minLength: 1, maxLength: 2 }) }));
/** valid records in the common shape, every one of which the fast path must take */
const cleanRecord = recordWith(fc.constant([]));

/**
 * Runs of records of one shape, as one producer writes them: the same keys in the same order with the
 * same whitespace, only the values differ (the decoder then reads them by its template of the last
 * record). Values are mostly valid, sometimes bad or outside the fast path (escapes, control characters,
 * non-ASCII, a decision it does not know, another value type), and a record may lose bytes, gain one or
 * drop a key, so runs also break their shape.
 */
const OPTIONAL = ['session_id', 'tool_name', 'policy_rule', 'tenant', 'delegated_by', 'x-extra'] as const;
const valueOf: Record<string, fc.Arbitrary<string>> = {
  decision_id: fc.oneof({ weight: 12, arbitrary: plainText(1, 40).map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: badValue.decision_id! }),
  agent_id: fc.oneof({ weight: 12, arbitrary: validId.map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: badValue.agent_id! }),
  decision: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...DECISIONS).map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: badValue.decision! }),
  occurred_at: fc.oneof({ weight: 12, arbitrary: validTime.map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: badValue.occurred_at! }),
  delegated_by: fc.oneof({ weight: 12, arbitrary: validId.map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: badValue.delegated_by! }),
};
const otherValueOf = fc.oneof({ weight: 12, arbitrary: plainText().map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: anyText.map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: otherValue });
const shapeRun = fc.record({
  optional: fc.subarray([...OPTIONAL]),
  order: fc.array(fc.nat(), { minLength: 10, maxLength: 10 }),
  ws: fc.array(fc.constantFrom('', '', '', ' ', '\n', '\t  '), { minLength: 24, maxLength: 24 }),
  agent: fc.constantFrom('string', 'string', 'string', 'null', 'absent'),
  keyed: fc.nat(3).map((n) => n > 0),
  records: fc.array(fc.record({
    values: fc.record({ decision_id: valueOf.decision_id!, agent_id: valueOf.agent_id!, decision: valueOf.decision!, occurred_at: valueOf.occurred_at!, delegated_by: valueOf.delegated_by!, other: otherValueOf }),
    change: fc.option(fc.oneof(
      fc.nat().map((at) => ({ kind: 'drop' as const, at })),
      fc.constant({ kind: 'other-key' as const }),
      fc.oneof(
        fc.nat().map<Mutation>((at) => ({ kind: 'truncate', at })),
        fc.tuple(fc.nat(), fc.nat(255)).map<Mutation>(([at, byte]) => ({ kind: 'replace', at, byte })),
        fc.tuple(fc.nat(), fc.constantFrom(0x22, 0x5c, 0x2c, 0x7d, 0x3a, 0x00, 0x20, 0x80)).map<Mutation>(([at, byte]) => ({ kind: 'insert', at, byte })),
      ).map((mutation) => ({ kind: 'bytes' as const, mutation })),
    ), { freq: 4 }),
  }), { minLength: 2, maxLength: 12 }),
}).map(({ optional, order, ws, agent, keyed, records }) => {
  const keys = ['decision_id', ...(agent === 'absent' ? [] : ['agent_id']), 'decision', 'occurred_at', ...optional]
    .map((k, i) => [order[i % order.length]! + i, k] as const).sort((a, b) => a[0] - b[0]).map(([, k]) => k);
  return records.map(({ values, change }): KafkaRecord => {
    let present = keys;
    if (change?.kind === 'drop') present = keys.filter((_, i) => i !== change.at % keys.length);
    let n = 0;
    const space = (): string => ws[n++ % ws.length]!;
    const raw = (k: string): string => (k === 'agent_id' && agent === 'null' ? 'null' : (values as Record<string, string>)[k] ?? values.other);
    const text = `${space()}{${space()}${present.map((k) => `${JSON.stringify(k)}${space()}:${space()}${raw(k)}${space()}`).join(`,${space()}`)}}${space()}`;
    let value: Buffer = Buffer.from(text, 'utf8');
    if (change?.kind === 'bytes') value = applyBytes(value, change.mutation);
    const agentText = ((): string | null => { try { const v: unknown = JSON.parse(values.agent_id); return typeof v === 'string' ? v : null; } catch { return null; } })();
    const keyText = change?.kind === 'other-key' ? 'spiffe://example.org/other' : keyed && agent === 'string' ? agentText : null;
    return { value: ownBuffer(value), key: keyText === null ? null : Buffer.from(keyText, 'utf8') };
  });
});

// --- properties --------------------------------------------------------------------------------

describe('FastDecisionDecoder against the full decoder', () => {
  it('answers only what the full decoder accepts, with the same decision; declines every refusal', () => {
    const fast = new FastDecisionDecoder(classifier);
    const seen = { answered: 0, declinedValid: 0, refused: 0 };
    fc.assert(
      fc.property(record, ({ value, key }) => {
        const expected = slow(value, key);
        const got = fast.decode(value, key);
        agrees(got, expected);
        if (got !== null) seen.answered++;
        else if (expected.ok) seen.declinedValid++;
        else seen.refused++;
      }),
      { numRuns: 20_000, ...BOUNDED },
    );
    // the generator reaches all three outcomes, and the fast path takes a good share of valid records
    expect(seen.answered).toBeGreaterThan(2_000);
    expect(seen.refused).toBeGreaterThan(2_000);
    expect(seen.declinedValid).toBeGreaterThan(100);
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('KafkaValueDecoder.decode of a plain value equals the full decoder, refusals and their messages included', () => {
    const kafka = new KafkaValueDecoder(full, undefined, 'decisions-value');
    fc.assert(
      fc.property(record, ({ value, key }) => {
        fc.pre(value.length > 0 && value[0] !== 0);
        expect(unhandledResult(kafka.decode(value, key))).toStrictEqual(slow(value, key));
      }),
      { numRuns: 5_000, ...BOUNDED },
    );
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('KafkaValueDecoder.decodeInto gives what decode gives, writing the common shape into one reused decision', () => {
    const kafka = new KafkaValueDecoder(full, undefined, 'decisions-value');
    const into = new ReusableDecision();
    let reused = 0;
    fc.assert(
      fc.property(record, ({ value, key }) => {
        fc.pre(value.length === 0 || value[0] !== 0);
        const expected = unhandledResult(kafka.decode(value, key));
        const got = kafka.decodeInto(value, key, into);
        if (got !== into) {
          expect(unhandledResult(got as DecodeResult)).toStrictEqual(expected);
          return;
        }
        reused++;
        // every field rewritten: nothing of an earlier record (a session id, an agent) stays behind
        const { decisionId, agentId, cls, timeMs, sessionId, identity } = into;
        expect({ ok: true, decision: unhandled({ decisionId, agentId, cls, timeMs, sessionId, identity }) }).toStrictEqual(slow(value, key));
        into.release();
        expect(() => into.decisionId).toThrow(/released/);
      }),
      { numRuns: 5_000, ...BOUNDED },
    );
    expect(reused).toBeGreaterThan(500);
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('takes every valid record of the common shape (printable ASCII strings without escapes)', () => {
    const fast = new FastDecisionDecoder(classifier);
    fc.assert(
      fc.property(cleanRecord, ({ value, key }) => {
        const expected = slow(value, key);
        expect(expected.ok).toBe(true);
        const got = fast.decode(value, key);
        expect(got, 'declined').not.toBeNull();
        agrees(got, expected);
      }),
      { numRuns: 5_000, ...BOUNDED },
    );
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('reads occurred_at right in runs of records of one minute (its cache of the last minute)', () => {
    // a minute, valid or not (Feb 29 of a common year, hour 24, ...), and the rest of each date-time in it (':' mostly)
    /** mostly the first of `valid`, sometimes any of them or of `invalid` */
    const part = (valid: string[], invalid: string[]): fc.Arbitrary<string> =>
      fc.oneof({ weight: 4, arbitrary: fc.constant(valid[0]!) }, { weight: 2, arbitrary: fc.constantFrom(...valid) }, { weight: 1, arbitrary: fc.constantFrom(...invalid) });
    const minute = fc.record({
      day: part(['2026-11-23', '2024-02-29', '1970-01-01'], ['2023-02-29', '2024-13-01', '2024-1-01']),
      t: part(['T', 't'], [' ']),
      hour: part(['00', '23'], ['24', '9:']),
      minute: part(['00', '59'], ['60', '5']),
    }).map((m) => `${m.day}${m.t}${m.hour}:${m.minute}`);
    const rest = fc.tuple(
      fc.constantFrom(':', ':', ':', ':', '.', '', '::'),
      fc.oneof(fc.integer({ min: 0, max: 61 }).map((n) => pad(n, 2)), fc.constantFrom('5', '5x', '', '-1')),
      fc.option(digits(0, 10)),
      fc.constantFrom('Z', 'z', 'Z', '+00:00', '-01:30', '', 'ZZ', 'Z ', '+', '-', 'A'),
    ).map(([colon, sec, fraction, zone]) => `${colon}${sec}${fraction === null ? '' : '.' + fraction}${zone}`);
    let answered = 0;
    const run = fc.array(fc.tuple(minute, fc.array(fc.oneof({ weight: 6, arbitrary: rest.map((r) => ({ r })) }, { weight: 1, arbitrary: validTime.map((t) => ({ t })) }), { minLength: 1, maxLength: 12 })), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(run, (runs) => {
        const fast = new FastDecisionDecoder(classifier);
        for (const [m, times] of runs) {
          for (const x of times) {
            const occurred = 'r' in x ? m + x.r : x.t;
            const value = Buffer.from(JSON.stringify({ decision_id: 'd', decision: 'deny', occurred_at: occurred }));
            const got = fast.decode(value, null);
            agrees(got, slow(value, null));
            if (got !== null) answered++;
          }
        }
      }),
      { numRuns: 3_000, ...BOUNDED },
    );
    expect(answered).toBeGreaterThan(3_000);
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('reads runs of records of one shape right (its template of the last record), and breaks from it when the shape changes', () => {
    let answered = 0;
    let records = 0;
    fc.assert(
      fc.property(fc.array(shapeRun, { minLength: 1, maxLength: 3 }), (runs) => {
        const fast = new FastDecisionDecoder(classifier);
        for (const run of runs) {
          for (const { value, key } of run) {
            const got = fast.decode(value, key);
            agrees(got, slow(value, key));
            records++;
            if (got !== null) answered++;
          }
        }
      }),
      { numRuns: 2_000, ...BOUNDED },
    );
    // many records of a run are valid and in the fast path's shape
    expect(answered).toBeGreaterThan(records / 4);
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores

  it('stays right when its cache of valid IDs starts over', () => {
    const fast = new FastDecisionDecoder(classifier, 3);
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (records) => {
        for (const { value, key } of records) agrees(fast.decode(value, key), slow(value, key));
      }),
      { numRuns: 500, ...BOUNDED },
    );
  }, 90_000); // a property test: seconds alone, far more beside other test files on 2 busy cores
});

// --- the common shape is taken ----------------------------------------------------------------

/** A record as benchmarks/kafka-pipeline.ts `backlog()` writes them for the Kafka benchmarks. */
function harnessRecord(i: number, who: number, anonymous = false): KafkaRecord {
  const agent = `spiffe://bench.example/ns/prod/sa/agent-${who}`;
  const value = JSON.stringify({
    decision_id: `01K${i.toString(36).padStart(10, '0')}`,
    ...(anonymous ? {} : { agent_id: agent }),
    decision: ['allow', 'deny', 'advisory_deny', 'step_up'][i % 4],
    occurred_at: new Date(Date.UTC(2026, 10, 23) + i * 7).toISOString(),
    session_id: `sess-${who}-${Math.floor(i / 100)}`,
    tool_name: 'web.fetch',
    policy_rule: 'egress-allowlist',
    tenant: 'acme',
  });
  return { value: Buffer.from(value), key: anonymous ? null : Buffer.from(agent) };
}

describe('FastDecisionDecoder takes the common shape', () => {
  const fast = new FastDecisionDecoder(classifier);

  function taken(value: Buffer | string, key: Buffer | string | null): Decision {
    const v = typeof value === 'string' ? Buffer.from(value) : value;
    const k = typeof key === 'string' ? Buffer.from(key) : key;
    const got = fast.decode(v, k);
    expect(got, 'declined').not.toBeNull();
    agrees(got, slow(v, k));
    return got!;
  }

  it('the Kafka benchmark records, keyed and anonymous', () => {
    for (let i = 0; i < 200; i++) taken(harnessRecord(i, i % 37).value, harnessRecord(i, i % 37).key);
    const r = harnessRecord(5, 3, true);
    expect(taken(r.value, r.key).agentId).toBeNull();
    expect(taken(harnessRecord(1, 42).value, harnessRecord(1, 42).key)).toStrictEqual({
      decisionId: '01K0000000001', agentId: 'spiffe://bench.example/ns/prod/sa/agent-42', cls: classifier.classOf('deny'),
      timeMs: Date.UTC(2026, 10, 23) + 7, sessionId: 'sess-42-0', identity: expect.any(Number) as number,
    });
  });

  it('gives every identity one handle: the same on each of its records, another for each other identity', () => {
    const fast = new FastDecisionDecoder(classifier);
    const handles = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      const r = harnessRecord(i, (i * 7) % 300);
      const d = fast.decode(r.value, r.key)!;
      const h = handles.get(d.agentId!) ?? d.identity!;
      expect(d.identity).toBe(h);
      handles.set(d.agentId!, h);
    }
    expect(handles.size).toBe(300);
    expect(new Set(handles.values()).size).toBe(300);
  });

  it('reads each record\'s own session id while it keeps the last one of each identity', () => {
    // a table of 2 IDs starts over every few records here, so kept sessions meet reused table entries
    const fast = new FastDecisionDecoder(classifier, 2);
    for (let i = 0; i < 1_200; i++) {
      const who = (i * 7) % 5;
      const r = harnessRecord(i, who);
      // harnessRecord changes an identity's session every 100 records, and its length at i = 1000
      expect(fast.decode(r.value, r.key)!.sessionId).toBe(`sess-${who}-${Math.floor(i / 100)}`);
    }
    // same length, other bytes: a new string, not the kept one
    const a = 'spiffe://example.org/ns/x/sa/y';
    const session = (sid: string): string | undefined =>
      fast.decode(Buffer.from(JSON.stringify({ decision_id: 'x', agent_id: a, decision: 'deny', occurred_at: '2026-01-01T00:00:00Z', session_id: sid })), Buffer.from(a))!.sessionId;
    expect([session('s-aaaa'), session('s-aaab'), session('s-aaab'), session('s-aaa'), session('')]).toStrictEqual(['s-aaaa', 's-aaab', 's-aaab', 's-aaa', '']);
  });

  it('whitespace, any field order, null agent_id, delegated_by, extra string fields, offsets and fractions', () => {
    const a = 'spiffe://example.org/ns/x/sa/y';
    taken(JSON.stringify({ occurred_at: '2024-02-29T23:59:60.123456+05:30', decision: 'n/a', decision_id: 'x', agent_id: a, delegated_by: 'spiffe://example.org/parent' }, null, 2), a);
    taken('{"decision_id":"d","agent_id":null,"decision":"fault","occurred_at":"2024-01-01t00:00:00z"}', null);
    taken(` {"decision_id" : "d" ,\n\t"decision":"allow","occurred_at":"1969-12-31T23:59:59.9-00:00","trace_id":"abc","x":""}\r\n`, Buffer.alloc(0));
    taken(JSON.stringify({ decision_id: 'x'.repeat(128), decision: 'deny', occurred_at: '2026-01-01T00:00:00Z', agent_id: a }), a);
  });

  it('KafkaValueDecoder reads the common shape without the full decoder, and hands it what it declines', () => {
    const kafka = new KafkaValueDecoder(full, undefined, 'decisions-value');
    const records = Array.from({ length: 50 }, (_, i) => harnessRecord(i, i));
    const escaped = Buffer.from('{"decision_id":"d","agent_id":"spiffe:\\/\\/example.org\\/a","decision":"deny","occurred_at":"2026-01-01T00:00:00Z"}');
    const spy = vi.spyOn(full, 'decodeText');
    let results: unknown[];
    let escapedResult: unknown;
    try {
      results = records.map((r) => kafka.decode(r.value, r.key));
      expect(spy).not.toHaveBeenCalled();
      escapedResult = kafka.decode(escaped, Buffer.from('spiffe://example.org/a'));
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
    expect(results.map((r) => unhandledResult(r as DecodeResult))).toStrictEqual(records.map((r) => slow(r.value, r.key)));
    expect(escapedResult).toMatchObject({ ok: true, decision: { agentId: 'spiffe://example.org/a' } });
  });
});
