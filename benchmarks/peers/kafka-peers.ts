/**
 * Kafka peer: the same trip rule as a Kafka Streams application (kafka-streams/, exactly_once_v2, one
 * stream thread) and ours (`killswitch run` in Kafka mode, transactions, one instance, as
 * kafka-pipeline.ts runs it), side by side on one broker:
 *
 *  - sustained decisions/s over one pre-filled 6-partition topic (1M decisions, the record shape of
 *    kafka-pipeline.ts), each run in a fresh group with fresh output topics, from the first committed
 *    progress until the committed offsets reach the end; ours and the peer alternate, twice each, and
 *    the best of each is kept;
 *  - the identities each one tripped on that topic, against each other and against our core run in
 *    process over the same decisions;
 *  - trip latency, decision produced -> kill record readable by a read_committed consumer, at a steady
 *    20,000 decisions/s (the generator of kafka-pipeline.ts: every 20 ms a fresh identity sends a deny
 *    every 10 ms and trips at its 10th), one after the other on fresh topics.
 *
 * The backlog's event time runs at 1,000 decisions per second, so its 1M decisions span 1,000 s and the
 * 300 s windows slide: 10,000 identities, 100 of which only deny (each trips at its 10th call), 200 deny
 * 90% of the time (some trip, at various points), the rest a mix far from the threshold, 1% anonymous.
 */
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import type { Consumer, Message } from 'kafkajs';
import { Evaluator } from '../../src/core/evaluator.js';
import {
  benchDir, busyCores, createTopic, highWatermarks, kafkaClient, LatencyLoad, machineCpu, percentile, processorConfig, sleep,
  startInstance, topicsFor, VERDICTS, watchCommitted, type Progress,
} from '../kafka-harness.js';
import { gc, mulberry32, tripConfig } from '../util.js';
import { processCpuSeconds, startStreamsApp } from './streams-app.js';

const PARTITIONS = 6;
const RECORDS = Number(process.env.PEERS_KAFKA_RECORDS ?? 1_000_000);
const IDENTITIES = 10_000;
const HOT = 100;
const BORDERLINE = 200;
const EVENTS_PER_SECOND = 1000;
const LATENCY_WARMUP_S = 5;
const LATENCY_SECONDS = Number(process.env.PEERS_LATENCY_SECONDS ?? 30);

const began = performance.now();
/** One line on stderr per phase: the whole comparison takes several minutes. */
export function progress(what: string): void {
  console.error(`[peers ${((performance.now() - began) / 1000).toFixed(0)} s] ${what}`);
}

/** The backlog, and the identities our core trips on it when run in process (the expected set). */
function backlog(): { messages: Message[]; expected: Set<string>; bytes: number } {
  const rnd = mulberry32(5);
  const start = Date.now() - 60_000 - (RECORDS / EVENTS_PER_SECOND) * 1000;
  const evaluator = new Evaluator(tripConfig());
  const clock = evaluator.openStream('expected', { file: 'expected' });
  const classOf = evaluator.config.classifier.classOf;
  const expected = new Set<string>();
  const messages = new Array<Message>(RECORDS);
  let bytes = 0;
  for (let i = 0; i < RECORDS; i++) {
    const who = Math.floor(rnd() * IDENTITIES);
    const anonymous = rnd() < 0.01;
    const agent = `spiffe://bench.example/ns/prod/sa/agent-${who}`;
    const decision = who < HOT ? 'deny' : who < HOT + BORDERLINE ? (rnd() < 0.9 ? 'deny' : 'allow') : VERDICTS[Math.floor(rnd() * VERDICTS.length)]!;
    const timeMs = start + Math.floor((i * 1000) / EVENTS_PER_SECOND);
    const decisionId = `01K${i.toString(36).padStart(10, '0')}`;
    const value = JSON.stringify({
      decision_id: decisionId,
      ...(anonymous ? {} : { agent_id: agent }),
      decision,
      occurred_at: new Date(timeMs).toISOString(),
      session_id: `sess-${who}-${Math.floor(i / 100_000)}`,
      tool_name: 'web.fetch',
      policy_rule: 'egress-allowlist',
      tenant: 'acme',
    });
    bytes += Buffer.byteLength(value);
    messages[i] = anonymous ? { key: null, value } : { key: agent, value };
    // Event time only grows, so one stream in process sees what each partition sees: T = t for every decision.
    const trip = evaluator.accept(clock, { decisionId, agentId: anonymous ? null : agent, cls: classOf(decision), timeMs, sessionId: undefined }, i);
    if (trip !== null) expected.add(trip.agentId);
  }
  return { messages, expected, bytes };
}

