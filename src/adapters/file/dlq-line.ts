/**
 * The line embedded mode appends to `data_dir/dlq.ndjson` for a bad input line
 * (docs/spec.md#8-bad-records-and-the-dlq). The copy keeps the line's exact bytes, so what was refused
 * can be looked at, fixed and sent again byte for byte:
 *
 * `{"file", "line", "reason", "message", ...}` (a posted decision refused before it was written to
 * ingest.ndjson has `"file": "http:/v1/decisions"` and, instead of `line`, `index`: its place in the
 * request), and then
 * - `"key"`: the `KEY<TAB>` prefix, when the line had one (and is valid UTF-8);
 * - `"raw"`: the whole line as text (its `KEY<TAB>` prefix and a CR before its LF included), when it
 *   is valid UTF-8 and within the line limit;
 * - `"raw_base64"`: the line's bytes in base64, when they are not valid UTF-8 (text would replace them);
 * - `"sample_base64"` (its first 65,536 bytes), `"length"` (bytes) and `"sha256"` (hex, of all of it),
 *   when it is longer than the line limit and was never held in memory whole.
 * Exactly one of `raw`, `raw_base64` and the trio is there: every bad line is kept exactly or identified
 * exactly.
 */
import { isUtf8 } from 'node:buffer';
import type { TooLongLine } from './ndjson-reader.js';

export interface DlqInput {
  readonly file: string;
  readonly line: number;
  /** set for a posted decision never written to ingest.ndjson: its 0-based index in the request (then `line` is not written) */
  readonly index?: number;
  readonly reason: string;
  readonly message: string;
  /** the `KEY<TAB>` prefix's key, when the line had one */
  readonly key?: string;
  /** the whole line without its LF */
  readonly raw?: Buffer;
  readonly tooLong?: TooLongLine;
}

export function dlqLine(b: DlqInput): string {
  const head = { file: b.file, ...(b.index === undefined ? { line: b.line } : { index: b.index }), reason: b.reason, message: b.message };
  let entry: object;
  if (b.tooLong !== undefined) {
    entry = { ...head, sample_base64: b.tooLong.sample.toString('base64'), length: b.tooLong.length, sha256: b.tooLong.sha256 };
  } else if (b.raw === undefined) {
    entry = head;
  } else if (isUtf8(b.raw)) {
    entry = { ...head, ...(b.key === undefined ? {} : { key: b.key }), raw: b.raw.toString('utf8') };
  } else {
    entry = { ...head, raw_base64: b.raw.toString('base64') };
  }
  return JSON.stringify(entry) + '\n';
}
