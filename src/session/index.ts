/**
 * `deny-rate-killswitch/session`: what a session manager imports to refuse new sessions of blocked
 * identities (docs/spec.md#7-refusing-a-session). README, "Session managers".
 */
import type { Kafka } from 'kafkajs';
import { Registry } from 'prom-client';
import { KillSwitchError } from '../core/errors.js';
import { createKafka } from '../adapters/kafka/client.js';
import { createLogger } from '../adapters/log/logger.js';
import { loadJwks, parseJwks, type TrustedKey } from '../adapters/signing/keys.js';
import type { Logger } from '../ports/logger.js';
import { SessionGuard, type FailureMode } from './guard.js';
import type { LedgerSource } from './ledger-source.js';
import { FileLedgerSource } from './sources/file-source.js';
import { KafkaLedgerSource } from './sources/kafka-source.js';
import { SseLedgerSource } from './sources/sse-source.js';

export type LedgerOption =
  /** the Kafka kills topic, from the beginning, then live */
  | { readonly kafka: { readonly brokers: readonly string[]; readonly clientId?: string } | Kafka; readonly topic?: string }
  /** a ledger file (embedded mode's `data_dir/kills.ndjson`, or a copy on an air-gapped host), followed as it grows */
  | { readonly file: string; readonly pollMs?: number }
  /** the service's Server-Sent Events stream (`GET /v1/blocks/stream`), with a viewer token */
  | { readonly http: { readonly url: string; readonly token: string } }
  /** a source of your own */
  | { readonly source: LedgerSource };

export interface SessionGuardOptions {
  readonly ledger: LedgerOption;
  /** the keys trusted to sign kill events: a JWKS file path, a JWKS object, or keys already loaded */
  readonly jwks: string | { readonly keys: readonly unknown[] } | ReadonlyMap<string, TrustedKey>;
  /**
   * `closed` (default): refuses with 503 while the ledger is not read or is stale, and with 400
   * IDENTITY_INVALID an identity that is not a valid SPIFFE ID; `open` lets both through
   */
  readonly failureMode?: FailureMode;
  /** how long the source may be out of touch before the guard counts as stale (default 30 s) */
  readonly maxStalenessMs?: number;
  /** a pino-like logger (default: JSON on stderr at info) */
  readonly logger?: Logger;
  /** where the guard's metrics go (default: a registry of its own, `guard.registry`) */
  readonly registry?: Registry;
}

export const DEFAULT_MAX_STALENESS_MS = 30_000;
export const DEFAULT_KILLS_TOPIC = 'killswitch.kills';

function trustedKeys(jwks: SessionGuardOptions['jwks']): ReadonlyMap<string, TrustedKey> {
  if (typeof jwks === 'string') return loadJwks(jwks);
  if (jwks instanceof Map) return jwks;
  return parseJwks(JSON.stringify(jwks), 'options.jwks');
}

function isKafka(k: unknown): k is Kafka {
  return typeof (k as Kafka).consumer === 'function' && typeof (k as Kafka).admin === 'function';
}

function ledgerSource(ledger: LedgerOption, log: Logger): LedgerSource {
  if ('source' in ledger) return ledger.source;
  if ('file' in ledger) return new FileLedgerSource(ledger.file, ledger.pollMs);
  if ('http' in ledger) return new SseLedgerSource(ledger.http);
  const kafka = isKafka(ledger.kafka) ? ledger.kafka : createKafka(ledger.kafka.brokers, ledger.kafka.clientId ?? 'killswitch-guard', log);
  return new KafkaLedgerSource(kafka, ledger.topic ?? DEFAULT_KILLS_TOPIC);
}

/** Start following the ledger. `await guard.ready` to wait until it has been read to its end. */
export function createSessionGuard(options: SessionGuardOptions): SessionGuard {
  const failureMode = options.failureMode ?? 'closed';
  if (failureMode !== 'closed' && failureMode !== 'open') throw new KillSwitchError('CONFIG_INVALID', `failureMode: must be "closed" or "open", not ${JSON.stringify(failureMode)}`);
  const maxStalenessMs = options.maxStalenessMs ?? DEFAULT_MAX_STALENESS_MS;
  if (!Number.isFinite(maxStalenessMs) || maxStalenessMs <= 0) throw new KillSwitchError('CONFIG_INVALID', `maxStalenessMs: must be a positive number of milliseconds, not ${String(maxStalenessMs)}`);
  const log = (options.logger ?? createLogger('info', 'killswitch-guard')).child({ component: 'session-guard' });
  return new SessionGuard({
    source: ledgerSource(options.ledger, log),
    trusted: trustedKeys(options.jwks),
    failureMode, maxStalenessMs, log,
    registry: options.registry ?? new Registry(),
  });
}

export { SessionGuard } from './guard.js';
export type { BlockInfo, FailureMode, GuardState, RejectReason } from './guard.js';
export type { LedgerSink, LedgerSource } from './ledger-source.js';
export { FileLedgerSource } from './sources/file-source.js';
export { KafkaLedgerSource } from './sources/kafka-source.js';
export { SseLedgerSource } from './sources/sse-source.js';
export { IdentityInvalidError, KillSwitchTrippedError, KillSwitchUnavailableError } from './refusal.js';
export type { Allowed, CheckResult, IdentityInvalid, IdentityInvalidBody, Refusal, Tripped, TrippedBody, Unavailable, UnavailableBody } from './refusal.js';
export { checkRequest, expressGuard, fastifyGuard, nodeHttpGuard, requestIdentities, sendRefusal, spiffeIdsFromCertificate } from './http.js';
export type { FastifyLikeReply, FastifyLikeRequest, HttpGuardOptions } from './http.js';
export { createAuthzServer, REFUSAL_HEADER } from './authz-server.js';
export type { AuthzOutcome } from './authz-server.js';
