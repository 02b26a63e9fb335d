/**
 * Embedded mode's journal, `data_dir/journal.ndjson` (docs/spec.md#12-embedded-mode-files): the one
 * file whose fsynced append makes a trip, an operator action or a step of progress durable.
 *
 * Why a journal: a kill event and its addendum live in two files, so no single write puts both down;
 * a crash between the two appends used to leave a block without its addendum for good, and the
 * addendum cannot be rebuilt later (its session ids come from the window at the time of the trip).
 * Each record therefore carries both documents whole, and how far every input had been read when
 * they were made. The order of writes is: the journal record (fsynced: this is the commit), then the
 * kill event to kills.ndjson, then the addendum to addenda.ndjson. After a crash at any moment:
 *
 * - a torn last journal line was never committed: it is cut, nothing downstream has it, and its
 *   input position was not recorded either, so the restart reads that input from before the trip and
 *   derives the trip again (the same bytes: processing is deterministic and Ed25519 signatures are);
 * - a committed record whose kill event or addendum is missing, or torn, in its file is written there
 *   again from the journal, so every kill event has its addendum and nothing is written twice.
 *
 * The ledger files therefore need no fsync of their own per trip: the journal's fsync is the
 * durability point, and the files are fsynced before the journal is compacted.
 *
 * Records (JSON, one per line, parsed strictly):
 * - the first line, `{"journal": JOURNAL_TYPE, "kills", "addenda", "dlq_bytes", "shadow_bytes",
 *   "inputs", "clears"}`: how many kill events and addenda the ledger files held when the journal was
 *   last compacted, and the state then;
 * - `{"kill_event", "addendum", "inputs", "dlq_bytes", "shadow_bytes"}`: one written pair;
 * - `{"inputs", "dlq_bytes", "shadow_bytes"}`: progress only.
 * `inputs` maps an input's stream name to its JournalInput; a record lists the inputs that moved since
 * the record before it. `clears` keeps, for operator unblocks, where each input stood when the unblock
 * emptied the identity's window: a restart that re-reads an input past that point empties the window
 * there again, so an unblock survives any number of restarts.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { KillEvent, TraceAddendum } from '../../core/documents.js';
import { KillSwitchError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/strict-json.js';

export const JOURNAL_TYPE = 'killswitch.journal/v1';
/** a journal longer than this is compacted while running */
const COMPACT_AT_BYTES = 64 << 20;

/** Where one input stands (docs/spec.md#12-embedded-mode-files). */
export interface JournalInput {
  /** bytes read and processed: the next line starts here */
  readonly offset: number;
  /** lines before `offset` */
  readonly line: number;
  /** where a restart re-reads from to restore the windows (the first line a window still covers) */
  readonly restore_offset: number;
  readonly restore_line: number;
  /** the input's stream time just before `restore_offset` (ms; null: none yet) */
  readonly restore_time: number | null;
  /** the input's identity: SHA-256 of its first `prefix_bytes` bytes */
  readonly prefix_bytes: number;
  readonly prefix_sha256: string;
}

export interface JournalClear {
  readonly agent_id: string;
  /** per input: its offset when the unblock happened */
  readonly at: Readonly<Record<string, number>>;
}

export interface WrittenPair {
  readonly killEvent: KillEvent;
  readonly addendum: TraceAddendum;
}

export interface JournalRecord {
  readonly inputs: Readonly<Record<string, JournalInput>>;
  readonly pair?: WrittenPair;
  readonly dlqBytes: number;
  readonly shadowBytes: number;
}

/** What the journal says, folded. */
export interface JournalState {
  /** kill events and addenda in the ledger files when the journal was compacted (fewer addenda only in a data_dir of an earlier version) */
  readonly killsBase: number;
  readonly addendaBase: number;
  /** pairs committed since then, in order */
  readonly pairs: WrittenPair[];
  readonly inputs: Map<string, JournalInput>;
  readonly clears: JournalClear[];
  readonly dlqBytes: number;
  readonly shadowBytes: number;
  /** a torn last line was cut off */
  readonly torn: boolean;
  /** no journal file was there (a new data_dir, or one written by an earlier version) */
  readonly fresh: boolean;
}

const corrupt = (file: string, line: number, why: string): KillSwitchError => new KillSwitchError('LEDGER_CORRUPT', `${file}:${line}: ${why}`);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkInput(v: unknown): v is JournalInput {
  if (!isRecord(v)) return false;
  return isCount(v.offset) && isCount(v.line) && isCount(v.restore_offset) && isCount(v.restore_line) &&
    (v.restore_time === null || (typeof v.restore_time === 'number' && Number.isFinite(v.restore_time))) &&
    isCount(v.prefix_bytes) && typeof v.prefix_sha256 === 'string' && v.restore_offset <= v.offset;
}

