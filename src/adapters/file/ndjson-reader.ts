/**
 * NDJSON input, line by line, with 1-based line numbers. A line may carry a record key as
 * `KEY<TAB>JSON` (what `kcat -K '\t'` prints), so a dump of a Kafka topic replays with its keys.
 *
 * Lines are handed over as bytes (slices of the read chunk, no string made): the decision decoder reads
 * the common shape straight from them (fast-decision.ts) and makes text only of what it declines. UTF-8
 * is therefore decoded per line, so a character split between two read chunks arrives whole.
 *
 * The per-line callback is synchronous so the common path allocates no promise per line; it returns a
 * promise only when it has I/O to wait for (a trip to write), and reading pauses until that settles.
 */
import { createReadStream } from 'node:fs';
import { addAbortSignal, type Readable } from 'node:stream';
import { KillSwitchError } from '../../core/errors.js';

export const DEFAULT_MAX_LINE_BYTES = 1 << 20;

export interface LineHandler {
  /**
   * One line: its bytes without the line end (and without a `KEY<TAB>` prefix, whose key comes as `key`).
   * The bytes stay as they are after the call; copy what must outlive it as a string.
   */
  line(bytes: Buffer, key: Buffer | undefined, lineNo: number): Promise<void> | undefined;
  /** a line longer than the limit, skipped without being held in memory; `length` in bytes */
  tooLong(lineNo: number, length: number): void;
}

export interface ReadOptions {
  readonly maxLineBytes?: number;
  /** stops reading (SIGTERM): the line being handled finishes, the rest of the input is left unread */
  readonly signal?: AbortSignal;
}

const LF = 0x0a;
const CR = 0x0d;
const TAB = 0x09;
const OPEN_BRACE = 0x7b;

function open(path: string): Readable {
  return path === '-' ? process.stdin : createReadStream(path, { highWaterMark: 1 << 20 });
}

/** Reads every line of `path` ('-' = stdin). Resolves with the number of lines read. */
export async function readNdjson(path: string, handler: LineHandler, options: ReadOptions = {}): Promise<number> {
  const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const signal = options.signal;
  const aborted = (): boolean => signal?.aborted === true; // a function: the answer changes while we await
  if (aborted()) return 0;
  const stream = signal === undefined ? open(path) : addAbortSignal(signal, open(path));
  // the start of a line that began in an earlier chunk
  const pending: Buffer[] = [];
  let pendingLength = 0;
  let lineNo = 0;
  let skipping = false; // inside an over-long line, dropping until its newline
  let skippedLength = 0;

  const emit = (raw: Buffer): Promise<void> | undefined => {
    lineNo++;
    const text = raw.length > 0 && raw[raw.length - 1] === CR ? raw.subarray(0, raw.length - 1) : raw; // CRLF
    if (isBlank(text)) return undefined;
    if (text[0] !== OPEN_BRACE) { // not '{': maybe KEY<TAB>JSON
      const tab = text.indexOf(TAB);
      if (tab > 0 && text[tab + 1] === OPEN_BRACE) return handler.line(text.subarray(tab + 1), text.subarray(0, tab), lineNo);
    }
    return handler.line(text, undefined, lineNo);
  };

  try {
    for await (const bytes of stream as AsyncIterable<Buffer>) {
      let start = 0;
      let nl = bytes.indexOf(LF);
      while (nl !== -1) {
        const length = pendingLength + nl - start;
        if (skipping) {
          lineNo++;
          handler.tooLong(lineNo, skippedLength + nl);
          skipping = false;
          skippedLength = 0;
        } else if (length > max) {
          lineNo++;
          handler.tooLong(lineNo, length);
        } else {
          const raw = pendingLength > 0 ? Buffer.concat([...pending, bytes.subarray(start, nl)], length) : bytes.subarray(start, nl);
          const wait = emit(raw);
          if (wait !== undefined) await wait;
        }
        pending.length = 0;
        pendingLength = 0;
        start = nl + 1;
        nl = bytes.indexOf(LF, start);
      }
      if (skipping) {
        skippedLength += bytes.length - start;
      } else if (start < bytes.length) {
        pending.push(bytes.subarray(start));
        pendingLength += bytes.length - start;
        if (pendingLength > max) {
          skipping = true;
          skippedLength = pendingLength;
          pending.length = 0;
          pendingLength = 0;
        }
      }
    }
  } catch (err) {
    if (aborted()) return lineNo;
    const code = (err as NodeJS.ErrnoException).code;
    throw new KillSwitchError('INPUT_UNREADABLE', `${path}: cannot read input${code === undefined ? '' : ` (${code})`}`, { cause: err });
  } finally {
    if (path !== '-') stream.destroy();
  }
  if (skipping) {
    lineNo++;
    handler.tooLong(lineNo, skippedLength);
  } else if (pendingLength > 0) {
    const wait = emit(Buffer.concat(pending, pendingLength));
    if (wait !== undefined) await wait;
  }
  return lineNo;
}

/** Empty, or only spaces, tabs and carriage returns. */
function isBlank(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c !== 32 && c !== TAB && c !== CR) return false;
  }
  return true;
}
