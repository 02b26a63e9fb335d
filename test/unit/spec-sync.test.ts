/**
 * docs/spec.md is the normative text and schemas/ its machine-readable form: the field tables of the
 * spec and the properties of the schemas name the same fields, and the spec's bad-record reasons are
 * the decoder's, and its kill-event reasons the ledger reader's (as readme-sync does for the README's tables).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BAD_RECORD_REASONS } from '../../src/adapters/serde/decision-decoder.js';
import { KILL_EVENT_REJECT_REASONS } from '../../src/adapters/serde/kill-event-reader.js';
import { loadSchema } from '../../src/schemas.js';
import { ROOT } from '../helpers/cli.js';

const spec = readFileSync(join(ROOT, 'docs', 'spec.md'), 'utf8');

/** The first column's backquoted names of the first table after `heading` (a cell may name several). */
function tableNames(heading: string): string[] {
  const at = spec.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`docs/spec.md has no heading ${heading}`);
  const lines = spec.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    rows.push(l.split('|')[1]!);
  }
  return rows.flatMap((cell) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

const properties = (name: Parameters<typeof loadSchema>[0]): string[] =>
  Object.keys((loadSchema(name) as { properties: Record<string, unknown> }).properties).sort();

describe('docs/spec.md and schemas/ agree', () => {
  it('decision events: the fields of section 1 are the schema\'s', () => {
    expect(tableNames('### Fields').sort()).toEqual(properties('decision'));
  });

  it('kill events: the fields of section 3 are the schema\'s', () => {
    expect(tableNames('## 3. Kill events').sort()).toEqual(properties('killEvent'));
  });

  it('trace addenda: the fields of section 4 are the schema\'s', () => {
    expect(tableNames('## 4. Trace addenda').sort()).toEqual(properties('addendum'));
  });

  it('bad records: the reasons of section 8 are the decoder\'s', () => {
    expect(tableNames('## 8. Bad records and the DLQ').sort()).toEqual([...BAD_RECORD_REASONS].sort());
  });

  it('kill events read from the ledger: the reasons of section 3, in their order, are the reader\'s', () => {
    expect(tableNames('### Reading kill events')).toEqual([...KILL_EVENT_REJECT_REASONS]);
  });
});
