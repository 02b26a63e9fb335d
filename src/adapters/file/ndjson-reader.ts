/**
 * NDJSON input, line by line, with 1-based line numbers. A line may carry a record key as
 * `KEY<TAB>JSON` (what `kcat -K '\t'` prints), so a dump of a Kafka topic replays with its keys.
 *
 * Lines are handed over as bytes (slices of the read chunk, no string made): the decision decoder reads
 * the common shape straight from them (fast-decision.ts) and makes text only of what it declines. UTF-8
 * is therefore decoded per line, so a character split between two read chunks arrives whole; a line
 * that is not valid UTF-8 is never handed over as a line (docs/spec.md#1-decision-events): decoding
 * it would put U+FFFD where its bytes were, and that text could end up in signed evidence.
 *
 * Reading can start at a byte offset (a line start) with the number of lines before it, and stop at
 * one: embedded mode resumes an input where it stopped and re-reads the part a window still covers
 * (docs/spec.md#12-embedded-mode-files). `position` says where each line is in bytes.
 *
 * The per-line callback is synchronous so the common path allocates no promise per line; it returns a
 * promise only when it has I/O to wait for (a trip to write), and reading pauses until that settles.
 */
import { isUtf8 } from 'node:buffer';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { addAbortSignal, type Readable } from 'node:stream';
import { KillSwitchError } from '../../core/errors.js';

export const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** how much of an over-long line is kept as a sample (its length and SHA-256 cover all of it) */
export const TOO_LONG_SAMPLE_BYTES = 65_536;

export interface TooLongLine {
  /** bytes of the line without its LF */
  readonly length: number;
  /** its first TOO_LONG_SAMPLE_BYTES bytes (a copy) */
  readonly sample: Buffer;
  /** SHA-256 of all of its bytes, hex */
  readonly sha256: string;
}

export interface LineHandler {
  /**
   * One line: its bytes without the line end (and without a `KEY<TAB>` prefix, whose key comes as `key`).
   * The bytes stay as they are after the call; copy what must outlive it as a string.
   */
  line(bytes: Buffer, key: Buffer | undefined, lineNo: number): Promise<void> | undefined;
  /** a line longer than the limit, skipped without being held in memory */
  tooLong(lineNo: number, line: TooLongLine): void;
  /** a line that is not valid UTF-8 (`raw` as in LinePosition); without this handler such lines are skipped */
  invalidUtf8?(lineNo: number, raw: Buffer): void;
}

/** Where the line being handled is. One object, updated in place before each call to the handler. */
export interface LinePosition {
  /** byte offset of the line's first byte */
  start: number;
  /** byte offset just past its LF (the end of the input for a last line without one); once reading ends, where it ended */
  end: number;
  /** the whole line as read, without its LF: a CR before it and a `KEY<TAB>` prefix are kept. Valid during the call */
  raw: Buffer;
}

export interface ReadOptions {
  readonly maxLineBytes?: number;
  /** stops reading (SIGTERM): the line being handled finishes, the rest of the input is left unread */
  readonly signal?: AbortSignal;
  /** start at this byte offset, a line start, with `line` lines before it (files only) */
  readonly from?: { readonly offset: number; readonly line: number };
  /** stop before this byte offset, a line start (files only) */
  readonly to?: number;
  /** kept up to date for the handler */
  readonly position?: LinePosition;
}

const LF = 0x0a;
const CR = 0x0d;
const TAB = 0x09;
const OPEN_BRACE = 0x7b;
const EMPTY = Buffer.alloc(0);

function open(path: string, from: number, to: number | undefined): Readable {
  if (path === '-') return process.stdin;
  return createReadStream(path, { highWaterMark: 1 << 20, start: from, ...(to === undefined ? {} : { end: to - 1 }) });
}

