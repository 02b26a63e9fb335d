/** Helpers for tests against the real broker started by test/setup/kafka-global.ts. */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ConfigResourceTypes, Kafka, logLevel, type Message } from 'kafkajs';
import { runCli, startLogged, writeIn, type LoggedCli } from './cli.js';

export function kafkaClient(brokers: string): Kafka {
  return new Kafka({ brokers: brokers.split(','), clientId: 'killswitch-test', logLevel: logLevel.NOTHING });
}

export interface TestTopics { decisions: string; kills: string; addenda: string; dlq: string; shadow: string; operator_addenda: string }

/** Fresh topic names for one test, so tests never see each other's records. */
export function freshTopics(prefix = 't'): TestTopics {
  const id = `${prefix}-${randomUUID().slice(0, 8)}`;
  return { decisions: `${id}.decisions`, kills: `${id}.kills`, addenda: `${id}.addenda`, dlq: `${id}.dlq`, shadow: `${id}.shadow`, operator_addenda: `${id}.operator` };
}

/** A Kafka-mode config in `dir`, signing with a key generated there. */
export function kafkaConfig(dir: string, brokers: string, topics: TestTopics, o: {
  killSwitch?: Record<string, unknown>; partitions?: number; registry?: string; group?: string; http?: string;
  /** more top-level keys (governor, overrides, an http section with tokens) */
  extra?: Record<string, unknown>;
  /** more keys of the kafka section */
  kafka?: Record<string, unknown>;
} = {}): string {
  const keys = join(dir, 'keys');
  const g = runCli(['keys', 'generate', '--out', keys, '--if-missing']);
  if (g.status !== 0) throw new Error(g.stderr);
  return writeIn(dir, `kafka-${randomUUID().slice(0, 6)}.json`, JSON.stringify({
    kill_switch: { enabled: true, ...o.killSwitch },
    kafka: {
      brokers: brokers.split(','), group_id: o.group ?? `g-${topics.decisions}`, partitions: o.partitions ?? 3, topics,
      session_timeout_ms: 6000, ...o.kafka,
    },
    ...(o.registry === undefined ? {} : { schema_registry: { url: o.registry } }),
    ...(o.http === undefined ? {} : { http: { listen: o.http } }),
    signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') },
    log: { level: 'info' },
    ...o.extra,
  }));
}

/** Create a topic the way its producers' team would, before any processor runs. */
/** `config`: topic configs, e.g. `{ 'compression.type': 'lz4' }`. */
export async function createTopic(brokers: string, topic: string, partitions: number, config: Record<string, string> = {}): Promise<void> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, configEntries }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The oldest record timestamp a test may write: the broker deletes records older than its retention
 * (7 days by default) whenever its check runs, so a test stamping fixed past dates passes until the
 * calendar moves past them, then loses its records mid-run. Tests stamp times relative to now.
 */
const OLDEST_TEST_RECORD_MS = 24 * 3_600_000;

export async function produce(brokers: string, topic: string, messages: Message[]): Promise<void> {
  const oldest = Date.now() - OLDEST_TEST_RECORD_MS;
  const stale = messages.find((m) => m.timestamp !== undefined && Number(m.timestamp) < oldest);
  if (stale !== undefined) throw new Error(`test bug: record timestamp ${new Date(Number(stale.timestamp)).toISOString()} is more than a day old; the broker's retention may delete it mid-test (stamp times relative to now)`);
  const p = kafkaClient(brokers).producer();
  await p.connect();
  try {
    for (let i = 0; i < messages.length; i += 2000) await p.send({ topic, messages: messages.slice(i, i + 2000) });
  } finally {
    await p.disconnect();
  }
}

export interface ReadRecord { partition: number; offset: number; key: string | null; value: Buffer | null; headers: Record<string, string> }

/** The values of some configs of a topic, as the broker describes it. */
export async function topicConfig(brokers: string, topic: string, names: readonly string[]): Promise<Record<string, string>> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    const r = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [...names] }] });
    return Object.fromEntries((r.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]));
  } finally {
    await admin.disconnect();
  }
}

