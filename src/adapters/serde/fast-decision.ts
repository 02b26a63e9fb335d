/**
 * The fast path for plain-JSON Kafka values: reads the common shape of a decision event (docs/spec.md
 * section 1) straight from the record's bytes, without decoding the value to a string, JSON.parse or
 * the schema validator, which were a third of the CPU of a decision in Kafka mode.
 *
 * It only ever answers for what it fully understands: one flat JSON object whose keys and values are
 * strings of printable ASCII without escapes (`agent_id` may also be null), no key twice. Anything else
 * (another value type, an escape, a non-ASCII byte, a duplicate key, a value the contract refuses, a key
 * that differs from `agent_id`) makes it decline, and the caller runs the full decoder on the same
 * bytes. So the fast path never has to say why a record is bad (the reasons and messages stay in
 * DecisionDecoder), and whenever it answers, DecisionDecoder would have answered the same decision.
 * test/unit/serde/fast-decision.test.ts holds the two against each other.
 *
 * A producer writes every record in one shape: the same keys in the same order, the same separators.
 * So a record is first read against a template of the last one read key by key: when its bytes around
 * the string values are the template's, only the values are scanned; anything else is read key by key.
 */
import { DECISIONS, DecisionClass, type DecisionClassifier } from '../../core/decision-class.js';
import type { Decision } from '../../core/decision.js';
import { parseRfc3339 } from '../../core/time.js';
import { sameBytes } from './id-table.js';
import { KnownIds, MAX_CACHED_IDS, type Sliceable } from './known-ids.js';

/**
 * A decision the fast path writes into instead of making a new object, for a caller that accepts it
 * before it reads the next record (the Kafka processor keeps one per record of a batch, reused batch after
 * batch): no decision object and no decision id string are made per record. The decision id is read from
 * the record's bytes only when asked for (a trip's evidence), so it is valid only until `release` or
 * the next decodeInto.
 */
export class ReusableDecision implements Decision {
  agentId: string | null = null;
  cls: DecisionClass = DecisionClass.Ignored;
  timeMs = 0;
  sessionId: string | undefined = undefined;
  identity: number | undefined = undefined;
  private value: Buffer | null = null;
  private idStart = 0;
  private idEnd = 0;
  private idUtf8 = false;

  get decisionId(): string {
    if (this.value === null) throw new Error('a released ReusableDecision has no decision id');
    const v = this.value as Sliceable;
    return this.idUtf8 ? v.utf8Slice(this.idStart, this.idEnd) : v.latin1Slice(this.idStart, this.idEnd);
  }

  /** The decision id's UTF-8 bytes at most, without making its string. */
  get decisionIdBytes(): number {
    return this.idEnd - this.idStart;
  }

  /**
   * Where the decision id is: value[start..end), printable ASCII (FastDecisionDecoder's business), or
   * any UTF-8 (`utf8`: a forwarded decision's, src/adapters/kafka/repartition.ts).
   */
  setDecisionId(value: Buffer, start: number, end: number, utf8 = false): void {
    this.value = value;
    this.idStart = start;
    this.idEnd = end;
    this.idUtf8 = utf8;
  }

  /** Copies the decision id's UTF-8 bytes to target[at]; returns how many. */
  copyDecisionId(target: Buffer, at: number): number {
    if (this.value === null) throw new Error('a released ReusableDecision has no decision id');
    return this.value.copy(target, at, this.idStart, this.idEnd);
  }

  /**
   * Makes this a decision that only moves its stream's time to `timeMs` (of the ignored class, no
   * identity, no decision id): what a partition keeps of a decision it forwards to its owner.
   */
  setTimeOnly(timeMs: number): void {
    this.agentId = null;
    this.cls = DecisionClass.Ignored;
    this.timeMs = timeMs;
    this.sessionId = undefined;
    this.identity = undefined;
    this.setDecisionId(EMPTY, 0, 0);
  }

  /** Lets go of the record's bytes (so a fetch's buffer is not kept alive by a reused decision). */
  release(): void {
    this.value = null;
  }
}

const EMPTY = Buffer.alloc(0);

// The schema's limits on decision_id (schemas/policy-decision.schema.json). Only ASCII gets this far,
// so its length in characters (what the schema counts) is its length in bytes.
const DECISION_ID_MIN = 1;
const DECISION_ID_MAX = 128;

