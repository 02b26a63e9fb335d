/**
 * How long `killswitch run` in Kafka mode takes from its process start until every partition is live,
 * on a broker with Kafka's default 3 s `group.initial.rebalance.delay.ms` (as a production broker has):
 *  - fresh: a new group over a pre-filled 6-partition topic (no committed offsets, empty outputs);
 *    also the time until everything is committed;
 *  - restart: the same group started again after the first instance committed everything and stopped
 *    (committed offsets, chain tips and a ledger to read, windows to restore).
 * "Live": every partition restored (`killswitch_restore_duration_seconds_count` = partitions).
 * Each round uses fresh topics and a fresh group; the median of the rounds is reported.
 *
 *   npm run bench -- kafka-startup
 *   KAFKA_BROKERS=host:port     use a running broker instead of starting one
 */
import { randomUUID } from 'node:crypto';
import type { Message } from 'kafkajs';
import { benchDir, committedTotal, createTopic, fill, kafkaClient, percentile, processorConfig, sample, sleep, startBroker, startInstance, topicsFor, VERDICTS, type Instance } from './kafka-harness.js';
import { mulberry32, report } from './util.js';

const PARTITIONS = 6;
const RECORDS = 60_000;
const ROUNDS = 3;

/** RECORDS decisions over 2,000 identities, 20 of which only deny (each trips): the chains have tips. */
function decisions(): Message[] {
  const rnd = mulberry32(7);
  const start = Date.now() - 30_000;
  return Array.from({ length: RECORDS }, (_, i) => {
    const who = Math.floor(rnd() * 2000);
    const agent = `spiffe://bench.example/ns/prod/sa/agent-${who}`;
    const value = JSON.stringify({
      decision_id: `01S${i.toString(36).padStart(10, '0')}`, agent_id: agent,
      decision: who < 20 ? 'deny' : VERDICTS[Math.floor(rnd() * VERDICTS.length)],
      occurred_at: new Date(start + Math.floor(i / 2)).toISOString(), session_id: `sess-${who}`,
    });
    return { key: agent, value };
  });
}

/** Starts an instance; ms from its start until every partition is live, and until `done` holds. */
async function timed(config: { file: string; port: number }, done: () => Promise<boolean>): Promise<{ instance: Instance; live: number; done: number }> {
  const t0 = performance.now();
  const instance = await startInstance(config);
  let live = NaN;
  for (const deadline = t0 + 120_000; ; await sleep(20)) {
    if (performance.now() > deadline) throw new Error(`not live and done within 120 s:\n${instance.log().slice(-3000)}`);
    // live: restored (windows re-read) and evaluating new decisions, each partition once
    if (Number.isNaN(live) && instance.assigned() >= PARTITIONS && sample([await instance.metrics()], 'killswitch_restore_duration_seconds_count') >= PARTITIONS) live = performance.now() - t0;
    if (!Number.isNaN(live) && (await done())) return { instance, live, done: performance.now() - t0 };
  }
}

const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);

export async function run(): Promise<void> {
  const broker = await startBroker();
  const admin = kafkaClient(broker.brokers).admin();
  await admin.connect();
  const fresh: number[] = [];
  const freshDone: number[] = [];
  const restart: number[] = [];
  try {
    const dir = benchDir();
    const messages = decisions();
    for (let round = 0; round < ROUNDS; round++) {
      const topics = topicsFor('startup');
      await createTopic(admin, topics.decisions, PARTITIONS);
      await fill(broker.brokers, topics.decisions, messages);
      const group = `startup-${randomUUID().slice(0, 8)}`;
      const config = processorConfig(dir, broker.brokers, topics, group, PARTITIONS);
      const first = await timed(config, async () => (await committedTotal(admin, group, topics.decisions)) >= RECORDS);
      if ((await first.instance.stop()) !== 0) throw new Error(`the first instance did not stop cleanly:\n${first.instance.log().slice(-3000)}`);
      fresh.push(first.live);
      freshDone.push(first.done);
      const second = await timed(config, () => Promise.resolve(true));
      if ((await second.instance.stop()) !== 0) throw new Error(`the restarted instance did not stop cleanly:\n${second.instance.log().slice(-3000)}`);
      restart.push(second.live);
    }
  } finally {
    await admin.disconnect();
    await broker.stop();
  }
  const s = (xs: number[]): string => xs.map((x) => (x / 1000).toFixed(1)).join(', ');
  report(`Kafka start-up, process start -> all ${PARTITIONS} partitions live (broker's initial rebalance delay 3 s, ${RECORDS.toLocaleString('en-US')} decisions pre-filled)`, {
    'fresh group, median (s)': +(median(fresh) / 1000).toFixed(1),
    'fresh group, rounds (s)': s(fresh),
    'fresh group, until all is committed, median (s)': +(median(freshDone) / 1000).toFixed(1),
    'restart of the same group, median (s)': +(median(restart) / 1000).toFixed(1),
    'restart, rounds (s)': s(restart),
  });
}
