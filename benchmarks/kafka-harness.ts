/**
 * What the Kafka benchmark needs around the processor: a broker (started as the tests start it, or
 * KAFKA_BROKERS), `killswitch run` instances as child processes with their /metrics, committed-offset
 * progress of a group, and a topic pre-filled with valid decisions (docs/spec.md#1-decision-events).
 */
import { execFileSync, spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, Partitioners, type Admin, type Message } from 'kafkajs';
import type * as Cluster from '../scripts/kafka/cluster.mjs';
import { mulberry32 } from './util.js';

/** Compiled to dist/benchmarks: the CLI is dist/src/cli.js, the cluster script stays in scripts/. */
export const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const CLUSTER = new URL('../../scripts/kafka/cluster.mjs', import.meta.url);
export const RAW_CONSUMER = fileURLToPath(new URL('./kafka-raw-consume.js', import.meta.url));

export interface Broker {
  readonly brokers: string;
  /** false when KAFKA_BROKERS pointed at a broker this run did not start */
  readonly own: boolean;
  stop(): Promise<void>;
}

/**
 * A single-node KRaft broker from scripts/kafka/cluster.mjs, as the tests start it, with one change:
 * group.initial.rebalance.delay.ms back at Kafka's default (3 s; the tests set 0), so instances started
 * together are assigned their partitions in one rebalance instead of passing them around.
 */
export async function startBroker(): Promise<Broker> {
  const existing = process.env.KAFKA_BROKERS;
  if (existing !== undefined && existing !== '') return { brokers: existing, own: false, stop: () => Promise.resolve() };
  const cluster = (await import(CLUSTER.href)) as typeof Cluster;
  const k = await cluster.startKafka({ serverProperties: { 'group.initial.rebalance.delay.ms': '3000' } });
  return { brokers: k.brokers, own: true, stop: k.stop };
}

export function kafkaClient(brokers: string, clientId = 'bench'): Kafka {
  return new Kafka({ brokers: brokers.split(','), clientId, logLevel: logLevel.NOTHING });
}

/** `repartition` only when set: builds before the repartition topic (df73436 and older) refuse the key. */
export interface Topics { decisions: string; kills: string; addenda: string; dlq: string; repartition?: string }

/**
 * Fresh output topics, over `decisions` when given. `repartition: true` names a fresh repartition topic
 * too: a group reads its repartition topic from the beginning and skips what other groups forwarded, so
 * runs that forward must not share one (otherwise the processor's default, `<decisions>.repartition`).
 */
export function topicsFor(prefix: string, decisions?: string, o: { repartition?: boolean } = {}): Topics {
  const id = `${prefix}-${randomUUID().slice(0, 8)}`;
  const topics: Topics = { decisions: decisions ?? `${id}.decisions`, kills: `${id}.kills`, addenda: `${id}.addenda`, dlq: `${id}.dlq` };
  if (o.repartition === true) topics.repartition = `${id}.repartition`;
  return topics;
}

/** kafkajs's default partitioner (murmur2 of the key, as Java's): the owner partition of a key (docs/spec.md#11-kafka-mode). */
const keyPartitioner = Partitioners.DefaultPartitioner();
export function murmur2Partition(key: string, partitions: number): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
  return keyPartitioner({ topic: 'owner', partitionMetadata, message: { key, value: null } });
}

/**
 * How a producer places records (the "partitioner modes" of the Kafka benchmark): `murmur2` leaves it
 * to kafkajs's default partitioner (every keyed record on its owner partition, nothing forwarded);
 * `wrong` sets `partition` on every keyed record to one that is not its owner's, `half` on every other
 * record (counted over all records, keyed or not). Unkeyed (anonymous) records are left alone: they
 * have no owner. Which wrong partition (`KAFKA_BENCH_MISROUTE`): `spread` (default) = (owner + 1 + i
 * mod (N - 1)) mod N for the i-th misrouted record, so the records read on one partition belong to
 * every other owner, as with librdkafka's CRC32 or a round-robin producer; `next` = (owner + 1) mod N,
 * so all records read on partition q are forwarded to the one owner q - 1.
 */
