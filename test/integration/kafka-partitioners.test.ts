/**
 * Trips never depend on the producer's partitioner (docs/spec.md#11-kafka-mode): decisions of one
 * identity spread over partitions by producers this project did not write (kcat and confluent-kafka for
 * Python with librdkafka's default CRC32 partitioner, kafkajs with a random partitioner, records with
 * empty keys) trip exactly the identities `killswitch replay` trips over the same decisions, with the
 * same counts. Before repartitioning, an identity whose 12 denies were split over partitions never
 * tripped. The same holds for batches compressed with the codecs kafkajs cannot read by itself (Snappy,
 * LZ4, Zstandard), by librdkafka (kcat) or by the broker (the Java client's codecs); before the
 * processor gave kafkajs decompressors, one such batch stopped it on every restart.
 */
import { ensureConfluentPython } from '../helpers/confluent-python.js';
import { execFileSync, spawnSync } from 'node:child_process';
import kafkajs, { type ICustomPartitioner, type Message } from 'kafkajs';
import { describe, expect, inject, it } from 'vitest';
import { ownerPartition } from '../../src/adapters/kafka/repartition.js';
import { parseLines, runCli, tempDir, writeIn } from '../helpers/cli.js';
import { createTopic, drainedOn, freshTopics, kafkaClient, kafkaConfig, produce, readTopic, startProcessor, type ReadRecord, type TestTopics } from '../helpers/kafka.js';

const brokers = inject('kafkaBrokers');

type Doc = Record<string, unknown> & { agent_id: string; epoch: number; evidence?: Record<string, unknown>; chain?: { stream: string; sequence_number: number } };
const parse = (r: ReadRecord): Doc => JSON.parse(r.value!.toString('utf8')) as Doc;

/** Governor off on both sides (which trips it holds depends on how partitions interleave). */
const REPLAY_CONFIG = { kill_switch: { enabled: true }, governor: { enabled: false } };

interface Rec { readonly key: string | null; readonly value: string }

/**
 * Twelve rounds over ten identities, in event-time order, with anonymous decisions between them:
 * four deny all 12 calls (trip at their 10th, 10 of 10), three deny 9 of exactly 10 calls (trip at
 * their last, 10 of 9), three deny half (never trip). Which decision is an identity's 10th depends on
 * the order its decisions are read in, the counts do not: the comparison with replay holds whatever
 * partitions the records went to.
 */
function workload(tag: string): Rec[] {
  const base = Date.now() - 10 * 60_000;
  const out: Rec[] = [];
  let i = 0;
  // 20 ms apart: the whole workload spans less than the allowed lateness (5 s), so a producer that
  // sends its half after the other's never makes a decision late
  const at = (): string => new Date(base + 20 * i++).toISOString();
  const ids = (kind: string, n: number): string[] => Array.from({ length: n }, (_, k) => `spiffe://example.org/${tag}/${kind}-${k}`);
  const all = ids('denies-all', 4);
  const most = ids('denies-most', 3);
  const half = ids('denies-half', 3);
  for (let round = 0; round < 12; round++) {
    const push = (agent: string, verdict: string): void => {
      out.push({ key: agent, value: JSON.stringify({ decision_id: `${tag}-${i}`, agent_id: agent, decision: verdict, occurred_at: at(), session_id: `${agent}#s` }) });
    };
    for (const a of all) push(a, 'deny');
    if (round < 10) for (const a of most) push(a, round === 3 ? 'allow' : 'deny');
    for (const a of half) push(a, round % 2 === 0 ? 'deny' : 'allow');
    out.push({ key: null, value: JSON.stringify({ decision_id: `${tag}-${i}`, agent_id: null, decision: 'deny', occurred_at: at() }) });
  }
  return out;
}

/** A trip as both sides must agree on: identity, epoch and the window's counts. */
function tripCounts(doc: Doc): string {
  const e = doc.evidence as { calls: number; denies: number; advisory_denies: number };
  return `${doc.agent_id} epoch=${doc.epoch} calls=${e.calls} denies=${e.denies} advisory=${e.advisory_denies}`;
}

