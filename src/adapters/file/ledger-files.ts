/**
 * Embedded mode's files under `data_dir` (docs/spec.md#12-embedded-mode-files): `kills.ndjson` (kill
 * events, the block ledger), `addenda.ndjson` (TRACE claim addenda, docs/spec.md#4-trace-addenda),
 * `journal.ndjson` (what makes a written pair and the input positions durable, journal.ts),
 * `dlq.ndjson` (bad input lines, dlq-line.ts) and `shadow.ndjson` (held trips).
 *
 * At start the files are read back and brought in line with the journal: torn last lines (an append a
 * crash interrupted) are cut, a kill event or addendum the journal committed but its file lacks is
 * written again, and a line the journal does not account for stops the start (LEDGER_CORRUPT), so a
 * restart never lifts a block, every kill event keeps its addendum and every chain continues where it
 * stopped.
 */
import { closeSync, existsSync, fsyncSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '../../core/canonical-json.js';
import type { KillEvent, ShadowEvent, TraceAddendum } from '../../core/documents.js';
import { KillSwitchError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/strict-json.js';
import type { TripSink } from '../../ports/trip-sink.js';
import { formatErrors, validator } from '../../schemas.js';
import { KillEventReader, SIGNATURE_REJECT_REASONS } from '../serde/kill-event-reader.js';
import { checkSignature } from '../signing/ed25519-signer.js';
import type { TrustedKey } from '../signing/keys.js';
import { dlqLine, type DlqInput } from './dlq-line.js';
import { cutTornTail, Journal, type JournalInput, type JournalState, lines, readJournal } from './journal.js';

export interface LedgerPaths {
  readonly dir: string;
  readonly kills: string;
  readonly addenda: string;
  readonly journal: string;
  readonly dlq: string;
  readonly shadow: string;
  readonly ingest: string;
}

export function ledgerPaths(dataDir: string): LedgerPaths {
  return {
    dir: dataDir,
    kills: join(dataDir, 'kills.ndjson'),
    addenda: join(dataDir, 'addenda.ndjson'),
    journal: join(dataDir, 'journal.ndjson'),
    dlq: join(dataDir, 'dlq.ndjson'),
    shadow: join(dataDir, 'shadow.ndjson'),
    ingest: join(dataDir, 'ingest.ndjson'),
  };
}

export interface LedgerState {
  readonly killEvents: KillEvent[];
  readonly addenda: TraceAddendum[];
  /** files whose torn last line was cut off */
  readonly repaired: string[];
  /** kill events and addenda written again from the journal */
  readonly regenerated: { readonly kills: number; readonly addenda: number };
  /** kill events without an addendum, left by an earlier version that had no journal: nothing can rebuild them */
  readonly unpaired: number;
  readonly journal: Journal;
  /** there was no journal: a new data_dir, or one an earlier version wrote */
  readonly fresh: boolean;
  /**
   * Bad lines already in dlq.ndjson past the journal's last record, as the highest line per stream:
   * the restart reads those lines again, and a line kept once is not kept twice.
   */
  readonly dlqSeen: Map<string, number>;
  /** shadow events past the journal's last record (their lines), for the same reason */
  readonly shadowSeen: Set<string>;
  readonly dlqBytes: number;
  readonly shadowBytes: number;
}

interface LedgerFile {
  /** the complete lines, without their LF (views into the file's bytes) */
  readonly lines: Buffer[];
  readonly torn: boolean;
}

function readLines(file: string): LedgerFile {
  if (!existsSync(file)) return { lines: [], torn: false };
  const { text, torn } = cutTornTail(file);
  const out: Buffer[] = [];
  for (let start = 0, nl = text.indexOf(0x0a); nl !== -1; start = nl + 1, nl = text.indexOf(0x0a, start)) out.push(text.subarray(start, nl));
  return { lines: out, torn };
}

/** Reads one line of a ledger file as its document, or throws LEDGER_CORRUPT. `file` and `lineNo` name it in the message. */
type LineReader<T> = (line: Buffer | string, file: string, lineNo: number) => T;

const notTrusted = (file: string, what: string, lineNo: number, code: string, message: string): KillSwitchError =>
  new KillSwitchError('LEDGER_CORRUPT', `${file}: ${what} #${lineNo} is not trusted (${code}: ${message})`);

const SIGNATURE_REASONS: ReadonlySet<string> = new Set(SIGNATURE_REJECT_REASONS);

/**
 * Kill events: the checks of every ledger reader (kill-event-reader.ts). Our own file, so any line it
 * refuses, a forged one included, stops the start rather than forget or invent a block.
 */
function killEventLines(reader: KillEventReader): LineReader<KillEvent> {
  return (line, file, lineNo) => {
    const r = reader.read(line);
    if (r.ok) return r.event;
    if (SIGNATURE_REASONS.has(r.reason)) throw notTrusted(file, 'kill event', lineNo, r.reason, r.message);
    throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${lineNo}: ${r.message}`);
  };
}

/** Addenda: strict JSON, their schema, and their signature when trusted keys are configured (the kill events' policy). */
function addendumLines(trusted: ReadonlyMap<string, TrustedKey>): LineReader<TraceAddendum> {
  const validate = validator('addendum');
  return (line, file, lineNo) => {
    let doc: unknown;
    try {
      doc = parseJsonStrict(typeof line === 'string' ? line : line.toString('utf8'));
    } catch (err) {
      const reason = (err as { reason?: string }).reason;
      throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${lineNo}: ${reason === undefined || reason === 'invalid_json' ? 'not valid JSON' : `not a strict JSON document (${reason})`}`);
    }
    if (!validate(doc)) throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${lineNo}: ${formatErrors(validate.errors).join('; ')}`);
    if (trusted.size > 0) {
      const r = checkSignature(doc as Record<string, unknown>, trusted);
      if (!r.ok) throw notTrusted(file, 'addendum', lineNo, r.code, r.message);
    }
    return doc as TraceAddendum;
  };
}

/**
 * Bring `file` (kill events or addenda) in line with the journal: its first `base` lines predate the
 * journal, the next ones must be the journal's pairs in order, and the pairs it lacks are appended.
 * Returns the documents of the file as it is then.
 */
function reconcile<T extends object>(
  file: string, have: readonly Buffer[], base: number, committed: readonly T[], what: string, read: LineReader<T>,
): { docs: T[]; added: number } {
  // a forged or unreadable line is reported as such, before anything else is said about it
  const docs = have.map((line, i) => read(line, file, i + 1));
  if (have.length < base) {
    throw new KillSwitchError('LEDGER_CORRUPT', `${file}: holds ${have.length} lines, the journal recorded ${base}: lines were removed`);
  }
  if (have.length > base + committed.length) {
    throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${base + committed.length + 1}: a ${what} the journal has no record of`);
  }
  for (let i = base; i < have.length; i++) {
    if (have[i]!.toString('utf8') !== canonicalJson(committed[i - base]!)) throw new KillSwitchError('LEDGER_CORRUPT', `${file}:${i + 1}: differs from the journal's record of this ${what}`);
  }
  const missing = committed.slice(have.length - base).map((doc) => canonicalJson(doc));
  if (missing.length === 0) return { docs, added: 0 };
  missing.forEach((line, i) => docs.push(read(line, `${file} (from the journal)`, have.length + i + 1)));
  const fd = openSync(file, 'a', 0o640);
  try {
    writeSync(fd, missing.map((l) => `${l}\n`).join(''));
    fsyncSync(fd);
  } catch (err) {
    throw new KillSwitchError('LEDGER_WRITE_FAILED', `${file}: cannot append (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  } finally {
    closeSync(fd);
  }
  return { docs, added: missing.length };
}

/**
 * The lines of `file` past byte `from` (a line start the journal recorded), and the file's size once
 * a torn last line past it is cut. Only that part is read: it holds what was written since the last
 * journal record, while the whole file can be large.
 */
function tail(file: string, from: number): { lines: string[]; size: number; torn: boolean } {
  if (!existsSync(file)) return { lines: [], size: 0, torn: false };
  const fd = openSync(file, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (from >= size) return { lines: [], size, torn: false };
    const text = Buffer.alloc(size - from);
    let got = 0;
    while (got < text.length) {
      const n = readSync(fd, text, got, text.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
    const keep = text.lastIndexOf(0x0a) + 1;
    const torn = keep < got;
    if (torn) {
      ftruncateSync(fd, from + keep);
      fsyncSync(fd);
    }
    const out: string[] = [];
    for (const [, line] of lines(text.subarray(0, keep))) out.push(line);
    return { lines: out, size: from + keep, torn };
  } finally {
    closeSync(fd);
  }
}

export interface OpenLedgerOptions {
  /**
   * keys every kill event and addendum in the files must verify against; empty: signatures are not
   * checked (a service run with `signing.allow_unsigned` and no JWKS), as for every ledger reader
   */
  readonly trusted: ReadonlyMap<string, TrustedKey>;
}

/**
 * Read the data_dir's files, repair what a crash left, and open the journal. Every kill event and
 * addendum the ledger files hold once repaired is read strictly, against its schema and its signature:
 * one that fails stops the start (LEDGER_CORRUPT).
 */
export function openLedger(paths: LedgerPaths, o: OpenLedgerOptions): LedgerState {
  const repaired: string[] = [];
  let state: JournalState = readJournal(paths.journal);
  const fresh = state.fresh;
  if (state.torn) repaired.push(paths.journal);
  const kills = readLines(paths.kills);
  if (kills.torn) repaired.push(paths.kills);
  const addenda = readLines(paths.addenda);
  if (addenda.torn) repaired.push(paths.addenda);
  if (state.fresh) {
    // a new data_dir, or one an earlier version wrote: what is in the files is the starting point
    const size = (f: string): number => (existsSync(f) ? statSync(f).size : 0);
    state = { ...state, killsBase: kills.lines.length, addendaBase: addenda.lines.length, dlqBytes: size(paths.dlq), shadowBytes: size(paths.shadow) };
  }
  const k = reconcile(paths.kills, kills.lines, state.killsBase, state.pairs.map((p) => p.killEvent), 'kill event', killEventLines(new KillEventReader({ trusted: o.trusted })));
  const a = reconcile(paths.addenda, addenda.lines, state.addendaBase, state.pairs.map((p) => p.addendum), 'addendum', addendumLines(o.trusted));

  const dlq = tail(paths.dlq, state.dlqBytes);
  if (dlq.torn) repaired.push(paths.dlq);
  const dlqSeen = new Map<string, number>();
  for (const line of dlq.lines) {
    try {
      const e = parseJsonStrict(line) as { file?: unknown; line?: unknown };
      if (typeof e.file === 'string' && typeof e.line === 'number' && e.line > (dlqSeen.get(e.file) ?? 0)) dlqSeen.set(e.file, e.line);
    } catch {
      // not ours to judge: a DLQ line is a copy of input, kept as it is
    }
  }
  const shadow = tail(paths.shadow, state.shadowBytes);
  if (shadow.torn) repaired.push(paths.shadow);
  for (const f of [paths.kills, paths.addenda, paths.dlq, paths.shadow]) syncFile(f);
  return {
    killEvents: k.docs, addenda: a.docs, repaired, regenerated: { kills: k.added, addenda: a.added },
    unpaired: Math.max(0, state.killsBase - state.addendaBase), journal: new Journal(paths.journal, state), fresh,
    dlqSeen, shadowSeen: new Set(shadow.lines), dlqBytes: dlq.size, shadowBytes: shadow.size,
  };
}

function syncFile(file: string): void {
  if (!existsSync(file)) return;
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function append(fd: number, line: string, file: string): void {
  try {
    writeSync(fd, line);
  } catch (err) {
    throw new KillSwitchError('LEDGER_WRITE_FAILED', `${file}: cannot append (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

export interface LedgerSinkOptions {
  readonly paths: LedgerPaths;
  readonly ledger: LedgerState;
  /** where each input stands, for the inputs that moved since the last call (the journal's `inputs`) */
  readonly positions: () => Record<string, JournalInput>;
}

/**
 * Writes trips and operator actions through the journal (journal.ts): the record is fsynced first,
 * then the kill event and the addendum are appended to their files.
 */
export class LedgerFileSink implements TripSink {
  private readonly paths: LedgerPaths;
  private readonly journal: Journal;
  private readonly killsFd: number;
  private readonly addendaFd: number;
  private dlqFd: number | undefined;
  private shadowFd: number | undefined;
  private dlqBytes: number;
  private shadowBytes: number;
  private dlqUnsynced = false;
  /** a write failed: nothing more is recorded, so the journal never claims a position past a lost trip */
  private failed: unknown;
  private readonly dlqSeen: Map<string, number>;
  private readonly shadowSeen: Set<string>;

  constructor(private readonly o: LedgerSinkOptions) {
    this.paths = o.paths;
    this.journal = o.ledger.journal;
    this.killsFd = openSync(o.paths.kills, 'a', 0o640);
    this.addendaFd = openSync(o.paths.addenda, 'a', 0o640);
    this.dlqBytes = o.ledger.dlqBytes;
    this.shadowBytes = o.ledger.shadowBytes;
    this.dlqSeen = o.ledger.dlqSeen;
    this.shadowSeen = o.ledger.shadowSeen;
  }

  write(killEvent: KillEvent, addendum: TraceAddendum): Promise<void> {
    this.guard(() => {
      this.syncDlq();
      this.journal.append({ pair: { killEvent, addendum }, inputs: this.o.positions(), dlqBytes: this.dlqBytes, shadowBytes: this.shadowBytes });
      append(this.killsFd, canonicalJson(killEvent) + '\n', this.paths.kills);
      append(this.addendaFd, canonicalJson(addendum) + '\n', this.paths.addenda);
      this.compactIfLong();
    });
    return Promise.resolve();
  }

  private guard(f: () => void): void {
    if (this.failed !== undefined) throw new KillSwitchError('LEDGER_WRITE_FAILED', `${this.paths.journal}: an earlier write failed; restart to recover`, { cause: this.failed });
    try {
      f();
    } catch (err) {
      this.failed = err;
      throw err;
    }
  }

  /** A trip the governor held: kept (fsynced) in shadow.ndjson, never in the block ledger. */
  writeShadow(event: ShadowEvent): Promise<void> {
    const line = canonicalJson(event) + '\n';
    if (this.shadowSeen.delete(line.slice(0, -1))) return Promise.resolve(); // kept before the restart
    this.guard(() => {
      this.shadowFd ??= openSync(this.paths.shadow, 'a', 0o640);
      append(this.shadowFd, line, this.paths.shadow);
      fsyncSync(this.shadowFd);
      this.shadowBytes += Buffer.byteLength(line);
    });
    return Promise.resolve();
  }

  /**
   * A bad input line, kept with its reason and its bytes (dlq-line.ts). Not fsynced per line: it is a
   * copy of input; it is fsynced before the next journal record, which records its length.
   */
  writeDlq(bad: DlqInput): void {
    if (bad.index === undefined && bad.line <= (this.dlqSeen.get(bad.file) ?? 0)) return; // kept before the restart
    const line = dlqLine(bad);
    this.guard(() => {
      this.dlqFd ??= openSync(this.paths.dlq, 'a', 0o640);
      append(this.dlqFd, line, this.paths.dlq);
      this.dlqBytes += Buffer.byteLength(line);
      this.dlqUnsynced = true;
    });
  }

  /** Record how far the inputs were read (a progress record), if anything moved since the last record. */
  checkpoint(): void {
    this.guard(() => {
      const inputs = this.o.positions();
      if (Object.keys(inputs).length === 0 && this.dlqBytes === this.journal.dlqBytes && this.shadowBytes === this.journal.shadowBytes) return;
      this.syncDlq();
      this.journal.append({ inputs, dlqBytes: this.dlqBytes, shadowBytes: this.shadowBytes });
      this.compactIfLong();
    });
  }

  /** Rewrite the journal as one header (at start, and when it grows long): the files it covers are synced first. */
  compact(): void {
    fsyncSync(this.killsFd);
    fsyncSync(this.addendaFd);
    this.syncDlq();
    this.journal.compact();
  }

  private compactIfLong(): void {
    if (this.journal.needsCompaction) this.compact();
  }

  private syncDlq(): void {
    if (!this.dlqUnsynced || this.dlqFd === undefined) return;
    fsyncSync(this.dlqFd);
    this.dlqUnsynced = false;
  }

  close(): Promise<void> {
    for (const fd of [this.killsFd, this.addendaFd, this.dlqFd, this.shadowFd]) {
      if (fd !== undefined) {
        fsyncSync(fd);
        closeSync(fd);
      }
    }
    this.journal.close();
    return Promise.resolve();
  }

  /** Close without recording anything more (after a failure: the next start repairs from the journal). */
  abandon(): void {
    for (const fd of [this.killsFd, this.addendaFd, this.dlqFd, this.shadowFd]) {
      if (fd === undefined) continue;
      try {
        closeSync(fd);
      } catch {
        // closing is all that is left to do
      }
    }
    this.journal.abandon();
  }
}

/** The complete lines of a file: their bytes and how many (a torn last line is not one of them). */
export function completeLines(file: string): { bytes: number; lines: number } {
  if (!existsSync(file)) return { bytes: 0, lines: 0 };
  const text = readFileSync(file);
  let lines = 0;
  for (let nl = text.indexOf(0x0a); nl !== -1; nl = text.indexOf(0x0a, nl + 1)) lines++;
  return { bytes: text.lastIndexOf(0x0a) + 1, lines };
}
