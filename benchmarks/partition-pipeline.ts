/**
 * Kafka mode's processing without Kafka: the Kafka benchmark's records (`backlog()` of
 * kafka-pipeline.ts: 1M keyed decisions of 249 B, 10k identities, 1% anonymous, 100 that trip) through
 * the partition pipelines of one instance owning all 6 partitions, in process, no broker, no kafkajs.
 * Records are handed over as kafkajs hands them (key and value slices of one buffer per fetch, offsets
 * and timestamps as decimal strings) in batches of 13,000 per partition (about what a 4 MiB partition
 * fetch holds).
 *
 *  - murmur2: every keyed record on its owner partition: decode -> evaluate (what the processor does
 *    per record besides kafkajs's fetch and the transaction);
 *  - all forwarded: every keyed record read on another partition: decoded, judged and packed at its
 *    source, then its repartition record unpacked and its decisions evaluated at its owner, as the processor
 *    does (kafkajs's produce and fetch of the repartition record are not in it).
 *
 * The pipelines' calls are timed in CPU time of the process (all threads; the records are made from
 * the fetched bytes outside the timing, as kafkajs makes them); modes alternate, 5 passes each after a
 * warm-up pass, median and range per mode. The trips of every pass are checked against the expected 100.
 *
 *   npm run bench -- partition-pipeline
 */
import { performance } from 'node:perf_hooks';
import { createClassifier } from '../src/core/decision-class.js';
import { LedgerFold } from '../src/core/ledger-fold.js';
import { AddendumChains } from '../src/core/documents.js';
import { DecisionDecoder } from '../src/adapters/serde/decision-decoder.js';
import { KafkaValueDecoder } from '../src/adapters/serde/kafka-value-decoder.js';
import { KafkaRouting, ownerPartition } from '../src/adapters/kafka/repartition.js';
import { PartitionPipeline, batchRecords } from '../src/pipeline/partition-pipeline.js';
import type { InputRecord, OutputRecord } from '../src/ports/partition-records.js';
import { backlog } from './kafka-pipeline.js';
import { gc, report, tripConfig } from './util.js';

const PARTITIONS = 6;
const BATCH = 13_000;
const PASSES = Number(process.env.PIPELINE_BENCH_PASSES ?? 5);
const TOPIC = 'decisions';

type Placement = 'murmur2' | 'forwarded';

/** One fetched batch, kept as bytes (off the heap): key and value positions in one buffer. */
interface FetchedBatch {
  readonly buf: Buffer;
  /** per record: key start, key end (-1: null key), value start, value end */
  readonly at: Int32Array;
  readonly firstOffset: number;
}

/** Per partition, its records in batches as fetched. */
function fetched(placement: Placement): FetchedBatch[][] {
  const { messages } = backlog();
  const byPartition: { key: string | null; value: string }[][] = Array.from({ length: PARTITIONS }, () => []);
  let wrong = 0;
  let anonymous = 0;
  for (const m of messages) {
    const key = m.key as string | null;
    let p: number;
    if (key === null) p = anonymous++ % PARTITIONS;
    else {
      const owner = ownerPartition(key, PARTITIONS);
      // spread over the 5 others, as Misrouter's default
      p = placement === 'murmur2' ? owner : (owner + 1 + (wrong++ % (PARTITIONS - 1))) % PARTITIONS;
    }
    byPartition[p]!.push({ key, value: m.value as string });
  }
  return byPartition.map((records) => {
    const batches: FetchedBatch[] = [];
    for (let start = 0; start < records.length; start += BATCH) {
      const part = records.slice(start, start + BATCH);
      const buf = Buffer.from(part.map((r) => (r.key ?? '') + r.value).join(''), 'latin1');
      const at = new Int32Array(part.length * 4);
      let pos = 0;
      part.forEach((r, i) => {
        at[4 * i] = pos;
        pos += r.key?.length ?? 0;
        at[4 * i + 1] = r.key === null ? -1 : pos;
        at[4 * i + 2] = pos;
        pos += r.value.length;
        at[4 * i + 3] = pos;
      });
      batches.push({ buf, at, firstOffset: start });
    }
    return batches;
  });
}

/** The batch's records as kafkajs hands them over: objects made per fetch, key and value slices of its buffer. */
function records(b: FetchedBatch, timestamp: string): InputRecord[] {
  const out: InputRecord[] = new Array<InputRecord>(b.at.length / 4);
  for (let i = 0; i < out.length; i++) {
    const a = b.at;
    out[i] = {
      key: a[4 * i + 1]! < 0 ? null : b.buf.subarray(a[4 * i], a[4 * i + 1]),
      value: b.buf.subarray(a[4 * i + 2], a[4 * i + 3]), timestamp, offset: String(b.firstOffset + i),
    };
  }
  return out;
}

