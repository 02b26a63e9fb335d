/**
 * The `--out DIR` of `keys generate` and `tokens generate`: created if missing, with a one-line error
 * (exit 2) for anything in the way, never a stack trace. Directories are made one level at a time:
 * Node's recursive mkdir never returns on some paths of /proc (it loops on the answers procfs gives).
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { makeDirs } from '../adapters/file/make-dirs.js';
import { KillSwitchError } from '../core/errors.js';

/** Ensure `dir` is a directory we can create files in; `command` names the caller in messages. */
export function ensureOutDir(dir: string, command: string): void {
  if (kindOf(resolve(dir)) === 'other') throw outError(command, dir, `${dir} exists and is not a directory`);
  try {
    makeDirs(dir, 0o700);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw outError(command, dir, e.code === 'ENOTDIR' ? e.message : `cannot create ${e.path ?? dir} (${describe(err)})`);
  }
}

/** A write under the out dir that failed: one line naming the file and the reason. */
export function writeFailed(command: string, file: string, err: unknown): KillSwitchError {
  return new KillSwitchError('USAGE', `${command}: cannot write ${file} (${describe(err)})`);
}

function kindOf(path: string): 'directory' | 'other' | 'missing' {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'other';
  } catch {
    return 'missing';
  }
}

function outError(command: string, dir: string, why: string): KillSwitchError {
  return new KillSwitchError('USAGE', `${command}: --out ${dir}: ${why}`);
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const words: Record<string, string> = { EACCES: 'permission denied', EPERM: 'not permitted', EEXIST: 'already exists', ENOENT: 'no such file or directory', EROFS: 'read-only file system', ENOSPC: 'no space left' };
  return e.code === undefined ? e.message : `${e.code}: ${words[e.code] ?? e.message}`;
}
