/**
 * The client's own limit, run as a child process of the Kafka benchmark (so it has a node process to
 * itself, like `killswitch run`): a plain kafkajs consumer in a fresh group reads a topic from the
 * beginning with eachBatch and does nothing with the records. Prints one JSON line:
 * {records, firstBatch, seconds, cpuSeconds, steady} where `seconds` runs from the first batch's arrival to the
 * last one's and `cpuSeconds` is the CPU time this process used in that interval; `steady` is the same
 * {records, seconds, cpuSeconds} between the batches that bring the records handled to 20% and to 80%
 * of the total (STEADY_FROM, STEADY_TO in kafka-harness.ts), away from the first fetch and the last.
 *
 *   node dist/benchmarks/kafka-raw-consume.js <brokers> <topic> <records> [consumer options as JSON]
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type ConsumerConfig } from 'kafkajs';
import { STEADY_FROM, STEADY_TO } from './kafka-harness.js';

const [brokers, topic, wanted, options] = process.argv.slice(2);
if (brokers === undefined || topic === undefined || wanted === undefined) {
  console.error('usage: kafka-raw-consume.js <brokers> <topic> <records> [consumer options as JSON]');
  process.exit(2);
}
const total = Number(wanted);
const kafka = new Kafka({ brokers: brokers.split(','), clientId: 'bench-raw', logLevel: logLevel.NOTHING });
const extra = (options === undefined ? {} : JSON.parse(options)) as Partial<ConsumerConfig>;
const consumer = kafka.consumer({ ...extra, groupId: `bench-raw-${randomUUID()}`, readUncommitted: false, allowAutoTopicCreation: false });
let seen = 0;
let firstBatch = 0;
let t0 = 0n;
let t1 = 0n;
let cpu0: NodeJS.CpuUsage | undefined;
let cpu: NodeJS.CpuUsage | undefined;
interface Mark { seen: number; t: bigint; cpu: NodeJS.CpuUsage }
let steadyFrom: Mark | undefined;
let steadyTo: Mark | undefined;
let finish: () => void = () => undefined;
const done = new Promise<void>((resolve) => {
  finish = resolve;
});
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  eachBatch: ({ batch }) => {
    const now = process.hrtime.bigint();
    if (seen === 0) {
      t0 = now;
      cpu0 = process.cpuUsage();
      firstBatch = batch.messages.length;
    }
    seen += batch.messages.length;
    if (steadyFrom === undefined && seen >= total * STEADY_FROM) steadyFrom = { seen, t: now, cpu: process.cpuUsage() };
    if (steadyTo === undefined && seen >= total * STEADY_TO) steadyTo = { seen, t: now, cpu: process.cpuUsage() };
    if (seen >= total && t1 === 0n) {
      t1 = now;
      cpu = process.cpuUsage(cpu0);
      finish();
    }
    return Promise.resolve();
  },
});
await done;
await consumer.disconnect();
const cpuBetween = (a: NodeJS.CpuUsage, b: NodeJS.CpuUsage): number => (b.user - a.user + b.system - a.system) / 1e6;
const steady = { records: steadyTo!.seen - steadyFrom!.seen, seconds: Number(steadyTo!.t - steadyFrom!.t) / 1e9, cpuSeconds: cpuBetween(steadyFrom!.cpu, steadyTo!.cpu) };
console.log(JSON.stringify({ records: seen, firstBatch, seconds: Number(t1 - t0) / 1e9, cpuSeconds: (cpu!.user + cpu!.system) / 1e6, steady }));
