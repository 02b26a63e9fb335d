/** The README's tables are documentation users rely on: these tests fail when code and README drift. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';
import { BAD_RECORD_REASONS } from '../../src/adapters/serde/decision-decoder.js';
import { loadSchema } from '../../src/schemas.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** First-column backticked names of the markdown table under `heading`, until the next table ends. */
function tableKeys(afterHeading: string, firstColumn: string): string[] {
  const start = readme.indexOf(afterHeading);
  expect(start, `README has "${afterHeading}"`).toBeGreaterThan(-1);
  const lines = readme.slice(start).split('\n');
  const header = lines.findIndex((l) => l.startsWith(`| ${firstColumn} |`));
  const rows: string[] = [];
  for (const l of lines.slice(header + 2)) {
    if (!l.startsWith('|')) break;
    rows.push(l.split('|')[1]!.trim());
  }
  return rows;
}

interface SchemaNode { properties?: Record<string, SchemaNode>; items?: SchemaNode; $ref?: string }

function leafKeys(node: SchemaNode, prefix: string, defs: Record<string, SchemaNode>): string[] {
  const resolved = node.$ref !== undefined ? defs[node.$ref.replace('#/$defs/', '')] ?? node : node;
  const props = resolved.properties ?? resolved.items?.properties;
  if (props === undefined) return [prefix];
  return Object.entries(props).flatMap(([k, v]) => leafKeys(v, prefix === '' ? k : `${prefix}.${k}`, defs));
}

describe('README tables match the code', () => {
  it('lists every error code, and only those, with its HTTP status', () => {
    const rows = tableKeys('## Error codes', 'code');
    expect(rows.map((r) => r.replaceAll('`', '')).sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${code}\` |`))!;
      expect(row.split('|')[2]!.trim(), code).toBe(spec.status === undefined ? '' : String(spec.status));
      expect(row.split('|')[3]!.trim(), code).toBe(spec.retryable ? 'yes' : 'no');
    }
  });

  it('lists every bad-record reason', () => {
    const rows = tableKeys('Bad input lines are not errors', 'reason');
    expect(rows.map((r) => r.replaceAll('`', '')).sort()).toEqual([...BAD_RECORD_REASONS].sort());
  });

  it('documents every configuration key of schemas/config.schema.json', () => {
    const schema = loadSchema('config') as SchemaNode & { $defs?: Record<string, SchemaNode> };
    const keys = leafKeys(schema, '', schema.$defs ?? {});
    const documented = tableKeys('## Configuration', 'key').flatMap((cell) => {
      // `http.tokens[]` documents its item keys; `a.b.username`, `.password` documents both
      const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      const first = names[0]!.replace('[]', '');
      return names.map((n) => (n.startsWith('.') ? first.replace(/\.[^.]+$/, '') + n : n.replace('[]', '')));
    });
    const missing = keys.filter((k) => !documented.some((d) => d === k || k.startsWith(`${d}.`)));
    expect(missing).toEqual([]);
  });
});
