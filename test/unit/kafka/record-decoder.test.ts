/**
 * The numeric record decoder (src/adapters/kafka/record-decoder.ts) stands in for kafkajs's own inside
 * kafkajs's fetch path: whatever bytes it is given, it must return what kafkajs's decoder returns, field
 * for field, leave the decoder at the same place, and fail where kafkajs's fails. Records are made by
 * kafkajs's own record encoder, then damaged; kafkajs's decoder is a fresh copy of its module, whatever
 * this process installed.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { numericRecordDecoder, type KafkajsDecoder, type RecordBatchContext, type RecordDecoder } from '../../../src/adapters/kafka/record-decoder.js';
import { ROOT } from '../../helpers/cli.js';
import { seededRandom } from '../../helpers/random.js';

const require = createRequire(import.meta.url);
const RECORD_DECODER = require.resolve('kafkajs/src/protocol/recordBatch/record/v0/decoder.js');
type DecoderClass = new (buffer: Buffer) => KafkajsDecoder;
const Decoder = require('kafkajs/src/protocol/decoder.js') as DecoderClass;
type HeaderValue = Buffer | string | (Buffer | string)[];
const encodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: {
  offsetDelta?: number; timestampDelta?: number | bigint; key: Buffer | null; value: Buffer | null; headers?: Record<string, HeaderValue>;
}) => { buffer: Buffer };

/** kafkajs's record decoder as its file defines it (the module cache may hold ours in its place). */
function kafkajsRecordDecoder(): RecordDecoder {
  const cached = require.cache[RECORD_DECODER];
  delete require.cache[RECORD_DECODER];
  try {
    return require(RECORD_DECODER) as RecordDecoder;
  } finally {
    if (cached !== undefined) require.cache[RECORD_DECODER] = cached;
  }
}
const kafkajsDecoder = kafkajsRecordDecoder();

/** A record's body as kafkajs's record-batch decoder hands it over: the bytes after the length varint. */
function body(encoded: Buffer): Buffer {
  const d = new Decoder(encoded);
  const b = d.readVarIntBytes();
  if (b === null) throw new Error('no body');
  return b;
}

type Outcome = { record: unknown; offset: number } | { error: string };

