/**
 * Issue #3 figures, against a real broker, in one run:
 *  a. the raw kafkajs consume rate of a pre-filled decisions topic (plain consumer, eachBatch, no
 *     processing, the processor's fetch sizes): the client's own limit;
 *  b. sustained decisions/s through `killswitch run` in Kafka mode (transactions on) over the same
 *     records, until its committed offsets reach the end; its ratio to (a), in wall clock and in CPU time (the CPU-time ratio is the figure held to >= 0.70);
 *  c. trip latency from "decision produced" to "kill event readable by a read_committed consumer", p50
 *     and p99, while decisions are produced at a steady 20k/s (target p99 <= 250 ms);
 *  d. throughput with 1, 2 and 3 instances in one consumer group on the 6-partition topic.
 *
 * Every run of the processor is a fresh consumer group with fresh output topics over the same
 * pre-filled input (1M decisions by default); (a) and (b) alternate, twice each, and the best of each is
 * compared (the machine is shared, so one slow moment should not decide the ratio). Rates run from the
 * first committed progress (first batch for (a)) to the end, so start-up is not in them; CPU time per
 * decision over the same interval says where a rate is bound by CPU.
 *
 *   npm run bench -- kafka-pipeline
 *   KAFKA_BROKERS=host:port             use a running broker instead of starting one
 *   KAFKA_BENCH_RECORDS, KAFKA_BENCH_LATENCY_SECONDS    smaller or longer runs
 *   KAFKA_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"    profile the processor instances
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import type { Message } from 'kafkajs';
import {
  benchDir, busyCores, createTopic, fill, highWatermarks, kafkaClient, LATENCY_RATE, LatencyLoad, machineCpu, percentile, processorConfig, RAW_CONSUMER, sample,
  sleep, startBroker, startInstance, topicsFor, VERDICTS, watchCommitted, type Instance, type Progress,
} from './kafka-harness.js';
import { parseConfig } from '../src/config/config.js';
import { gc, mulberry32, report } from './util.js';

const PARTITIONS = 6;
const RECORDS = Number(process.env.KAFKA_BENCH_RECORDS ?? 1_000_000);
const IDENTITIES = 10_000;
/** identities that only ever deny: each trips once, at its 10th decision */
const HOT = 100;
const LATENCY_WARMUP_S = 5;
const LATENCY_SECONDS = Number(process.env.KAFKA_BENCH_LATENCY_SECONDS ?? 30);

/**
 * RECORDS decisions as a 20k/s stream of event time would carry them, keyed by agent_id; anonymous ones
 * unkeyed. `trips`: how many identities trip (a HOT identity with at least min_calls = 10 decisions).
 */
export function backlog(): { messages: Message[]; trips: number } {
  const rnd = mulberry32(3);
  const start = Date.now() - 60_000;
  const out: Message[] = new Array<Message>(RECORDS);
  const hotCalls = new Array<number>(HOT).fill(0);
  for (let i = 0; i < RECORDS; i++) {
    const who = Math.floor(rnd() * IDENTITIES);
    const anonymous = rnd() < 0.01;
    if (who < HOT && !anonymous) hotCalls[who]!++;
    const agent = `spiffe://bench.example/ns/prod/sa/agent-${who}`;
    const value = JSON.stringify({
      decision_id: `01K${i.toString(36).padStart(10, '0')}`,
      ...(anonymous ? {} : { agent_id: agent }),
      decision: who < HOT ? 'deny' : VERDICTS[Math.floor(rnd() * VERDICTS.length)],
      occurred_at: new Date(start + Math.floor(i / 20)).toISOString(),
      session_id: `sess-${who}-${Math.floor(i / 100_000)}`,
      tool_name: 'web.fetch',
      policy_rule: 'egress-allowlist',
      tenant: 'acme',
    });
    out[i] = anonymous ? { key: null, value } : { key: agent, value };
  }
  return { messages: out, trips: hotCalls.filter((n) => n >= 10).length };
}

/**
 * The fetch sizes `killswitch run` uses by default (what the config loader fills in): the raw consumer
 * fetches the same way, so the ratio compares the same client doing the same fetches with and without
 * the processor.
 */
function fetchSizes(): { maxBytesPerPartition: number; maxBytes: number } {
  const k = parseConfig(JSON.stringify({ kafka: { brokers: ['127.0.0.1:9092'] } }), 'defaults').kafka!;
  return { maxBytesPerPartition: k.max_partition_fetch_bytes, maxBytes: k.fetch_max_bytes };
}

