/**
 * The one reader of kill events from the block ledger (docs/spec.md#reading-kill-events), for every
 * consumer of it: session guards, the Kafka evaluators following the kills topic, and embedded mode
 * reading `data_dir/kills.ndjson` at start. One set of checks in one order; the first that fails gives
 * the reason, one of KILL_EVENT_REJECT_REASONS (metric labels: `killswitch_ledger_rejected_total` and
 * `killswitch_guard_ledger_rejected_total`). What a refusal then does is the consumer's: a guard or an
 * evaluator ignores and counts the event, embedded mode refuses to start.
 *
 * Signatures: with trusted keys, every kill event must verify against them; with none (a service run
 * with `signing.allow_unsigned` and no JWKS), signatures are not checked. Session guards always have
 * keys (they refuse to start without), so they never obey an unsigned event.
 */
import { isUtf8 } from 'node:buffer';
import type { KillEvent } from '../../core/documents.js';
import { parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';
import { formatErrors, validator } from '../../schemas.js';
import { checkSignature } from '../signing/ed25519-signer.js';
import type { TrustedKey } from '../signing/keys.js';

/** The signature check's reasons (docs/spec.md#signatures): the event may be well formed, but nobody we trust vouches for it. */
export const SIGNATURE_REJECT_REASONS = ['unsigned', 'unknown_kid', 'jwk_mismatch', 'bad_signature'] as const;

/** Stable reasons, in the order the checks run: metric label values. */
export const KILL_EVENT_REJECT_REASONS = ['too_large', 'invalid_utf8', 'invalid_json', 'duplicate_key', 'too_deep', 'schema_invalid', ...SIGNATURE_REJECT_REASONS] as const;
export type KillEventRejectReason = (typeof KILL_EVENT_REJECT_REASONS)[number];

/**
 * The longest kill event read, in UTF-8 bytes. The largest the product writes is far below it: an
 * operator event with a 1024-character reason and dual-control `authorized_by`, every character an
 * escaped one outside the BMP, is about 40 KiB.
 */
export const MAX_KILL_EVENT_BYTES = 64 * 1024;

export type KillEventReadResult =
  | { readonly ok: true; readonly event: KillEvent }
  | {
    readonly ok: false; readonly reason: KillEventRejectReason;
    /** for a log line: never quotes the text (V8's JSON errors do), at most a key or a schema path */
    readonly message: string;
    /** the event's `agent_id` when it got as far as being parsed and has a string one (for logs, never a metric label) */
    readonly agentId?: string;
  };

export interface KillEventReaderOptions {
  /** keys a kill event must verify against; empty: signatures are not checked (see above) */
  readonly trusted: ReadonlyMap<string, TrustedKey>;
}

export class KillEventReader {
  private readonly validate = validator('killEvent');
  private readonly trusted: ReadonlyMap<string, TrustedKey>;

  constructor(o: KillEventReaderOptions) {
    this.trusted = o.trusted;
  }

  /** whether read() requires a signature that verifies (trusted keys were given) */
  get checksSignatures(): boolean {
    return this.trusted.size > 0;
  }

  /** One ledger record (a Kafka value, a file line without its LF, an SSE event's data). Never throws on bad input. */
  read(value: string | Buffer): KillEventReadResult {
    // a string's UTF-8 length is at least its length and at most three times it: count bytes only between
    if (value.length > MAX_KILL_EVENT_BYTES || (typeof value === 'string' && value.length * 3 > MAX_KILL_EVENT_BYTES && Buffer.byteLength(value, 'utf8') > MAX_KILL_EVENT_BYTES)) {
      return reject('too_large', `longer than ${MAX_KILL_EVENT_BYTES} bytes`);
    }
    let text: string;
    if (typeof value === 'string') {
      // a lone surrogate has no UTF-8 form: the text could not be what any writer stored
      if (!isWellFormed(value)) return reject('invalid_utf8', 'the text is not valid Unicode (a lone surrogate)');
      text = value;
    } else {
      // never read as text with U+FFFD in place of what was stored
      if (!isUtf8(value)) return reject('invalid_utf8', 'not valid UTF-8');
      text = value.toString('utf8');
    }
    let doc: unknown;
    try {
      doc = parseJsonStrict(text);
    } catch (err) {
      if (!(err instanceof StrictJsonError)) throw err;
      // V8's message for invalid JSON quotes the input; the other reasons name at most a key
      return reject(err.reason, err.reason === 'invalid_json' ? 'not valid JSON' : err.message);
    }
    const agentId = (doc as { agent_id?: unknown } | null)?.agent_id;
    if (!this.validate(doc)) {
      return reject('schema_invalid', `not a kill event (schemas/kill-event.schema.json): ${formatErrors(this.validate.errors).join('; ')}`, agentId);
    }
    if (this.trusted.size > 0) {
      const sig = checkSignature(doc as Record<string, unknown>, this.trusted);
      if (!sig.ok) return reject(sig.code, sig.message, agentId);
    }
    return { ok: true, event: doc as KillEvent };
  }
}

/** String.prototype.isWellFormed: ES2024, in Node 20 and later, while the project's lib is ES2023 */
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

function reject(reason: KillEventRejectReason, message: string, agentId?: unknown): KillEventReadResult {
  return typeof agentId === 'string' ? { ok: false, reason, message, agentId } : { ok: false, reason, message };
}