/**
 * Produces the records one send at a time, so each partition holds them in the order generated (the
 * harness's fill() keeps 4 sends in flight, which may land out of order: at 1,000 decisions per second
 * of event time a send of 5,000 is 5 s, the allowed lateness, so some decisions would be dropped as late
 * and the in-process expectation would not hold).
 */
async function fillInOrder(brokers: string, topic: string, messages: readonly Message[], chunk = 5000): Promise<void> {
  const producer = kafkaClient(brokers, 'peers-fill').producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += chunk) await producer.send({ topic, messages: messages.slice(i, i + chunk) });
  } finally {
    await producer.disconnect();
  }
}

/** The identities blocked on a kills topic, read from the beginning by a read_committed consumer until it stays quiet. */
async function trippedOn(brokers: string, topic: string, expectedCount: number): Promise<Set<string>> {
  const consumer = kafkaClient(brokers, 'peers-kills').consumer({ groupId: `peers-kills-${randomUUID()}`, readUncommitted: false });
  const ids = new Set<string>();
  let last = performance.now();
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        const ev = JSON.parse(message.value!.toString('utf8')) as { agent_id: string; action: string };
        if (ev.action === 'block') ids.add(ev.agent_id);
        last = performance.now();
        return Promise.resolve();
      },
    });
    const t0 = performance.now();
    // quiet for 2 s once the expected count is in, or for 5 s after the first record, or 30 s with nothing
    for (;;) {
      await sleep(100);
      const now = performance.now();
      if (ids.size >= expectedCount && now - last > 2000) break;
      if (ids.size > 0 && now - last > 5000) break;
      if (now - t0 > 30_000) break;
    }
  } finally {
    await consumer.disconnect();
  }
  return ids;
}

interface ThroughputRun extends Progress {
  /** from starting the process to the first committed progress, s */
  readonly fromSpawnSeconds: number;
  readonly tripped: Set<string>;
  /** CPU of the processor process per decision over the sustained interval, µs */
  readonly cpuMicros: number;
  /** cores of the whole machine busy over the same interval */
  readonly machineBusy: number;
}

/** A processor under test: starts on the given topics and group; `pid` is the process whose CPU is counted. */
interface Running {
  readonly pid: number;
  /** resolves once every input partition is assigned */
  ready(): Promise<void>;
  stop(): Promise<void>;
}
type Start = (brokers: string, topics: { decisions: string; kills: string }, group: string) => Promise<Running>;

function oursStarter(dir: string): Start {
  return async (brokers, t, group) => {
    const topics = { ...topicsFor('peers-ours', t.decisions), kills: t.kills };
    // the governor is off there, as the peer has none: every trip blocks
    const config = processorConfig(dir, brokers, topics, group, PARTITIONS);
    const instance = await startInstance(config);
    return {
      pid: instance.child.pid!,
      ready: async () => {
        for (const started = Date.now(); instance.assigned() < PARTITIONS; await sleep(20)) {
          if (Date.now() - started > 60_000) throw new Error(`killswitch run not assigned:\n${instance.log().slice(-3000)}`);
        }
      },
      stop: async () => {
        const code = await instance.stop();
        if (code !== 0) throw new Error(`killswitch run exited with ${code}:\n${instance.log().slice(-3000)}`);
      },
    };
  };
}

