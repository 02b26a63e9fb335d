/**
 * Kafka record values: plain UTF-8 JSON, or Confluent Schema Registry framing (magic byte 0x00, 4-byte
 * big-endian schema id, then the payload), told apart by the first byte (docs/spec.md#1-decision-events).
 * A framed value is read with its registered schema, fetched once per id, prepared once and kept in an
 * LRU cache:
 *
 * - a JSON Schema (`schemaType: "JSON"`): the payload is strict JSON, validated against that schema;
 * - an Avro schema (no `schemaType`, which is Avro by the Confluent convention, or `"AVRO"`): the
 *   payload is Avro binary, read into an object by the schema (a null field is an absent one);
 *
 * and the object is then decoded exactly like a plain JSON decision. The common path is synchronous: a
 * promise only when a schema id is seen for the first time. A plain value goes to
 * DecisionDecoder.decodeBytes: the common shape is read straight from its bytes, whatever that declines
 * goes through the full decoder, which alone says why a record is bad.
 *
 * No record can stop the stream (docs/spec.md#8-bad-records-and-the-dlq): whatever belongs to one
 * schema id (not found, a type we do not read, a schema that does not compile, a reference that cannot
 * be resolved, an error status the registry keeps answering for it) is a refusal with its reason, and so
 * is cached: a poison id costs one registry call (or one retry series), not one per record. Only a
 * registry that gives no answer at all (connection refused, DNS, timeout) throws: nothing about the
 * record is known then, so the processor stops and its restart reads the record again.
 */
import { isUtf8 } from 'node:buffer';
import type { ValidateFunction } from 'ajv';
import { LRUCache } from 'lru-cache';
import type { AvroDeserializer, Client, SchemaInfo } from '@confluentinc/schemaregistry';
import { KillSwitchError } from '../../core/errors.js';
import { DEFAULT_MAX_DEPTH, parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';
import { compileForeignSchema } from '../../schemas.js';
import { type BadRecordReason, type DecisionDecoder, type DecodeResult, keyText } from './decision-decoder.js';
import type { ReusableDecision } from './fast-decision.js';

export const MAGIC_BYTE = 0;
/**
 * Larger values are `too_large`. Below the broker's default message.max.bytes (1,048,588) with room for
 * the DLQ headers, so a too-large record still fits in the dead-letter topic whole.
 */
export const MAX_VALUE_BYTES = 1_000_000;

export interface KafkaValueDecoderOptions {
  /** values longer than this are `too_large` (default MAX_VALUE_BYTES) */
  readonly maxBytes?: number;
  /**
   * How long a refusal that came from the registry's answer (no such id, an error status) is kept before
   * the id is asked about again (default 60 s): such answers can change (a registry replica catching up,
   * a registry fixed); what a schema says cannot.
   */
  readonly answerTtlMs?: number;
  /** a registry that has not answered one request in this long is unreachable (default 30 s) */
  readonly registryTimeoutMs?: number;
}

/** Statuses @confluentinc/schemaregistry's client retries itself (its retry-helper's isRetriable). */
const CLIENT_RETRIED: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);
/** Waits before asking again about an error status the client does not retry: three tries in all. */
const QUICK_RETRIES_MS = [100, 300];

/** At most this many schemas named by references, all levels together, for one schema. */
const MAX_REFERENCES = 100;

type Refusal = { readonly reason: BadRecordReason; readonly message: string };
/** What a schema id reads as: a JSON Schema's validator, an Avro type, or the reason its records are refused. */
type SchemaReader =
  | { readonly kind: 'json'; readonly validate: ValidateFunction }
  | { readonly kind: 'avro'; readonly type: AvroType }
  | ({ readonly kind: 'refused'; /** from the registry's answer, not the schema: asked again after answerTtlMs */ readonly answered?: true } & Refusal);

/** What the registry answered for an id or a reference, when it was not the schema. */
class RegistryAnswer extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export class KafkaValueDecoder {
  private readonly schemas = new LRUCache<number, SchemaReader>({ max: 1000 });
  /** ids being fetched: records of one new id arriving on several partitions at once ask once */
  private readonly fetching = new Map<number, Promise<SchemaReader>>();
  private avro: Promise<AvroDeserializer> | undefined;
  private readonly maxBytes: number;
  private readonly answerTtlMs: number;
  private readonly registryTimeoutMs: number;