// The fields the contract names, one bit each (a second occurrence declines).
const F_DECISION_ID = 1;
const F_AGENT_ID = 2;
const F_DECISION = 4;
const F_OCCURRED_AT = 8;
const F_SESSION_ID = 16;
const F_TOOL_NAME = 32;
const F_POLICY_RULE = 64;
const F_TENANT = 128;
const F_DELEGATED_BY = 256;
const REQUIRED = F_DECISION_ID | F_DECISION | F_OCCURRED_AT;

const FIELDS: readonly (readonly [string, number])[] = [
  ['decision_id', F_DECISION_ID], ['agent_id', F_AGENT_ID], ['decision', F_DECISION], ['occurred_at', F_OCCURRED_AT],
  ['session_id', F_SESSION_ID], ['tool_name', F_TOOL_NAME], ['policy_rule', F_POLICY_RULE], ['tenant', F_TENANT],
  ['delegated_by', F_DELEGATED_BY],
];
/** Names to look bytes up in: their bytes, lengths and first four bytes (as sameBytes reads them). */
interface Names {
  readonly views: readonly DataView[];
  readonly lengths: Int32Array;
  readonly firstWords: Int32Array;
}
function namesOf(texts: readonly string[]): Names {
  const views = texts.map((t) => new DataView(Uint8Array.from(t, (c) => c.charCodeAt(0)).buffer));
  return {
    views,
    lengths: Int32Array.from(texts, (t) => t.length),
    firstWords: Int32Array.from(views, (v) => (v.byteLength >= 4 ? v.getInt32(0, true) : 0)),
  };
}
const FIELD_NAMES = namesOf(FIELDS.map(([name]) => name));
const FIELD_BITS = FIELDS.map(([, bit]) => bit);
const DECISION_NAMES = namesOf(DECISIONS);

/** Positions in FastDecisionDecoder.follows beside the fields': the record's start, and an unknown key. */
const FIRST_KEY = FIELDS.length;
const UNKNOWN_KEY = FIELDS.length + 1;

/** Distinct unknown keys one record may have before the fast path declines (each is compared with the others). */
const MAX_UNKNOWN_KEYS = 16;
/** String values one record the fast path takes may have: each known field once, and the unknown keys. */
const MAX_VALUES = FIELDS.length + MAX_UNKNOWN_KEYS;
/** Larger records are not kept as the template (they are read key by key). */
const MAX_TEMPLATE_BYTES = 4096;

// Positions in FastDecisionDecoder.spans (start; the end follows it), and the decision's field.
const ID_START = 0;
const AGENT_START = 2;
const DECISION_FIELD = 2;
const OCCURRED_START = 6;
const SESSION_START = 8;
const DELEGATED_START = 16;

/** Marks the optional fields absent before a walk (the required ones are always set by a walk that answers). */
function clearOptional(spans: Int32Array): void {
  spans[AGENT_START] = -1;
  spans[SESSION_START] = -1;
  spans[DELEGATED_START] = -1;
}

const QUOTE = 0x22;

/** 1 for the bytes a string may hold as they are here: printable ASCII but `"` and `\`. */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c <= 0x7e; c++) PLAIN[c] = c === QUOTE || c === 0x5c ? 0 : 1;

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWhitespace(b: Buffer, i: number): number {
  const end = b.length;
  while (i < end && isWhitespace(b[i]!)) i++;
  return i;
}

/**
 * The index of the closing quote of a string starting at `i` (after its opening quote), or -1 when it
 * holds anything else than PLAIN bytes: control characters are invalid JSON, escapes and non-ASCII are
 * left to JSON.parse.
 *
 * Four bytes at a time (a JS loop costs about a nanosecond a byte, and every byte of the value is a
 * string byte but a few dozen): `view` reads b's memory, at b[i] = view[base + i]. For each byte x the
 * words below have bit 7 set exactly when x is not PLAIN; no addition carries into the next byte.
 */
