/**
 * Decoding Kafka record values, in process, no broker: the records of the Kafka benchmark (`backlog()`
 * of kafka-pipeline.ts: 1M keyed decisions of 10k identities, 1% anonymous) as the consumer hands them
 * over (slices of a fetch's buffer), through
 *  - the full decoder as KafkaValueDecoder used it for every plain value before the fast path: key and
 *    value to strings, JSON.parse, schema validation, key check;
 *  - KafkaValueDecoder.decode as it is now (the byte-level fast path, the full decoder for what it declines);
 *  - KafkaValueDecoder.decodeInto, what the Kafka processor calls: the same, written into decisions
 *    reused from batch to batch (one per record of a batch of 1,000 here, as BatchDecisions keeps them).
 * Three timed passes each, alternating, after a warm-up pass of each; the best of each is compared.
 *
 *   npm run bench -- decode
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { createClassifier } from '../src/core/decision-class.js';
import { DecisionDecoder, type DecodeResult } from '../src/adapters/serde/decision-decoder.js';
import { FastDecisionDecoder, ReusableDecision } from '../src/adapters/serde/fast-decision.js';
import { KafkaValueDecoder } from '../src/adapters/serde/kafka-value-decoder.js';
import { backlog } from './kafka-pipeline.js';
import { gc, report } from './util.js';

const ROUNDS = 3;

const text = (b: Buffer | string | null | undefined): string => (b === null || b === undefined ? '' : b.toString());

/**
 * The records as kafkajs hands them to the processor: key and value of each are slices of the one
 * buffer of their fetch (here, one buffer per 1,000 records, key then value, record after record).
 */
function asFetched(messages: readonly { key?: Buffer | string | null; value: Buffer | string | null }[]): { values: Buffer[]; keys: (Buffer | null)[] } {
  const values: Buffer[] = [];
  const keys: (Buffer | null)[] = [];
  for (let start = 0; start < messages.length; start += 1000) {
    const part = messages.slice(start, start + 1000).map((m) => ({ key: Buffer.from(text(m.key)), value: Buffer.from(text(m.value)) }));
    const fetch = Buffer.concat(part.flatMap((m) => [m.key, m.value]));
    let at = 0;
    for (const m of part) {
      keys.push(m.key.length === 0 ? null : fetch.subarray(at, at + m.key.length));
      at += m.key.length;
      values.push(fetch.subarray(at, at + m.value.length));
      at += m.value.length;
    }
  }
  return { values, keys };
}

/** collections seen by the GC observer: when they started (performance.now()) and how long they took */
const collections: { start: number; duration: number }[] = [];

interface Pass {
  seconds: number;
  /** decisions, so the work is used */
  ok: number;
  /** garbage collections during the pass, and their time */
  gcs: number;
  gcMs: number;
}

/** One pass of `decode` over every record. */
async function pass(values: readonly Buffer[], keys: readonly (Buffer | null)[], decode: (v: Buffer, k: Buffer | null) => DecodeResult | Promise<DecodeResult>): Promise<Pass> {
  gc();
  let ok = 0;
  const t0 = performance.now();
  for (let i = 0; i < values.length; i++) {
    const r = decode(values[i]!, keys[i]!);
    if (r instanceof Promise) throw new Error('a plain value must decode synchronously');
    if (r.ok) ok++;
  }
  const t1 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 100)); // the observer reports a little later
  const during = collections.filter((c) => c.start >= t0 && c.start <= t1);
  return { seconds: (t1 - t0) / 1000, ok, gcs: during.length, gcMs: during.reduce((sum, c) => sum + c.duration, 0) };
}

export async function run(): Promise<void> {
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push({ start: e.startTime, duration: e.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  const { values, keys } = asFetched(backlog().messages);
  const n = values.length;
  const bytes = values.reduce((s, v) => s + v.length, 0);

  const classifier = createClassifier();
  const full = new DecisionDecoder(classifier);
  const kafka = new KafkaValueDecoder(full, undefined, 'decisions-value');
  const before = (v: Buffer, k: Buffer | null): DecodeResult => full.decodeText(v.toString('utf8'), k === null || k.length === 0 ? undefined : k.toString('utf8'));
  const now = (v: Buffer, k: Buffer | null): DecodeResult | Promise<DecodeResult> => kafka.decode(v, k);
  const pool = Array.from({ length: 1000 }, () => new ReusableDecision());
  let next = 0;
  const decided: DecodeResult = { ok: true, decision: pool[0]! };
  const reusing = (v: Buffer, k: Buffer | null): DecodeResult | Promise<DecodeResult> => {
    const into = pool[next++ % pool.length]!;
    const r = kafka.decodeInto(v, k, into);
    return r instanceof ReusableDecision ? decided : r;
  };

  const fast = new FastDecisionDecoder(classifier);
  let taken = 0;
  for (let i = 0; i < n; i++) if (fast.decode(values[i]!, keys[i]!) !== null) taken++;

  await pass(values, keys, before);
  await pass(values, keys, now);
  await pass(values, keys, reusing);
  const olds: Pass[] = [];
  const news: Pass[] = [];
  const intos: Pass[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const a = await pass(values, keys, before);
    const b = await pass(values, keys, now);
    const c = await pass(values, keys, reusing);
    if (a.ok !== n || b.ok !== n || c.ok !== n) throw new Error(`every record is valid, yet ${n - a.ok} (full), ${n - b.ok} (now) and ${n - c.ok} (into) were refused`);
    olds.push(a);
    news.push(b);
    intos.push(c);
  }
  observer.disconnect();
  const micros = (p: Pass): number => +((p.seconds * 1e6) / n).toFixed(3);
  const best = (ps: Pass[]): Pass => ps.reduce((x, y) => (y.seconds < x.seconds ? y : x));
  const old = best(olds);
  const neu = best(news);
  const into = best(intos);
  const collected = (p: Pass): string => `${p.gcs} collections, ${p.gcMs.toFixed(0)} ms`;
  report(`Decoding Kafka values in process (${n.toLocaleString('en-US')} records of ${Math.round(bytes / n)} B, keyed, from the Kafka benchmark; best of ${ROUNDS} each)`, {
    'full decoder (before), µs/record': micros(old),
    'full decoder rounds, µs/record': olds.map(micros).join(', '),
    'KafkaValueDecoder.decode (now), µs/record': micros(neu),
    'KafkaValueDecoder rounds, µs/record': news.map(micros).join(', '),
    'KafkaValueDecoder.decodeInto (reused decisions, as the processor), µs/record': micros(into),
    'decodeInto rounds, µs/record': intos.map(micros).join(', '),
    'GC in the best pass, full decoder': collected(old),
    'GC in the best pass, KafkaValueDecoder': collected(neu),
    'GC in the best pass, decodeInto': collected(into),
    'speed-up before / now / into': `${(old.seconds / neu.seconds).toFixed(2)} / ${(old.seconds / into.seconds).toFixed(2)}`,
    'records the fast path took': `${taken.toLocaleString('en-US')} of ${n.toLocaleString('en-US')}`,
  });
}