  constructor(
    private readonly decisions: DecisionDecoder,
    private readonly registry: Client | undefined,
    private readonly subject: string,
    options: KafkaValueDecoderOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? MAX_VALUE_BYTES;
    this.answerTtlMs = options.answerTtlMs ?? 60_000;
    this.registryTimeoutMs = options.registryTimeoutMs ?? 30_000;
  }

  decode(value: Buffer | null, key: Buffer | null): DecodeResult | Promise<DecodeResult> {
    if (this.isPlain(value)) return this.decisions.decodeBytes(value, key);
    return this.notPlain(value, key);
  }

  /**
   * decode, but a plain value of the common shape is written into `into` and `into` returned
   * (DecisionDecoder.decodeBytesInto): what the Kafka processor calls, so a record costs no allocation.
   */
  decodeInto(value: Buffer | null, key: Buffer | null, into: ReusableDecision): DecodeResult | ReusableDecision | Promise<DecodeResult> {
    if (this.isPlain(value)) return this.decisions.decodeBytesInto(value, key, into);
    return this.notPlain(value, key);
  }

  /** A value of plain JSON (not empty, not too large, no registry framing): the decision decoder's. */
  private isPlain(value: Buffer | null): value is Buffer {
    return value !== null && value.length > 0 && value.length <= this.maxBytes && value[0] !== MAGIC_BYTE;
  }

  /** Everything but a plain value: refused as empty or too large, or read with its registry schema. */
  private notPlain(value: Buffer | null, key: Buffer | null): DecodeResult | Promise<DecodeResult> {
    if (value === null || value.length === 0) return { ok: false, reason: 'invalid_json', message: 'empty value (a tombstone is not a decision)' };
    if (value.length > this.maxBytes) return { ok: false, reason: 'too_large', message: `value of ${value.length} bytes is larger than ${this.maxBytes}` };
    if (value.length < 5) return { ok: false, reason: 'invalid_json', message: 'schema registry framing is shorter than 5 bytes' };
    const id = value.readUInt32BE(1);
    const cached = this.schemas.get(id);
    if (cached !== undefined) return this.decodeFramed(cached, id, value, key);
    return this.reader(id).then((s) => this.decodeFramed(s, id, value, key));
  }

  private decodeFramed(schema: SchemaReader, id: number, value: Buffer, key: Buffer | null): DecodeResult {
    if (schema.kind === 'refused') return { ok: false, reason: schema.reason, message: `schema id ${id}: ${schema.message}` };
    if (key !== null && !isUtf8(key)) return { ok: false, reason: 'invalid_utf8', message: 'the record key is not valid UTF-8' };
    const body = value.subarray(5);
    let parsed: unknown;
    if (schema.kind === 'avro') {
      try {
        parsed = readAvro(schema.type, body);
      } catch (err) {
        if (!(err instanceof AvroValueError)) throw err;
        return { ok: false, reason: err.reason, message: `not an Avro value of its registered schema ${id}: ${err.message}` };
      }
    } else {
      if (!isUtf8(body)) return { ok: false, reason: 'invalid_utf8', message: `the JSON after the schema registry header (schema id ${id}) is not valid UTF-8` };
      try {
        // strict like every other decision (docs/spec.md#1-decision-events): one reading for every reader
        parsed = parseJsonStrict(body.toString('utf8'));
      } catch (err) {
        const why = err instanceof StrictJsonError && err.reason !== 'invalid_json' ? `: ${err.message}` : '';
        return { ok: false, reason: 'invalid_json', message: `not valid JSON after the schema registry header (schema id ${id})${why}` };
      }
      if (!schema.validate(parsed)) {
        return { ok: false, reason: 'schema_invalid', message: `does not match its registered schema ${id}: ${(schema.validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ')}` };
      }
    }
    return this.decisions.decodeValue(parsed, keyText(key));
  }

  /** The reader of a schema id not in the cache: fetched once however many records ask at the same time. */
  private reader(id: number): Promise<SchemaReader> {
    let p = this.fetching.get(id);
    if (p === undefined) {
      p = this.load(id)
        .then((s) => {
          // refusals that came from the registry's answer are asked again later; what a schema says is for good
          if (s.kind === 'refused' && s.answered === true) this.schemas.set(id, s, { ttl: this.answerTtlMs });
          else this.schemas.set(id, s);
          return s;
        })
        .finally(() => this.fetching.delete(id));
      this.fetching.set(id, p);
    }
    return p;
  }

