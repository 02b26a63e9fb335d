/**
 * One error class with stable codes (README "Error codes" lists every one; a test keeps them in sync).
 * TypeError / RangeError remain bugs: they are not wrapped and crash the process.
 */

export const ERROR_CODES = {
  CONFIG_INVALID: { status: undefined, retryable: false, summary: 'the configuration file is missing, unreadable or invalid' },
  USAGE: { status: undefined, retryable: false, summary: 'the command line is wrong (unknown command or option, missing argument)' },
  EVENT_INVALID: { status: 400, retryable: false, summary: 'a decision event is not valid JSON, not valid against the schema, or its key and agent_id differ' },
  INPUT_UNREADABLE: { status: undefined, retryable: false, summary: 'an input file cannot be opened or read' },
  LEDGER_CORRUPT: { status: undefined, retryable: false, summary: 'a ledger file under data_dir holds a line that is not a valid kill event or addendum' },
  LEDGER_WRITE_FAILED: { status: 503, retryable: true, summary: 'a kill event or addendum could not be written durably' },
  KEY_INVALID: { status: undefined, retryable: false, summary: 'a signing key or JWKS file is missing, unreadable or not an Ed25519 key' },
  SIGNING_REQUIRED: { status: undefined, retryable: false, summary: 'no signing key is configured while the kill switch is enabled (set signing.private_key_file, or signing.allow_unsigned: true) or while signing.jwks_file is set (what it wrote would be refused by its own readers)' },
  KAFKA_FAILED: { status: undefined, retryable: true, summary: 'Kafka mode could not start or stopped on an error it cannot recover from in place (broker unreachable, transaction failed)' },
  KILL_SWITCH_TRIPPED: { status: 403, retryable: false, summary: 'the identity is blocked by the kill switch (docs/spec.md#7-refusing-a-session)' },
  IDENTITY_INVALID: { status: 400, retryable: false, summary: 'an identity was given (a header, a delegation chain, a path, a request field) but it is not a valid SPIFFE ID; it is never treated as anonymous (docs/spec.md#7-refusing-a-session)' },
  KILL_SWITCH_UNAVAILABLE: { status: 503, retryable: true, summary: 'a session guard with failure_mode closed cannot vouch for the identity: the block ledger is not read to its end yet, unreachable, or stale beyond max_staleness' },
  UNAUTHENTICATED: { status: 401, retryable: false, summary: 'the operator API needs `Authorization: Bearer <token>` with a token listed (by its SHA-256) under http.tokens' },
  FORBIDDEN: { status: 403, retryable: false, summary: 'the token is valid but lacks the role the endpoint needs (viewer, operator or ingest)' },
  NOT_FOUND: { status: 404, retryable: false, summary: 'no such endpoint' },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false, summary: 'the endpoint exists but not for this HTTP method (the Allow header lists the ones it takes)' },
  INVALID_JSON: { status: 400, retryable: false, summary: 'the request body is not valid UTF-8 JSON, or a JSON value in it (an NDJSON line too) repeats a key in an object or nests deeper than 64 (docs/spec.md#6-strict-documents)' },
  REQUEST_INVALID: { status: 400, retryable: false, summary: 'the request is well-formed JSON but a field is missing, mistyped or out of range' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, summary: 'the request body is not application/json (or application/x-ndjson for ingest)' },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false, summary: 'the request body is larger than http.max_body_bytes' },
  RATE_LIMITED: { status: 429, retryable: true, summary: 'too many operator actions from this token; retry after the Retry-After seconds' },
  NOT_BLOCKED: { status: 404, retryable: false, summary: 'unblock of an identity that is not blocked' },
  ALREADY_BLOCKED: { status: 409, retryable: false, summary: 'manual block of an identity that is already blocked' },
  SERVICE_UNREACHABLE: { status: undefined, retryable: true, summary: 'the operator CLI cannot reach the service at --url (or KILLSWITCH_URL), or the answer is not JSON' },
  INTERNAL: { status: 500, retryable: true, summary: 'the service failed to answer (logged with details); nothing was changed unless the log says so' },
  INGEST_UNAVAILABLE: { status: 503, retryable: true, summary: 'Kafka mode: the posted decisions could not be produced to the decisions topic (or, for an OPA upload, the ids already taken could not be read); none of them were (one transaction), so the request can be sent again' },
  SAME_APPROVER: { status: 409, retryable: false, summary: 'dual control: the second approval of a block or unblock must come from a different token than the first' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class KillSwitchError extends Error {
  override readonly name = 'KillSwitchError';
  readonly code: ErrorCode;
  readonly status: number | undefined;
  readonly retryable: boolean;
  /** further lines for the user (one problem per line), e.g. every config error */
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: readonly string[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryable = ERROR_CODES[code].retryable;
    this.details = options.details ?? [];
  }
}