/** `killswitch replay` over the decisions as they lie in the topic: each partition, in offset order, one input. */
async function replayOfTopic(dir: string, topics: TestTopics, total: number): Promise<Doc[]> {
  const records = await readTopic(brokers, topics.decisions, { until: (r) => r.length >= total, timeoutMs: 20_000 });
  expect(records).toHaveLength(total);
  const inputs: string[] = [];
  for (const p of [...new Set(records.map((r) => r.partition))].sort()) {
    inputs.push(writeIn(dir, `partition-${p}.ndjson`, records.filter((r) => r.partition === p).map((r) => r.value!.toString('utf8')).join('\n') + '\n'));
  }
  const r = runCli(['replay', '--config', writeIn(dir, 'replay.json', JSON.stringify(REPLAY_CONFIG)), ...inputs]);
  expect(r.status, r.stderr).toBe(0);
  return parseLines<Doc>(r.stdout);
}

/**
 * Start a processor on a fresh 3-partition decisions topic, let `send` produce the workload, and check
 * the kill events against replay: the same identities with the same counts, each trip once, its
 * addendum in the chain of the identity's owner partition, and decisions forwarded to get there.
 */
async function tripsMatchReplay(prefix: string, send: (topics: TestTopics, records: readonly Rec[]) => Promise<void>, topicConfig: Record<string, string> = {}): Promise<void> {
  const dir = tempDir(`kafka-${prefix}-`);
  const topics = freshTopics(prefix);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  await createTopic(brokers, topics.decisions, 3, topicConfig);
  const cfg = kafkaConfig(dir, brokers, topics, { partitions: 3, http: `127.0.0.1:${port}`, extra: { governor: { enabled: false } } });
  const records = workload(prefix);
  const proc = await startProcessor(cfg);
  let metrics: string;
  try {
    await send(topics, records);
    await drainedOn(brokers, topics, `g-${topics.decisions}`, 90_000);
    // Caught up means no lag left on either input, transaction markers included (the decisions topic's
    // from transactional producers, the repartition topic's always): a lag that never clears would page
    // whoever watches it.
    const lags = (text: string): string[] => text.split('\n').filter((l) => /^killswitch_(repartition_)?consumer_lag\{/.test(l));
    const until = Date.now() + 10_000;
    for (;;) {
      metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (lags(metrics).every((l) => l.endsWith(' 0')) || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(lags(metrics).filter((l) => !l.endsWith(' 0'))).toEqual([]);
    expect(lags(metrics).length).toBeGreaterThan(0);
  } catch (err) {
    process.stderr.write(`processor log:\n${proc.log().slice(-6000)}\n`);
    throw err;
  } finally {
    expect(await proc.stop()).toBe(0);
  }
  const expected = await replayOfTopic(dir, topics, records.length);
  expect(expected.map((d) => d.agent_id).sort()).toEqual([
    ...Array.from({ length: 4 }, (_, k) => `spiffe://example.org/${prefix}/denies-all-${k}`),
    ...Array.from({ length: 3 }, (_, k) => `spiffe://example.org/${prefix}/denies-most-${k}`),
  ].sort());
  const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length, timeoutMs: 20_000 })).map(parse);
  expect(kills.map(tripCounts).sort()).toEqual(expected.map(tripCounts).sort());
  // the identities' decisions really were spread: some were forwarded to their owner partitions
  const forwarded = Number(/^killswitch_forwarded_total (\d+)$/m.exec(metrics)?.[1] ?? '0');
  expect(forwarded).toBeGreaterThan(0);
  // one hash chain per owner partition: each addendum in the addenda partition of its identity's owner
  const addenda = (await readTopic(brokers, topics.addenda, { until: (r) => r.length >= expected.length, timeoutMs: 20_000 }));
  expect(addenda).toHaveLength(expected.length);
  for (const a of addenda) {
    const owner = ownerPartition(a.key!, 3);
    expect(a.partition).toBe(owner);
    expect(parse(a).chain!.stream).toBe(`${topics.decisions}/${owner}`);
  }
  for (let p = 0; p < 3; p++) {
    const seqs = addenda.filter((a) => a.partition === p).map((a) => parse(a).chain!.sequence_number);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }
}