/** Reads every line of `path` ('-' = stdin). Resolves with the number of the last line read. */
export async function readNdjson(path: string, handler: LineHandler, options: ReadOptions = {}): Promise<number> {
  const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const signal = options.signal;
  const aborted = (): boolean => signal?.aborted === true; // a function: the answer changes while we await
  const from = path === '-' ? { offset: 0, line: 0 } : options.from ?? { offset: 0, line: 0 };
  const to = path === '-' ? undefined : options.to;
  const pos: LinePosition = options.position ?? { start: 0, end: 0, raw: EMPTY };
  pos.start = from.offset;
  pos.end = from.offset;
  pos.raw = EMPTY;
  let lineNo = from.line;
  if (aborted() || (to !== undefined && to <= from.offset)) return lineNo;
  const stream = signal === undefined ? open(path, from.offset, to) : addAbortSignal(signal, open(path, from.offset, to));
  // the start of a line that began in an earlier chunk
  const pending: Buffer[] = [];
  let pendingLength = 0;
  let base = from.offset; // offset of the current chunk's first byte
  let lineStart = from.offset;
  // inside an over-long line, dropping (but hashing) until its newline
  let skipping: { hash: Hash; sample: Buffer; length: number } | undefined;

  const emit = (raw: Buffer, end: number): Promise<void> | undefined => {
    lineNo++;
    pos.start = lineStart;
    pos.end = end;
    pos.raw = raw;
    lineStart = end;
    const text = raw.length > 0 && raw[raw.length - 1] === CR ? raw.subarray(0, raw.length - 1) : raw; // CRLF
    if (isBlank(text)) return undefined;
    if (!isUtf8(raw)) {
      handler.invalidUtf8?.(lineNo, raw);
      return undefined;
    }
    if (text[0] !== OPEN_BRACE) { // not '{': maybe KEY<TAB>JSON
      const tab = text.indexOf(TAB);
      if (tab > 0 && text[tab + 1] === OPEN_BRACE) return handler.line(text.subarray(tab + 1), text.subarray(0, tab), lineNo);
    }
    return handler.line(text, undefined, lineNo);
  };
  const tooLong = (parts: readonly Buffer[], end: number): void => {
    lineNo++;
    let length = 0;
    const hash = skipping?.hash ?? createHash('sha256');
    for (const p of parts) {
      hash.update(p);
      length += p.length;
    }
    const sample = skipping?.sample ?? sampleOf(parts);
    length += skipping?.length ?? 0;
    pos.start = lineStart;
    pos.end = end;
    pos.raw = EMPTY;
    lineStart = end;
    skipping = undefined;
    handler.tooLong(lineNo, { length, sample, sha256: hash.digest('hex') });
  };

  try {
    for await (const bytes of stream as AsyncIterable<Buffer>) {
      let start = 0;
      let nl = bytes.indexOf(LF);
      while (nl !== -1) {
        const length = pendingLength + nl - start;
        if (skipping !== undefined || length > max) {
          tooLong([...pending, bytes.subarray(start, nl)], base + nl + 1);
        } else {
          const raw = pendingLength > 0 ? Buffer.concat([...pending, bytes.subarray(start, nl)], length) : bytes.subarray(start, nl);
          const wait = emit(raw, base + nl + 1);
          if (wait !== undefined) await wait;
        }
        pending.length = 0;
        pendingLength = 0;
        start = nl + 1;
        nl = bytes.indexOf(LF, start);
      }
      if (skipping !== undefined) {
        skipping.hash.update(bytes.subarray(start));
        skipping.length += bytes.length - start;
      } else if (start < bytes.length) {
        pending.push(bytes.subarray(start));
        pendingLength += bytes.length - start;
        if (pendingLength > max) {
          const hash = createHash('sha256');
          for (const p of pending) hash.update(p);
          skipping = { hash, sample: sampleOf(pending), length: pendingLength };
          pending.length = 0;
          pendingLength = 0;
        }
      }
      base += bytes.length;
    }
  } catch (err) {
    if (aborted()) return lineNo;
    const code = (err as NodeJS.ErrnoException).code;
    throw new KillSwitchError('INPUT_UNREADABLE', `${path}: cannot read input${code === undefined ? '' : ` (${code})`}`, { cause: err });
  } finally {
    if (path !== '-') stream.destroy();
  }
  if (aborted()) return lineNo;
  if (skipping !== undefined) {
    tooLong([], base);
  } else if (pendingLength > 0) {
    const wait = emit(Buffer.concat(pending, pendingLength), base);
    if (wait !== undefined) await wait;
  }
  pos.end = base;
  return lineNo;
}

/** The first TOO_LONG_SAMPLE_BYTES bytes of `parts`, copied (the read buffers are not ours to keep). */
function sampleOf(parts: readonly Buffer[]): Buffer {
  const out: Buffer[] = [];
  let n = 0;
  for (const p of parts) {
    if (n >= TOO_LONG_SAMPLE_BYTES) break;
    const take = p.subarray(0, TOO_LONG_SAMPLE_BYTES - n);
    out.push(take);
    n += take.length;
  }
  return Buffer.concat(out, n); // always a new buffer
}

/** Empty, or only spaces, tabs and carriage returns. */
function isBlank(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c !== 32 && c !== TAB && c !== CR) return false;
  }
  return true;
}
