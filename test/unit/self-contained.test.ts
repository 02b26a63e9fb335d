/**
 * The repository stands on its own: docs/spec.md is the normative text, and no file sends a reader to
 * documents that live outside the repository (the design notes the project started from).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const OUTSIDE = /\b(?:CONTRACTS|ARCHITECTURE|STYLE|DEVELOPERS)\.md\b|\.\.\/shared\//;

describe('the repository is self-contained', () => {
  it('no tracked file cites a document outside the repository', () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter((f) => f !== '' && f !== 'test/unit/self-contained.test.ts');
    expect(files.length).toBeGreaterThan(100);
    const citing: string[] = [];
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(join(ROOT, f), 'utf8');
      } catch {
        continue; // deleted in the work tree
      }
      text.split('\n').forEach((line, i) => {
        if (OUTSIDE.test(line)) citing.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(citing).toEqual([]);
  });
});