/** Half of each identity's decisions through kafkajs's default (murmur2) producer, as a Java or kafkajs gateway would. */
async function murmur2Half(topics: TestTopics, records: readonly Rec[]): Promise<void> {
  await produce(brokers, topics.decisions, records.filter((_, i) => i % 2 === 0).map((r) => ({ key: r.key, value: r.value })));
}
const otherHalf = (records: readonly Rec[]): Rec[] => records.filter((_, i) => i % 2 === 1);

/** Every record through kafkajs with a partitioner that picks one at random. */
async function randomPartitions(topics: TestTopics, records: readonly Rec[]): Promise<void> {
  const random: ICustomPartitioner = () => ({ partitionMetadata }) => Math.floor(Math.random() * partitionMetadata.length);
  const producer = kafkaClient(brokers).producer({ createPartitioner: random });
  await producer.connect();
  try {
    await producer.send({ topic: topics.decisions, messages: records.map((r): Message => ({ key: r.key, value: r.value })) });
  } finally {
    await producer.disconnect();
  }
}


/** confluent-kafka for Python, in the venv the registry tests use too (made once, under a lock). */
function pythonWithConfluentKafka(): string {
  return ensureConfluentPython();
}

const PRODUCE_PY = `
import json, sys
from confluent_kafka import Producer
brokers, topic, path = sys.argv[1:4]
p = Producer({'bootstrap.servers': brokers})  # the default partitioner: consistent_random (CRC32)
errors = []
with open(path) as f:
    for line in f:
        r = json.loads(line)
        kw = {} if r['key'] is None else {'key': r['key'].encode()}
        p.produce(topic, value=r['value'].encode(), on_delivery=lambda err, msg: err and errors.append(str(err)), **kw)
        p.poll(0)
left = p.flush(30)
if left or errors:
    sys.exit('not delivered: %d left, errors %s' % (left, errors))
`;

/**
 * A transactional confluent-kafka producer: the workload in committed transactions of 20 records, each
 * followed by an aborted one holding records of `aborted` (decisions that were never made).
 */
const PRODUCE_TX_PY = `
import json, sys
from confluent_kafka import Producer
brokers, topic, path, aborted_path = sys.argv[1:5]
p = Producer({'bootstrap.servers': brokers, 'transactional.id': 'killswitch-test-' + topic})
p.init_transactions(30)
def send(r):
    kw = {} if r['key'] is None else {'key': r['key'].encode()}
    p.produce(topic, value=r['value'].encode(), **kw)
records = [json.loads(l) for l in open(path)]
aborted = [json.loads(l) for l in open(aborted_path)]
per = len(aborted) // ((len(records) + 19) // 20) + 1
for n, start in enumerate(range(0, len(records), 20)):
    p.begin_transaction()
    for r in records[start:start + 20]:
        send(r)
    p.commit_transaction(30)
    p.begin_transaction()
    for r in aborted[n * per:(n + 1) * per]:
        send(r)
    p.flush(30)
    p.abort_transaction(30)
`;

