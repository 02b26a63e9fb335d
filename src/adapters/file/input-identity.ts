/**
 * Is an input file still the one the journal recorded (docs/spec.md#12-embedded-mode-files)?
 *
 * An input is known by the SHA-256 of its first bytes (up to PREFIX_BYTES), not by device and inode:
 * a file copied, restored from a backup or moved to another volume keeps its content and loses its
 * inode, while a log rotated by rename-and-recreate keeps a name and gets a new content. Decisions carry
 * ids and times, so two different inputs do not start with the same 64 KiB. An input shorter than where
 * it was read to was truncated. Either way it is read again from its start, as a new input.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { JournalInput } from './journal.js';

export const PREFIX_BYTES = 64 * 1024;

export interface InputPrefix {
  readonly prefix_bytes: number;
  readonly prefix_sha256: string;
}

/** The identity of the first min(`upTo`, PREFIX_BYTES, size) bytes of `path`. */
export function inputPrefix(path: string, upTo: number): InputPrefix {
  const fd = openSync(path, 'r');
  try {
    const want = Math.min(upTo, PREFIX_BYTES, fstatSync(fd).size);
    return prefixOf(fd, want);
  } finally {
    closeSync(fd);
  }
}

function prefixOf(fd: number, bytes: number): InputPrefix {
  const buf = Buffer.alloc(bytes);
  let got = 0;
  while (got < bytes) {
    const n = readSync(fd, buf, got, bytes - got, got);
    if (n === 0) break;
    got += n;
  }
  return { prefix_bytes: got, prefix_sha256: createHash('sha256').update(buf.subarray(0, got)).digest('hex') };
}

export type InputComparison = { readonly same: true } | { readonly same: false; readonly why: string };

/** Is the file at `path` the input `recorded` describes (and if not, why)? undefined when it cannot be read now. */
export function compareInput(path: string, recorded: JournalInput): InputComparison | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    if (size < recorded.offset) return { same: false, why: `it is shorter (${size} bytes) than where it was read to (${recorded.offset})` };
    if (size < recorded.prefix_bytes || prefixOf(fd, recorded.prefix_bytes).prefix_sha256 !== recorded.prefix_sha256) return { same: false, why: 'its first bytes differ' };
    return { same: true };
  } finally {
    closeSync(fd);
  }
}
