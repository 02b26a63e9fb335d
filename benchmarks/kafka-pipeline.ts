/**
 * Issue #3 and #22 figures, against a real broker, in one run:
 *  a. the raw kafkajs consume rate of a pre-filled decisions topic (plain consumer, eachBatch, no
 *     processing, the processor's fetch sizes): the client's own limit;
 *  b. sustained decisions/s through `killswitch run` in Kafka mode (transactions on) over the same
 *     records, until its committed offsets reach the end; its ratio to (a), in wall clock and in CPU
 *     time (the CPU-time ratio is the figure held to >= 0.70). Every keyed record was produced with
 *     kafkajs's default partitioner (murmur2 of the key, as Java's): nothing is forwarded;
 *  c. trip latency from "tripping decision due" to "kill event readable by a read_committed consumer", p50
 *     and p99, while decisions are produced at a steady 20k/s (target p99 <= 250 ms);
 *  d. throughput with 1, 2 and 3 instances in one consumer group on the 6-partition topic;
 *  e. with KAFKA_BENCH_BASE_CLI: other builds (e.g. the one before the repartition topic) over the same
 *     murmur2 topic, run just before (b) in every round: their CPU per decision and (b)'s over it (issue
 *     #22: at most 1.10 over the build before the repartition topic);
 *  f. every keyed record on a wrong partition (set explicitly on the message; KAFKA_BENCH_MISROUTE, see
 *     Misrouter in kafka-harness.ts), so all of them are forwarded through the repartition topic:
 *     decisions/s until all are evaluated and committed, run just after (b) in every round, and its
 *     ratio to (b) of the same round (issue #22: at least 0.5);
 *  g. (c) with every other record on a wrong partition (issue #22: p99 <= 250 ms).
 *
 * Every run of the processor is a fresh consumer group with fresh output topics over the same
 * pre-filled input (1M decisions by default); (a), (e), (b) and (f) alternate in rounds and the best of
 * each is compared (the machine is shared, so one slow moment should not decide the ratio); every round
 * is printed too. Rates and CPU time per record or decision are those of the steady part of each run:
 * from the moment 20% of the records have been handled (consumed by (a), evaluated by the processor:
 * killswitch_decisions_total, read with the instance's CPU time every 250 ms) to the moment 80% have
 * (STEADY_FROM, STEADY_TO in kafka-harness.ts). Start-up, the first fetch and the final drain are left
 * out, and work in flight (fetched and not yet handled; read at a source and not yet evaluated at its
 * owner) is about the same at both ends. The rates from the first committed progress (first batch for
 * (a)) to the end are printed too; with forwarding they count in-flight work in one stage only (a
 * record read and forwarded before the start, evaluated after it), so they are not compared.
 *
 *   npm run bench -- kafka-pipeline     (all modes: about 5 minutes on 2 cores, more with base builds)
 *   KAFKA_BROKERS=host:port             use a running broker instead of starting one
 *   KAFKA_BENCH_RECORDS, KAFKA_BENCH_LATENCY_SECONDS    smaller or longer runs (with a few hundred
 *                                       thousand records the steady part can fall between two samples: NaN)
 *   KAFKA_BENCH_ROUNDS=N                rounds of (a), (e), (b), (f) (default 2)
 *   KAFKA_BENCH_MODES=throughput,forwarded,scaling,latency,latency-half    what to run (default all):
 *                                       throughput = (a), (b) [and (e)]; forwarded = (f), in the same
 *                                       rounds; scaling = (d), with throughput; latency = (c);
 *                                       latency-half = (g)
 *   KAFKA_BENCH_BASE_CLI=/path/to/other/dist/src/cli.js[,...]    (e): those builds, alternating with this one
 *   KAFKA_BENCH_MISROUTE=spread|next    which wrong partition (f) and (g) use: spread (default) over the
 *                                       N - 1 others, or next = (owner + 1) mod N for every one
 *   KAFKA_BENCH_LOAD_CLIENT=confluent|kafkajs    (c), (g): the load's producer, confluent-kafka for Python
 *                                       in its own process (default; LatencyProducer) or kafkajs in this one
 *   KAFKA_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"    profile the processor instances
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { Partitioners, type Admin, type Message } from 'kafkajs';
import {
  benchDir, busyCores, createTopic, fill, highWatermarks, kafkaClient, LATENCY_RATE, LatencyLoad, LatencyProducer, machineCpu, MISROUTE, Misrouter, percentile, processorConfig, RAW_CONSUMER,
  sample, sleep, startBroker, STEADY_FROM, STEADY_TO, startInstance, topicsFor, VERDICTS, watchCommitted, type Instance, type Placement, type Progress,
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
/** (c), (g): the load's producer, `confluent` (LatencyProducer) or `kafkajs` (in this process) */
const LOAD_CLIENT = process.env.KAFKA_BENCH_LOAD_CLIENT ?? 'confluent';
if (LOAD_CLIENT !== 'confluent' && LOAD_CLIENT !== 'kafkajs') throw new Error(`KAFKA_BENCH_LOAD_CLIENT=${LOAD_CLIENT}: confluent or kafkajs`);
const ROUNDS = Number(process.env.KAFKA_BENCH_ROUNDS ?? 2);
const MODES = new Set((process.env.KAFKA_BENCH_MODES ?? 'throughput,forwarded,scaling,latency,latency-half').split(',').map((m) => m.trim()));
/** other builds' dist/src/cli.js, comma-separated: each runs just before this build in every round (e) */
const BASE_CLIS = (process.env.KAFKA_BENCH_BASE_CLI ?? '').split(',').filter((c) => c !== '');

