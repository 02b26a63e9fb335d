/**
 * NDJSON input, line by line, with 1-based line numbers. A line may carry a record key as
 * `KEY<TAB>JSON` (what `kcat -K '\t'` prints), so a dump of a Kafka topic replays with its keys.
 *
 * The per-line callback is synchronous so the common path allocates no promise per line; it returns a
 * promise only when it has I/O to wait for (a trip to write), and reading pauses until that settles.
 */
import { createReadStream } from 'node:fs';
import { addAbortSignal, type Readable } from 'node:stream';
import { KillSwitchError } from '../../core/errors.js';

export const DEFAULT_MAX_LINE_CHARS = 1 << 20;

export interface LineHandler {
  line(text: string, key: string | undefined, lineNo: number): Promise<void> | undefined;
  tooLong(lineNo: number, length: number): void;
}

export interface ReadOptions {
  readonly maxLineChars?: number;
  /** stops reading (SIGTERM): the line being handled finishes, the rest of the input is left unread */
  readonly signal?: AbortSignal;
}

function open(path: string): Readable {
  if (path === '-') {
    process.stdin.setEncoding('utf8');
    return process.stdin;
  }
  return createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 });
}

/** Reads every line of `path` ('-' = stdin). Resolves with the number of lines read. */
export async function readNdjson(path: string, handler: LineHandler, options: ReadOptions = {}): Promise<number> {
  const max = options.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;
  const signal = options.signal;
  const aborted = (): boolean => signal?.aborted === true; // a function: the answer changes while we await
  if (aborted()) return 0;
  const stream = signal === undefined ? open(path) : addAbortSignal(signal, open(path));
  let pending = '';
  let lineNo = 0;
  let skipping = false; // inside an over-long line, dropping until its newline
  let skippedLength = 0;

  const emit = (raw: string): Promise<void> | undefined => {
    lineNo++;
    const text = raw.charCodeAt(raw.length - 1) === 13 ? raw.slice(0, -1) : raw; // CRLF
    if (text.length === 0 || isBlank(text)) return undefined;
    if (text.charCodeAt(0) !== 123) { // not '{': maybe KEY<TAB>JSON
      const tab = text.indexOf('\t');
      if (tab > 0 && text.charCodeAt(tab + 1) === 123) return handler.line(text.slice(tab + 1), text.slice(0, tab), lineNo);
    }
    return handler.line(text, undefined, lineNo);
  };

  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      let start = 0;
      let nl = chunk.indexOf('\n');
      while (nl !== -1) {
        if (skipping) {
          lineNo++;
          handler.tooLong(lineNo, skippedLength + nl);
          skipping = false;
          skippedLength = 0;
        } else {
          const raw = pending.length > 0 ? pending + chunk.slice(start, nl) : chunk.slice(start, nl);
          pending = '';
          if (raw.length > max) {
            lineNo++;
            handler.tooLong(lineNo, raw.length);
          } else {
            const wait = emit(raw);
            if (wait !== undefined) await wait;
          }
        }
        start = nl + 1;
        nl = chunk.indexOf('\n', start);
      }
      if (skipping) {
        skippedLength += chunk.length - start;
      } else if (start < chunk.length) {
        pending += chunk.slice(start);
        if (pending.length > max) {
          skipping = true;
          skippedLength = pending.length;
          pending = '';
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
  } else if (pending.length > 0) {
    const wait = emit(pending);
    if (wait !== undefined) await wait;
  }
  return lineNo;
}

function isBlank(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}