const streamsStarter: Start = async (brokers, t, group) => {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic: t.kills, numPartitions: PARTITIONS, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const app = await startStreamsApp({ brokers, input: t.decisions, output: t.kills, applicationId: group });
  return {
    pid: app.pid,
    ready: () => Promise.resolve(), // RUNNING: tasks assigned and restored
    stop: async () => {
      const r = await app.stop();
      if (r.code !== 0) throw new Error(`the Kafka Streams peer exited with ${r.code}:\n${app.log().slice(-3000)}`);
      if (r.invalid !== undefined && r.invalid > 0) throw new Error(`the Kafka Streams peer found ${r.invalid} invalid records`);
    },
  };
};

async function throughput(brokers: string, decisions: string, start: Start, name: string, expectedCount: number): Promise<ThroughputRun> {
  const kills = `peers-${name}-${randomUUID().slice(0, 8)}.kills`;
  const group = `peers-${name}-${randomUUID().slice(0, 8)}`;
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const spawned = performance.now();
  const running = await start(brokers, { decisions, kills }, group);
  const startSeconds = (performance.now() - spawned) / 1000;
  try {
    let cpuAtFirst = 0;
    let machineAtFirst: ReturnType<typeof machineCpu>;
    const progress = await watchCommitted(admin, group, decisions, RECORDS, {
      onFirst: () => {
        cpuAtFirst = processCpuSeconds(running.pid);
        machineAtFirst = machineCpu();
        return Promise.resolve();
      },
    });
    const machineBusy = busyCores(machineAtFirst, machineCpu(), cpus().length);
    const cpuMicros = ((processCpuSeconds(running.pid) - cpuAtFirst) * 1e6) / (RECORDS - progress.firstCommitted);
    return { ...progress, fromSpawnSeconds: startSeconds + progress.firstSeconds, cpuMicros, machineBusy, tripped: await trippedOn(brokers, kills, expectedCount) };
  } finally {
    await running.stop();
    await admin.disconnect();
  }
}

export interface Latency {
  readonly produced: number;
  readonly producedRate: number;
  readonly trips: number;
  readonly missing: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** cores of the whole machine busy while measuring; of them, the processor */
  readonly machineBusy: number;
  readonly processorBusy: number;
}

/**
 * The trip-latency scenario of kafka-pipeline.ts for any processor: decisions at a steady LATENCY_RATE
 * on a fresh 6-partition topic; latency from just before the send of each tripping decision to its kill
 * record reaching a read_committed consumer, for trips whose decision was sent after the warm-up.
 */