function stringEnd(b: Buffer, view: DataView, base: number, i: number): number {
  const end = b.length;
  for (; i + 4 <= end; i += 4) {
    const w = view.getInt32(base + i, true);
    const x = w & 0x7f7f7f7f;
    const special = (
      w | // >= 0x80
      ~((x + 0x60606060) | 0) | // < 0x20
      ((x + 0x01010101) | 0) | // 0x7f
      ~(((x ^ 0x22222222) + 0x7f7f7f7f) | 0) | // '"'
      ~(((x ^ 0x5c5c5c5c) + 0x7f7f7f7f) | 0) // '\\'
    ) & 0x80808080;
    if (special !== 0) {
      i += (31 - Math.clz32(special & -special)) >> 3; // the first special byte (little-endian: the lowest)
      return b[i] === QUOTE ? i : -1;
    }
  }
  while (i < end && PLAIN[b[i]!] === 1) i++;
  return i < end && b[i] === QUOTE ? i : -1;
}

/**
 * The index in `names` of the name that b[at..] holds followed by its closing quote, or -1. Known
 * names are matched without scanning them (their bytes are plain), unknown ones are left to stringEnd.
 */
function nameAt(names: Names, b: Buffer, view: DataView, base: number, at: number): number {
  const { lengths, firstWords } = names;
  const end = b.length;
  // the first four bytes rule out all names but one or two without reading them
  const first = at + 4 <= end ? view.getInt32(base + at, true) : 0;
  for (let n = 0; n < lengths.length; n++) {
    const len = lengths[n]!;
    if (at + len < end && b[at + len] === QUOTE && (len < 4 || firstWords[n] === first) && sameBytes(names.views[n]!, 0, view, base + at, len)) return n;
  }
  return -1;
}

/** Whether b[at..] holds the n-th of `names` followed by its closing quote. */
function isName(names: Names, n: number, b: Buffer, view: DataView, base: number, at: number): boolean {
  const len = names.lengths[n]!;
  return at + len < b.length && b[at + len] === QUOTE && sameBytes(names.views[n]!, 0, view, base + at, len);
}

/** Whether `key` holds the bytes at view[at] (`memory` is the view's buffer). */
function sameKey(key: Buffer, memory: ArrayBufferLike, view: DataView, at: number): boolean {
  // The client hands a record's key and value as slices of one buffer; a key elsewhere is compared bytewise.
  if (key.buffer === memory) return sameBytes(view, key.byteOffset, view, at, key.length);
  for (let i = 0; i < key.length; i++) if (key[i] !== view.getUint8(at + i)) return false;
  return true;
}

/** "YYYY-MM-DDTHH:MM:" */
const MINUTE_LENGTH = 17;

/**
 * The ms that "SS" or "SS.f…" followed by "Z" or "z" in b[i..e) add to the start of their minute, as
 * parseRfc3339 counts them (fraction digits past the millisecond truncated), or -1: another form, or a
 * leap second (60), which parseRfc3339 handles.
 */
function secondsAndFraction(b: Buffer, i: number, e: number): number {
  const d1 = b[i]! - 0x30;
  const d2 = b[i + 1]! - 0x30;
  if (d1 < 0 || d1 > 5 || d2 < 0 || d2 > 9) return -1;
  let ms = (d1 * 10 + d2) * 1000;
  i += 2;
  if (b[i] === 0x2e) { // '.'
    const start = ++i;
    let fraction = 0;
    for (; i < e; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      if (i - start < 3) fraction = fraction * 10 + d;
    }
    if (i === start) return -1;
    for (let k = i - start; k < 3; k++) fraction *= 10;
    ms += fraction;
  }
  const z = b[i];
  return i === e - 1 && (z === 0x5a || z === 0x7a) ? ms : -1; // 'Z' or 'z', then the end
}