/** CPU seconds of the instances: the metric's name before and after the metrics prefix changed (adef119), whichever the build has. */
const cpuSeconds = (texts: readonly string[]): number => sample(texts, 'killswitch_process_cpu_seconds_total') + sample(texts, 'killswitch_process_process_cpu_seconds_total');

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

export function rawRate(brokers: string, topic: string): { rate: number; cpuMicros: number; wholeRate: number; wholeCpuMicros: number; machineBusy: number } {
  const before = machineCpu();
  const options = JSON.stringify(fetchSizes());
  const out = execFileSync(process.execPath, [RAW_CONSUMER, brokers, topic, String(RECORDS), options], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const r = JSON.parse(out) as { records: number; firstBatch: number; seconds: number; cpuSeconds: number; steady: { records: number; seconds: number; cpuSeconds: number } };
  // over the whole child process (start-up included), so only a rough figure
  const machineBusy = busyCores(before, machineCpu(), cpus().length);
  return {
    rate: r.steady.records / r.steady.seconds, cpuMicros: (r.steady.cpuSeconds * 1e6) / r.steady.records,
    wholeRate: (r.records - r.firstBatch) / r.seconds, wholeCpuMicros: (r.cpuSeconds * 1e6) / (r.records - r.firstBatch), machineBusy,
  };
}

interface ProcessorRun extends Progress {
  readonly instances: number;
  readonly trips: number;
  readonly transactions: number;
  readonly assignments: number;
  /** decisions/s and CPU time of the instances per decision (µs) in the steady part (STEADY_FROM to STEADY_TO of the decisions evaluated) */
  readonly rate: number;
  readonly cpuMicros: number;
  /** the same from the first committed progress to the end (reported) */
  readonly wholeRate: number;
  readonly wholeCpuMicros: number;
  /** cores of the whole machine kept busy over the same interval (broker, instances, anything else) */
  readonly machineBusy: number;
  /** killswitch_forwarded_total (0 on builds without it) */
  readonly forwarded: number;
  /** killswitch_decisions_total when the interval starts (NaN on builds without it: the committed count is used) */
  readonly evaluatedAtFirst: number;
}

/** a scrape makes the instance render every metric: four a second keep that small beside its work */
const SAMPLE_MS = 250;

interface Sample {
  readonly t: number;
  readonly evaluated: number;
  readonly cpu: number;
}

/** Decisions/s and CPU µs per decision between the first samples at STEADY_FROM and at STEADY_TO of `total` evaluated (NaN without them). */
function steadyPart(samples: readonly Sample[], total: number): { rate: number; cpuMicros: number } {
  const from = samples.find((s) => s.evaluated >= total * STEADY_FROM);
  const to = samples.find((s) => s.evaluated >= total * STEADY_TO);
  if (from === undefined || to === undefined || to.evaluated === from.evaluated) return { rate: NaN, cpuMicros: NaN };
  const n = to.evaluated - from.evaluated;
  return { rate: n / ((to.t - from.t) / 1000), cpuMicros: ((to.cpu - from.cpu) * 1e6) / n };
}

/** What a read_committed reader finds on a kills topic: records and distinct identities (a diagnostic: reads until 3 s pass without a record, at most 30 s). */
async function killEvents(brokers: string, topic: string): Promise<{ records: number; agents: number }> {
  const reader = kafkaClient(brokers).consumer({ groupId: `bench-kills-${randomUUID()}`, readUncommitted: false });
  const agents = new Set<string>();
  let records = 0;
  let lastAt = performance.now();
  try {
    await reader.connect();
    await reader.subscribe({ topic, fromBeginning: true });
    await reader.run({
      eachMessage: ({ message }) => {
        records++;
        lastAt = performance.now();
        agents.add((JSON.parse(message.value!.toString('utf8')) as { agent_id: string }).agent_id);
        return Promise.resolve();
      },
    });
    const started = performance.now();
    while (performance.now() - started < 30_000 && !(records > 0 && performance.now() - lastAt > 3000)) await sleep(100);
  } finally {
    await reader.disconnect();
  }
  return { records, agents: agents.size };
}

/**
 * Committed offsets of the group on the repartition topic are at its end. The topic is written in
 * transactions by the PARTITIONS producers of the instance, so a partition's last record can be followed
 * by up to one commit marker of each: at most PARTITIONS offsets without a record (checked once every
 * record has been evaluated, so only the last commit can still be missing).
 */
async function repartitionDone(admin: Admin, group: string, topic: string): Promise<boolean> {
  const highs = await admin.fetchTopicOffsets(topic);
  const committed = (await admin.fetchOffsets({ groupId: group, topics: [topic] }))[0]?.partitions ?? [];
  return highs.every((h) => Number(h.high) === 0 || Number(committed.find((c) => c.partition === h.partition)?.offset ?? -1) >= Number(h.high) - PARTITIONS);
}

/**
 * `n` instances in a fresh group over the pre-filled topic, started together; stopped once all is
 * committed. `cli`: the build to run (default this one). `forwarding`: records of the topic are on
 * wrong partitions; the run gets a fresh repartition topic and ends once every record has been
 * evaluated (killswitch_decisions_total) and the group's repartition offsets are committed to the end.
 */
export async function processorRate(brokers: string, dir: string, decisions: string, n: number, o: { cli?: string; forwarding?: boolean; expectTrips?: number } = {}): Promise<ProcessorRun> {
  const topics = topicsFor('bench', decisions, { repartition: o.forwarding === true });
  const group = `bench-${randomUUID().slice(0, 8)}`;
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const instances: Instance[] = [];
  let sampling = true;
  let stopSampling = (): Promise<void> => Promise.resolve();
  try {
    // Started together, they join within the broker's initial rebalance delay and get their partitions in one go.
    instances.push(...(await Promise.all(Array.from({ length: n }, () => startInstance(processorConfig(dir, brokers, topics, group, PARTITIONS), o.cli)))));
    const texts = async (): Promise<string[]> => Promise.all(instances.map((i) => i.metrics()));
    // the instances' decisions evaluated and CPU time, every SAMPLE_MS: the steady part is read from them
    const samples: Sample[] = [];
    const sampler = (async () => {
      while (sampling) {
        const at = await texts().catch(() => undefined);
        if (at !== undefined) samples.push({ t: performance.now(), evaluated: sample(at, 'killswitch_decisions_total'), cpu: cpuSeconds(at) });
        await sleep(SAMPLE_MS);
      }
    })();
    stopSampling = async () => {
      sampling = false;
      await sampler;
    };
    let cpuAtFirst = 0;
    let evaluatedAtFirst = NaN;
    let machineAtFirst: ReturnType<typeof machineCpu>;
    const t0 = performance.now();
    const check = (): void => {
      const gone = instances.find((i) => i.child.exitCode !== null || i.child.signalCode !== null);
      if (gone !== undefined) throw new Error(`killswitch run exited with ${gone.child.exitCode ?? gone.child.signalCode} during the run:\n${gone.log().slice(-3000)}`);
    };
    let progress = await watchCommitted(admin, group, decisions, RECORDS, {
      check,
      onFirst: async () => {
        const at = await texts();
        cpuAtFirst = cpuSeconds(at);
        if (at.some((t) => t.includes('killswitch_decisions_total'))) evaluatedAtFirst = sample(at, 'killswitch_decisions_total');
        machineAtFirst = machineCpu();
      },
    });
    if (o.forwarding === true) {
      // the input offsets are committed once a record is forwarded: wait for its owner to evaluate and commit it
      const deadline = performance.now() + 120_000;
      for (;;) {
        const evaluated = samples.at(-1)?.evaluated ?? 0;
        if (evaluated >= RECORDS && (await repartitionDone(admin, group, topics.repartition!))) break;
        check();
        if (performance.now() > deadline) {
          const highs = (await admin.fetchTopicOffsets(topics.repartition!)).map((h) => `${h.partition}:${h.high}`).join(' ');
          const committed = ((await admin.fetchOffsets({ groupId: group, topics: [topics.repartition!] }))[0]?.partitions ?? []).map((c) => `${c.partition}:${c.offset}`).join(' ');
          throw new Error(`group ${group}: ${evaluated} of ${RECORDS} evaluated 2 min after the input was committed; repartition high ${highs}, committed ${committed}`);
        }
        await sleep(100);
      }
      progress = { ...progress, endSeconds: (performance.now() - t0) / 1000 };
    }
    // The interval's decisions are those evaluated in it. Committed input offsets run ahead of
    // evaluation when records are forwarded (a record's offset is committed at its source, before its
    // owner evaluates it), so counting from the committed offset would leave out decisions evaluated
    // inside the interval; without forwarding the two differ by the batches evaluated and not yet committed.
    const counted = RECORDS - (Number.isNaN(evaluatedAtFirst) ? progress.firstCommitted : evaluatedAtFirst);
    const wholeRate = counted / (progress.endSeconds - progress.firstSeconds);
    await stopSampling();
    const machineBusy = busyCores(machineAtFirst, machineCpu(), cpus().length);
    const last = await texts();
    const tripped = sample(last, 'killswitch_trips_total');
    if (o.expectTrips !== undefined && tripped !== o.expectTrips) {
      // the instances' own account: assignments, revocations, warnings and errors
      const lines = instances.flatMap((i) => i.log().split('\n').filter((l) => /"level":[456]0|partition (assigned|revoked)|rebalanc/.test(l) && !l.includes('"component":"kafkajs"')));
      const kills = await killEvents(brokers, topics.kills);
      console.error(`group ${group}: killswitch_trips_total ${tripped}, expected ${o.expectTrips}; kills topic (read_committed): ${kills.records} kill events of ${kills.agents} identities; ${lines.length} log lines:\n${lines.slice(-40).join('\n')}`);
    }
    return {
      ...progress, ...steadyPart(samples, RECORDS), wholeRate, wholeCpuMicros: ((cpuSeconds(last) - cpuAtFirst) * 1e6) / counted, instances: n, machineBusy, evaluatedAtFirst,
      trips: tripped,
      transactions: transactions(last),
      assignments: instances.reduce((s, i) => s + i.assigned(), 0),
      forwarded: sample(last, 'killswitch_forwarded_total'),
    };
  } finally {
    await stopSampling();
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
  /** p50 and p99 of: tripping decision due -> kill event record timestamp; that timestamp -> readable (wall clocks, ms resolution) */
  readonly toProduced: readonly [number, number];
  readonly toReadable: readonly [number, number];
  readonly transactions: number;
  readonly lagMax: number;
  /** killswitch_forwarded_total at the end */
  readonly forwarded: number;
  /** p99 of the trips whose tripping (10th) decision was misrouted, and of the others; how many of each */
  readonly byRoute: { misrouted: readonly [number, number]; direct: readonly [number, number] };
  /** cores of the whole machine kept busy while the measured trips were produced; of them, the instance and this process */
  readonly machineBusy: number;
  readonly instanceBusy: number;
  readonly benchBusy: number;
  /** the load producer's process (0: kafkajs, counted in benchBusy) */
  readonly producerBusy: number;
}

/**
 * One instance on a fresh 6-partition topic; decisions produced at a steady LATENCY_RATE (20k/s) for
 * LATENCY_WARMUP_S + LATENCY_SECONDS. Most come from 20,000 well-behaved identities (allow, some
 * denies, never near the threshold); every TRIP_EVERY_MS a fresh identity starts sending a deny every
 * 10 ms and trips at its 10th. Latency: from the moment the tripping decision is due to its kill
 * event arriving at a read_committed consumer, for trips whose decision was sent after the warm-up.
 * `placement` misroutes records (`half`: every other one on a wrong partition, forwarded by the
 * processor). A kill event is matched to its identity's 10th deny: with misrouted records an earlier
 * deny may arrive last and be the tripping one, but the trip could not happen before the 10th was sent.
 */
export async function tripLatency(brokers: string, dir: string, placement: Placement = 'murmur2'): Promise<Latency> {
  const topics = topicsFor('latency');
  const group = `latency-${randomUUID().slice(0, 8)}`;
  const kafka = kafkaClient(brokers);
  // both partition a keyed record by murmur2 of its key (Java's partitioner); misrouted messages carry their own partition
  const kafkajsProducer = LOAD_CLIENT === 'kafkajs' ? kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner }) : undefined;
  // before the instance: a missing venv stops the run with nothing left running
  const external = kafkajsProducer === undefined ? new LatencyProducer(brokers, topics.decisions) : undefined;
  const send = (messages: Message[]): Promise<unknown> => kafkajsProducer?.send({ topic: topics.decisions, messages }) ?? external!.send(messages);
  let closed = false;
  let instance: Instance;
  try {
    instance = await startInstance(processorConfig(dir, brokers, topics, group, PARTITIONS));
  } catch (err) {
    external?.kill();
    throw err;
  }
  const reader = kafka.consumer({ groupId: `latency-reader-${randomUUID()}`, readUncommitted: false });
  try {
    for (const started = Date.now(); instance.assigned() < PARTITIONS; await sleep(50)) {
      if (Date.now() - started > 60_000) throw new Error(`processor not assigned:\n${instance.log().slice(-3000)}`);
    }
    const sentAt = new Map<string, { at: number; wall: number; misrouted: boolean }>();
    const latencies: number[] = [];
    const byRoute = { misrouted: [] as number[], direct: [] as number[] };
    // where the time goes: decision due -> kill event produced (its record timestamp, the processor's
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
        const ev = JSON.parse(message.value!.toString('utf8')) as { agent_id: string };
        const t = sentAt.get(ev.agent_id);
        if (t !== undefined) {
          latencies.push(now - t.at);
          (t.misrouted ? byRoute.misrouted : byRoute.direct).push(now - t.at);
          toProduced.push(Number(message.timestamp) - t.wall);
          toReadable.push(wall - Number(message.timestamp));
        }
        return Promise.resolve();
      },
    });
    while (!joined) await sleep(20);
    await kafkajsProducer?.connect();

    const load = new LatencyLoad(placement, PARTITIONS);
    const t0 = performance.now();
    const total = (LATENCY_WARMUP_S + LATENCY_SECONDS) * 1000;
    let expected = 0;
    let machineAtWarm: ReturnType<typeof machineCpu>;
    let warmAt = 0;
    let instanceCpuAtWarm = 0;
    let producerCpuAtWarm = 0;
    let benchCpuAtWarm: NodeJS.CpuUsage | undefined;
    const instanceCpu = async (): Promise<number> => cpuSeconds([await instance.metrics()]);
    for (;;) {
      const elapsed = performance.now() - t0;
      if (elapsed >= total) break;
      const { messages, trips } = load.next(elapsed);
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
        producerCpuAtWarm = external?.cpuSeconds() ?? 0;
      }
      const at = performance.now();
      const wall = Date.now();
      if (measuring) {
        // from the moment the tripping decision was due: the time it waited to be sent counts
        for (const t of trips) sentAt.set(t.agent, { at: t0 + t.due, wall: wall - (at - t0 - t.due), misrouted: t.misrouted });
        expected += trips.length;
      }
      await send(messages);
    }
    const producedSeconds = (performance.now() - t0) / 1000;
    const sent = load.produced;
    const machineBusy = busyCores(machineAtWarm, machineCpu(), cpus().length);
    const measuredSeconds = (performance.now() - warmAt) / 1000;
    const benchCpu = process.cpuUsage(benchCpuAtWarm);
    const producerBusy = external === undefined ? 0 : (external.cpuSeconds() - producerCpuAtWarm) / measuredSeconds;
    closed = true;
    await external?.close(sent);
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
      transactions: transactions([metrics]),
      forwarded: sample([metrics], 'killswitch_forwarded_total'),
      byRoute: { misrouted: [p99(byRoute.misrouted), byRoute.misrouted.length], direct: [p99(byRoute.direct), byRoute.direct.length] },
      machineBusy, instanceBusy, benchBusy: (benchCpu.user + benchCpu.system) / 1e6 / measuredSeconds, producerBusy,
      lagMax: Math.max(...metrics.split('\n').filter((l) => l.startsWith('killswitch_consumer_lag{')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)))),
    };
  } finally {
    await kafkajsProducer?.disconnect();
    if (!closed) external?.kill();
    await reader.disconnect();
    const code = await instance.stop();
    if (code !== 0) console.error(`the latency instance exited with ${code}:\n${instance.log().slice(-3000)}`);
  }
}