/** A repartition record as its owner's consumer reads it (value copied out of the producer's buffer, as a fetch would). */
function asRead(r: OutputRecord, offset: number): InputRecord {
  return { key: null, value: Buffer.from(r.value as Buffer), timestamp: r.timestamp!, offset: String(offset), headers: r.headers! };
}

/**
 * One pass over every record with fresh pipelines; returns the CPU seconds of the pipelines' work (the
 * records are made from the batch's bytes before, as a fetch makes them, outside the timing).
 */
async function pass(input: FetchedBatch[][]): Promise<{ cpu: number; trips: number; decisions: number; forwarded: number }> {
  const config = tripConfig({ classifier: createClassifier() });
  const decoder = new KafkaValueDecoder(new DecisionDecoder(config.classifier), undefined, `${TOPIC}-value`);
  const routing = new KafkaRouting({ decisionsTopic: TOPIC, repartitionTopic: `${TOPIC}.repartition`, partitions: PARTITIONS, groupId: 'bench' });
  const fold = new LedgerFold();
  const chains = new AddendumChains();
  const pipelines = Array.from({ length: PARTITIONS }, (_, partition) => new PartitionPipeline({ partition, routing, tripConfig: config, fold, governor: undefined, decoder, chains, signer: undefined }));
  const repartitionOffsets = new Array<number>(PARTITIONS).fill(0);
  let trips = 0;
  let decisions = 0;
  let forwarded = 0;
  let micros = 0;
  const timed = async (p: number, forwardedInput: boolean, messages: InputRecord[]): Promise<ReturnType<typeof batchRecords>> => {
    const out = batchRecords();
    const cpu0 = process.cpuUsage();
    await pipelines[p]!.process({ forwarded: forwardedInput, messages, upTo: messages.length, liveFrom: 0, isStale: () => false, now: performance.now() }, out);
    const used = process.cpuUsage(cpu0);
    micros += used.user + used.system;
    trips += out.kills.length;
    decisions += out.classes.reduce((a, b) => a + b, 0);
    return out;
  };
  gc();
  const timestamp = String(Date.now());
  const batches = Math.max(...input.map((b) => b.length));
  for (let i = 0; i < batches; i++) {
    const toOwners: OutputRecord[][] = Array.from({ length: PARTITIONS }, () => []);
    for (let p = 0; p < PARTITIONS; p++) {
      const batch = input[p]![i];
      if (batch === undefined) continue;
      const out = await timed(p, false, records(batch, timestamp));
      forwarded += out.forwardedDecisions;
      for (const r of out.forwarded) toOwners[r.partition!]!.push(r);
    }
    for (let p = 0; p < PARTITIONS; p++) {
      if (toOwners[p]!.length > 0) await timed(p, true, toOwners[p]!.map((r) => asRead(r, repartitionOffsets[p]!++)));
    }
  }
  return { cpu: micros / 1e6, trips, decisions, forwarded };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const range = (xs: readonly number[]): string => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;

export async function run(): Promise<void> {
  const expected = backlog().trips;
  const modes: Placement[] = ['murmur2', 'forwarded'];
  const inputs = new Map(modes.map((m) => [m, fetched(m)]));
  gc();
  const micros = new Map<Placement, number[]>(modes.map((m) => [m, []]));
  let records = 0;
  for (let round = 0; round <= PASSES; round++) {
    for (const mode of modes) {
      const r = await pass(inputs.get(mode)!);
      if (r.trips !== expected) throw new Error(`${mode}: ${r.trips} trips, expected ${expected}`);
      if (mode === 'forwarded' && r.forwarded === 0) throw new Error('forwarded: nothing was forwarded');
      records = r.decisions;
      if (round > 0) micros.get(mode)!.push((r.cpu * 1e6) / r.decisions);
    }
  }
  const m = micros.get('murmur2')!;
  const f = micros.get('forwarded')!;
  report(`Partition pipelines in process (${records.toLocaleString('en-US')} decisions, ${PARTITIONS} partitions, ${PASSES} passes per mode after a warm-up)`, {
    'murmur2: µs CPU per decision, median [range]': `${median(m).toFixed(3)} [${range(m)}]`,
    'all forwarded: µs CPU per decision, median [range]': `${median(f).toFixed(3)} [${range(f)}]`,
    'all forwarded / murmur2, median of the passes': (median(f) / median(m)).toFixed(2),
    [`trips per pass (expected ${expected})`]: expected,
  });
}