  private async load(id: number): Promise<SchemaReader> {
    if (this.registry === undefined) return { kind: 'refused', reason: 'unknown_schema', message: 'framed value, but no schema_registry is configured' };
    const registry = this.registry;
    let info: SchemaInfo;
    try {
      info = await this.askPersistently(() => registry.getBySubjectAndId(this.subject, id), `schema id ${id}`);
    } catch (err) {
      if (!(err instanceof RegistryAnswer)) throw err;
      if (err.status === 404) return { kind: 'refused', reason: 'unknown_schema', message: 'not found in the schema registry', answered: true };
      return { kind: 'refused', reason: 'registry_error', message: `the schema registry answered ${err.message}`, answered: true };
    }
    if (typeof info?.schema !== 'string') return { kind: 'refused', reason: 'registry_error', message: 'the schema registry answered without a schema', answered: true };
    if (hasRules(info)) {
      return { kind: 'refused', reason: 'schema_unsupported', message: 'it carries data-contract rules (ruleSet), which this processor does not run' };
    }
    // Confluent's convention: no schemaType is Avro
    const type = info.schemaType ?? 'AVRO';
    if (type !== 'JSON' && type !== 'AVRO') {
      const why = type === 'PROTOBUF' ? 'Protobuf values are not read (register a JSON Schema or an Avro schema)' : 'only JSON Schema and Avro schemas are read';
      return { kind: 'refused', reason: 'schema_unsupported', message: `registered as ${JSON.stringify(type).slice(0, 40)}: ${why}` };
    }
    let referenced: Map<string, string>;
    try {
      referenced = await this.references(info);
    } catch (err) {
      if (!(err instanceof RegistryAnswer)) throw err;
      if (err.status === 404) return { kind: 'refused', reason: 'schema_unsupported', message: `a reference cannot be resolved: ${err.message}`, answered: true };
      return { kind: 'refused', reason: 'registry_error', message: `the schema registry answered ${err.message}`, answered: true };
    }
    return type === 'JSON' ? jsonReader(info.schema, referenced) : this.avroReader(info);
  }

