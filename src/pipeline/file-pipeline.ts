/**
 * Decisions from NDJSON files (or stdin) through decode -> evaluator -> documents -> sink, in order.
 * Shared by `killswitch replay` and the embedded mode of `killswitch run`; each input file is one
 * stream (its own stream time and addendum chain).
 *
 * Embedded mode resumes an input where it stopped (docs/spec.md#12-embedded-mode-files): each Input
 * knows how far it was read, in bytes and lines, and where a restart must re-read from to rebuild the
 * windows: the first line of the oldest bucket a window at the current stream time still covers, with
 * the stream time just before that line. Re-reading from there in restore mode (no output), with the
 * stream time set to what it was, gives every window, every evidence range and every late/not-late
 * judgement the live run had, so what follows trips exactly as it would have without the restart.
 */
import { createHash } from 'node:crypto';
import type { AddendumChains, KillEvent, ShadowEvent, TraceAddendum } from '../core/documents.js';
import type { Decision } from '../core/decision.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, type Evaluator, type StreamClock, type Trip } from '../core/evaluator.js';
import { futureTimestampError } from '../core/time.js';
import type { Signer } from '../ports/signer.js';
import type { TripSink } from '../ports/trip-sink.js';
import { type BadRecordReason, DecisionDecoder, type DecodeResult, keyText, LINE_NOT_UTF8 } from '../adapters/serde/decision-decoder.js';
import { type LineHandler, type LinePosition, readNdjson, type TooLongLine } from '../adapters/file/ndjson-reader.js';
import { inputPrefix, type InputPrefix, PREFIX_BYTES } from '../adapters/file/input-identity.js';
import type { JournalInput } from '../adapters/file/journal.js';
import { tripOutput } from './trip-documents.js';

export interface BadLine {
  readonly file: string;
  readonly line: number;
  readonly reason: BadRecordReason;
  readonly message: string;
  /** the whole line as read, without its LF (absent for over-long lines); valid during the hook only */
  readonly raw?: Buffer;
  readonly key?: string;
  /** an over-long line: its length, first bytes and hash */
  readonly tooLong?: TooLongLine;
  /** a posted decision refused before it was written to ingest.ndjson: its 0-based index in the request (`line` is 0) */
  readonly index?: number;
}

/** Where posted decisions that never reach ingest.ndjson are said to come from (docs/spec.md#8-bad-records-and-the-dlq). */
export const POSTED_SOURCE = 'http:/v1/decisions';

export interface PipelineHooks {
  onBadLine(bad: BadLine): void;
  onTrip?(trip: Trip, killEvent: KillEvent, addendum: TraceAddendum): void;
  /** a trip the governor held: written as a shadow event, nothing blocked */
  onHeld?(shadow: ShadowEvent): void;
  /** every PROGRESS_LINES lines read live: a chance to record how far the inputs are read */
  onProgress?(): void;
}

export interface PipelineCounts {
  lines: number;
  decisions: number;
  invalid: number;
  invalidByReason: Partial<Record<BadRecordReason, number>>;
  trips: number;
  held: number;
}

const PROGRESS_LINES = 4096;
const EMPTY_PREFIX: InputPrefix = { prefix_bytes: 0, prefix_sha256: createHash('sha256').digest('hex') };

/** The stream name of an input: its path as given, `stdin` for '-'. */
export function streamName(path: string): string {
  return path === '-' ? 'stdin' : path;
}

/** Where a restart takes an input up (a JournalInput, with -Infinity for no stream time yet). */
export interface ResumePoint {
  readonly offset: number;
  readonly line: number;
  readonly restoreOffset: number;
  readonly restoreLine: number;
  readonly restoreTime: number;
}

export function resumePoint(j: JournalInput): ResumePoint {
  return { offset: j.offset, line: j.line, restoreOffset: j.restore_offset, restoreLine: j.restore_line, restoreTime: j.restore_time ?? -Infinity };
}

/** One input stream of the pipeline and how far it is read. */
export class Input {
  /** bytes read and processed: the next line starts here */
  offset = 0;
  /** lines before `offset` */
  line = 0;
  /** read since its position was last taken (FilePipeline.positions) */
  moved = false;
  /**
   * Per ring position of the clock's buckets: the byte offset of the first line of that bucket and the
   * stream time before it (the clock itself keeps the bucket number and that line's number).
   */
  readonly ringOffset: Float64Array;
  readonly ringTimeBefore: Float64Array;
  prefix: InputPrefix | undefined;

