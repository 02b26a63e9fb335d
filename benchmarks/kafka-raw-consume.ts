/**
 * The client's own limit, run as a child process of the Kafka benchmark (so it has a node process to
 * itself, like `killswitch run`): a plain kafkajs consumer in a fresh group reads a topic from the
 * beginning with eachBatch and does nothing with the records. Prints one JSON line:
 * {records, firstBatch, seconds, cpuSeconds} where `seconds` runs from the first batch's arrival to the
 * last one's and `cpuSeconds` is the CPU time this process used in that interval.
 *
 *   node dist/benchmarks/kafka-raw-consume.js <brokers> <topic> <records> [consumer options as JSON]
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type ConsumerConfig } from 'kafkajs';

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
console.log(JSON.stringify({ records: seen, firstBatch, seconds: Number(t1 - t0) / 1e9, cpuSeconds: (cpu!.user + cpu!.system) / 1e6 }));