export function rawRate(brokers: string, topic: string): { rate: number; cpuMicros: number; machineBusy: number } {
  const before = machineCpu();
  const options = JSON.stringify(fetchSizes());
  const out = execFileSync(process.execPath, [RAW_CONSUMER, brokers, topic, String(RECORDS), options], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const r = JSON.parse(out) as { records: number; firstBatch: number; seconds: number; cpuSeconds: number };
  // over the whole child process (start-up included), so only a rough figure
  const machineBusy = busyCores(before, machineCpu(), cpus().length);
  return { rate: (r.records - r.firstBatch) / r.seconds, cpuMicros: (r.cpuSeconds * 1e6) / (r.records - r.firstBatch), machineBusy };
}

interface ProcessorRun extends Progress {
  readonly instances: number;
  readonly trips: number;
  readonly transactions: number;
  readonly assignments: number;
  /** CPU time of the instances per decision over the sustained interval, µs */
  readonly cpuMicros: number;
  /** cores of the whole machine kept busy over the same interval (broker, instances, anything else) */
  readonly machineBusy: number;
}

/** `n` instances in a fresh group over the pre-filled topic, started together; stopped once all is committed. */
export async function processorRate(brokers: string, dir: string, decisions: string, n: number): Promise<ProcessorRun> {
  const topics = topicsFor('bench', decisions);
  const group = `bench-${randomUUID().slice(0, 8)}`;
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const instances: Instance[] = [];
  try {
    // Started together, they join within the broker's initial rebalance delay and get their partitions in one go.
    instances.push(...(await Promise.all(Array.from({ length: n }, () => startInstance(processorConfig(dir, brokers, topics, group, PARTITIONS))))));
    const cpu = async (): Promise<number> => sample(await Promise.all(instances.map((i) => i.metrics())), 'killswitch_process_cpu_seconds_total');
    let cpuAtFirst = 0;
    let machineAtFirst: ReturnType<typeof machineCpu>;
    const progress = await watchCommitted(admin, group, decisions, RECORDS, {
      onFirst: async () => {
        cpuAtFirst = await cpu();
        machineAtFirst = machineCpu();
      },
    });
    const machineBusy = busyCores(machineAtFirst, machineCpu(), cpus().length);
    const cpuAtEnd = await cpu();
    const texts = await Promise.all(instances.map((i) => i.metrics()));
    return {
      ...progress, instances: n, cpuMicros: ((cpuAtEnd - cpuAtFirst) * 1e6) / (RECORDS - progress.firstCommitted), machineBusy,
      trips: sample(texts, 'killswitch_trips_total'),
      transactions: sample(texts, 'killswitch_batch_duration_seconds_count'),
      assignments: instances.reduce((s, i) => s + i.assigned(), 0),
    };
  } finally {
    const codes = await Promise.all(instances.map((i) => i.stop()));
    if (codes.some((c) => c !== 0)) console.error(`an instance exited with ${codes.join(', ')}:\n${instances.map((i) => i.log().slice(-3000)).join('\n----\n')}`);
    await admin.disconnect();
  }
}

interface Latency {
  readonly produced: number;
  readonly producedRate: number;
  readonly trips: number;
  readonly missing: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** p50 and p99 of: decision sent -> kill event record timestamp; that timestamp -> readable (wall clocks, ms resolution) */
  readonly toProduced: readonly [number, number];
  readonly toReadable: readonly [number, number];
  readonly transactions: number;
  readonly lagMax: number;
  /** cores of the whole machine kept busy while the measured trips were produced; of them, the instance and this process */
  readonly machineBusy: number;
  readonly instanceBusy: number;
  readonly benchBusy: number;
}

/**
 * One instance on a fresh 6-partition topic; decisions produced at a steady LATENCY_RATE (20k/s) for
 * LATENCY_WARMUP_S + LATENCY_SECONDS. Most come from 20,000 well-behaved identities (allow, some
 * denies, never near the threshold); every TRIP_EVERY_MS a fresh identity starts sending a deny every
 * 10 ms and trips at its 10th. Latency: from just before the send of the tripping decision to its kill
 * event arriving at a read_committed consumer, for trips whose decision was sent after the warm-up.
 */
export async function tripLatency(brokers: string, dir: string): Promise<Latency> {
  const topics = topicsFor('latency');
  const group = `latency-${randomUUID().slice(0, 8)}`;
  const kafka = kafkaClient(brokers);
  const instance = await startInstance(processorConfig(dir, brokers, topics, group, PARTITIONS));
  const reader = kafka.consumer({ groupId: `latency-reader-${randomUUID()}`, readUncommitted: false });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  try {
    for (const started = Date.now(); instance.assigned() < PARTITIONS; await sleep(50)) {
      if (Date.now() - started > 60_000) throw new Error(`processor not assigned:\n${instance.log().slice(-3000)}`);
    }
    const sentAt = new Map<string, { at: number; wall: number }>();
    const latencies: number[] = [];
    // where the time goes: decision sent -> kill event produced (its record timestamp, the processor's
    // wall clock), and kill event produced -> readable
    const toProduced: number[] = [];
    const toReadable: number[] = [];
    let joined = false;
    reader.on(reader.events.GROUP_JOIN, () => (joined = true));
    await reader.connect();
    await reader.subscribe({ topic: topics.kills, fromBeginning: true });
    await reader.run({
      eachMessage: ({ message }) => {
        const now = performance.now();
        const wall = Date.now();
        const ev = JSON.parse(message.value!.toString('utf8')) as { evidence: { tripping_decision_id: string } };
        const t = sentAt.get(ev.evidence.tripping_decision_id);
        if (t !== undefined) {
          latencies.push(now - t.at);
          toProduced.push(Number(message.timestamp) - t.wall);
          toReadable.push(wall - Number(message.timestamp));
        }
        return Promise.resolve();
      },
    });
    while (!joined) await sleep(20);
    await producer.connect();

    const load = new LatencyLoad();
    const t0 = performance.now();
    const total = (LATENCY_WARMUP_S + LATENCY_SECONDS) * 1000;
    let expected = 0;
    let machineAtWarm: ReturnType<typeof machineCpu>;
    let warmAt = 0;
    let instanceCpuAtWarm = 0;
    let benchCpuAtWarm: NodeJS.CpuUsage | undefined;
    const instanceCpu = async (): Promise<number> => sample([await instance.metrics()], 'killswitch_process_cpu_seconds_total');
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed >= total) break;
      const { messages, tripping } = load.next(elapsed);
      if (messages.length === 0) {
        await sleep(1);
        continue;
      }
      const measuring = elapsed >= LATENCY_WARMUP_S * 1000;
      if (measuring && warmAt === 0) {
        warmAt = performance.now();
        machineAtWarm = machineCpu();
        benchCpuAtWarm = process.cpuUsage();
        instanceCpuAtWarm = await instanceCpu();
      }
      const at = performance.now();
      const wall = Date.now();
      if (measuring) {
        for (const id of tripping) sentAt.set(id, { at, wall });
        expected += tripping.length;
      }
      await producer.send({ topic: topics.decisions, messages });
    }
    const producedSeconds = (performance.now() - t0) / 1000;
    const sent = load.produced;
    const machineBusy = busyCores(machineAtWarm, machineCpu(), cpus().length);
    const measuredSeconds = (performance.now() - warmAt) / 1000;
    const benchCpu = process.cpuUsage(benchCpuAtWarm);
    const instanceBusy = (await instanceCpu() - instanceCpuAtWarm) / measuredSeconds;
    for (const until = performance.now() + 15_000; latencies.length < expected && performance.now() < until;) await sleep(50);
    const metrics = await instance.metrics();
    const sorted = [...latencies].sort((a, b) => a - b);
    const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
    const p99 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 99);
    return {
      produced: sent, producedRate: sent / producedSeconds, trips: latencies.length, missing: expected - latencies.length,
      p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN,
      toProduced: [median(toProduced), p99(toProduced)], toReadable: [median(toReadable), p99(toReadable)],
      transactions: sample([metrics], 'killswitch_batch_duration_seconds_count'),
      machineBusy, instanceBusy, benchBusy: (benchCpu.user + benchCpu.system) / 1e6 / measuredSeconds,
      lagMax: Math.max(...metrics.split('\n').filter((l) => l.startsWith('killswitch_consumer_lag{')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)))),
    };
  } finally {
    await producer.disconnect();
    await reader.disconnect();
    const code = await instance.stop();
    if (code !== 0) console.error(`the latency instance exited with ${code}:\n${instance.log().slice(-3000)}`);
  }
}

