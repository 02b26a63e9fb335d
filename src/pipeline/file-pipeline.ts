/**
 * Decisions from NDJSON files (or stdin) through decode -> evaluator -> documents -> sink, in order.
 * Shared by `killswitch replay` and the embedded mode of `killswitch run`; each input file is one
 * stream (its own stream time and addendum chain).
 */
import type { AddendumChains, KillEvent, ShadowEvent, TraceAddendum } from '../core/documents.js';
import type { Decision } from '../core/decision.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, type Evaluator, type StreamClock, type Trip } from '../core/evaluator.js';
import { futureTimestampError } from '../core/time.js';
import type { Signer } from '../ports/signer.js';
import type { TripSink } from '../ports/trip-sink.js';
import { type BadRecordReason, DecisionDecoder, keyText } from '../adapters/serde/decision-decoder.js';
import { type LinePosition, readNdjson, type TooLongLine } from '../adapters/file/ndjson-reader.js';
import { shadowDocument, tripDocuments } from './trip-documents.js';

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
}

export interface PipelineHooks {
  onBadLine(bad: BadLine): void;
  onTrip?(trip: Trip, killEvent: KillEvent, addendum: TraceAddendum): void;
  /** a trip the governor held: written as a shadow event, nothing blocked */
  onHeld?(shadow: ShadowEvent): void;
}

export interface PipelineCounts {
  lines: number;
  decisions: number;
  invalid: number;
  invalidByReason: Partial<Record<BadRecordReason, number>>;
  trips: number;
  held: number;
}

/** The stream name of an input: its path as given, `stdin` for '-'. */
export function streamName(path: string): string {
  return path === '-' ? 'stdin' : path;
}

export class FilePipeline {
  readonly counts: PipelineCounts = { lines: 0, decisions: 0, invalid: 0, invalidByReason: {}, trips: 0, held: 0 };
  latestTime = -Infinity;
  private readonly decoder: DecisionDecoder;
  private readonly maxFutureSkewMs: number;
  /** the arrival of a line read now: an NDJSON file carries none, so it is the reader's clock */
  private readonly now: () => number;

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

  async processFile(path: string, signal?: AbortSignal): Promise<void> {
    const name = streamName(path);
    const clock = this.evaluator.openStream(name, { file: name });
    const position: LinePosition = { start: 0, end: 0, raw: Buffer.alloc(0) };
    const lines = await readNdjson(path, {
      line: (bytes, key, lineNo) => {
        const r = this.decoder.decodeBytes(bytes, key ?? null);
        if (!r.ok) {
          this.badRecord(clock, r, lineNo, position.raw, keyText(key ?? null));
          return undefined;
        }
        const future = futureTimestampError(r.decision.timeMs, this.now(), this.maxFutureSkewMs);
        if (future !== null) {
          this.badRecord(clock, { reason: 'future_timestamp', message: future }, lineNo, position.raw, keyText(key ?? null));
          return undefined;
        }
        return this.evaluate(clock, r.decision, lineNo);
      },
      invalidUtf8: (lineNo, raw) => {
        this.bad({ file: name, line: lineNo, reason: 'invalid_utf8', message: 'the line is not valid UTF-8', raw });
      },
      tooLong: (lineNo, tooLong) => {
        this.bad({ file: name, line: lineNo, reason: 'too_large', message: `line of ${tooLong.length} bytes is longer than the limit`, tooLong });
      },
    }, { position, ...(signal === undefined ? {} : { signal }) });
    this.counts.lines += lines;
    this.noteTime(clock);
    this.evaluator.closeStream(clock);
  }

  /**
   * One line of a stream opened by the caller (`evaluator.openStream`), e.g. a decision posted over
   * HTTP and kept in a file of its own. Returns the bad line, or a promise when it tripped.
   */
  processLine(clock: StreamClock, text: string, key: string | undefined, lineNo: number): Promise<void> | BadLine | undefined {
    const r = this.decoder.decodeText(text, key);
    if (!r.ok) return this.badRecord(clock, r, lineNo, Buffer.from(text), key);
    const future = futureTimestampError(r.decision.timeMs, this.now(), this.maxFutureSkewMs);
    return future === null ? this.evaluate(clock, r.decision, lineNo) : this.badRecord(clock, { reason: 'future_timestamp', message: future }, lineNo, Buffer.from(text), key);
  }

  private evaluate(clock: StreamClock, decision: Decision, lineNo: number): Promise<void> | undefined {
    this.counts.decisions++;
    const trip = this.evaluator.accept(clock, decision, lineNo);
    return trip === null ? undefined : this.emit(trip);
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

  private bad(b: BadLine): void {
    this.counts.invalid++;
    this.counts.invalidByReason[b.reason] = (this.counts.invalidByReason[b.reason] ?? 0) + 1;
    this.hooks.onBadLine(b);
  }

  private async emit(trip: Trip): Promise<void> {
    if (trip.held !== undefined) {
      const shadow = shadowDocument({ ...trip, held: trip.held }, this.evaluator.config.settings, this.signer);
      await this.sink.writeShadow(shadow);
      this.counts.held++;
      this.hooks.onHeld?.(shadow);
      return;
    }
    const { killEvent, addendum } = tripDocuments(trip, this.evaluator.config.settings, this.chains, this.signer);
    await this.sink.write(killEvent, addendum);
    this.counts.trips++;
    this.hooks.onTrip?.(trip, killEvent, addendum);
  }
}