async function tripLatency(brokers: string, start: Start, name: string): Promise<Latency> {
  const topics = { decisions: `peers-lat-${name}-${randomUUID().slice(0, 8)}.decisions`, kills: `peers-lat-${name}-${randomUUID().slice(0, 8)}.kills` };
  const kafka = kafkaClient(brokers, 'peers-latency');
  const admin = kafka.admin();
  await admin.connect();
  await createTopic(admin, topics.decisions, PARTITIONS);
  await admin.disconnect();
  const running = await start(brokers, topics, `peers-lat-${name}-${randomUUID().slice(0, 8)}`);
  const reader: Consumer = kafka.consumer({ groupId: `peers-lat-reader-${randomUUID()}`, readUncommitted: false });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  try {
    await running.ready();
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    let joined = false;
    reader.on(reader.events.GROUP_JOIN, () => (joined = true));
    await reader.connect();
    await reader.subscribe({ topic: topics.kills, fromBeginning: true });
    await reader.run({
      eachMessage: ({ message }) => {
        const now = performance.now();
        const ev = JSON.parse(message.value!.toString('utf8')) as { evidence: { tripping_decision_id: string } };
        const t = sentAt.get(ev.evidence.tripping_decision_id);
        if (t !== undefined) latencies.push(now - t);
        return Promise.resolve();
      },
    });
    while (!joined) await sleep(20);
    await producer.connect();

    const load = new LatencyLoad();
    const t0 = performance.now();
    const total = (LATENCY_WARMUP_S + LATENCY_SECONDS) * 1000;
    let expected = 0;
    let warmAt = 0;
    let machineAtWarm: ReturnType<typeof machineCpu>;
    let cpuAtWarm = 0;
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
        cpuAtWarm = processCpuSeconds(running.pid);
      }
      const at = performance.now();
      if (measuring) {
        for (const id of tripping) sentAt.set(id, at);
        expected += tripping.length;
      }
      await producer.send({ topic: topics.decisions, messages });
    }
    const producedSeconds = (performance.now() - t0) / 1000;
    const sent = load.produced;
    const measuredSeconds = (performance.now() - warmAt) / 1000;
    const machineBusy = busyCores(machineAtWarm, machineCpu(), cpus().length);
    const processorBusy = (processCpuSeconds(running.pid) - cpuAtWarm) / measuredSeconds;
    for (const until = performance.now() + 15_000; latencies.length < expected && performance.now() < until;) await sleep(50);
    const sorted = [...latencies].sort((a, b) => a - b);
    return {
      produced: sent, producedRate: sent / producedSeconds, trips: latencies.length, missing: expected - latencies.length,
      p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN, machineBusy, processorBusy,
    };
  } finally {
    await producer.disconnect();
    await reader.disconnect();
    await running.stop();
  }
}

export interface KafkaPeersResult {
  readonly brokerOwn: boolean;
  readonly recordBytes: number;
  readonly expected: Set<string>;
  readonly ours: ThroughputRun[];
  readonly streams: ThroughputRun[];
  readonly oursLatency: Latency;
  readonly streamsLatency: Latency;
}

export async function kafkaPeers(brokers: string, brokerOwn: boolean): Promise<KafkaPeersResult> {
  const dir = benchDir();
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const decisions = `peers-${randomUUID().slice(0, 8)}.decisions`;
  await createTopic(admin, decisions, PARTITIONS);
  // The generated records are dropped once produced (their GC pauses would land in the latency figures).
  const { expected, bytes } = await (async () => {
    const b = backlog();
    progress(`filling ${decisions} with ${RECORDS} decisions`);
    await fillInOrder(brokers, decisions, b.messages);
    return { expected: b.expected, bytes: b.bytes };
  })();
  gc();
  if ((await highWatermarks(admin, decisions)) !== RECORDS) throw new Error('pre-fill: high watermarks do not add up to the records produced');
  await admin.disconnect();

  const ours: ThroughputRun[] = [];
  const streams: ThroughputRun[] = [];
  const oursStart = oursStarter(dir);
  for (let round = 0; round < 2; round++) {
    progress(`throughput round ${round + 1}: killswitch run`);
    ours.push(await throughput(brokers, decisions, oursStart, 'ours', expected.size));
    progress(`throughput round ${round + 1}: Kafka Streams`);
    streams.push(await throughput(brokers, decisions, streamsStarter, 'streams', expected.size));
  }
  progress('trip latency: killswitch run');
  const oursLatency = await tripLatency(brokers, oursStart, 'ours');
  progress('trip latency: Kafka Streams');
  const streamsLatency = await tripLatency(brokers, streamsStarter, 'streams');
  return { brokerOwn, recordBytes: bytes / RECORDS, expected, ours, streams, oursLatency, streamsLatency };
}

/** A short account of how two sets of identities differ ("same" when they do not). */
export function setDifference(a: Set<string>, b: Set<string>): string {
  const onlyA = [...a].filter((x) => !b.has(x));
  const onlyB = [...b].filter((x) => !a.has(x));
  if (onlyA.length === 0 && onlyB.length === 0) return 'same';
  return `differ: ${onlyA.length} only in the first (${onlyA.slice(0, 3).join(', ')}), ${onlyB.length} only in the second (${onlyB.slice(0, 3).join(', ')})`;
}
