/** Where a session guard reads the block ledger from. The guard checks what a source delivers; a source only moves bytes. */

export interface LedgerSink {
  /** one kill event as it is stored (the JSON text of one document, or its bytes: a Buffer may be reused once the call returns) */
  record(value: string | Buffer): void;
  /** something on the ledger that the source itself could not pass on (e.g. a line too long to hold) */
  rejected(reason: 'too_large', message: string): void;
  /** everything the ledger held when the source started has been delivered */
  caughtUp(): void;
  /** the source reached its ledger just now (a read or fetch succeeded, even an empty one) */
  alive(): void;
  /** the source cannot reach its ledger; the guard logs it and goes stale after `max_staleness` */
  trouble(message: string): void;
}

export interface LedgerSource {
  /** for logs: where this source reads from */
  readonly description: string;
  /** resolves once reading has begun; delivery continues until `stop()` */
  start(sink: LedgerSink): Promise<void>;
  stop(): Promise<void>;
}
