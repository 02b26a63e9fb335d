/**
 * Embedded mode's ledger under `data_dir`: `kills.ndjson` (kill events, the block ledger),
 * `addenda.ndjson` (TRACE claim addenda) and `dlq.ndjson` (bad input lines with their reason).
 * Appends are fsynced before a trip counts as written; at start the ledger is read back so a restart
 * never lifts a block and every addendum chain continues where it stopped.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '../../core/canonical-json.js';
import type { KillEvent, ShadowEvent, TraceAddendum } from '../../core/documents.js';
import { KillSwitchError } from '../../core/errors.js';
import type { TripSink } from '../../ports/trip-sink.js';
import { formatErrors, validator } from '../../schemas.js';
import { dlqLine, type DlqInput } from './dlq-line.js';

export interface LedgerPaths {
  readonly dir: string;
  readonly kills: string;
  readonly addenda: string;
  readonly dlq: string;
  readonly shadow: string;
}

export function ledgerPaths(dataDir: string): LedgerPaths {
  return {
    dir: dataDir,
    kills: join(dataDir, 'kills.ndjson'),
    addenda: join(dataDir, 'addenda.ndjson'),
    dlq: join(dataDir, 'dlq.ndjson'),
    shadow: join(dataDir, 'shadow.ndjson'),
  };
}

export interface LedgerContents {
  readonly killEvents: KillEvent[];
  readonly addenda: TraceAddendum[];
  /** torn final lines (a crash mid-append) that were cut off, per file */
  readonly repaired: string[];
}

/** Read a ledger file's documents, validating each against its schema. A torn last line is cut off. */
function readDocuments<T>(file: string, schema: 'killEvent' | 'addendum', repaired: string[]): T[] {
  if (!existsSync(file)) return [];
  let text = readFileSync(file, 'utf8');
  if (text.length > 0 && !text.endsWith('\n')) {
    // Only the last append can be torn, and it was never acknowledged: drop it.
    const keep = text.lastIndexOf('\n') + 1;
    const fd = openSync(file, 'r+');
    try {
      ftruncateSync(fd, Buffer.byteLength(text.slice(0, keep), 'utf8'));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    repaired.push(file);
    text = text.slice(0, keep);
  }
  const validate = validator(schema);
  const docs: T[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${i + 1}: not valid JSON`);
    }
    if (!validate(doc)) {
      throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${i + 1}: ${formatErrors(validate.errors).join('; ')}`);
    }
    docs.push(doc as T);
  }
  return docs;
}

export function readLedger(paths: LedgerPaths): LedgerContents {
  const repaired: string[] = [];
  return {
    killEvents: readDocuments<KillEvent>(paths.kills, 'killEvent', repaired),
    addenda: readDocuments<TraceAddendum>(paths.addenda, 'addendum', repaired),
    repaired,
  };
}

function appendDurably(fd: number, line: string, file: string): void {
  try {
    writeSync(fd, line);
    fsyncSync(fd);
  } catch (err) {
    throw new KillSwitchError('LEDGER_WRITE_FAILED', `${file}: cannot append (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

/** Appends kill events and addenda to the ledger files, fsynced: the kill event first, it is what enforces. */
export class LedgerFileSink implements TripSink {
  private readonly killsFd: number;
  private readonly addendaFd: number;
  private dlqFd: number | undefined;
  private shadowFd: number | undefined;

  constructor(private readonly paths: LedgerPaths) {
    mkdirSync(paths.dir, { recursive: true });
    this.killsFd = openSync(paths.kills, 'a', 0o640);
    this.addendaFd = openSync(paths.addenda, 'a', 0o640);
  }

  write(killEvent: KillEvent, addendum: TraceAddendum): Promise<void> {
    appendDurably(this.killsFd, canonicalJson(killEvent) + '\n', this.paths.kills);
    appendDurably(this.addendaFd, canonicalJson(addendum) + '\n', this.paths.addenda);
    return Promise.resolve();
  }

  /** A trip the governor held: kept (fsynced) in shadow.ndjson, never in the block ledger. */
  writeShadow(event: ShadowEvent): Promise<void> {
    this.shadowFd ??= openSync(this.paths.shadow, 'a', 0o640);
    appendDurably(this.shadowFd, canonicalJson(event) + '\n', this.paths.shadow);
    return Promise.resolve();
  }

  /** A bad input line, kept with its reason and its bytes (dlq-line.ts). Not fsynced per line: it is a copy of input. */
  writeDlq(bad: DlqInput): void {
    this.dlqFd ??= openSync(this.paths.dlq, 'a', 0o640);
    writeSync(this.dlqFd, dlqLine(bad));
  }

  close(): Promise<void> {
    for (const fd of [this.killsFd, this.addendaFd, this.dlqFd, this.shadowFd]) {
      if (fd !== undefined) {
        fsyncSync(fd);
        closeSync(fd);
      }
    }
    return Promise.resolve();
  }
}