export class FastDecisionDecoder {
  /** the class of each of DECISIONS, in its order */
  private readonly classes: readonly DecisionClass[];
  /** SPIFFE IDs validated already, each with the identity handle its decisions carry (the window store's shortcut), and its last session id */
  private readonly known: KnownIds;
  /** what decode() decodes into before making its plain object */
  private readonly scratch = new ReusableDecision();
  /** the "YYYY-MM-DDTHH:MM:" of the last valid occurred_at (none yet: no record's bytes match 0xff) */
  private readonly minute = new Uint8Array(MINUTE_LENGTH).fill(0xff);
  private readonly minuteView = new DataView(this.minute.buffer);
  /** that minute's start, ms since the epoch */
  private minuteMs = NaN;
  // Views of the memory of the last value and key (a fetch's records are slices of one buffer).
  private viewed: ArrayBufferLike = new ArrayBuffer(0);
  private view = new DataView(this.viewed);
  // start and length of each unknown key of the record being read (reused: no allocation per record)
  private readonly unknownKeys = new Int32Array(MAX_UNKNOWN_KEYS * 2);
  /**
   * For each field (and for the record's start, and for an unknown key), the field whose key followed it
   * in the last record read (-1: an unknown key or none yet); only a guess, checked against the bytes.
   */
  private readonly follows = new Int8Array(FIELDS.length + 2).fill(-1);
  /** start and end of each field's value in the record being read (FIELDS order); -1: none */
  private readonly spans = new Int32Array(2 * FIELDS.length);
  /** the decision of the record being read (index in DECISIONS) */
  private decision = 0;
  // the string values of the record walk() reads, in order: where they are and of which field (-1: unknown key)
  private readonly valueStart = new Int32Array(MAX_VALUES);
  private readonly valueEnd = new Int32Array(MAX_VALUES);
  private readonly valueField = new Int8Array(MAX_VALUES);
  // The template (walkTemplate): the bytes before, between and after the string values of the last record
  // walk() took, one piece per gap (templateValues + 1 of them), and the field of each value.
  private template = new Uint8Array(256);
  private templateView = new DataView(this.template.buffer);
  private readonly templateStart = new Int32Array(MAX_VALUES + 1);
  private readonly templateLength = new Int32Array(MAX_VALUES + 1);
  private readonly templateField = new Int8Array(MAX_VALUES);
  /** values of the template; -1: none yet */
  private templateValues = -1;

  /** @param maxCachedIds bound on remembered valid IDs (tests make it small) */
  constructor(classifier: DecisionClassifier, maxCachedIds = MAX_CACHED_IDS) {
    this.classes = DECISIONS.map((d) => classifier.classOf(d));
    this.known = new KnownIds(maxCachedIds);
  }

  /**
   * The decision in `value` with record key `key` (null or empty: none), or null: not the common shape,
   * or not valid; either way the full decoder must read it.
   */
  decode(value: Buffer, key: Buffer | null): Decision | null {
    const d = this.scratch;
    if (!this.decodeInto(value, key, d)) return null;
    const decision = { decisionId: d.decisionId, agentId: d.agentId, cls: d.cls, timeMs: d.timeMs, sessionId: d.sessionId, identity: d.identity };
    d.release();
    return decision;
  }

  /**
   * decode() without making anything: the decision is written into `into` and true returned; false: the
   * full decoder must read the record (what `into` holds then is undefined).
   */
  decodeInto(value: Buffer, key: Buffer | null, into: ReusableDecision): boolean {
    const b = value;
    const memory = b.buffer;
    if (memory !== this.viewed) {
      this.viewed = memory;
      this.view = new DataView(memory);
    }
    const view = this.view;
    const base = b.byteOffset;
    const spans = this.spans;
    if (this.templateValues < 0 || !this.walkTemplate(b, view, base)) {
      if (!this.walk(b, view, base)) return false;
    }
    const idStart = spans[ID_START]!, idEnd = spans[ID_START + 1]!;
    const idLength = idEnd - idStart;
    if (idLength < DECISION_ID_MIN || idLength > DECISION_ID_MAX) return false;

    // The record key must be agent_id's bytes (a null or absent agent_id only goes with no key). Only
    // ASCII gets here, so equal bytes are equal strings, and unequal bytes cannot decode to agent_id.
    const agentStart = spans[AGENT_START]!, agentEnd = spans[AGENT_START + 1]!;
    const keyLength = key === null ? 0 : key.length;
    if (keyLength > 0 && (agentStart < 0 || keyLength !== agentEnd - agentStart || !sameKey(key!, memory, view, base + agentStart))) return false;

    const timeMs = this.timeOf(b, view, base, spans[OCCURRED_START]!, spans[OCCURRED_START + 1]!);
    if (Number.isNaN(timeMs)) return false;
    let agentId: string | null = null;
    let identity: number | undefined;
    let agentEntry = -1;
    if (agentStart >= 0) {
      if (!this.known.valid(view, b, base, agentStart, agentEnd)) return false;
      agentId = this.known.id;
      identity = this.known.handle;
      agentEntry = this.known.entry;
    }
    const delegatedStart = spans[DELEGATED_START]!;
    if (delegatedStart >= 0 && !this.known.valid(view, b, base, delegatedStart, spans[DELEGATED_START + 1]!)) return false;
    const sessionStart = spans[SESSION_START]!;
    into.setDecisionId(b, idStart, idEnd);
    into.agentId = agentId;
    into.cls = this.classes[this.decision]!;
    into.timeMs = timeMs;
    into.sessionId = sessionStart < 0 ? undefined : this.known.session(b, sessionStart, spans[SESSION_START + 1]!, agentEntry);
    into.identity = identity;
    return true;
  }

