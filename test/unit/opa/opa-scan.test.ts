/**
 * The one-pass reader of OPA uploads (src/adapters/opa/opa-scan.ts) against the reading it replaced:
 * `parseJsonStrict` of the decoded body, then `mapEvent` on each parsed event. On generated
 * decision-log uploads, written with escapes, odd number spellings, whitespace, repeated keys and deep
 * nesting, and on byte-level mutations of them, both must refuse or accept alike (with the same reason
 * and message), map every event to the same outcome, and keep each event so that it parses back to the
 * reference's value.
 */
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { OpaConfig } from '../../../src/config/config.js';
import { mapEvent, resolveMapping, ScanMapping, type MapOutcome, type OpaMapping } from '../../../src/adapters/opa/opa-mapping.js';
import { OpaReceiver } from '../../../src/adapters/opa/opa-receiver.js';
import { scanArray } from '../../../src/adapters/opa/opa-scan.js';
import { parseJsonStrict, StrictJsonError } from '../../../src/core/strict-json.js';
import type { IngestRecord, OperatorService } from '../../../src/ports/operator-service.js';
import { captureLogger } from '../../helpers/capture-logger.js';

const CONFIGS: Partial<OpaConfig>[] = [
  {},
  { paths: ['envoy/authz/allow'], session_id: '/input/attributes/request/http/headers/x-session-id' },
  { preset: 'boolean-allow', identity: '/input/agent/spiffe_id', session_id: '/input/session', result: { field: 'outcome', allow: ['ok', 1], deny: ['refused', 0], advisory_deny: ['warn', true] } },
  // pointers through arrays, with escaped tokens, and one that is the whole event
  { preset: 'boolean-allow', identity: '/input/list/1', tool_name: '/input/a~1b/~0c', session_id: '/input/list/0/0' },
  { preset: 'boolean-allow', identity: '', tool_name: '/input', result: { field: '0' } },
];
const mappings: OpaMapping[] = CONFIGS.map((c) => resolveMapping(c as OpaConfig));

/** A number as it is spelled in the text (JSON.parse reads its value). */
class Spelled {
  constructor(readonly text: string) {}
}

const AGENT = 'spiffe://example.org/ns/prod/sa/agent-1';
const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constantFrom('', 'a"b', 'x\\y', 'é', '😀', '\u0000\u001f', '\u2028', '\ud800', '</script>', 'a/b', AGENT, 'spiffe://example.org/a//b', 'http://example.org/x', 'envoy/authz/allow'),
);
const number = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('-0', '0.0', '1e400', '-1e400', '1e-400', '123456789012345678901234567890', '1E+2', '1.5e-10', '9007199254740993').map((t) => new Spelled(t)),
);
const scalar = fc.oneof(fc.boolean(), fc.constant(null), number, text);
const anything = fc.jsonValue({ maxDepth: 3 });
const identity = fc.oneof({ weight: 5, arbitrary: fc.constant(AGENT) }, { weight: 2, arbitrary: scalar }, { weight: 1, arbitrary: anything });
const result = fc.oneof(
  fc.boolean(), fc.constantFrom('allow', 'ok', 'refused', 'warn', 'maybe', 1, 0, -0, null),
  fc.record({ allowed: fc.oneof(fc.boolean(), scalar), outcome: fc.constantFrom('ok', 'refused', 'warn', 1, true), headers: fc.dictionary(text, text, { maxKeys: 2 }) }, { requiredKeys: [] }),
  fc.array(fc.oneof(fc.boolean(), fc.constantFrom('ok', 'refused')), { maxLength: 2 }),
  anything,
);
const timestamp = fc.oneof({ weight: 5, arbitrary: fc.constantFrom('2026-12-07T02:30:10.757000123Z', '2026-12-07T02:30:10+01:00') }, { weight: 1, arbitrary: fc.oneof(fc.constantFrom('yesterday', '2026-02-30T00:00:00Z', ''), scalar) });