  constructor(readonly path: string, readonly name: string, readonly clock: StreamClock) {
    this.ringOffset = new Float64Array(clock.bucketNo.length);
    this.ringTimeBefore = new Float64Array(clock.bucketNo.length);
  }
}

export class FilePipeline {
  readonly counts: PipelineCounts = { lines: 0, decisions: 0, invalid: 0, invalidByReason: {}, trips: 0, held: 0 };
  latestTime = -Infinity;
  private readonly decoder: DecisionDecoder;
  private readonly maxFutureSkewMs: number;
  /** the arrival of a line read now: an NDJSON file carries none, so it is the reader's clock */
  private readonly now: () => number;
  /** inputs whose position is recorded (files; never stdin) */
  private readonly inputs = new Map<string, Input>();
  private sinceProgress = 0;

  constructor(
    private readonly evaluator: Evaluator,
    private readonly chains: AddendumChains,
    private readonly sink: TripSink,
    private readonly signer: Signer | undefined,
    private readonly hooks: PipelineHooks,
    now: () => number = Date.now,
  ) {
    this.decoder = new DecisionDecoder(evaluator.config.classifier);
    this.maxFutureSkewMs = evaluator.config.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS;
    this.now = now;
  }

  /** Read a whole input live, from its first line (replay, and stdin in embedded mode). */
  async processFile(path: string, signal?: AbortSignal): Promise<void> {
    const input = this.openInput(path);
    await this.read(input, signal);
    this.closeInput(input);
  }

  /**
   * Open an input's stream; with `resume`, at the position a restart takes it up from, its stream time
   * that of the first line `restore` will re-read.
   */
  openInput(path: string, resume?: ResumePoint): Input {
    const name = streamName(path);
    const input = new Input(path, name, this.evaluator.openStream(name, { file: name }));
    if (resume !== undefined) {
      input.offset = resume.offset;
      input.line = resume.line;
      this.setStreamTime(input.clock, resume.restoreTime);
    }
    if (path !== '-') this.inputs.set(name, input);
    return input;
  }

  closeInput(input: Input): void {
    this.noteTime(input.clock);
    this.evaluator.closeStream(input.clock);
  }

  /**
   * Re-read what a restart must to rebuild the windows: from `resume`'s restore offset up to where the
   * input was read to, in restore mode (windows only: no output, no DLQ, no counts). `clears` are the
   * points where an operator unblock emptied an identity's window (journal.ts): passing one empties
   * that window again, so decisions from before an unblock never count after it.
   */
  async restore(input: Input, resume: ResumePoint, clears: readonly { offset: number; agentId: string }[], signal?: AbortSignal): Promise<void> {
    let next = 0;
    const clearUpTo = (offset: number): void => {
      while (next < clears.length && clears[next]!.offset <= offset) this.evaluator.ledgerChanged(clears[next++]!.agentId, 'unblocked');
    };
    const position: LinePosition = { start: 0, end: 0, raw: Buffer.alloc(0) };
    await readNdjson(input.path, {
      line: (bytes, key, lineNo) => {
        clearUpTo(position.start);
        const r = this.decoder.decodeBytes(bytes, key ?? null);
        if (r.ok && futureTimestampError(r.decision.timeMs, this.now(), this.maxFutureSkewMs) === null) {
          this.accept(input, r.decision, lineNo, position.start, true);
        }
        return undefined;
      },
      invalidUtf8: () => clearUpTo(position.start),
      tooLong: () => clearUpTo(position.start),
    }, { from: { offset: resume.restoreOffset, line: resume.restoreLine }, to: resume.offset, position, ...(signal === undefined ? {} : { signal }) });
    if (signal?.aborted !== true) clearUpTo(resume.offset);
    this.noteTime(input.clock);
  }