  /**
   * Reads the record as the last record the full walk took, when only its string values differ: the bytes
   * between the values (braces, keys, separators, whitespace, a null agent_id) must be the template's, and
   * each value a plain string (a decision one of DECISIONS). Same bytes around the values means the same
   * keys in the same order, so what walk() checked of them (no key twice, the required ones there) holds.
   * Sets spans and decision; false: not the template's shape (walk() decides then).
   */
  private walkTemplate(b: Buffer, view: DataView, base: number): boolean {
    const end = b.length;
    const n = this.templateValues;
    const tv = this.templateView;
    const starts = this.templateStart;
    const lengths = this.templateLength;
    const fields = this.templateField;
    const spans = this.spans;
    clearOptional(spans);
    let pos = 0;
    for (let k = 0; ; k++) {
      const len = lengths[k]!;
      if (pos + len > end || !sameBytes(tv, starts[k]!, view, base + pos, len)) return false;
      pos += len;
      if (k === n) return pos === end;
      const field = fields[k]!;
      const e = this.endOfValue(b, view, base, pos, field === DECISION_FIELD);
      if (e < 0) return false;
      if (field >= 0) {
        spans[2 * field] = pos;
        spans[2 * field + 1] = e;
      }
      pos = e;
    }
  }

  /**
   * Reads the record key by key: one flat object of plain strings (agent_id may be null), no key twice,
   * the required ones there. Sets spans and decision, and keeps the record as the template when it has
   * one (walkTemplate); false: not the fast path's.
   */
  private walk(b: Buffer, view: DataView, base: number): boolean {
    const end = b.length;
    const spans = this.spans;
    clearOptional(spans);
    let seen = 0;
    let unknown = 0;
    let values = 0;
    const follows = this.follows;
    let previous = FIRST_KEY;

    let i = skipWhitespace(b, 0);
    if (i >= end || b[i] !== 0x7b) return false; // '{'
    i = skipWhitespace(b, i + 1);
    for (;;) {
      // a key
      if (i >= end || b[i] !== QUOTE) return false; // includes '{}' (required fields missing) and a trailing comma
      const keyStart = i + 1;
      // a producer writes its keys in one order: try the key that came next in the record before first
      const guess = follows[previous]!;
      const field = guess >= 0 && isName(FIELD_NAMES, guess, b, view, base, keyStart) ? guess : nameAt(FIELD_NAMES, b, view, base, keyStart);
      follows[previous] = field;
      previous = field < 0 ? UNKNOWN_KEY : field;
      const keyEnd = field >= 0 ? keyStart + FIELD_NAMES.lengths[field]! : stringEnd(b, view, base, keyStart);
      if (keyEnd < 0) return false;
      const bit = field >= 0 ? FIELD_BITS[field]! : 0;
      i = skipWhitespace(b, keyEnd + 1);
      if (i >= end || b[i] !== 0x3a) return false; // ':'
      i = skipWhitespace(b, i + 1);
      if (i >= end) return false;
      // its value: a string, or null for agent_id only
      let valueStart = -1;
      let valueEnd = -1;
      if (b[i] === QUOTE) {
        valueStart = i + 1;
        valueEnd = this.endOfValue(b, view, base, valueStart, bit === F_DECISION);
        if (valueEnd < 0) return false;
        i = valueEnd + 1;
      } else if (bit === F_AGENT_ID && i + 4 <= end && b[i] === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) { // null
        i += 4;
      } else {
        return false;
      }
      if (bit === 0) {
        if (!this.noteUnknownKey(view, base, keyStart, keyEnd, unknown)) return false;
        unknown++;
      } else {
        if ((seen & bit) !== 0) return false; // JSON.parse keeps the last one; not our business
        seen |= bit;
        // a null agent_id leaves its span at -1 (none)
        spans[2 * field] = valueStart;
        spans[2 * field + 1] = valueEnd;
      }
      if (valueStart >= 0) {
        // each known field once and at most MAX_UNKNOWN_KEYS others (above): there is room for every value
        this.valueStart[values] = valueStart;
        this.valueEnd[values] = valueEnd;
        this.valueField[values] = field;
        values++;
      }
      i = skipWhitespace(b, i);
      if (i >= end) return false;
      if (b[i] === 0x7d) break; // '}'
      if (b[i] !== 0x2c) return false; // ','
      i = skipWhitespace(b, i + 1);
    }
    if (skipWhitespace(b, i + 1) !== end) return false;
    if ((seen & REQUIRED) !== REQUIRED) return false;
    this.keepTemplate(b, values);
    return true;
  }