function run(decode: RecordDecoder, bytes: Buffer, context: RecordBatchContext | undefined): Outcome {
  const d = new Decoder(bytes);
  try {
    const record = decode(d, context);
    return { record, offset: d.offset };
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

const contexts: RecordBatchContext[] = [
  { firstOffset: '0', firstTimestamp: '1796000000000', maxTimestamp: '1796000000500', timestampType: 0, magicByte: 2, isControlBatch: false },
  { firstOffset: '17400', firstTimestamp: '1796000000000', maxTimestamp: '1796000009999', timestampType: 1, magicByte: 2, isControlBatch: false },
  { firstOffset: '123', firstTimestamp: '-1', maxTimestamp: '-1', timestampType: 0, magicByte: 2 },
  { firstOffset: '9007199254740990', firstTimestamp: '9007199254740990', maxTimestamp: '0', timestampType: 0, magicByte: 2, isControlBatch: true },
  { firstOffset: '9223372036854775000', firstTimestamp: '-9223372036854775000', maxTimestamp: '', timestampType: 1, magicByte: 2 },
  // a delta beyond 2^53 that lands back in the safe range: exact only in 64-bit arithmetic
  { firstOffset: '5', firstTimestamp: '-9007199254740990', maxTimestamp: '0', timestampType: 0, magicByte: 2 },
  { firstOffset: 'x', firstTimestamp: '12', timestampType: 0 },
  { firstTimestamp: '12' },
  {},
];

function randomRecord(rnd: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const timestampDelta = pick([0, 1, -1, 63, -64, 64, 500, -500, 2 ** 20, 2 ** 47, -(2 ** 48), 2 ** 48, 2 ** 55, 2n ** 53n + 3n, 2n ** 62n, -(2n ** 63n)]);
  const headers = pick<Record<string, HeaderValue>>([
    {},
    {},
    { trace: 'abc' },
    { a: ['1', '2'], b: bytes(3) },
    { ['__proto__']: 'p', constructor: 'c' },
  ]);
  return encodeRecord({
    offsetDelta: pick([0, 1, 5, 63, 64, 10_000, 2 ** 30]),
    timestampDelta,
    key: pick([null, Buffer.alloc(0), Buffer.from('spiffe://example.org/ns/a/sa/b'), bytes(40)]),
    value: pick([null, Buffer.alloc(0), Buffer.from('{"agent_id":"spiffe://example.org/a","verdict":"deny"}'), bytes(300)]),
    headers,
  }).buffer;
}

describe('numeric record decoder', () => {
  const numeric = numericRecordDecoder(kafkajsDecoder);

  it("returns kafkajs's record for every record kafkajs's encoder writes, in every kind of batch", () => {
    const rnd = seededRandom(7);
    let numericTaken = 0;
    for (let i = 0; i < 4000; i++) {
      const bytes = body(randomRecord(rnd));
      const context = contexts[i % contexts.length]!;
      const want = run(kafkajsDecoder, bytes, context);
      expect(run(numeric, bytes, context), `record ${i}`).toEqual(want);
      if ('record' in want) numericTaken++;
    }
    expect(numericTaken).toBeGreaterThan(2000);
  });

  it('the offsets and timestamps of a batch of ordinary records, in numbers', () => {
    const context = contexts[0]!;
    const record = run(numeric, body(encodeRecord({ offsetDelta: 7, timestampDelta: 42, key: Buffer.from('k'), value: Buffer.from('v') }).buffer), context);
    expect(record).toMatchObject({ record: { offset: '7', timestamp: '1796000000042', headers: {}, isControlRecord: false, key: Buffer.from('k') } });
    const appended = run(numeric, body(encodeRecord({ offsetDelta: 3, timestampDelta: 42, key: null, value: Buffer.from('v') }).buffer), contexts[1]);
    expect(appended).toMatchObject({ record: { offset: '17403', timestamp: '1796000009999', key: null } });
  });

  it('damaged bytes: the same record, the same place, or the same error', () => {
    const rnd = seededRandom(11);
    for (let i = 0; i < 6000; i++) {
      const bytes = Buffer.from(body(randomRecord(rnd)));
      const damage = Math.floor(rnd() * 3);
      let damaged: Buffer;
      if (damage === 0) {
        damaged = Buffer.from(bytes);
        for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) damaged[Math.floor(rnd() * damaged.length)] = Math.floor(rnd() * 256);
      } else if (damage === 1) {
        damaged = bytes.subarray(0, Math.floor(rnd() * bytes.length));
      } else {
        damaged = Buffer.concat([bytes, Buffer.from([Math.floor(rnd() * 256), 0x80, 0x01])]);
      }
      const context = contexts[Math.floor(rnd() * contexts.length)]!;
      expect(run(numeric, damaged, context), `damage ${damage}, case ${i}`).toEqual(run(kafkajsDecoder, damaged, context));
    }
  });

  it('records of several batches read in turn: each offset from its own batch', () => {
    const rnd = seededRandom(3);
    const records = Array.from({ length: 200 }, () => body(randomRecord(rnd)));
    for (let i = 0; i < records.length; i++) {
      // alternate batches as interleaved fetches of several partitions would; a batch's context is
      // a new object every time kafkajs decodes one, even for equal values
      const context = { ...contexts[(i * 7) % 3]! };
      expect(run(numeric, records[i]!, context)).toEqual(run(kafkajsDecoder, records[i]!, context));
    }
  });
});

describe('installing the numeric record decoder into kafkajs', () => {
  // the built module, as `killswitch` loads it (npm test builds first)
  const KAFKAJS = pathToFileURL(join(ROOT, 'dist/src/adapters/kafka/kafkajs.js')).href;
  const decodingIn = (before: string): unknown => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e',
      `${before}\nconst { recordDecoding } = await import(${JSON.stringify(KAFKAJS)});\nconsole.log(JSON.stringify(recordDecoding));`], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as unknown;
  };

  it('a process that loads kafkajs through src/adapters/kafka/kafkajs.ts decodes records with it', () => {
    expect(decodingIn('')).toEqual({ decoder: 'numeric' });
    // loading kafkajs itself first changes nothing: its record-batch decoder is loaded at the first fetch
    expect(decodingIn("import { createRequire } from 'node:module'; createRequire(import.meta.url)('kafkajs');")).toEqual({ decoder: 'numeric' });
  });

  it("a process whose kafkajs fetched before keeps kafkajs's decoder and says why", () => {
    expect(decodingIn("import { createRequire } from 'node:module'; createRequire(import.meta.url)('kafkajs/src/protocol/recordBatch/v0/decoder.js');"))
      .toEqual({ decoder: 'kafkajs', reason: "kafkajs's record-batch decoder was loaded before src/adapters/kafka/kafkajs.ts" });
  });
});