/**
 * Transactions the instances committed. A build without killswitch_transactions_total (before 2026-12-07)
 * committed one per batch: its count of batches is its count of transactions.
 */
function transactions(metrics: readonly string[]): number {
  return metrics.some((m) => m.includes('killswitch_transactions_total ')) ? sample(metrics, 'killswitch_transactions_total') : sample(metrics, 'killswitch_batch_duration_seconds_count');
}

/** median [min–max] of per-round figures */
function spread(xs: readonly number[], digits = 2): string {
  if (xs.length === 0) return 'n/a';
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length % 2 === 1 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  return `${mid.toFixed(digits)} [${sorted[0]!.toFixed(digits)}–${sorted.at(-1)!.toFixed(digits)}]`;
}

function latencyLines(latency: Latency): Record<string, string | number> {
  return {
    'decisions produced': latency.produced,
    'produced rate (decisions/s)': Math.round(latency.producedRate),
    'trips measured': latency.trips,
    'trips missing after 15 s': latency.missing,
    'p50 (ms)': +latency.p50.toFixed(1),
    'p99 (ms, target <= 250)': +latency.p99.toFixed(1),
    'max (ms)': +latency.max.toFixed(1),
    'of which decision due -> kill event produced, p50 / p99 (ms)': latency.toProduced.map((v) => v.toFixed(0)).join(' / '),
    'of which kill event produced -> readable, p50 / p99 (ms)': latency.toReadable.join(' / '),
    'transactions': latency.transactions,
    'consumer lag at the end, largest partition': latency.lagMax,
    [`machine cores busy while measuring, of ${cpus().length}`]: +latency.machineBusy.toFixed(2),
    [LOAD_CLIENT === 'kafkajs' ? 'of which the killswitch instance, this process (kafkajs producer and reader)' : 'of which the killswitch instance, this process (reader), the load producer (librdkafka)']:
      LOAD_CLIENT === 'kafkajs' ? `${latency.instanceBusy.toFixed(2)}, ${latency.benchBusy.toFixed(2)}` : `${latency.instanceBusy.toFixed(2)}, ${latency.benchBusy.toFixed(2)}, ${latency.producerBusy.toFixed(2)}`,
  };
}

