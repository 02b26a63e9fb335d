/**
 * `mkdir -p`, one level at a time. Node's recursive mkdir never returns on some paths under /proc (it
 * loops on the answers procfs gives), which turned a mistyped data_dir or --out into a hung process.
 * Throws the failing level's errno error (ENOTDIR names the part that is not a directory).
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function makeDirs(path: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let at = resolve(path); ; at = dirname(at)) {
    let isDir: boolean | undefined;
    try {
      isDir = statSync(at).isDirectory();
    } catch {
      isDir = undefined;
    }
    if (isDir === true) break;
    if (isDir === false) throw Object.assign(new Error(`${at} is not a directory`), { code: 'ENOTDIR', path: at });
    missing.push(at);
    if (dirname(at) === at) break;
  }
  for (const d of missing.reverse()) mkdirSync(d, { mode });
}
