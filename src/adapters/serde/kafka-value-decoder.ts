/**
 * Kafka record values: plain UTF-8 JSON, or Confluent Schema Registry framing (magic byte 0x00, 4-byte
 * big-endian schema id, then JSON), told apart by the first byte. A framed value is validated against
 * its registered JSON schema (fetched once per id, compiled once, kept in an LRU cache) and then, like
 * every value, against the decision contract. The common path is synchronous: a promise only when a
 * schema id is seen for the first time. A plain value goes to DecisionDecoder.decodeBytes: the common
 * shape is read straight from its bytes, whatever that declines goes through the full decoder, which alone
 * says why a record is bad.
 */
import type { ValidateFunction } from 'ajv';
import { LRUCache } from 'lru-cache';
import type { SchemaRegistryClient } from '@confluentinc/schemaregistry';
import { compileForeignSchema } from '../../schemas.js';
import { type DecisionDecoder, type DecodeResult, keyText } from './decision-decoder.js';
import type { ReusableDecision } from './fast-decision.js';

export const MAGIC_BYTE = 0;
/**
 * Larger values are `too_large`. Below the broker's default message.max.bytes (1,048,588) with room for
 * the DLQ headers, so a too-large record still fits in the dead-letter topic whole.
 */
export const MAX_VALUE_BYTES = 1_000_000;

type CachedSchema = { readonly ok: true; readonly validate: ValidateFunction } | { readonly ok: false; readonly message: string };

export class KafkaValueDecoder {
  private readonly schemas = new LRUCache<number, CachedSchema>({ max: 1000 });

  constructor(
    private readonly decisions: DecisionDecoder,
    private readonly registry: SchemaRegistryClient | undefined,
    private readonly subject: string,
    private readonly maxBytes = MAX_VALUE_BYTES,
  ) {}

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
    const k = keyText(key);
    const cached = this.schemas.get(id);
    if (cached !== undefined) return this.decodeFramed(cached, id, value, k);
    return this.fetch(id).then((s) => this.decodeFramed(s, id, value, k));
  }

  private decodeFramed(schema: CachedSchema, id: number, value: Buffer, key: string | undefined): DecodeResult {
    if (!schema.ok) return { ok: false, reason: 'unknown_schema', message: `schema id ${id}: ${schema.message}` };
    let parsed: unknown;
    try {
      parsed = JSON.parse(value.toString('utf8', 5));
    } catch {
      return { ok: false, reason: 'invalid_json', message: `not valid JSON after the schema registry header (schema id ${id})` };
    }
    if (!schema.validate(parsed)) {
      return { ok: false, reason: 'schema_invalid', message: `does not match its registered schema ${id}: ${(schema.validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ')}` };
    }
    return this.decisions.decodeValue(parsed, key);
  }

  private async fetch(id: number): Promise<CachedSchema> {
    if (this.registry === undefined) {
      const s: CachedSchema = { ok: false, message: 'framed value, but no schema_registry is configured' };
      this.schemas.set(id, s);
      return s;
    }
    let s: CachedSchema;
    try {
      const info = await this.registry.getBySubjectAndId(this.subject, id);
      if (info.schemaType !== undefined && info.schemaType !== 'JSON') {
        s = { ok: false, message: `registered as ${info.schemaType}, not JSON` };
      } else {
        s = { ok: true, validate: compileForeignSchema(JSON.parse(info.schema) as object) };
      }
    } catch (err) {
      const status = (err as { status?: number }).status;
      // Only "no such schema" is the record's fault; anything else (registry down) must not drop data.
      if (status !== 404) throw err;
      s = { ok: false, message: 'not found in the schema registry' };
    }
    this.schemas.set(id, s);
    return s;
  }
}