export type Placement = 'murmur2' | 'wrong' | 'half';
export type Misroute = 'spread' | 'next';
export const MISROUTE: Misroute = process.env.KAFKA_BENCH_MISROUTE === 'next' ? 'next' : 'spread';

export class Misrouter {
  private n = 0;
  private wrong = 0;
  /** owner partition per key: kafkajs's murmur2 (in Long arithmetic) took about 20 µs per record, most of the latency load's own CPU */
  private readonly owners = new Map<string, number>();
  constructor(private readonly placement: Placement, private readonly partitions: number, private readonly misroute: Misroute = MISROUTE) {}
  /** the message as this placement sends it; true when it goes to a partition other than its owner's */
  place(m: Message): { message: Message; misrouted: boolean } {
    const i = this.n++;
    if (this.placement === 'murmur2' || typeof m.key !== 'string' || (this.placement === 'half' && i % 2 === 1)) return { message: m, misrouted: false };
    const shift = this.misroute === 'next' ? 1 : 1 + (this.wrong++ % (this.partitions - 1));
    let owner = this.owners.get(m.key);
    if (owner === undefined) this.owners.set(m.key, (owner = murmur2Partition(m.key, this.partitions)));
    return { message: { ...m, partition: (owner + shift) % this.partitions }, misrouted: true };
  }
}