  /** Read an input live from where it stands to its end. */
  async read(input: Input, signal?: AbortSignal): Promise<void> {
    const position: LinePosition = { start: 0, end: 0, raw: Buffer.alloc(0) };
    const moveTo = (lineNo: number): void => {
      // counted as read now, not when the file is done: the progress line shows it
      this.counts.lines += lineNo - input.line;
      input.offset = position.end;
      input.line = lineNo;
      input.moved = true;
    };
    const handler: LineHandler = {
      line: (bytes, key, lineNo) => {
        moveTo(lineNo); // before the trip a line may cause: its journal record counts this line as read
        const r = this.decoder.decodeBytes(bytes, key ?? null);
        let wait: Promise<void> | undefined;
        if (!r.ok) {
          this.badRecord(input.clock, r, lineNo, position.raw, keyText(key ?? null));
        } else {
          const future = futureTimestampError(r.decision.timeMs, this.now(), this.maxFutureSkewMs);
          if (future === null) wait = this.evaluate(input, r.decision, lineNo, position.start);
          else this.badRecord(input.clock, { reason: 'future_timestamp', message: future }, lineNo, position.raw, keyText(key ?? null));
        }
        this.progress();
        return wait;
      },
      invalidUtf8: (lineNo, raw) => {
        moveTo(lineNo);
        this.bad({ file: input.name, line: lineNo, reason: LINE_NOT_UTF8.reason, message: LINE_NOT_UTF8.message, raw });
        this.progress();
      },
      tooLong: (lineNo, tooLong) => {
        moveTo(lineNo);
        this.bad({ file: input.name, line: lineNo, reason: 'too_large', message: `line of ${tooLong.length} bytes is longer than the limit`, tooLong });
        this.progress();
      },
    };
    const lines = await readNdjson(input.path, handler, { from: { offset: input.offset, line: input.line }, position, ...(signal === undefined ? {} : { signal }) });
    if (signal?.aborted !== true && (position.end !== input.offset || lines !== input.line)) moveTo(lines); // blank lines at the end
    this.counts.lines += Math.max(0, lines - input.line); // blank lines at the end of a stopped read
    this.noteTime(input.clock);
  }

  /**
   * A posted decision, decoded and judged against `arrivalMs`, the time its request was received
   * (docs/spec.md#22-event-time-lateness-and-future-decisions). One that is `future_timestamp` is
   * refused before it is written anywhere (refusePosted); the others go to processLine. `value`, when
   * given, is what parsing `text` strictly gives, made by the caller (IngestRecord.value): decoded
   * instead of parsing `text` again.
   */
  decodePosted(text: string, arrivalMs: number, value?: unknown): DecodeResult {
    const r = value === undefined ? this.decoder.decodeText(text) : this.decoder.decodeValue(value);
    if (!r.ok) return r;
    const future = futureTimestampError(r.decision.timeMs, arrivalMs, this.maxFutureSkewMs);
    return future === null ? r : { ok: false, reason: 'future_timestamp', message: future };
  }

  /** A posted record refused before ingest.ndjson (`raw`: its bytes): a bad record of the request, never a line of the file. */
  refusePosted(index: number, raw: Buffer, r: { reason: BadRecordReason; message: string }): BadLine {
    const b: BadLine = { file: POSTED_SOURCE, line: 0, index, reason: r.reason, message: r.message, raw };
    this.bad(b);
    return b;
  }

  /**
   * One line of an input opened by the caller, e.g. a decision posted over HTTP and kept in a file of
   * its own: `text` is the line as written there, from byte `start` to `end` (its LF included), and
   * `decoded` what decodePosted made of it. Returns the bad line, or a promise when it tripped.
   */
  processLine(input: Input, text: string, decoded: DecodeResult, lineNo: number, start: number, end: number): Promise<void> | BadLine | undefined {
    input.offset = end;
    input.line = lineNo;
    input.moved = true;
    const result = decoded.ok ? this.evaluate(input, decoded.decision, lineNo, start) : this.badRecord(input.clock, decoded, lineNo, Buffer.from(text), undefined);
    this.progress();
    return result;
  }

  /**
   * Where each input that moved since the last call stands, as the journal records it; taken with
   * every journal record, so a restart resumes from the last one.
   */
  positions(): Record<string, JournalInput> {
    const out: Record<string, JournalInput> = {};
    for (const input of this.inputs.values()) {
      if (!input.moved) continue;
      input.moved = false;
      const p = input.prefix;
      if (p === undefined || (p.prefix_bytes < PREFIX_BYTES && p.prefix_bytes < input.offset)) {
        try {
          input.prefix = inputPrefix(input.path, input.offset);
        } catch {
          // gone since it was read: what was known of it still identifies it
          input.prefix ??= EMPTY_PREFIX;
        }
      }
      out[input.name] = { offset: input.offset, line: input.line, ...this.restorePoint(input), ...input.prefix! };
    }
    return out;
  }