/** OPA-shaped events: the fields the mappings read, sometimes missing or of another type, and noise around them. */
const event = fc.record({
  labels: fc.dictionary(text, text, { maxKeys: 2 }),
  decision_id: fc.oneof({ weight: 5, arbitrary: fc.uuid() }, { weight: 1, arbitrary: scalar }),
  path: fc.constantFrom('envoy/authz/allow', 'agents/tools/decision', 'other', 1),
  input: fc.record({
    attributes: fc.record({
      source: fc.record({ principal: identity, address: anything }, { requiredKeys: [] }),
      request: fc.record({ http: fc.record({ path: fc.oneof(text, scalar), headers: fc.record({ 'x-session-id': fc.oneof(text, scalar), ':path': text }, { requiredKeys: [] }) }, { requiredKeys: [] }) }, { requiredKeys: [] }),
    }, { requiredKeys: [] }),
    agent: fc.record({ spiffe_id: identity }, { requiredKeys: [] }),
    session: fc.oneof(text, scalar),
    list: fc.oneof(fc.array(fc.oneof(identity, fc.array(text, { maxLength: 2 })), { maxLength: 3 }), identity),
    'a/b': fc.record({ '~c': fc.oneof(text, scalar) }, { requiredKeys: [] }),
  }, { requiredKeys: [] }),
  result,
  timestamp,
  metrics: anything,
}, { requiredKeys: [] });

const element = fc.oneof({ weight: 12, arbitrary: event }, { weight: 1, arbitrary: anything });

/** How a value is written: choices drawn from `rnd` (escapes, spellings, whitespace, repeated keys, nesting). */
interface Style {
  rnd: () => number;
  space: boolean;
  escapes: boolean;
  repeats: boolean;
  /** extra levels of nesting around one value, 0: none */
  deep: number;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function writeString(s: string, st: Style): string {
  if (!st.escapes || st.rnd() < 0.5) return JSON.stringify(s);
  let out = '"';
  for (const ch of s) {
    const r = st.rnd();
    const code = ch.codePointAt(0)!;
    if (r < 0.3) out += Array.from({ length: ch.length }, (_, k) => `\\u${ch.charCodeAt(k).toString(16).padStart(4, '0')}`).join('');
    else if (ch === '/' && r < 0.6) out += '\\/';
    else if (code < 0x20 || ch === '"' || ch === '\\') out += JSON.stringify(ch).slice(1, -1);
    else out += ch;
  }
  return `${out}"`;
}

function ws(st: Style): string {
  return st.space && st.rnd() < 0.3 ? [' ', '\n', '\t', '\r\n  '][Math.floor(st.rnd() * 4)]! : '';
}

function write(v: unknown, st: Style): string {
  let out: string;
  if (v instanceof Spelled) {
    out = v.text;
  } else if (typeof v === 'number') {
    out = Object.is(v, -0) ? '-0' : Number.isSafeInteger(v) && st.escapes && st.rnd() < 0.2 ? `${v}.0` : JSON.stringify(v);
  } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    // now and then a member written twice (the second with the same value or another)
    const members: [string, unknown][] = Object.entries(v as Record<string, unknown>);
    if (st.repeats && members.length > 0 && st.rnd() < 0.05) {
      const [k, value] = members[Math.floor(st.rnd() * members.length)]!;
      members.splice(Math.floor(st.rnd() * (members.length + 1)), 0, [k, st.rnd() < 0.5 ? value : 'other']);
    }
    out = `{${ws(st)}${members.map(([k, m]) => `${writeString(k, st)}${ws(st)}:${ws(st)}${write(m, st)}`).join(`,${ws(st)}`)}${ws(st)}}`;
  } else if (Array.isArray(v)) {
    out = `[${ws(st)}${v.map((m) => write(m, st)).join(`,${ws(st)}`)}${ws(st)}]`;
  } else if (typeof v === 'string') {
    out = writeString(v, st);
  } else {
    out = JSON.stringify(v);
  }
  if (st.deep > 0 && st.rnd() < 0.02) {
    const levels = st.deep;
    st.deep = 0;
    out = st.rnd() < 0.5 ? `${'['.repeat(levels)}${out}${']'.repeat(levels)}` : `${'{"d":'.repeat(levels)}${out}${'}'.repeat(levels)}`;
  }
  return out;
}

const style = fc.record({
  seed: fc.integer(), space: fc.boolean(), escapes: fc.boolean(), repeats: fc.boolean(), deep: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 55, max: 66 }) }),
}).map(({ seed, ...s }): Style => ({ rnd: lcg(seed), ...s }));

/** Uploads: an array of events, sometimes something else. */
const upload = fc.tuple(fc.oneof({ weight: 20, arbitrary: fc.array(element, { maxLength: 6 }) }, { weight: 1, arbitrary: element }), style)
  .map(([doc, st]) => Buffer.from(write(doc, st)));

const BYTES = ['{', '}', '[', ']', '"', '\\', ',', ':', ' ', '\n', 'a', 'u', '0', '-', '.', 'e', '\u0000', '\u001f', '\u007f', 'é', '\u2028', '😀', '', 'true', 'nul'];