/** A working directory with a signing key (`killswitch keys generate`), shared by every config in it. */
export function benchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'killswitch-kbench-'));
  execFileSync(process.execPath, [CLI, 'keys', 'generate', '--out', join(dir, 'keys')], { stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

let ports = 21_000 + Math.floor(Math.random() * 10_000);

/**
 * The config of one `killswitch run` instance in Kafka mode: defaults everywhere but names and ports,
 * and the blast-radius governor off: the benchmarks' trip storms (1,500 trips in 35 s) are what it
 * exists to hold, and they measure every trip's path to the kills topic.
 */
export function processorConfig(dir: string, brokers: string, topics: Topics, group: string, partitions: number): { file: string; port: number } {
  const port = ports++;
  const file = join(dir, `kafka-${randomUUID().slice(0, 6)}.json`);
  writeFileSync(file, JSON.stringify({
    kill_switch: { enabled: true },
    governor: { enabled: false },
    kafka: { brokers: brokers.split(','), group_id: group, partitions, topics },
    http: { listen: `127.0.0.1:${port}` },
    signing: { private_key_file: join(dir, 'keys/signing-key.pem'), jwks_file: join(dir, 'keys/jwks.json') },
    log: { level: 'info' },
  }));
  return { file, port };
}

export interface Instance {
  readonly child: ChildProcess;
  readonly port: number;
  log(): string;
  /** partitions this instance was assigned so far ("partition assigned" log lines) */
  assigned(): number;
  metrics(): Promise<string>;
  stop(): Promise<number | null>;
}

/**
 * Starts `killswitch run` (`cli`: this build's, or another build's dist/src/cli.js) and resolves once it
 * logs that Kafka mode is running. KAFKA_BENCH_NODE_ARGS adds node options (e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof` to profile the processor).
 */
export async function startInstance(config: { file: string; port: number }, cli = CLI): Promise<Instance> {
  const nodeArgs = (process.env.KAFKA_BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(process.execPath, [...nodeArgs, cli, 'run', '--config', config.file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = Date.now();
  while (!log.includes('"kafka mode running"')) {
    if (child.exitCode !== null) throw new Error(`killswitch run exited with ${child.exitCode}:\n${log.slice(-4000)}`);
    if (Date.now() - started > 90_000) throw new Error(`killswitch run did not start:\n${log.slice(-4000)}`);
    await sleep(50);
  }
  return {
    child,
    port: config.port,
    log: () => log,
    assigned: () => log.split('"partition assigned"').length - 1,
    metrics: async () => (await fetch(`http://127.0.0.1:${config.port}/metrics`)).text(),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The steady part of a run, where rates and CPU per record are compared: from the moment 20% of the
 * records have been handled (consumed by the raw consumer, evaluated by the processor) to the moment
 * 80% have. Work in flight at either end (a fetch decoded and not yet handled; with forwarding,
 * records read at their source and not yet evaluated at their owner) is about the same at both, so
 * it cancels out, as start-up, the first fetch and the final drain are left out.
 */
export const STEADY_FROM = 0.2;
export const STEADY_TO = 0.8;

/** Busy and total CPU time of the whole machine so far (Linux /proc/stat, clock ticks); undefined elsewhere. */
export function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - fields[3]! - (fields[4] ?? 0), total }; // idle and iowait are not busy
  } catch {
    return undefined;
  }
}

/** Cores kept busy between two machineCpu() readings (0..cores). */
export function busyCores(from: ReturnType<typeof machineCpu>, to: ReturnType<typeof machineCpu>, cores: number): number {
  if (from === undefined || to === undefined || to.total === from.total) return NaN;
  return ((to.busy - from.busy) / (to.total - from.total)) * cores;
}

/** Sum of one Prometheus sample over instances (a plain `name value` or `name{...} value` line). */
export function sample(texts: readonly string[], name: string): number {
  let sum = 0;
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

export async function highWatermarks(admin: Admin, topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((n, o) => n + Number(o.high), 0);
}

export async function committedTotal(admin: Admin, group: string, topic: string): Promise<number> {
  const committed = (await admin.fetchOffsets({ groupId: group, topics: [topic] }))[0]?.partitions ?? [];
  return committed.reduce((n, c) => n + Math.max(0, Number(c.offset)), 0);
}

export interface Progress {
  /** seconds from the start of watching to the first committed progress, and to the end */
  readonly firstSeconds: number;
  readonly endSeconds: number;
  /** records committed at the first sample that showed progress */
  readonly firstCommitted: number;
  /** records per second from the first committed progress to the end: the sustained rate */
  readonly rate: number;
}

/**
 * Polls the group's committed offsets every `everyMs` until they reach `total` (or `timeoutMs`);
 * `onFirst` runs when the first progress is seen, before the clock of the sustained rate starts;
 * `check` before every poll (it throws to give up, e.g. when the processor exited).
 */
export async function watchCommitted(admin: Admin, group: string, topic: string, total: number, o: { everyMs?: number; timeoutMs?: number; onFirst?: () => Promise<void>; check?: () => void } = {}): Promise<Progress> {
  const t0 = performance.now();
  let first: { t: number; c: number } | undefined;
  const deadline = t0 + (o.timeoutMs ?? 600_000);
  for (;;) {
    o.check?.();
    let c = await committedTotal(admin, group, topic);
    let t = performance.now();
    if (first === undefined && c > 0) {
      if (o.onFirst !== undefined) {
        await o.onFirst();
        c = await committedTotal(admin, group, topic);
        t = performance.now();
      }
      first = { t, c };
    }
    if (c >= total) {
      const f = first!;
      return { firstSeconds: (f.t - t0) / 1000, endSeconds: (t - t0) / 1000, firstCommitted: f.c, rate: f.t === t ? NaN : (total - f.c) / ((t - f.t) / 1000) };
    }
    if (t > deadline) throw new Error(`group ${group} committed ${c} of ${total} records in ${Math.round((t - t0) / 1000)} s`);
    await sleep(o.everyMs ?? 100);
  }
}

/** Produces `messages` in sends of `chunk`, a few sends in flight; returns the records per second. */
export async function fill(brokers: string, topic: string, messages: readonly Message[], chunk = 5000): Promise<number> {
  // kafkajs's default (murmur2 of the key); a message's own `partition` wins over it
  const producer = kafkaClient(brokers, 'bench-fill').producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const t0 = performance.now();
  try {
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < messages.length; i += chunk) {
      const p: Promise<unknown> = producer.send({ topic, messages: messages.slice(i, i + chunk) }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= 4) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } finally {
    await producer.disconnect();
  }
  return messages.length / ((performance.now() - t0) / 1000);
}

export async function createTopic(admin: Admin, topic: string, partitions: number): Promise<void> {
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
}

/** p-th percentile (0..100) of a sorted array, nearest rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** USER_HZ, the unit of /proc/PID/stat's times (100 on Linux) */
const CLOCK_TICKS = 100;

/**
 * The latency load's producer, outside this process: confluent-kafka for Python (librdkafka, its
 * defaults: linger.ms 5; the Java partitioner) running benchmarks/latency_producer.py, fed lines through
 * its stdin. kafkajs producing 20,000 records/s in the benchmark's own process took 0.6 to 0.8 of this
 * machine's 2 cores (with the benchmark's reader, before Misrouter cached owners), which the broker and
 * the instance under test then waited for; librdkafka needs about 0.25. Needs .cache/python-venv with
 * confluent-kafka (made by the Kafka partitioner tests of `npm test`). A producer that dies makes the
 * next send throw, with its output.
 */
export class LatencyProducer {
  static readonly SCRIPT = fileURLToPath(new URL('../../benchmarks/latency_producer.py', import.meta.url));
  static readonly PYTHON = fileURLToPath(new URL('../../.cache/python-venv/bin/python', import.meta.url));
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  /** resolves with the exit code (null: killed) once the process has ended; never rejects */
  private readonly exited: Promise<number | null>;
  private ended = false;
  private out = '';

  constructor(brokers: string, topic: string) {
    if (!existsSync(LatencyProducer.PYTHON)) {
      throw new Error(`${LatencyProducer.PYTHON} is missing: run \`npm test\` once (its Kafka partitioner tests make that venv with confluent-kafka), or KAFKA_BENCH_LOAD_CLIENT=kafkajs`);
    }
    const child = spawn(LatencyProducer.PYTHON, [LatencyProducer.SCRIPT, '--bootstrap', brokers, '--topic', topic], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.on('data', (b: Buffer) => (this.out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (this.out += b.toString()));
    // a write after the process died (EPIPE) is reported by the next send, not thrown from the stream
    child.stdin.on('error', (err) => (this.out += `\nstdin: ${err.message}`));
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.out += `\n${err.message}`;
        this.ended = true;
        resolve(-1);
      });
      child.once('close', (code) => {
        this.ended = true;
        resolve(code);
      });
    });
  }

  /** Hands the messages to the producer (it sends them within its linger); waits only when the pipe is full. */
  async send(messages: readonly Message[]): Promise<void> {
    if (this.ended) throw new Error(`latency_producer.py ended during the run:\n${this.out.slice(-3000)}`);
    let lines = '';
    for (const m of messages) lines += `${m.partition ?? -1}\t${m.key === null || m.key === undefined ? '' : String(m.key)}\t${String(m.value)}\n`;
    if (!this.child.stdin.write(lines)) await Promise.race([new Promise((resolve) => this.child.stdin.once('drain', resolve)), this.exited]);
  }

  /** CPU seconds the producer's process has used (user + system, from /proc). */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  /** Ends the input; resolves once every record is delivered, throws if one was not. */
  async close(expected: number): Promise<void> {
    this.child.stdin.end();
    const code = await this.exited;
    const produced = (JSON.parse(this.out.trim().split('\n').find((l) => l.startsWith('{"produced"')) ?? '{"produced":-1}') as { produced: number }).produced;
    if (code !== 0 || produced !== expected) throw new Error(`latency_producer.py exited with ${code}, produced ${produced} of ${expected}:\n${this.out.slice(-3000)}`);
  }
}

export const LATENCY_RATE = 20_000;
/** one misbehaving identity starts every this many ms and sends a deny every 10 ms, tripping at its 10th */
const TRIP_EVERY_MS = 20;
/** the verdict mix of well-behaved identities: some denies, never near the threshold */
export const VERDICTS = ['allow', 'allow', 'allow', 'allow', 'allow', 'allow', 'allow', 'deny', 'advisory_deny', 'step_up'] as const;

/**
 * The trip-latency load, shared by kafka-pipeline and the peers comparison: what to send `elapsed` ms
 * into the run so that LATENCY_RATE decisions/s have been sent. Most come from 20,000 well-behaved
 * identities; every TRIP_EVERY_MS a fresh identity starts a deny every 10 ms and trips at its 10th.
 * At most 0.1 s worth per call: after a stall one send could otherwise pass the broker's size limit.
 * `placement` (default murmur2) sets `partition` on misrouted records (see Misrouter): with `half`, a
 * misbehaving identity's denies are split between its owner partition and another, as a producer
 * without murmur2 would split them.
 */
export class LatencyLoad {
  private readonly rnd = mulberry32(11);
  private seq = 0;
  private nextBad = 0;
  private readonly bad: { agent: string; next: number; left: number }[] = [];
  private sent = 0;
  private readonly router: Misrouter;

  constructor(placement: Placement = 'murmur2', partitions = 6) {
    this.router = new Misrouter(placement, partitions);
  }

  /**
   * The decisions due now (none: wait a little), the ids of those among them that trip an identity (its
   * 10th deny), and those trips with their identity, whether that 10th deny was misrouted and when it
   * became due (ms since the load started: a producer that batches sends it later).
   */
  next(elapsed: number): { messages: Message[]; tripping: string[]; trips: { id: string; agent: string; misrouted: boolean; due: number }[] } {
    const due = Math.min(Math.floor((elapsed * LATENCY_RATE) / 1000) - this.sent, LATENCY_RATE / 10);
    if (due <= 0) return { messages: [], tripping: [], trips: [] };
    const occurred = new Date().toISOString();
    const messages: Message[] = [];
    const tripping: string[] = [];
    const trips: { id: string; agent: string; misrouted: boolean; due: number }[] = [];
    while (this.nextBad * TRIP_EVERY_MS <= elapsed) this.bad.push({ agent: `spiffe://bench.example/ns/prod/sa/rogue-${this.nextBad++}`, next: 0, left: 10 });
    for (let b = this.bad.length - 1; b >= 0; b--) {
      const r = this.bad[b]!;
      if (r.next > elapsed) continue;
      const id = `lat-${this.seq++}`;
      const { message, misrouted } = this.router.place({ key: r.agent, value: JSON.stringify({ decision_id: id, agent_id: r.agent, decision: 'deny', occurred_at: occurred, session_id: `${r.agent}#s` }) });
      messages.push(message);
      const dueAt = r.next;
      r.next = elapsed + 10;
      if (--r.left === 0) {
        tripping.push(id);
        trips.push({ id, agent: r.agent, misrouted, due: dueAt });
        this.bad.splice(b, 1);
      }
    }
    while (messages.length < due) {
      const agent = `spiffe://bench.example/ns/prod/sa/agent-${Math.floor(this.rnd() * 20_000)}`;
      const v = VERDICTS[Math.floor(this.rnd() * VERDICTS.length)];
      messages.push(this.router.place({ key: agent, value: JSON.stringify({ decision_id: `lat-${this.seq++}`, agent_id: agent, decision: v, occurred_at: occurred, tool_name: 'web.fetch', tenant: 'acme' }) }).message);
    }
    this.sent += messages.length;
    return { messages, tripping, trips };
  }

  get produced(): number {
    return this.sent;
  }
}