  /**
   * Every schema `info` names in its references, all levels, by reference name. The first 404 throws a
   * RegistryAnswer naming the reference. Asked with the same arguments as the serdes' own resolution, so
   * the client's cache answers when AvroDeserializer resolves them again.
   */
  private async references(info: SchemaInfo): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const registry = this.registry!;
    const walk = async (refs: SchemaInfo['references']): Promise<void> => {
      for (const ref of refs ?? []) {
        if (out.has(ref.name)) continue;
        if (out.size >= MAX_REFERENCES) throw new RegistryAnswer(404, `more than ${MAX_REFERENCES} references`);
        const what = `reference ${JSON.stringify(ref.name).slice(0, 200)} (subject ${JSON.stringify(ref.subject).slice(0, 200)}, version ${ref.version})`;
        const meta = await this.askPersistently(() => registry.getSchemaMetadata(ref.subject, ref.version, true), what);
        if (typeof meta?.schema !== 'string') throw new RegistryAnswer(404, `${what}: answered without a schema`);
        out.set(ref.name, meta.schema);
        await walk(meta.references);
      }
    };
    await walk(info.references);
    return out;
  }

  private async avroReader(info: SchemaInfo): Promise<SchemaReader> {
    // Loaded only now: a registry client is configured, so the package is loaded already.
    this.avro ??= import('@confluentinc/schemaregistry').then((sr) => new sr.AvroDeserializer(this.registry!, sr.SerdeType.VALUE, { subjectNameStrategyType: sr.SubjectNameStrategyType.TOPIC }));
    const deserializer = await this.avro;
    try {
      // the references are in the client's cache (this.references asked for them)
      const [type] = await this.ask(() => deserializer.toType(info), 'an Avro schema');
      return { kind: 'avro', type: type as unknown as AvroType };
    } catch (err) {
      if (err instanceof RegistryAnswer) return { kind: 'refused', reason: 'registry_error', message: `the schema registry answered ${err.message}`, answered: true };
      if (err instanceof KillSwitchError) throw err;
      return { kind: 'refused', reason: 'schema_unsupported', message: `not an Avro schema avsc can read: ${short(err)}` };
    }
  }

  /**
   * ask, and an error status other than 404 asked again after 100 and 300 ms, unless the registry client
   * retries that status itself (5xx, 408, 429, with its maxRetries, 3 by default): so what becomes
   * registry_error is an answer that persisted over a few quick tries, never one slow request's luck.
   */
  private async askPersistently<T>(request: () => Promise<T>, what: string): Promise<T> {
    const clientRetries = (this.registry?.config().maxRetries ?? 3) > 0;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.ask(request, what);
      } catch (err) {
        const wait = QUICK_RETRIES_MS[attempt];
        if (!(err instanceof RegistryAnswer) || err.status === 404 || (clientRetries && CLIENT_RETRIED.has(err.status)) || wait === undefined) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /**
   * One registry request (the client retries what is worth retrying: 5xx, 408, 429, no answer). An
   * error status becomes a RegistryAnswer; no answer at all, or none within registryTimeoutMs, throws
   * KAFKA_FAILED: the registry is unreachable, and no record may be judged without it.
   */
  private async ask<T>(request: () => Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KillSwitchError('KAFKA_FAILED', `the schema registry did not answer for ${what} within ${this.registryTimeoutMs} ms`)), this.registryTimeoutMs);
    });
    try {
      return await Promise.race([request(), timeout]);
    } catch (err) {
      if (err instanceof KillSwitchError) throw err;
      const status = answeredStatus(err);
      if (status !== undefined) throw new RegistryAnswer(status, `${status} for ${what}: ${short(err)}`);
      // an error that is not about HTTP at all (avsc parsing a schema) is the caller's to judge
      if (!isNetworkError(err)) throw err;
      throw new KillSwitchError('KAFKA_FAILED', `the schema registry is unreachable (${what}): ${short(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The HTTP status the registry answered with (the client's RestError, or an axios error with a response). */
function answeredStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { status?: unknown; response?: { status?: unknown } };
  if (typeof e.status === 'number') return e.status;
  if (typeof e.response?.status === 'number') return e.response.status;
  return undefined;
}

/** An HTTP request that got no answer: axios's own errors and Node's socket errors. */
function isNetworkError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { isAxiosError?: unknown; code?: unknown };
  return e.isAxiosError === true || (typeof e.code === 'string' && /^(E[A-Z]+|ERR_[A-Z_]+)$/.test(e.code));
}

function hasRules(info: SchemaInfo): boolean {
  // a registry may send null for what it does not have
  const r = info.ruleSet as SchemaInfo['ruleSet'] | null;
  if (r === undefined || r === null) return false;
  return (r.migrationRules?.length ?? 0) + (r.domainRules?.length ?? 0) + (r.encodingRules?.length ?? 0) > 0;
}

/** An error's message, cut short: messages go into DLQ headers and logs. */
function short(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 300 ? `${m.slice(0, 300)}...` : m;
}

function jsonReader(text: string, referenced: ReadonlyMap<string, string>): SchemaReader {
  const unsupported = (message: string): SchemaReader => ({ kind: 'refused', reason: 'schema_unsupported', message });
  const parse = (t: string): object | undefined => {
    try {
      const v = JSON.parse(t) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : undefined;
    } catch {
      return undefined;
    }
  };
  const schema = parse(text);
  if (schema === undefined) return unsupported('the registered JSON Schema is not a JSON object');
  const refs = new Map<string, object>();
  for (const [name, t] of referenced) {
    const s = parse(t);
    if (s === undefined) return unsupported(`the referenced schema ${JSON.stringify(name).slice(0, 200)} is not a JSON object`);
    refs.set(name, s);
  }
  try {
    return { kind: 'json', validate: compileForeignSchema(schema, refs) };
  } catch (err) {
    return unsupported(`the registered JSON Schema does not compile: ${short(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Avro binary values, read by the avsc type the registry client built from the schema.
//
// We read the bytes ourselves instead of avsc's fromBuffer: avsc decodes strings with replacement
// characters (a decision must be valid UTF-8, docs/spec.md#1-decision-events), and it trusts block
// counts, so a few bytes declaring an array of 2^32 items would keep the processor busy or out of memory.
// Here every count is checked against the bytes left, nesting is bounded like strict JSON's, and the
// value must end exactly where the bytes do.

/** The parts of an avsc Type this reader uses (its documented properties). */
interface AvroType {
  readonly typeName: string;
  readonly fields?: readonly { readonly name: string; readonly type: AvroType }[];
  readonly types?: readonly AvroType[];
  readonly itemsType?: AvroType;
  readonly valuesType?: AvroType;
  readonly symbols?: readonly string[];
  readonly size?: number;
  readonly underlyingType?: AvroType;
}

class AvroValueError extends Error {
  constructor(readonly reason: BadRecordReason, message: string) {
    super(message);
  }
}

/** Array and map items one value may hold beyond one per byte (items of type null take no bytes). */
const ZERO_BYTE_ITEMS = 65_536;

class AvroBytes {
  pos = 0;
  items = 0;
  constructor(readonly buf: Buffer) {}

  fail(message: string): never {
    throw new AvroValueError('schema_invalid', message);
  }

  need(n: number): void {
    if (n > this.buf.length - this.pos) this.fail('truncated');
  }

  /** A zigzag varint long, as a number: refused beyond 2^53, where a number would not hold it exactly. */
  long(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      this.need(1);
      const b = this.buf[this.pos++]!;
      n += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) break;
      scale *= 128;
      if (i >= 9) this.fail('a varint longer than 10 bytes');
    }
    if (n > Number.MAX_SAFE_INTEGER) this.fail('an integer beyond 2^53');
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }

  /** A byte length: never more than what is left. */
  length(what: string): number {
    const n = this.long();
    if (n < 0) this.fail(`a negative ${what}`);
    this.need(n);
    return n;
  }

  string(): string {
    const n = this.length('string length');
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    if (!isUtf8(bytes)) throw new AvroValueError('invalid_utf8', 'a string is not valid UTF-8');
    return bytes.toString('utf8');
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return b;
  }

  /** The item count of the next block of an array or map (0: the end); a negative count has a byte size after it. */
  block(): number {
    const n = this.long();
    if (n >= 0) {
      this.items += n;
    } else {
      this.items -= n;
      this.length('block size');
    }
    if (this.items > this.buf.length + ZERO_BYTE_ITEMS) this.fail('more array or map items than the value can hold');
    return Math.abs(n);
  }
}

/** The object an Avro value holds: records as plain objects without their null fields (null = absent). */
function readAvro(type: AvroType, buf: Buffer): unknown {
  const r = new AvroBytes(buf);
  const value = readValue(type, r, 0);
  if (r.pos !== buf.length) r.fail(`${buf.length - r.pos} bytes after the value`);
  return value;
}

function readValue(t: AvroType, r: AvroBytes, depth: number): unknown {
  if (depth > DEFAULT_MAX_DEPTH) r.fail(`nesting deeper than ${DEFAULT_MAX_DEPTH}`);
  switch (t.typeName) {
    case 'null':
      return null;
    case 'boolean': {
      const b = r.bytes(1)[0];
      if (b !== 0 && b !== 1) r.fail('a boolean that is neither 0 nor 1');
      return b === 1;
    }
    case 'int': {
      const n = r.long();
      if (n < -0x80000000 || n > 0x7fffffff) r.fail('an int beyond 32 bits');
      return n;
    }
    case 'long':
      return r.long();
    case 'float':
      return r.bytes(4).readFloatLE(0);
    case 'double':
      return r.bytes(8).readDoubleLE(0);
    case 'string':
      return r.string();
    case 'bytes':
      return r.bytes(r.length('bytes length'));
    case 'fixed':
      return r.bytes(t.size ?? 0);
    case 'enum': {
      const i = r.long();
      const symbol = t.symbols?.[i];
      if (symbol === undefined) r.fail(`enum index ${i} out of range`);
      return symbol;
    }
    case 'union:unwrapped':
    case 'union:wrapped': {
      const i = r.long();
      const branch = t.types?.[i];
      if (branch === undefined) r.fail(`union index ${i} out of range`);
      return readValue(branch, r, depth + 1);
    }
    case 'array': {
      const out: unknown[] = [];
      for (let n = r.block(); n > 0; n = r.block()) for (let i = 0; i < n; i++) out.push(readValue(t.itemsType!, r, depth + 1));
      return out;
    }
    case 'map': {
      const out: Record<string, unknown> = {};
      for (let n = r.block(); n > 0; n = r.block()) {
        for (let i = 0; i < n; i++) {
          const k = r.string();
          put(out, k, readValue(t.valuesType!, r, depth + 1));
        }
      }
      return out;
    }
    case 'record':
    case 'error': {
      const out: Record<string, unknown> = {};
      for (const f of t.fields ?? []) {
        const v = readValue(f.type, r, depth + 1);
        if (v !== null) put(out, f.name, v);
      }
      return out;
    }
    default:
      // a logical type avsc was told about reads as its underlying type; we ask for none
      if (t.underlyingType !== undefined) return readValue(t.underlyingType, r, depth);
      return r.fail(`type ${t.typeName} is not read`);
  }
}

/** obj[k] = v as JSON.parse does it: an own property even for `__proto__`. */
function put(obj: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  else obj[k] = v;
}
