/**
 * `deny-rate-killswitch`: the pure core (trip rule, ledger fold, canonical JSON, documents), config
 * loading, signatures and the offline verifier. Session managers import `deny-rate-killswitch/session`.
 */
export { Evaluator } from './core/evaluator.js';
export type { StreamClock, StreamSource, Trip, TripRuleConfig } from './core/evaluator.js';
export { LedgerFold } from './core/ledger-fold.js';
export type { FoldChange, IdentityState, KillAction, LedgerEntry } from './core/ledger-fold.js';
export { canonicalJson } from './core/canonical-json.js';
export { isSpiffeId, parseSpiffeId, spiffeIdError } from './core/spiffe-id.js';
export { ADDENDUM_TYPE, KILL_EVENT_TYPE, buildAddendum, buildKillEvent, killEventId } from './core/documents.js';
export type { Evidence, KillEvent, TraceAddendum } from './core/documents.js';
export { ERROR_CODES, KillSwitchError } from './core/errors.js';
export type { ErrorCode } from './core/errors.js';
export { loadConfig, parseConfig } from './config/config.js';
export type { Config } from './config/config.js';
export { checkSignature, Ed25519Signer } from './adapters/signing/ed25519-signer.js';
export { loadJwks, loadSigningKey, parseJwks } from './adapters/signing/keys.js';
export { KILL_EVENT_REJECT_REASONS, KillEventReader, MAX_KILL_EVENT_BYTES } from './adapters/serde/kill-event-reader.js';
export type { KillEventReadResult, KillEventReaderOptions, KillEventRejectReason } from './adapters/serde/kill-event-reader.js';
export type { TrustedKey } from './adapters/signing/keys.js';
export { verifyAddenda } from './verify/verify-addenda.js';
export type { VerifyFailure, VerifyReport } from './verify/verify-addenda.js';