  /**
   * The index of the closing quote of the string value starting at b[at]: for the decision one of
   * DECISIONS (then noted in `decision`: anything else is not the fast path's), else any plain string;
   * -1: neither.
   */
  private endOfValue(b: Buffer, view: DataView, base: number, at: number, isDecision: boolean): number {
    if (!isDecision) return stringEnd(b, view, base, at);
    const d = nameAt(DECISION_NAMES, b, view, base, at);
    if (d < 0) return -1;
    this.decision = d;
    return at + DECISION_NAMES.lengths[d]!;
  }

  /** Keeps the bytes of b around its `n` string values (walk()'s valueStart/valueEnd) as the template. */
  private keepTemplate(b: Buffer, n: number): void {
    const end = b.length;
    if (end > MAX_TEMPLATE_BYTES) {
      this.templateValues = -1;
      return;
    }
    if (this.template.length < end) {
      this.template = new Uint8Array(Math.max(end, 2 * this.template.length));
      this.templateView = new DataView(this.template.buffer);
    }
    let used = 0;
    for (let k = 0; k <= n; k++) {
      const from = k === 0 ? 0 : this.valueEnd[k - 1]!;
      const to = k === n ? end : this.valueStart[k]!;
      this.template.set(b.subarray(from, to), used);
      this.templateStart[k] = used;
      this.templateLength[k] = to - from;
      used += to - from;
      if (k < n) this.templateField[k] = this.valueField[k]!;
    }
    this.templateValues = n;
  }

  /** Remembers the unknown key b[s..e) as the n-th of this record; false when it was seen already (or too many). */
  private noteUnknownKey(view: DataView, base: number, s: number, e: number, n: number): boolean {
    if (n >= MAX_UNKNOWN_KEYS) return false;
    const keys = this.unknownKeys;
    const len = e - s;
    for (let k = 0; k < n; k++) {
      if (keys[2 * k + 1] === len && sameBytes(view, base + keys[2 * k]!, view, base + s, len)) return false;
    }
    keys[2 * n] = s;
    keys[2 * n + 1] = len;
    return true;
  }

  /**
   * occurred_at in b[s..e), as parseRfc3339 reads it. A stream's records mostly fall in the minute of
   * the record before ("2026-11-23T10:15:"): parseRfc3339 reads that minute once, and a record of the
   * same minute ending in "SSZ" or "SS.fffZ" only adds its seconds and fraction. Everything else
   * (another minute, a leap second, an offset) is parseRfc3339's.
   */
  private timeOf(b: Buffer, view: DataView, base: number, s: number, e: number): number {
    if (e - s >= MINUTE_LENGTH + 3 && sameBytes(view, base + s, this.minuteView, 0, MINUTE_LENGTH)) {
      const rest = secondsAndFraction(b, s + MINUTE_LENGTH, e);
      if (rest >= 0) return this.minuteMs + rest;
    }
    const text = (b as Sliceable).latin1Slice(s, e);
    const ms = parseRfc3339(text);
    if (!Number.isNaN(ms)) {
      // the start of this minute, in UTC ('Z' whatever the record's offset): what secondsAndFraction adds to
      const minuteMs = parseRfc3339(`${text.slice(0, MINUTE_LENGTH)}00Z`);
      if (!Number.isNaN(minuteMs)) {
        this.minute.set(b.subarray(s, s + MINUTE_LENGTH));
        this.minuteMs = minuteMs;
      }
    }
    return ms;
  }
}
