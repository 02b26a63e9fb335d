/** The NDJSON reader on real files: chunk boundaries, multi-byte characters, keys, limits, abort. */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type LinePosition, readNdjson, type TooLongLine } from '../../src/adapters/file/ndjson-reader.js';
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
    tooLong: (lineNo, line) => {
      seen.tooLong.push([lineNo, line.length]);
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

  it('never hands over a line that is not valid UTF-8 as a line: the invalidUtf8 handler gets its bytes, and without one it is skipped', async () => {
    const file = join(tempDir('ndjson-utf8-'), 'in.ndjson');
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('"}\r')]);
    writeFileSync(file, Buffer.concat([Buffer.from('{"ok":1}\n'), bad, Buffer.from('\n{"b":"é"}\n'), Buffer.from([0xc3]), Buffer.from('\n')]));
    const lines: [number, string][] = [];
    const invalid: [number, Buffer][] = [];
    await readNdjson(file, {
      line: (bytes, _key, lineNo) => {
        lines.push([lineNo, bytes.toString('utf8').slice(0, 10)]);
        return undefined;
      },
      tooLong: () => undefined,
      invalidUtf8: (lineNo, raw) => invalid.push([lineNo, Buffer.from(raw)]),
    });
    expect(invalid).toEqual([[2, bad], [4, Buffer.from([0xc3])]]);
    expect(lines).toEqual([[1, '{"ok":1}'], [3, '{"b":"é"}']]);
    const skipped: number[] = [];
    await readNdjson(file, { line: (_b, _k, lineNo) => void skipped.push(lineNo), tooLong: () => undefined });
    expect(skipped).toEqual([1, 3]);
  });

  it('gives an over-long line its length, first 65,536 bytes and SHA-256, in one chunk or across many', async () => {
    const file = join(tempDir('ndjson-long-'), 'in.ndjson');
    const short = Buffer.concat([Buffer.from([0xff]), Buffer.alloc(199_999, 0x62)]);
    const long = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < long.length; i++) long[i] = (i * 7919) % 251;
    long.forEach((b, i) => { if (b === 0x0a) long[i] = 0x0b; });
    writeFileSync(file, Buffer.concat([Buffer.from('{"a":1}\n'), short, Buffer.from('\n'), long, Buffer.from('\n{"c":3}\n')]));
    const seen: [number, TooLongLine][] = [];
    await readNdjson(file, { line: () => undefined, tooLong: (lineNo, l) => void seen.push([lineNo, l]) }, { maxLineBytes: 100_000 });
    const expected = (b: Buffer): TooLongLine => ({ length: b.length, sample: b.subarray(0, 65_536), sha256: createHash('sha256').update(b).digest('hex') });
    expect(seen).toEqual([[2, expected(short)], [3, expected(long)]]);
  });

  it('says where each line is in bytes, and reads from one line start up to another with the line numbers of the whole file', async () => {
    const file = join(tempDir('ndjson-range-'), 'in.ndjson');
    const text = '{"a":1}\n\n{"b":"é"}\r\n{"c":3}\n{"d":4}';
    writeFileSync(file, text);
    const at: [number, number, number, string][] = [];
    const position: LinePosition = { start: 0, end: 0, raw: Buffer.alloc(0) };
    const read = (o: { from?: { offset: number; line: number }; to?: number }): Promise<number> => readNdjson(file, {
      line: (_b, _k, lineNo) => void at.push([lineNo, position.start, position.end, position.raw.toString('utf8')]),
      tooLong: () => undefined,
    }, { ...o, position });
    expect(await read({})).toBe(5);
    expect(at).toEqual([[1, 0, 8, '{"a":1}'], [3, 9, 21, '{"b":"é"}\r'], [4, 21, 29, '{"c":3}'], [5, 29, 36, '{"d":4}']]);
    expect(position.end).toBe(Buffer.byteLength(text));
    at.length = 0;
    expect(await read({ from: { offset: 9, line: 2 }, to: 29 })).toBe(4);
    expect(at.map(([n]) => n)).toEqual([3, 4]);
    expect(position.end).toBe(29);
    at.length = 0;
    expect(await read({ from: { offset: 29, line: 4 } })).toBe(5);
    expect(at.map(([n, s]) => [n, s])).toEqual([[5, 29]]);
  });
});