export async function run(): Promise<void> {
  const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
  const loadAtStart = load();
  const broker = await startBroker();
  try {
    const { brokers } = broker;
    const dir = benchDir();
    const admin = kafkaClient(brokers).admin();
    await admin.connect();
    const decisions = `bench-${randomUUID().slice(0, 8)}.decisions`;
    await createTopic(admin, decisions, PARTITIONS);
    // The 1M generated records are dropped once produced: a heap of several hundred MiB in this process
    // would put its GC pauses into the latency measured by the reader below.
    const { trips, bytes, fillRate } = await (async () => {
      const { messages, trips } = backlog();
      const bytes = messages.reduce((n, m) => n + Buffer.byteLength(m.value as string), 0);
      return { trips, bytes, fillRate: await fill(brokers, decisions, messages) };
    })();
    gc();
    if ((await highWatermarks(admin, decisions)) !== RECORDS) throw new Error('pre-fill: high watermarks do not add up to the records produced');
    await admin.disconnect();

    // (a) and (b) alternate, so a busy moment on the shared machine does not hit only one of them
    const raws: ReturnType<typeof rawRate>[] = [];
    const ones: ProcessorRun[] = [];
    for (let round = 0; round < 2; round++) {
      raws.push(rawRate(brokers, decisions));
      ones.push(await processorRate(brokers, dir, decisions, 1));
    }
    const two = await processorRate(brokers, dir, decisions, 2);
    const three = await processorRate(brokers, dir, decisions, 3);
    const latency = await tripLatency(brokers, dir);

    const raw = raws.reduce((a, b) => (b.rate > a.rate ? b : a));
    const one = ones.reduce((a, b) => (b.rate > a.rate ? b : a));
    const scale = [one, two, three];
    const each = (f: (r: ProcessorRun) => string | number): string => scale.map(f).join(', ');
    const rate = (r: { rate: number }): string => Math.round(r.rate).toLocaleString('en-US');
    report(`Kafka pipeline, real broker (${PARTITIONS} partitions, ${RECORDS.toLocaleString('en-US')} pre-filled decisions of ${Math.round(bytes / RECORDS)} B, ${broker.own ? 'broker started by this run' : 'KAFKA_BROKERS'})`, {
      'load average at start (1, 5, 15 min)': loadAtStart,
      'pre-fill, records/s (kafkajs producer)': Math.round(fillRate),
      'a. raw kafkajs consume, records/s (best of 2)': Math.round(raw.rate),
      'a. rounds': raws.map(rate).join(', '),
      'a. CPU per record (µs)': +raw.cpuMicros.toFixed(2),
      'a. machine cores busy (whole consumer run, start-up included)': +raw.machineBusy.toFixed(2),
      'b. killswitch run, 1 instance, decisions/s (best of 2)': Math.round(one.rate),
      'b. rounds': ones.map(rate).join(', '),
      'b. ratio to raw (wall clock, reported; the CPU-time ratio is the figure that stands)': +(one.rate / raw.rate).toFixed(2),
      'b. CPU per decision (µs)': +one.cpuMicros.toFixed(2),
      // the same comparison in CPU time: the two differ when one process gets more help from other threads (the collector's)
      'b. CPU-time ratio, raw CPU per record / CPU per decision': +(raw.cpuMicros / one.cpuMicros).toFixed(2),
      [`b. machine cores busy, of ${cpus().length} (broker, instance, anything else)`]: +one.machineBusy.toFixed(2),
      'b. transactions': one.transactions,
      'b. start to first commit (s)': +one.firstSeconds.toFixed(1),
      'd. decisions/s with 1, 2, 3 instances': each(rate),
      'd. 2 vs 1, 3 vs 1': `${(two.rate / one.rate).toFixed(2)}, ${(three.rate / one.rate).toFixed(2)}`,
      'd. CPU per decision, all instances (µs)': each((r) => r.cpuMicros.toFixed(2)),
      'd. machine cores busy': each((r) => r.machineBusy.toFixed(2)),
      'd. partitions assigned, summed over instances': each((r) => r.assignments),
      [`trips in every run (expected ${trips})`]: [...ones, two, three].map((r) => r.trips).join(', '),
    });
    report(`Kafka trip latency, produced -> kill event readable (read_committed), ${LATENCY_RATE.toLocaleString('en-US')} decisions/s for ${LATENCY_SECONDS} s after ${LATENCY_WARMUP_S} s warm-up, 1 instance`, {
      'decisions produced': latency.produced,
      'produced rate (decisions/s)': Math.round(latency.producedRate),
      'trips measured': latency.trips,
      'trips missing after 15 s': latency.missing,
      'p50 (ms)': +latency.p50.toFixed(1),
      'p99 (ms, target <= 250)': +latency.p99.toFixed(1),
      'max (ms)': +latency.max.toFixed(1),
      'of which decision sent -> kill event produced, p50 / p99 (ms)': latency.toProduced.join(' / '),
      'of which kill event produced -> readable, p50 / p99 (ms)': latency.toReadable.join(' / '),
      'transactions': latency.transactions,
      'consumer lag at the end, largest partition': latency.lagMax,
      [`machine cores busy while measuring, of ${cpus().length}`]: +latency.machineBusy.toFixed(2),
      'of which the killswitch instance, this process (producer and reader)': `${latency.instanceBusy.toFixed(2)}, ${latency.benchBusy.toFixed(2)}`,
      'load average at the end (1, 5, 15 min)': load(),
    });
  } finally {
    await broker.stop();
  }
}