  /** The first line (and the stream time before it) of the oldest bucket the window at the input's stream time covers. */
  private restorePoint(input: Input): Pick<JournalInput, 'restore_offset' | 'restore_line' | 'restore_time'> {
    const c = input.clock;
    if (c.time === -Infinity) return { restore_offset: input.offset, restore_line: input.line, restore_time: null };
    const cutoff = Math.floor((c.time - this.evaluator.config.windowMs) / this.evaluator.config.resolutionMs);
    let best = -1;
    for (let i = 0; i < c.bucketNo.length; i++) {
      if (c.bucketNo[i]! >= cutoff && (best < 0 || c.bucketMinPos[i]! < c.bucketMinPos[best]!)) best = i;
    }
    if (best < 0) return { restore_offset: input.offset, restore_line: input.line, restore_time: c.time };
    const time = input.ringTimeBefore[best]!;
    return { restore_offset: input.ringOffset[best]!, restore_line: c.bucketMinPos[best]! - 1, restore_time: time === -Infinity ? null : time };
  }

  /** Stream time as it was before a line to be re-read; the window's cutoff follows it, as `Evaluator.accept` sets it. */
  private setStreamTime(clock: StreamClock, time: number): void {
    clock.time = time;
    clock.cutoff = time === -Infinity ? -Infinity : Math.floor((time - this.evaluator.config.windowMs) / this.evaluator.config.resolutionMs);
  }

  private evaluate(input: Input, decision: Decision, lineNo: number, start: number): Promise<void> | undefined {
    this.counts.decisions++;
    const trip = this.accept(input, decision, lineNo, start, false);
    return trip === null ? undefined : this.emit(trip);
  }

  /** Evaluator.accept, noting where the line is and the stream time before it when it opens a bucket (what restorePoint reads). */
  private accept(input: Input, d: Decision, lineNo: number, start: number, restoring: boolean): Trip | null {
    const clock = input.clock;
    const before = clock.time;
    const trip = this.evaluator.accept(clock, d, lineNo, restoring);
    const bucket = Math.floor(d.timeMs / this.evaluator.config.resolutionMs);
    const n = clock.bucketNo.length;
    const i = ((bucket % n) + n) % n;
    if (clock.bucketMinPos[i] === lineNo && clock.bucketNo[i] === bucket) {
      input.ringOffset[i] = start;
      input.ringTimeBefore[i] = before;
    }
    return trip;
  }

  private badRecord(clock: StreamClock, r: { reason: BadRecordReason; message: string }, lineNo: number, raw: Buffer, key: string | undefined): BadLine {
    const b: BadLine = { file: clock.name, line: lineNo, reason: r.reason, message: r.message, raw, ...(key !== undefined ? { key } : {}) };
    this.bad(b);
    return b;
  }

  /** The largest stream time of any stream processed so far (what operators' window views are taken at). */
  noteTime(clock: StreamClock): void {
    if (clock.time > this.latestTime) this.latestTime = clock.time;
  }

  private progress(): void {
    if (++this.sinceProgress < PROGRESS_LINES) return;
    this.sinceProgress = 0;
    this.hooks.onProgress?.();
  }

  private bad(b: BadLine): void {
    this.counts.invalid++;
    this.counts.invalidByReason[b.reason] = (this.counts.invalidByReason[b.reason] ?? 0) + 1;
    this.hooks.onBadLine(b);
  }

  private async emit(trip: Trip): Promise<void> {
    const t = tripOutput(trip, this.evaluator.config.settings, this.chains, this.signer);
    if (t.held) {
      await this.sink.writeShadow(t.shadow);
      this.counts.held++;
      this.hooks.onHeld?.(t.shadow);
      return;
    }
    await this.sink.write(t.killEvent, t.addendum);
    this.counts.trips++;
    this.hooks.onTrip?.(trip, t.killEvent, t.addendum);
  }
}