describe('trips do not depend on the producer\'s partitioner', () => {
  it('owner partitions are murmur2(agent_id) mod N exactly as kafkajs\'s default (the Java client\'s) partitioner picks them', () => {
    const partitioner = kafkajs.Partitioners.DefaultPartitioner();
    for (let i = 0; i < 3000; i++) {
      const n = 1 + (i % 12);
      const key = `spiffe://example.org/ns/team-${i % 7}/sa/agent-${i * 7919}${'x'.repeat(i % 5)}`;
      const partitionMetadata = Array.from({ length: n }, (_, k) => ({ partitionId: k, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
      expect(ownerPartition(key, n)).toBe(partitioner({ topic: 't', partitionMetadata, message: { key, value: null } }));
    }
  });

  it('kcat -P (librdkafka\'s CRC32 partitioner) and a murmur2 producer writing the same identities: the same trips as replay', async () => {
    await tripsMatchReplay('kcat', async (topics, records) => {
      await murmur2Half(topics, records);
      const lines = otherHalf(records).map((r) => `${r.key ?? ''}\t${r.value}`).join('\n') + '\n';
      execFileSync('kcat', ['-b', brokers, '-t', topics.decisions, '-P', '-K', '\t'], { input: lines, timeout: 60_000 });
    });
  }, 240_000);

  it('confluent-kafka for Python with its default partitioner and a murmur2 producer writing the same identities: the same trips as replay', async () => {
    const python = pythonWithConfluentKafka();
    await tripsMatchReplay('python', async (topics, records) => {
      await murmur2Half(topics, records);
      const dir = tempDir('kafka-python-');
      const script = writeIn(dir, 'produce.py', PRODUCE_PY);
      const input = writeIn(dir, 'records.ndjson', otherHalf(records).map((r) => JSON.stringify(r)).join('\n') + '\n');
      const r = spawnSync(python, [script, brokers, topics.decisions, input], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
    });
  }, 480_000);

  it('a transactional producer (confluent-kafka for Python) whose aborted transactions hold 60 denies of each identity that denies half: they never count, the same trips as replay', async () => {
    const python = pythonWithConfluentKafka();
    await tripsMatchReplay('aborted', (topics, records) => {
      const dir = tempDir('kafka-aborted-');
      const at = Date.parse((JSON.parse(records[0]!.value) as { occurred_at: string }).occurred_at);
      // counted, they would make each of those identities 66 denies of 72 calls (0.917, over 0.9): a trip
      const aborted = Array.from({ length: 3 }, (_, k) => `spiffe://example.org/aborted/denies-half-${k}`).flatMap((agent, k) =>
        Array.from({ length: 60 }, (_, n) => ({ key: agent, value: JSON.stringify({ decision_id: `aborted-${k}-${n}`, agent_id: agent, decision: 'deny', occurred_at: new Date(at + 10 * n).toISOString(), session_id: `${agent}#s` }) })));
      const r = spawnSync(python, [writeIn(dir, 'produce.py', PRODUCE_TX_PY), brokers, topics.decisions,
        writeIn(dir, 'records.ndjson', records.map((x) => JSON.stringify(x)).join('\n') + '\n'),
        writeIn(dir, 'aborted.ndjson', aborted.map((x) => JSON.stringify(x)).join('\n') + '\n')], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      return Promise.resolve();
    });
  }, 480_000);

  it('kafkajs with a random partitioner: the same trips as replay', async () => {
    await tripsMatchReplay('random', randomPartitions);
  }, 240_000);

  it('kcat -P with Snappy, LZ4 and Zstandard batches (librdkafka\'s codecs, which kafkajs cannot read by itself), some with headers: the same trips as replay', async () => {
    await tripsMatchReplay('codecs', (topics, records) => {
      const codecs = ['snappy', 'lz4', 'zstd'];
      for (let c = 0; c < codecs.length; c++) {
        const lines = records.filter((_, i) => i % codecs.length === c).map((r) => `${r.key ?? ''}\t${r.value}`).join('\n') + '\n';
        const headers = c === 1 ? ['-H', 'trace=codec-test', '-H', 'trace=again'] : [];
        // batches of many records, so each is compressed as a whole
        execFileSync('kcat', ['-b', brokers, '-t', topics.decisions, '-P', '-K', '\t', '-z', codecs[c]!, '-X', 'linger.ms=50', ...headers], { input: lines, timeout: 60_000 });
      }
      return Promise.resolve();
    });
  }, 240_000);

  it.each(['snappy', 'lz4', 'zstd'])('a topic the broker compresses with %s (the Java client\'s codec and framing): the same trips as replay', async (codec) => {
    await tripsMatchReplay(`broker-${codec}`, randomPartitions, { 'compression.type': codec });
  }, 240_000);

  it('records with an empty key and an agent_id (spread round robin): the same trips as replay', async () => {
    await tripsMatchReplay('emptykey', async (topics, records) => {
      await produce(brokers, topics.decisions, records.map((r, i) => ({ key: i % 3 === 0 ? '' : null, value: r.value })));
    });
  }, 240_000);
});
