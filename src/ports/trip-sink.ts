import type { KillEvent, ShadowEvent, TraceAddendum } from '../core/documents.js';

/** Where the documents of a trip go: ledger files, stdout + addenda file, or a Kafka transaction. */
export interface TripSink {
  /** Durably record a kill event and its addendum; resolves once both are stored. */
  write(killEvent: KillEvent, addendum: TraceAddendum): Promise<void>;
  /** Record a trip the governor held (not a block). */
  writeShadow(event: ShadowEvent): Promise<void>;
  close(): Promise<void>;
}
