/** The NDJSON reader on real files: chunk boundaries, multi-byte characters, keys, limits, abort. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readNdjson } from '../../src/adapters/file/ndjson-reader.js';
import { tempDir } from '../helpers/cli.js';

interface Seen { lines: { text: string; key: string | undefined; lineNo: number }[]; tooLong: [number, number][] }

async function read(content: string, maxLineBytes?: number): Promise<Seen & { total: number }> {
  const file = join(tempDir('ndjson-'), 'in.ndjson');
  writeFileSync(file, content);
  const seen: Seen = { lines: [], tooLong: [] };
  const total = await readNdjson(file, {
    line: (bytes, key, lineNo) => {
      seen.lines.push({ text: bytes.toString('utf8'), key: key?.toString('utf8'), lineNo });
      return undefined;
    },
    tooLong: (lineNo, length) => {
      seen.tooLong.push([lineNo, length]);
    },
  }, maxLineBytes === undefined ? {} : { maxLineBytes });
  return { ...seen, total };
}

describe('readNdjson', () => {
  it('keeps multi-byte characters intact across 1 MiB read chunks and numbers every line', async () => {
    // Lines of 'é' and emoji sized so that characters straddle the chunk boundaries.
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ i, v: (i % 2 === 0 ? 'é' : '\u{1F600}').repeat(70_001 + i) }));
    const r = await read(lines.join('\n') + '\n');
    expect(r.lines.map((l) => l.text)).toEqual(lines);
    expect(r.lines.map((l) => l.lineNo)).toEqual(lines.map((_, i) => i + 1));
    expect(r.total).toBe(40);
  });

  it('reads a last line without a newline, CRLF endings, blank lines (numbered, not delivered) and KEY<TAB> prefixes', async () => {
    const r = await read('{"a":1}\r\n\n  \nspiffe://td/x\t{"b":2}\n{"c":"tab\tinside"}\n{"d":4}');
    expect(r.lines).toEqual([
      { text: '{"a":1}', key: undefined, lineNo: 1 },
      { text: '{"b":2}', key: 'spiffe://td/x', lineNo: 4 },
      { text: '{"c":"tab\tinside"}', key: undefined, lineNo: 5 },
      { text: '{"d":4}', key: undefined, lineNo: 6 },
    ]);
    expect(r.total).toBe(6);
  });

  it('measures the line limit in bytes, multi-byte characters counted by their bytes', async () => {
    const r = await read(`{"v":"${'é'.repeat(60)}"}\n{"v":"${'e'.repeat(60)}"}\n`, 100);
    expect(r.tooLong).toEqual([[1, 128]]);
    expect(r.lines).toEqual([{ text: `{"v":"${'e'.repeat(60)}"}`, key: undefined, lineNo: 2 }]);
  });

  it('skips over-long lines, in one chunk or across many, and goes on with the right line numbers', async () => {
    const long = 'x'.repeat(3 * 1024 * 1024);
    const r = await read(`{"a":1}\n${long}\n{"b":2}\n${'y'.repeat(500)}\n{"c":3}\n`, 100);
    expect(r.tooLong).toEqual([[2, long.length], [4, 500]]);
    expect(r.lines.map((l) => [l.text, l.lineNo])).toEqual([['{"a":1}', 1], ['{"b":2}', 3], ['{"c":3}', 5]]);
  });

  it('stops when the abort signal fires and reports how far it got', async () => {
    const file = join(tempDir('ndjson-abort-'), 'in.ndjson');
    writeFileSync(file, Array.from({ length: 300_000 }, (_, i) => `{"i":${i}}`).join('\n') + '\n');
    const stop = new AbortController();
    let delivered = 0;
    const total = await readNdjson(file, {
      line: () => {
        delivered++;
        if (delivered === 10) stop.abort();
        return undefined;
      },
      tooLong: () => undefined,
    }, { signal: stop.signal });
    expect(delivered).toBeLessThan(300_000);
    expect(total).toBe(delivered);
  });

  it('waits for a promise returned by the handler before reading on', async () => {
    const file = join(tempDir('ndjson-await-'), 'in.ndjson');
    writeFileSync(file, '{"i":1}\n{"i":2}\n{"i":3}\n');
    const order: string[] = [];
    await readNdjson(file, {
      line: (bytes) => {
        const text = bytes.toString('utf8');
        order.push(`start ${text}`);
        if (text === '{"i":2}') {
          return new Promise<void>((resolve) => setTimeout(() => {
            order.push('slow write done');
            resolve();
          }, 30));
        }
        return undefined;
      },
      tooLong: () => undefined,
    });
    expect(order).toEqual(['start {"i":1}', 'start {"i":2}', 'slow write done', 'start {"i":3}']);
  });
});
