/** Bad input never stops the stream: every bad line is reported with file and line, counted, skipped. */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFile, decision, type KillEventLine, ndjson, parseLines, repeat, runCli, signedConfigFile, tempDir, writeIn } from '../helpers/cli.js';

const A = 'spiffe://example.org/agent/a';

describe('killswitch replay: bad input lines', () => {
  const dir = tempDir('bad-input-');
  const cfg = configFile(dir);
  const good = repeat(A, 'deny', 10, 0);
  const bad: [string, string, RegExp][] = [
    ['invalid JSON', '{"decision_id": "x", ', /invalid_json: /],
    ['schema-invalid object (no occurred_at)', JSON.stringify({ decision_id: 'x1', agent_id: A, decision: 'deny' }), /schema_invalid: \/occurred_at: is required/],
    ['schema-invalid type', JSON.stringify({ decision_id: 7, agent_id: A, decision: 'deny', occurred_at: '2026-11-23T09:00:00Z' }), /schema_invalid: \/decision_id: must be string/],
    ['bad SPIFFE ID', decision('spiffe://Example.org/agent/a', 'deny', 1), /invalid_spiffe_id: \/agent_id: not a valid SPIFFE ID: trust domain characters/],
    ['SPIFFE ID with a trailing slash', decision('spiffe://example.org/agent/', 'deny', 1), /invalid_spiffe_id: .*trailing slash/],
    ['unknown decision', decision(A, 'maybe', 1), /unknown_decision: \/decision: unknown decision "maybe"/],
    ['key / agent_id mismatch', `spiffe://example.org/agent/other\t${decision(A, 'deny', 1)}`, /key_mismatch: record key "spiffe:\/\/example.org\/agent\/other" differs from agent_id/],
    ['a JSON array instead of an object', '[1,2,3]', /schema_invalid: \/: must be object/],
  ];

  it.each(bad)('reports %s with file and line, skips it, and still trips on the good lines', (_name, line, reason) => {
    // the bad line sits in the middle of ten denies that trip on the tenth
    const lines = [...good.slice(0, 5), line, ...good.slice(5)];
    const input = writeIn(dir, `bad-${Math.random().toString(36).slice(2)}.ndjson`, ndjson(lines));
    const r = runCli(['replay', '--config', cfg, input]);
    expect(r.status).toBe(0);
    const reported = r.stderr.trim().split('\n');
    expect(reported).toHaveLength(1);
    expect(reported[0]!.startsWith(`${input}:6: `)).toBe(true);
    expect(reported[0]).toMatch(reason);
    const kills = parseLines<KillEventLine>(r.stdout);
    expect(kills).toHaveLength(1);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10, source: { line_from: 1, line_to: 11 } });
  });

  it('accepts a matching KEY<TAB>JSON line (kcat -K "\\t" format) and blank / CRLF lines', () => {
    const lines = [...good.slice(0, 3).map((l) => `${A}\t${l}`), '', '   ', ...good.slice(3).map((l) => `${l}\r`)];
    const input = writeIn(dir, 'keyed.ndjson', ndjson(lines));
    const r = runCli(['replay', '--config', cfg, input]);
    expect(r.stderr).toBe('');
    expect(parseLines<KillEventLine>(r.stdout)).toHaveLength(1);
  });

  it('reports every bad line of a file and counts them all', () => {
    const lines = ['nope', ...good.slice(0, 4), '{}', ...good.slice(4), '{"also": "bad"}'];
    const input = writeIn(dir, 'many-bad.ndjson', ndjson(lines));
    const r = runCli(['replay', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stderr.trim().split('\n').map((l) => l.split(': ')[0])).toEqual([`${input}:1`, `${input}:6`, `${input}:13`]);
    expect(parseLines<KillEventLine>(r.stdout)).toHaveLength(1);
  });

  it('skips an over-long line without reading it into memory whole, and goes on', () => {
    const huge = `{"decision_id":"${'x'.repeat(2 * 1024 * 1024)}"}`;
    const input = writeIn(dir, 'huge.ndjson', ndjson([...good.slice(0, 5), huge, ...good.slice(5)]));
    const r = runCli(['replay', '--config', cfg, input]);
    expect(r.stderr).toMatch(new RegExp(`^${input}:6: too_large: `));
    expect(parseLines<KillEventLine>(r.stdout)).toHaveLength(1);
  });

  it('reads stdin when no input is named, reporting it as "stdin"', () => {
    const r = runCli(['replay', '--config', cfg], { input: ndjson(['oops', ...good]) });
    expect(r.stderr).toMatch(/^stdin:1: invalid_json: /);
    expect(parseLines<KillEventLine>(r.stdout)[0]!.evidence.source).toEqual({ file: 'stdin', line_from: 2, line_to: 11 });
  });

  it('exits 2 with one line when an input file does not exist', () => {
    const r = runCli(['replay', '--config', cfg, `${dir}/missing.ndjson`]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`killswitch: ${dir}/missing.ndjson: cannot read input (ENOENT)\n`);
  });

  it('trips the same on lines read as bytes and lines that need the full decoder, past the first 1 MiB read, with the right line numbers', () => {
    const B = 'spiffe://example.org/agent/b';
    const lines: string[] = [];
    let bytes = 0;
    const push = (l: string): void => {
      lines.push(l);
      bytes += Buffer.byteLength(l) + 1;
    };
    // well-behaved filler up to just before the reader's first 1 MiB chunk ends
    while (bytes < (1 << 20) - 200) push(decision(B, 'allow', 0, { session_id: 'b-1' }));
    // ten denies of A in the shapes a producer may send, the first of them across the chunk boundary
    // with a two-byte character right on it
    const first = decision(A, 'deny', 1, { tool_name: 'ë' }); // ends in ë"}
    const pad = (1 << 20) - 1 - (bytes + Buffer.byteLength(first) - 4);
    const shapes = [
      first.replace('"ë"', `"${'w'.repeat(pad)}ë"`), // non-ASCII: the full decoder
      decision(A, 'deny', 2).replace('"deny"', '"\\u0064eny"'), // an escape: the full decoder
      JSON.stringify(JSON.parse(decision(A, 'deny', 3)), null, 1).replace(/\n/g, ' '), // whitespace everywhere
      decision(A, 'deny', 4, { attempt: 3 }), // a number in an unknown field: the full decoder
      decision(A, 'deny', 5).replace('spiffe://', 'spiffe:\\/\\/'), // escaped slashes in agent_id
      `${A}\t${decision(A, 'deny', 6)}`, // keyed
      `${decision(A, 'deny', 7)}\r`, // CRLF
      decision(A, 'deny', 8),
      decision(A, 'deny', 9),
      decision(A, 'deny', 10),
    ];
    const firstA = lines.length + 1;
    shapes.slice(0, 5).forEach(push);
    push(`spiffe://example.org/agent/other\t${decision(A, 'deny', 5.5)}`); // bad: key mismatch
    shapes.slice(5).forEach(push);
    const input = writeIn(dir, 'shapes.ndjson', ndjson(lines));
    expect(readFileSync(input).subarray((1 << 20) - 1, (1 << 20) + 1).toString('utf8')).toBe('ë'); // split between two reads
    const r = runCli(['replay', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^${input}:${firstA + 5}: key_mismatch: `))]);
    const kills = parseLines<KillEventLine>(r.stdout);
    expect(kills.map((k) => k.agent_id)).toEqual([A]);
    expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10, source: { line_from: 1, line_to: lines.length } });
  });
});

/** Lines of a file as bytes, without their LF. */
function byteLines(file: string): Buffer[] {
  const all = readFileSync(file);
  const out: Buffer[] = [];
  let start = 0;
  for (let nl = all.indexOf(0x0a); nl !== -1; nl = all.indexOf(0x0a, start)) {
    out.push(all.subarray(start, nl));
    start = nl + 1;
  }
  return out;
}

interface DlqLine {
  file: string;
  line: number;
  reason: string;
  message: string;
  key?: string;
  raw?: string;
  raw_base64?: string;
  sample_base64?: string;
  length?: number;
  sha256?: string;
}

describe('killswitch run: bad lines keep their bytes (data_dir/dlq.ndjson)', () => {
  const invalidUtf8 = (decisionId: Buffer): Buffer => Buffer.concat([
    Buffer.from('{"decision_id":"'), decisionId, Buffer.from(`","agent_id":"${A}","decision":"deny","occurred_at":"2026-11-23T09:00:09Z"}`),
  ]);

  it('keeps each bad line byte for byte: as text, in base64 when it is not UTF-8, and a sample, length and SHA-256 when it is over-long', () => {
    const dir = tempDir('dlq-bytes-');
    const cfg = signedConfigFile(dir);
    const good = repeat(A, 'deny', 10, 0).map((l) => Buffer.from(l));
    const bad = [
      Buffer.from('spiffe://example.org/agent/other\t{"decision_id": "é ✓", "oops"\r'), // keyed, non-ASCII, CRLF
      invalidUtf8(Buffer.from([0x64, 0xff, 0xfe, 0xc3])), // not UTF-8: text would replace these bytes
      Buffer.concat([Buffer.from([0xff, 0x00, 0x7b]), Buffer.alloc(1_100_000, 0x61), Buffer.from([0xe2, 0x82])]), // over-long, not UTF-8 either
    ];
    const input = join(dir, 'in.ndjson');
    writeFileSync(input, Buffer.concat([...good.slice(0, 3), bad[0]!, ...good.slice(3, 6), bad[1]!, ...good.slice(6), bad[2]!].flatMap((l) => [l, Buffer.from('\n')])));
    const r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`BLOCKED ${A}`);
    const lines = byteLines(input);
    const dlq = parseLines<DlqLine>(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(dlq.map((d) => [d.line, d.reason])).toEqual([[4, 'invalid_json'], [8, 'invalid_utf8'], [13, 'too_large']]);

    expect(dlq[0]).toMatchObject({ file: input, key: 'spiffe://example.org/agent/other' });
    expect(Buffer.from(dlq[0]!.raw!, 'utf8')).toEqual(lines[3]);
    expect(dlq[1]!.raw).toBeUndefined();
    expect(Buffer.from(dlq[1]!.raw_base64!, 'base64')).toEqual(lines[7]);
    expect(dlq[2]!.raw).toBeUndefined();
    expect(dlq[2]!.raw_base64).toBeUndefined();
    expect(dlq[2]!.length).toBe(lines[12]!.length);
    expect(dlq[2]!.sha256).toBe(createHash('sha256').update(lines[12]!).digest('hex'));
    expect(Buffer.from(dlq[2]!.sample_base64!, 'base64')).toEqual(lines[12]!.subarray(0, 65_536));
  });

  it('never lets a line that is not UTF-8 into signed evidence: it is invalid_utf8, and the trip waits for a valid decision', () => {
    const dir = tempDir('dlq-utf8-');
    const cfg = signedConfigFile(dir);
    // nine denies, a tenth whose decision_id is not UTF-8, then a valid tenth
    const input = join(dir, 'in.ndjson');
    writeFileSync(input, Buffer.concat([
      Buffer.from(ndjson(repeat(A, 'deny', 9, 0))), invalidUtf8(Buffer.from([0x78, 0xc0, 0xaf])), Buffer.from('\n'), Buffer.from(ndjson(repeat(A, 'deny', 1, 10))),
    ]));
    const replay = runCli(['replay', '--config', cfg, input]);
    expect(replay.stderr).toBe(`${input}:10: invalid_utf8: the line is not valid UTF-8\n`);
    const replayed = parseLines<KillEventLine>(replay.stdout);
    expect(replayed.map((k) => k.evidence.source)).toEqual([{ file: input, line_from: 1, line_to: 11 }]);

    const r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    const kills = readFileSync(join(dir, 'data/kills.ndjson'), 'utf8');
    const addenda = readFileSync(join(dir, 'data/addenda.ndjson'), 'utf8');
    expect(parseLines<KillEventLine>(kills).map((k) => k.evidence.source)).toEqual([{ file: input, line_from: 1, line_to: 11 }]);
    for (const doc of [kills, addenda, replay.stdout]) expect(doc).not.toMatch(/\\ufffd|\uFFFD/i);
    const dlq = parseLines<DlqLine>(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(dlq).toEqual([{ file: input, line: 10, reason: 'invalid_utf8', message: 'the line is not valid UTF-8', raw_base64: byteLines(input)[9]!.toString('base64') }]);
  });
});
