/**
 * Decision events from text or bytes (NDJSON lines, HTTP bodies, plain-JSON Kafka values) to pre-parsed
 * decisions, or a reason the record is bad. Bad records never throw: the caller reports, counts and
 * skips them (or sends them to the DLQ) and the stream goes on.
 */
import { isUtf8 } from 'node:buffer';
import type { DecisionClassifier } from '../../core/decision-class.js';
import { type DecisionEvent, type Decision, toDecision } from '../../core/decision.js';
import { parseSpiffeId } from '../../core/spiffe-id.js';
import { parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';
import { formatErrors, validator } from '../../schemas.js';
import { FastDecisionDecoder, type ReusableDecision } from './fast-decision.js';

/** Stable reasons: DLQ header values and metric labels. */
export const BAD_RECORD_REASONS = [
  'invalid_json', 'schema_invalid', 'invalid_spiffe_id', 'unknown_decision', 'key_mismatch', 'too_large', 'unknown_schema', 'invalid_utf8', 'future_timestamp',
  'schema_unsupported', 'registry_error', 'invalid_forwarded',
] as const;
export type BadRecordReason = (typeof BAD_RECORD_REASONS)[number];

export type DecodeResult =
  | { readonly ok: true; readonly decision: Decision }
  | { readonly ok: false; readonly reason: BadRecordReason; readonly message: string };

/** An NDJSON line (a file's, or posted) that is not valid UTF-8: refused, and kept in the DLQ as its bytes. */
export const LINE_NOT_UTF8 = { ok: false, reason: 'invalid_utf8', message: 'the line is not valid UTF-8' } as const satisfies DecodeResult;

export class DecisionDecoder {
  private readonly validate = validator('decision');
  private fast: FastDecisionDecoder | undefined;

  constructor(readonly classifier: DecisionClassifier) {}

  /**
   * A plain UTF-8 JSON value and its record key (null or empty: none). The common shape is read straight
   * from the bytes (fast-decision.ts); whatever that declines is decoded as text by decodeText, which alone
   * says why a record is bad. Both give the same decision for what both read.
   */
  decodeBytes(value: Buffer, key: Buffer | null): DecodeResult {
    this.fast ??= new FastDecisionDecoder(this.classifier);
    const decision = this.fast.decode(value, key);
    if (decision !== null) return { ok: true, decision };
    return this.decodeSlowly(value, key);
  }

  /**
   * decodeBytes, but the common shape is written into `into` (FastDecisionDecoder.decodeInto: nothing
   * made per record), which is then what it returns; anything else gives decodeText's result.
   */
  decodeBytesInto(value: Buffer, key: Buffer | null, into: ReusableDecision): DecodeResult | ReusableDecision {
    this.fast ??= new FastDecisionDecoder(this.classifier);
    if (this.fast.decodeInto(value, key, into)) return into;
    return this.decodeSlowly(value, key);
  }

  /**
   * What the fast decoder declined (it reads ASCII only): bytes that are not UTF-8 are a bad record, never
   * text with U+FFFD in place of what was sent (docs/spec.md#1-decision-events).
   */
  private decodeSlowly(value: Buffer, key: Buffer | null): DecodeResult {
    if (!isUtf8(value)) return { ok: false, reason: 'invalid_utf8', message: 'the value is not valid UTF-8' };
    if (key !== null && !isUtf8(key)) return { ok: false, reason: 'invalid_utf8', message: 'the record key is not valid UTF-8' };
    return this.decodeText(value.toString('utf8'), keyText(key));
  }

  /** `key`: the record key (Kafka key, or the `KEY<TAB>` prefix of a line); undefined or '' = none. */
  decodeText(text: string, key?: string): DecodeResult {
    let value: unknown;
    try {
      // a decision with two agent_id keys could name one identity to us and another to any other reader
      value = parseJsonStrict(text);
    } catch (err) {
      if (err instanceof StrictJsonError && err.reason !== 'invalid_json') return { ok: false, reason: 'invalid_json', message: `not a strict JSON document: ${err.message}` };
      // V8 quotes part of the input in its message; keep payloads out of reports and logs.
      const why = (err as Error).message.replace(/,? *".*" is not valid JSON$/s, '');
      return { ok: false, reason: 'invalid_json', message: `not valid JSON: ${why}` };
    }
    return this.decodeValue(value, key);
  }

  decodeValue(value: unknown, key?: string): DecodeResult {
    if (!this.validate(value)) return this.schemaFailure(value);
    const event = value as DecisionEvent;
    const agent = event.agent_id ?? '';
    if (key !== undefined && key !== '' && key !== agent) {
      return { ok: false, reason: 'key_mismatch', message: `record key ${JSON.stringify(key)} differs from agent_id ${JSON.stringify(agent)}` };
    }
    const decision = toDecision(event, this.classifier);
    if (typeof decision === 'string') return { ok: false, reason: 'schema_invalid', message: decision };
    return { ok: true, decision };
  }

  private schemaFailure(value: unknown): DecodeResult {
    const errors = this.validate.errors ?? [];
    for (const e of errors) {
      if (e.keyword === 'format' && (e.instancePath === '/agent_id' || e.instancePath === '/delegated_by')) {
        const raw = (value as Record<string, unknown>)[e.instancePath.slice(1)];
        const parsed = parseSpiffeId(String(raw));
        const why = parsed.ok ? 'invalid' : parsed.reason;
        return { ok: false, reason: 'invalid_spiffe_id', message: `${e.instancePath}: not a valid SPIFFE ID: ${why}` };
      }
      if (e.keyword === 'enum' && e.instancePath === '/decision') {
        const raw = (value as Record<string, unknown>).decision;
        return { ok: false, reason: 'unknown_decision', message: `/decision: unknown decision ${JSON.stringify(raw)}` };
      }
    }
    return { ok: false, reason: 'schema_invalid', message: formatErrors(errors).join('; ') };
  }
}

/** A record key as the text decoders take it: null or empty = none. */
export function keyText(key: Buffer | null): string | undefined {
  return key === null || key.length === 0 ? undefined : key.toString('utf8');
}