export async function run(): Promise<void> {
  const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
  const loadAtStart = load();
  const throughput = MODES.has('throughput') || MODES.has('forwarded');
  const broker = await startBroker();
  try {
    const { brokers } = broker;
    const dir = benchDir();
    const admin = kafkaClient(brokers).admin();
    await admin.connect();
    const id = randomUUID().slice(0, 8);
    const decisions = `bench-${id}.decisions`;
    // the same records, every keyed one on a partition other than its owner's: (f)
    const misrouted = `bench-${id}-wrong.decisions`;
    // The 1M generated records are dropped once produced: a heap of several hundred MiB in this process
    // would put its GC pauses into the latency measured by the reader below.
    const { trips, bytes, fillRate, keyed } = await (async () => {
      const { messages, trips } = backlog();
      const bytes = messages.reduce((n, m) => n + Buffer.byteLength(m.value as string), 0);
      const keyed = messages.filter((m) => m.key !== null).length;
      if (!throughput && !MODES.has('scaling')) return { trips, bytes, fillRate: NaN, keyed };
      await createTopic(admin, decisions, PARTITIONS);
      const fillRate = await fill(brokers, decisions, messages);
      if (MODES.has('forwarded')) {
        await createTopic(admin, misrouted, PARTITIONS);
        const router = new Misrouter('wrong', PARTITIONS);
        await fill(brokers, misrouted, messages.map((m) => router.place(m).message));
      }
      return { trips, bytes, fillRate, keyed };
    })();
    gc();
    if (throughput || MODES.has('scaling')) {
      if ((await highWatermarks(admin, decisions)) !== RECORDS) throw new Error('pre-fill: high watermarks do not add up to the records produced');
      if (MODES.has('forwarded') && (await highWatermarks(admin, misrouted)) !== RECORDS) throw new Error('pre-fill: high watermarks of the misrouted topic do not add up');
    }
    await admin.disconnect();
    const rate = (r: { rate: number }): string => Math.round(r.rate).toLocaleString('en-US');
    const steadyTitle = `steady part: ${100 * STEADY_FROM}% to ${100 * STEADY_TO}% of the records handled`;
    const whole = (r: { wholeRate: number; wholeCpuMicros: number }): string => `${Math.round(r.wholeRate).toLocaleString('en-US')} (${r.wholeCpuMicros.toFixed(2)} µs)`;
    const atStart = (r: ProcessorRun): string => `${r.evaluatedAtFirst.toLocaleString('en-US')} / ${r.firstCommitted.toLocaleString('en-US')}`;
    const title = `${PARTITIONS} partitions, ${RECORDS.toLocaleString('en-US')} pre-filled decisions of ${Math.round(bytes / RECORDS)} B, ${broker.own ? 'broker started by this run' : 'KAFKA_BROKERS'}`;

    // (a), (e), (b), (f) alternate, so a busy moment on the shared machine does not hit only one of them
    const raws: ReturnType<typeof rawRate>[] = [];
    const ones: ProcessorRun[] = [];
    const bases: ProcessorRun[][] = BASE_CLIS.map(() => []);
    const wrongs: ProcessorRun[] = [];
    if (throughput) {
      for (let round = 0; round < ROUNDS; round++) {
        raws.push(rawRate(brokers, decisions));
        for (const [b, cli] of BASE_CLIS.entries()) bases[b]!.push(await processorRate(brokers, dir, decisions, 1, { cli, expectTrips: trips }));
        ones.push(await processorRate(brokers, dir, decisions, 1, { expectTrips: trips }));
        if (MODES.has('forwarded')) wrongs.push(await processorRate(brokers, dir, misrouted, 1, { forwarding: true, expectTrips: trips }));
      }
    }
    const scaling = MODES.has('scaling') && throughput ? [await processorRate(brokers, dir, decisions, 2), await processorRate(brokers, dir, decisions, 3)] : [];
    const latency = MODES.has('latency') ? await tripLatency(brokers, dir) : undefined;
    const half = MODES.has('latency-half') ? await tripLatency(brokers, dir, 'half') : undefined;

    const best = (rs: ProcessorRun[]): ProcessorRun | undefined => (rs.length === 0 ? undefined : rs.reduce((a, b) => (b.rate > a.rate ? b : a)));
    const one = best(ones);
    if (throughput) {
      const raw = raws.reduce((a, b) => (b.rate > a.rate ? b : a));
      report(`Kafka pipeline, real broker (${title})`, {
        'load average at start (1, 5, 15 min)': loadAtStart,
        'pre-fill, records/s (kafkajs producer, default partitioner: murmur2 of the key)': Math.round(fillRate),
        'rates and CPU below': steadyTitle,
        [`a. raw kafkajs consume, records/s (best of ${ROUNDS})`]: Math.round(raw.rate),
        'a. rounds': raws.map(rate).join(', '),
        'a. CPU per record (µs)': +raw.cpuMicros.toFixed(2),
        'a. rounds, CPU per record (µs)': raws.map((r) => r.cpuMicros.toFixed(2)).join(', '),
        'a. machine cores busy (whole consumer run, start-up included)': +raw.machineBusy.toFixed(2),
        'a. from the first batch to the last, records/s (CPU per record), rounds': raws.map(whole).join(', '),
        [`b. killswitch run, 1 instance, decisions/s (best of ${ROUNDS})`]: Math.round(one!.rate),
        'b. rounds': ones.map(rate).join(', '),
        'b. ratio to raw (wall clock, reported; the CPU-time ratio is the figure that stands)': +(one!.rate / raw.rate).toFixed(2),
        'b. CPU per decision (µs)': +one!.cpuMicros.toFixed(2),
        'b. rounds, CPU per decision (µs)': ones.map((r) => r.cpuMicros.toFixed(2)).join(', '),
        // the same comparison in CPU time: the two differ when one process gets more help from other threads (the collector's)
        'b. CPU-time ratio, raw CPU per record / CPU per decision': +(raw.cpuMicros / one!.cpuMicros).toFixed(2),
        'b. rounds, CPU-time ratio (raw and processor of the same round): median [range]': spread(ones.map((r, i) => raws[i]!.cpuMicros / r.cpuMicros)),
        [`b. machine cores busy, of ${cpus().length} (broker, instance, anything else)`]: +one!.machineBusy.toFixed(2),
        'b. transactions': one!.transactions,
        'b. start to first commit (s)': +one!.firstSeconds.toFixed(1),
        'b. from the first commit to the end, decisions/s (CPU per decision), rounds': ones.map(whole).join(', '),
        'b. decisions evaluated / input offsets committed when the interval starts, rounds': ones.map(atStart).join('; '),
        'b. forwarded, every round (expected 0: murmur2)': ones.map((r) => r.forwarded).join(', '),
        ...(scaling.length === 0 ? {} : {
          'd. decisions/s with 1, 2, 3 instances': [one!, ...scaling].map(rate).join(', '),
          'd. 2 vs 1, 3 vs 1': `${(scaling[0]!.rate / one!.rate).toFixed(2)}, ${(scaling[1]!.rate / one!.rate).toFixed(2)}`,
          'd. CPU per decision, all instances (µs)': [one!, ...scaling].map((r) => r.cpuMicros.toFixed(2)).join(', '),
          'd. machine cores busy': [one!, ...scaling].map((r) => r.machineBusy.toFixed(2)).join(', '),
          'd. partitions assigned, summed over instances': [one!, ...scaling].map((r) => r.assignments).join(', '),
        }),
        [`trips in every run of this build, murmur2 (expected ${trips})`]: [...ones, ...scaling].map((r) => r.trips).join(', '),
      });
    }
    for (const [b, cli] of BASE_CLIS.entries()) {
      const base = bases[b]!;
      const ratios = ones.map((r, i) => r.cpuMicros / base[i]!.cpuMicros);
      report(`Kafka pipeline, this build vs ${cli} (murmur2, 1 instance, the base builds just before this build in each round, in the order given; ${title})`, {
        'e. base build, decisions/s, rounds': base.map(rate).join(', '),
        'b. this build, decisions/s, rounds': ones.map(rate).join(', '),
        'e. base build, CPU per decision (µs), rounds': base.map((r) => r.cpuMicros.toFixed(2)).join(', '),
        'b. this build, CPU per decision (µs), rounds': ones.map((r) => r.cpuMicros.toFixed(2)).join(', '),
        'b/e CPU per decision, rounds': ratios.map((r) => r.toFixed(3)).join(', '),
        'b/e CPU per decision: median [range] (target <= 1.10)': spread(ratios, 3),
        'b/e CPU per decision, median of each build': `${spread(base.map((r) => r.cpuMicros))} -> ${spread(ones.map((r) => r.cpuMicros))}`,
        'e. base CPU-time ratio to raw, rounds': base.map((r, i) => (raws[i]!.cpuMicros / r.cpuMicros).toFixed(2)).join(', '),
        'b. this build CPU-time ratio to raw, rounds': ones.map((r, i) => (raws[i]!.cpuMicros / r.cpuMicros).toFixed(2)).join(', '),
        'e. base decisions/s: median [range]; b/e same round': `${spread(base.map((r) => r.rate), 0)}; ${spread(ones.map((r, i) => r.rate / base[i]!.rate))}`,
        [`e. trips, every round (expected ${trips})`]: base.map((r) => r.trips).join(', '),
      });
    }
    if (wrongs.length > 0) {
      const ratios = wrongs.map((r, i) => r.rate / ones[i]!.rate);
      report(`Kafka pipeline, every keyed record on a wrong partition (${MISROUTE === 'next' ? 'owner + 1' : 'spread over the 5 others'}), all forwarded through the repartition topic, 1 instance (${title})`, {
        'rates and CPU below': steadyTitle,
        'f. decisions/s, rounds': wrongs.map(rate).join(', '),
        'b. murmur2, same rounds': ones.map(rate).join(', '),
        'f/b decisions/s, same round: median [range] (target >= 0.5)': spread(ratios),
        'f/b best of each': +(best(wrongs)!.rate / one!.rate).toFixed(2),
        'f. CPU per decision (µs), rounds': wrongs.map((r) => r.cpuMicros.toFixed(2)).join(', '),
        'f/b CPU per decision, same round': spread(wrongs.map((r, i) => r.cpuMicros / ones[i]!.cpuMicros)),
        'f. machine cores busy, rounds': wrongs.map((r) => r.machineBusy.toFixed(2)).join(', '),
        'f. transactions, rounds': wrongs.map((r) => r.transactions).join(', '),
        'f. from the first commit until all are evaluated and committed, decisions/s (CPU per decision), rounds': wrongs.map(whole).join(', '),
        'f/b of those, same round': spread(wrongs.map((r, i) => r.wholeRate / ones[i]!.wholeRate)),
        'f. decisions evaluated / input offsets committed when the interval starts, rounds': wrongs.map(atStart).join('; '),
        'f. partitions assigned, rounds (6 + 6 repartition: one assignment logs both)': wrongs.map((r) => r.assignments).join(', '),
        [`f. forwarded, every round (expected ${keyed}: every keyed record)`]: wrongs.map((r) => r.forwarded).join(', '),
        [`f. trips, every round (expected ${trips})`]: wrongs.map((r) => r.trips).join(', '),
      });
    }
    const latencyTitle = `${LATENCY_RATE.toLocaleString('en-US')} decisions/s for ${LATENCY_SECONDS} s after ${LATENCY_WARMUP_S} s warm-up, 1 instance`;
    if (latency !== undefined) {
      report(`Kafka trip latency, produced -> kill event readable (read_committed), ${latencyTitle}`, {
        ...latencyLines(latency),
        'load average at the end (1, 5, 15 min)': load(),
      });
    }
    if (half !== undefined) {
      report(`Kafka trip latency, every other record on a wrong partition (forwarded), ${latencyTitle}`, {
        ...latencyLines(half),
        'forwarded (killswitch_forwarded_total)': half.forwarded,
        'p99 (ms) of trips whose 10th deny was misrouted / direct (trips)': `${half.byRoute.misrouted[0].toFixed(1)} (${half.byRoute.misrouted[1]}) / ${half.byRoute.direct[0].toFixed(1)} (${half.byRoute.direct[1]})`,
        ...(latency === undefined ? {} : { 'c. p99 of the murmur2 run above (ms)': +latency.p99.toFixed(1) }),
        'load average at the end (1, 5, 15 min)': load(),
      });
    }
  } finally {
    await broker.stop();
  }
}