/** The same uploads with a few bytes replaced, deleted or inserted, or cut short: most are no longer JSON. */
const mutated = fc.tuple(upload, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...BYTES), fc.constantFrom('insert', 'replace', 'cut')), { minLength: 1, maxLength: 3 }))
  .map(([body, edits]) => edits.reduce((b, [at, ch, edit]) => {
    const i = b.length === 0 ? 0 : at % b.length;
    if (edit === 'cut') return b.subarray(0, i);
    return Buffer.concat([b.subarray(0, i), Buffer.from(ch), b.subarray(edit === 'insert' ? i : i + 1)]);
  }, body));

type Read =
  | { ok: false; reason: string; message: string }
  | { ok: true; array: false }
  | { ok: true; array: true; events: unknown[]; outcomes: MapOutcome[] };

/** The reference: the body decoded, `parseJsonStrict`, `mapEvent` per event. */
function reference(body: Buffer, m: OpaMapping): Read {
  let doc: unknown;
  try {
    doc = parseJsonStrict(body.toString('utf8'));
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    return { ok: false, reason: err.reason, message: err.message };
  }
  if (!Array.isArray(doc)) return { ok: true, array: false };
  return { ok: true, array: true, events: doc, outcomes: doc.map((e) => mapEvent(m, e)) };
}

/** The scanner's reading: each event's outcome, and each event parsed back from the bytes it keeps. */
function scanned(body: Buffer, m: OpaMapping): Read {
  const sm = new ScanMapping(m);
  try {
    const s = scanArray(body, sm.pointers);
    if (s === null) return { ok: true, array: false };
    const events = Array.from({ length: s.length }, (_, i) => JSON.parse(s.text(i)) as unknown);
    return { ok: true, array: true, events, outcomes: events.map((_, i) => withoutText(sm.map(s, i))) };
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    return { ok: false, reason: err.reason, message: err.message };
  }
}

/** A mapped outcome's `text`, which only the scanner's reading has, checked against JSON.stringify and left out. */
function withoutText(o: MapOutcome): MapOutcome {
  if (o.kind !== 'mapped') return o;
  const { text, ...rest } = o;
  expect(text).toBe(JSON.stringify(o.decision));
  return rest;
}

const sameReading = (body: Buffer): Read[] => mappings.map((m) => {
  const r = scanned(body, m);
  expect(r).toEqual(reference(body, m));
  return r;
});