/**
 * What is committed on `topic` (read_committed): as soon as `until` holds, else what arrived by
 * `timeoutMs` (default 60 s, generous for a loaded 2-core machine: a read with `until` ends early).
 */
export async function readTopic(brokers: string, topic: string, o: { until?: (records: ReadRecord[]) => boolean; timeoutMs?: number } = {}): Promise<ReadRecord[]> {
  const c = kafkaClient(brokers).consumer({ groupId: `reader-${randomUUID()}`, readUncommitted: false });
  const out: ReadRecord[] = [];
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  await c.run({
    eachMessage: ({ partition, message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries((message.headers ?? {}))) headers[k] = String(v);
      out.push({ partition, offset: Number(message.offset), key: message.key?.toString('utf8') ?? null, value: message.value, headers });
      return Promise.resolve();
    },
  });
  while (Date.now() < deadline && !(o.until?.(out) ?? false)) await new Promise((r) => setTimeout(r, 100));
  await c.disconnect();
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** A running `killswitch run` in Kafka mode; resolves once it logs that it is running. */
export async function startProcessor(config: string): Promise<LoggedCli> {
  const p = startLogged(['run', '--config', config]);
  const started = Date.now();
  while (!p.log().includes('"partition assigned"') && !p.log().includes('"kafka mode running"')) {
    if (p.child.exitCode !== null) throw new Error(`processor exited with ${p.child.exitCode}: ${p.log()}`);
    if (Date.now() - started > 60_000) throw new Error(`processor did not start: ${p.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return p;
}

/** Records the group has committed on the decisions topic, over all partitions. */
export async function committedTotalOn(brokers: string, topics: TestTopics, group: string): Promise<number> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    const committed = (await admin.fetchOffsets({ groupId: group, topics: [topics.decisions] }))[0]?.partitions ?? [];
    return committed.reduce((n, c) => n + Math.max(0, Number(c.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Committed offsets of the group equal the high watermarks: everything produced is processed, the
 * decisions forwarded to their owners (the repartition topic, `<decisions>.repartition` unless
 * `repartition` names it) included. The processor commits past transaction markers and aborted
 * records, so a drained partition's committed offset is its high watermark; a repartition partition
 * whose last transaction was left open by a processor killed in it gets its abort marker only when the
 * transaction times out, so one also counts as drained once its committed offset and high watermark
 * have not moved for 3 s while everything else is drained.
 */
export async function drainedOn(brokers: string, topics: TestTopics & { repartition?: string }, group: string, timeoutMs = 60_000): Promise<void> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const repartition = topics.repartition ?? `${topics.decisions}.repartition`;
  try {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    let sameSince = Date.now();
    for (;;) {
      const high = await admin.fetchTopicOffsets(topics.decisions);
      const committed = (await admin.fetchOffsets({ groupId: group, topics: [topics.decisions] }))[0]?.partitions ?? [];
      const done = high.every((h) => Number(h.high) === 0 || Number(committed.find((c) => c.partition === h.partition)?.offset ?? -1) >= Number(h.high));
      let forwardedDone = true;
      let state = '';
      if ((await admin.listTopics()).includes(repartition)) {
        try {
          const fhigh = await admin.fetchTopicOffsets(repartition);
          const fcommitted = (await admin.fetchOffsets({ groupId: group, topics: [repartition] }))[0]?.partitions ?? [];
          state = JSON.stringify([fhigh, fcommitted]);
          forwardedDone = fhigh.every((h) => Number(h.high) === 0 || Number(fcommitted.find((c) => c.partition === h.partition)?.offset ?? -1) >= Number(h.high));
        } catch (err) {
          // created a moment ago by the processor: its leaders may not be known yet (NOT_LEADER_FOR_PARTITION)
          state = `error: ${(err as Error).message}`;
          forwardedDone = false;
        }
      }
      if (state !== last || !done) {
        last = state;
        sameSince = Date.now();
      }
      if (done && (forwardedDone || Date.now() - sameSince >= 3000)) return;
      if (Date.now() > deadline) throw new Error(`not drained: high ${JSON.stringify(high)} committed ${JSON.stringify(committed)} repartition ${state}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
  }
}
