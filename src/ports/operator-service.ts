/**
 * What the operator API (src/adapters/http/api-server.ts) and the OPA receiver need from the service
 * behind them. Embedded mode (EmbeddedService) and Kafka mode (KafkaService) each provide it.
 */
import type { KillEvent } from '../core/documents.js';
import type { BlocksPage } from '../core/ledger-feed.js';

export interface IngestRecord {
  /** the record as one line of JSON: what embedded mode appends to ingest.ndjson, what Kafka mode produces */
  readonly text: string;
  /**
   * What parsing `text` strictly gives, when the caller has it (a posted NDJSON line it checked, a mapped
   * OPA event): the service decodes this rather than parsing `text` again. It must be exactly what
   * parsing `text` gives, so that a restart, which reads the line back, decodes the same decision.
   */
  readonly value?: unknown;
  /**
   * A posted line that is not valid UTF-8, as its bytes (then `text` is empty): refused as
   * `invalid_utf8` and kept in the DLQ byte for byte, never evaluated nor written to ingest.ndjson.
   */
  readonly raw?: Buffer;
}

export interface IngestOptions {
  /**
   * The OPA `decision_id`s of the events this request hands over (docs/opa.md). Kafka mode writes them
   * to the opa-ids topic in the request's transaction, so every instance learns that they were taken
   * exactly when the decisions are on the topic; embedded mode has them in ingest.ndjson already.
   */
  readonly opaIds?: readonly string[];
}

/** The OPA decision ids every instance has taken (Kafka mode: the opa-ids topic), for the OPA receiver. */
export interface SharedDecisionIds {
  /** `listener` gets every id taken, by any instance, oldest first, as it is read */
  onIds(listener: (ids: readonly string[]) => void): void;
  /** Resolves once every id taken up to now has gone to the listener; throws when that is not known within a few seconds. */
  catchUp(): Promise<void>;
}

export interface IngestResult {
  readonly accepted: number;
  readonly invalid: number;
  /** new blocks the request caused (embedded mode); null in Kafka mode, where decisions are evaluated after they are produced */
  readonly trips: number | null;
  /** the first invalid records: their index in the request, reason and message */
  readonly errors: readonly { index: number; reason: string; message: string }[];
}

export interface OperatorAction {
  readonly agentId: string;
  /** `subtree`: the action is on agentId and every ID below it (README "Scopes") */
  readonly scope?: 'subtree';
  readonly reason: string;
  /** who asked (the request's `authorized_by`), as recorded in the kill event */
  readonly authorizedBy: string;
}

export interface WindowView {
  readonly calls: number;
  readonly denies: number;
  readonly advisory_denies: number;
  readonly deny_rate: number | null;
  /** the stream time the window is read at */
  readonly at: string | null;
}

export interface IdentityView {
  readonly agent_id: string;
  readonly state: 'blocked' | 'active';
  readonly epoch: number;
  /** a blocked scope covering the identity (session guards refuse it), or null */
  readonly blocked_by_scope: string | null;
  /** null in Kafka mode when the identity's decisions partition is owned by another instance */
  readonly window: WindowView | null;
  /** Kafka mode: the decisions partition the identity's window lives in, and whether this instance owns it */
  readonly partition?: { readonly number: number; readonly owned: boolean };
  readonly last_kill_event: KillEvent | null;
}

export interface OperatorService {
  /** Evaluate (embedded) or produce (Kafka) posted decisions, in order. */
  ingest(records: readonly IngestRecord[], options?: IngestOptions): Promise<IngestResult>;
  /** A manual block: a signed kill event (trigger operator) and addendum. ALREADY_BLOCKED when it is. */
  block(a: OperatorAction): Promise<KillEvent>;
  /** An unblock of the current epoch. NOT_BLOCKED when it is not blocked. */
  unblock(a: OperatorAction): Promise<KillEvent>;
  /** Is this identity, or this scope (`<id>/*`), blocked? */
  isBlocked(key: string): boolean;
  identity(agentId: string): IdentityView;
  blocks(limit: number, after: string | undefined): BlocksPage;
}