describe('scanArray + ScanMapping read an OPA upload as parseJsonStrict + mapEvent do', () => {
  it('on generated uploads (escapes, number spellings, whitespace, repeated keys, deep nesting, events that are not objects)', () => {
    const seen = new Set<string>();
    fc.assert(fc.property(upload, (body) => {
      for (const r of sameReading(body)) {
        if (!r.ok) seen.add(r.reason);
        else if (r.array) for (const o of r.outcomes) seen.add(o.kind === 'unmapped' ? o.reason : o.kind);
      }
    }), { numRuns: 2000 });
    // the generators reach every verdict and outcome
    expect([...seen].sort()).toEqual(['bad_timestamp', 'duplicate_key', 'ignored_path', 'invalid_spiffe_id', 'mapped', 'no_decision_id', 'no_identity', 'not_an_object', 'too_deep', 'unmappable_result']);
  });

  it('on byte-level mutations of them (truncated, stray quotes and backslashes, control characters, broken numbers and literals)', () => {
    let refused = 0;
    fc.assert(fc.property(mutated, (body) => {
      // a body that is not UTF-8 is refused before it is read (invalid_utf8)
      fc.pre(isUtf8(body));
      if (!sameReading(body)[0]!.ok) refused++;
    }), { numRuns: 3000 });
    expect(refused).toBeGreaterThan(1000);
  });

  it('refuses what a strict document may not hold, and reads what it may, wherever it is', () => {
    const reason = (text: string): string | null => {
      const r = sameReading(Buffer.from(text))[0]!;
      return r.ok ? null : r.reason;
    };
    expect(reason('[{"decision_id":"a","decision_id":"b"}]')).toBe('duplicate_key');
    expect(reason('[{"input":{"attributes":{"source":{"principal":"x","princip\\u0061l":"y"}}}}]')).toBe('duplicate_key');
    expect(reason('[{"metrics":{"a":{"b":[{"c":1,"c":2}]}}}]')).toBe('duplicate_key');
    expect(reason(`[{${Array.from({ length: 12 }, (_, i) => `"k${i}":${i}`).join(',')},"k3":0}]`)).toBe('duplicate_key');
    expect(reason('[{"a":{"k":1},"b":{"k":1}}]')).toBeNull();
    expect(reason(`[${'['.repeat(63)}${']'.repeat(63)}]`)).toBeNull();
    expect(reason(`[${'['.repeat(64)}${']'.repeat(64)}]`)).toBe('too_deep');
    expect(reason('[{"a":"\u0001"}]')).toBe('invalid_json');
    expect(reason('[{"a":"\\x"}]')).toBe('invalid_json');
    expect(reason('[{"a":"\\u12g4"}]')).toBe('invalid_json');
    expect(reason('[01]')).toBe('invalid_json');
    expect(reason('[1.]')).toBe('invalid_json');
    expect(reason('[-]')).toBe('invalid_json');
    expect(reason('[tru]')).toBe('invalid_json');
    expect(reason('[1,]')).toBe('invalid_json');
    expect(reason('[{"a":1,}]')).toBe('invalid_json');
    expect(reason('[{"a" 1}]')).toBe('invalid_json');
    expect(reason('[] []')).toBe('invalid_json');
    expect(reason('\ufeff[]')).toBe('invalid_json');
    expect(reason('["\\"]')).toBe('invalid_json');
    expect(reason('')).toBe('invalid_json');
    expect(reason(' [ ] ')).toBeNull();
    expect(reason('{"events":[]}')).toBeNull();
  });

  it('keeps an event that does not map as OPA sent it, and maps one whose fields are written with escapes', () => {
    const m = mappings[0]!;
    const sm = new ScanMapping(m);
    const body = Buffer.from('[ {"decision_id" : "a\\u0041", "result":1e0 ,"path":"p"} ,{"d\\u0065cision_id":"b","input":{"attributes":{"source":{"princip\\u0061l":"spiffe:\\/\\/example.org\\/x"}}},"result":{"allowed":true},"timestamp":"2026-12-07T02:30:10Z"}]');
    const s = scanArray(body, sm.pointers)!;
    expect(s.text(0)).toBe('{"decision_id" : "a\\u0041", "result":1e0 ,"path":"p"}');
    expect(sm.map(s, 0)).toMatchObject({ kind: 'unmapped', decisionId: 'aA', reason: 'no_identity' });
    expect(withoutText(sm.map(s, 1))).toEqual({ kind: 'mapped', decisionId: 'b', decision: { decision_id: 'b', agent_id: 'spiffe://example.org/x', decision: 'allow', occurred_at: '2026-12-07T02:30:10Z' } });
  });
});

describe('the OPA receiver hands the service what it handed it before', () => {
  it('the same decision records, and each unmapped event in its DLQ record as the upload holds it', async () => {
    const runs: IngestRecord[][] = [];
    const service = { ingest: (records: readonly IngestRecord[]) => {
      runs.push([...records]);
      return Promise.resolve({ accepted: 0, invalid: 0, trips: 0, errors: [] });
    } } as unknown as OperatorService;
    await fc.assert(fc.asyncProperty(fc.array(element, { minLength: 1, maxLength: 6 }), style, fc.nat(mappings.length - 1), async (events, st, k) => {
      const m = mappings[k]!;
      const receiver = new OpaReceiver({ service, mapping: m, registry: new Registry(), log: captureLogger() });
      const body = Buffer.from(write(events, st));
      const ref = reference(body, m);
      fc.pre(ref.ok && ref.array);
      if (!ref.ok || !ref.array) return;
      runs.length = 0;
      const answer = await receiver.accept(receiver.read(body)!);
      expect(answer.events).toBe(ref.events.length);
      // as before: per event not a duplicate nor of another path, the decision's JSON or the DLQ record
      const seen = new Set<string>();
      const expected: unknown[] = [];
      ref.outcomes.forEach((o, i) => {
        if (o.decisionId !== null && seen.has(o.decisionId)) return;
        if (o.kind === 'ignored_path') return;
        if (o.decisionId !== null) seen.add(o.decisionId);
        expected.push(o.kind === 'mapped' ? JSON.stringify(o.decision) : { opa_unmapped: { reason: o.reason, message: o.message }, opa_event: ref.events[i] });
      });
      const records = runs[0] ?? [];
      expect(records.map((r) => (r.value === undefined ? JSON.parse(r.text) as unknown : r.text))).toEqual(expected);
      for (const r of records) if (r.value !== undefined) expect(JSON.parse(r.text)).toEqual(r.value);
    }), { numRuns: 500 });
  });
});