function checkInputs(v: unknown): v is Record<string, JournalInput> {
  return isRecord(v) && Object.values(v).every(checkInput);
}

/** Cut a torn last line (no LF: an append the process did not finish) off `file`; returns the text kept. */
export function cutTornTail(file: string): { text: Buffer; torn: boolean } {
  const text = readFileSync(file);
  if (text.length === 0 || text[text.length - 1] === 0x0a) return { text, torn: false };
  const keep = text.lastIndexOf(0x0a) + 1;
  const fd = openSync(file, 'r+');
  try {
    // through the fd we fsync: the cut is durable before anything is appended after it
    ftruncateSync(fd, keep);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { text: text.subarray(0, keep), torn: true };
}

/** Lines of an NDJSON buffer that ends with a LF (or is empty), with their 1-based numbers. */
export function* lines(text: Buffer): Generator<[number, string]> {
  let start = 0;
  let n = 0;
  for (let nl = text.indexOf(0x0a); nl !== -1; nl = text.indexOf(0x0a, start)) {
    n++;
    yield [n, text.toString('utf8', start, nl)];
    start = nl + 1;
  }
}

interface Folded {
  killsBase: number;
  addendaBase: number;
  readonly pairs: WrittenPair[];
  readonly inputs: Map<string, JournalInput>;
  clears: JournalClear[];
  dlqBytes: number;
  shadowBytes: number;
}

const emptyState = (): Folded => ({ killsBase: 0, addendaBase: 0, pairs: [], inputs: new Map(), clears: [], dlqBytes: 0, shadowBytes: 0 });

export function readJournal(file: string): JournalState {
  if (!existsSync(file)) return { ...emptyState(), torn: false, fresh: true };
  const { text, torn } = cutTornTail(file);
  const state = emptyState();
  let first = true;
  for (const [n, line] of lines(text)) {
    let rec: unknown;
    try {
      rec = parseJsonStrict(line);
    } catch {
      throw corrupt(file, n, 'not valid JSON');
    }
    if (!isRecord(rec)) throw corrupt(file, n, 'not a journal record');
    if (first) {
      first = false;
      if (rec.journal !== JOURNAL_TYPE) throw corrupt(file, n, `the first record is not a ${JOURNAL_TYPE} header`);
      if (!isCount(rec.kills) || !isCount(rec.addenda) || !isCount(rec.dlq_bytes) || !isCount(rec.shadow_bytes) || !checkInputs(rec.inputs) || !Array.isArray(rec.clears)) {
        throw corrupt(file, n, 'malformed header');
      }
      state.killsBase = rec.kills;
      state.addendaBase = rec.addenda;
      state.dlqBytes = rec.dlq_bytes;
      state.shadowBytes = rec.shadow_bytes;
      for (const [name, input] of Object.entries(rec.inputs)) state.inputs.set(name, input);
      for (const c of rec.clears as unknown[]) {
        if (!isRecord(c) || typeof c.agent_id !== 'string' || !isRecord(c.at) || !Object.values(c.at).every(isCount)) throw corrupt(file, n, 'malformed clear');
        state.clears.push({ agent_id: c.agent_id, at: c.at as Record<string, number> });
      }
      continue;
    }
    if (!checkInputs(rec.inputs) || !isCount(rec.dlq_bytes) || !isCount(rec.shadow_bytes)) throw corrupt(file, n, 'malformed record');
    const hasPair = rec.kill_event !== undefined || rec.addendum !== undefined;
    if (hasPair && (!isRecord(rec.kill_event) || !isRecord(rec.addendum))) throw corrupt(file, n, 'a record needs both its kill event and its addendum');
    fold(state, {
      inputs: rec.inputs, dlqBytes: rec.dlq_bytes, shadowBytes: rec.shadow_bytes,
      ...(hasPair ? { pair: { killEvent: rec.kill_event as KillEvent, addendum: rec.addendum as TraceAddendum } } : {}),
    });
  }
  if (first) return { ...emptyState(), torn, fresh: true }; // only a torn header: as if it had never been written
  return { ...state, torn, fresh: false };
}

function fold(state: Folded, r: JournalRecord): void {
  for (const [name, input] of Object.entries(r.inputs)) state.inputs.set(name, input);
  state.dlqBytes = r.dlqBytes;
  state.shadowBytes = r.shadowBytes;
  if (r.pair === undefined) return;
  state.pairs.push(r.pair);
  const k = r.pair.killEvent;
  // an unblock empties the identity's window (docs/spec.md#2-trip-rule): remember where, per input
  if (k.action === 'unblock' && k.scope === undefined) {
    const at: Record<string, number> = {};
    for (const [name, input] of state.inputs) at[name] = input.offset;
    state.clears.push({ agent_id: k.agent_id, at });
  }
}

/** The journal, open for appends. */
export class Journal {
  private fd: number;
  private bytes: number;
  private readonly s: Folded;

  /** `state` as read, once the ledger files are repaired to hold every pair it has */
  constructor(private readonly file: string, state: JournalState) {
    this.s = { killsBase: state.killsBase, addendaBase: state.addendaBase, pairs: [...state.pairs], inputs: new Map(state.inputs), clears: [...state.clears], dlqBytes: state.dlqBytes, shadowBytes: state.shadowBytes };
    this.fd = openSync(file, 'a', 0o640);
    this.bytes = statSync(file).size;
  }

  get inputs(): ReadonlyMap<string, JournalInput> {
    return this.s.inputs;
  }

  get dlqBytes(): number {
    return this.s.dlqBytes;
  }

  get shadowBytes(): number {
    return this.s.shadowBytes;
  }

  /** Clears for re-reading `name`, ordered by offset. */
  clearsFor(name: string): { offset: number; agentId: string }[] {
    return this.s.clears.filter((c) => c.at[name] !== undefined).map((c) => ({ offset: c.at[name]!, agentId: c.agent_id })).sort((a, b) => a.offset - b.offset);
  }

  /** Record where an input stands without a record of its own (written with the next compaction). */
  adopt(name: string, input: JournalInput): void {
    this.s.inputs.set(name, input);
  }

  /** An input that is read from its start again as a new one: what was recorded about the old one goes. */
  forget(name: string): void {
    this.s.inputs.delete(name);
    this.s.clears = this.s.clears.map((c) => {
      const { [name]: _gone, ...at } = c.at;
      return { agent_id: c.agent_id, at };
    });
  }

  /** Append a record and fsync it: once this returns, the record is committed. */
  append(r: JournalRecord): void {
    const line = JSON.stringify({
      ...(r.pair === undefined ? {} : { kill_event: r.pair.killEvent, addendum: r.pair.addendum }),
      inputs: r.inputs, dlq_bytes: r.dlqBytes, shadow_bytes: r.shadowBytes,
    }) + '\n';
    try {
      writeSync(this.fd, line);
      fsyncSync(this.fd);
    } catch (err) {
      throw new KillSwitchError('LEDGER_WRITE_FAILED', `${this.file}: cannot append (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    this.bytes += Buffer.byteLength(line);
    fold(this.s, r);
  }

  get needsCompaction(): boolean {
    return this.bytes > COMPACT_AT_BYTES;
  }

  /**
   * Rewrite the journal as one header holding the folded state. The caller has fsynced the ledger
   * files (they must hold every committed pair: the header's counts say they do) and the DLQ. The new
   * journal replaces the old one by rename, so a crash leaves one or the other, whole.
   */
  compact(): void {
    const s = this.s;
    s.killsBase += s.pairs.length;
    s.addendaBase += s.pairs.length;
    s.pairs.length = 0;
    // a clear matters only where a restart still re-reads: past the input's restore offset
    s.clears = s.clears.map((c) => {
      const at: Record<string, number> = {};
      for (const [name, offset] of Object.entries(c.at)) {
        const input = s.inputs.get(name);
        if (input !== undefined && offset > input.restore_offset) at[name] = offset;
      }
      return { agent_id: c.agent_id, at };
    }).filter((c) => Object.keys(c.at).length > 0);
    const header = JSON.stringify({
      journal: JOURNAL_TYPE, kills: s.killsBase, addenda: s.addendaBase, dlq_bytes: s.dlqBytes, shadow_bytes: s.shadowBytes,
      inputs: Object.fromEntries(s.inputs), clears: s.clears,
    }) + '\n';
    const tmp = `${this.file}.tmp`;
    try {
      const fd = openSync(tmp, 'w', 0o640);
      try {
        writeSync(fd, header);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
      fsyncDir(dirname(this.file));
      closeSync(this.fd);
      this.fd = openSync(this.file, 'a', 0o640);
    } catch (err) {
      throw new KillSwitchError('LEDGER_WRITE_FAILED', `${this.file}: cannot rewrite (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    this.bytes = Buffer.byteLength(header);
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }

  abandon(): void {
    try {
      closeSync(this.fd);
    } catch {
      // closing is all that is left to do
    }
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
