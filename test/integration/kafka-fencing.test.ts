/**
 * Fencing on the real broker: a new owner of a transactional id must stop the old one from committing
 * before it reads what the old one committed (committed offsets, chain tips, the ledger). kafkajs
 * registers a transactional id only at the first `transaction()`, so `connectFenced` does that at once.
 * And a processor fenced with trips it could not commit must not keep them as blocks.
 */
import { describe, expect, inject, it } from 'vitest';
import { connectFenced, isFenced } from '../../src/adapters/kafka/transactional-committer.js';
import { coPartitionedAssigner } from '../../src/adapters/kafka/repartition.js';
import type { Producer } from 'kafkajs';
import { decision, tempDir, type LoggedCli } from '../helpers/cli.js';
import { createTopic, drainedOn, freshTopics, kafkaClient, kafkaConfig, produce, readTopic, startProcessor, type TestTopics } from '../helpers/kafka.js';
import { randomUUID } from 'node:crypto';

describe('connectFenced', () => {
  const brokers = inject('kafkaBrokers');

  it('fences the previous producer of the id at connect: its open transaction is aborted and it can commit nothing more', async () => {
    const topic = `fence-${randomUUID().slice(0, 8)}`;
    await createTopic(brokers, topic, 1);
    const kafka = kafkaClient(brokers);
    const id = `fence-test-${randomUUID()}`;
    const producer = (): ReturnType<typeof kafka.producer> => kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
    const old = producer();
    const fresh = producer();
    try {
      await connectFenced(old);
      const trx = await old.transaction();
      await trx.send({ topic, messages: [{ value: 'from the old owner, open when the new one arrives' }] });
      // the new owner only connects: nothing sent, no transaction of its own
      await connectFenced(fresh);
      let failure: unknown;
      try {
        await trx.commit();
      } catch (err) {
        failure = err;
      }
      expect(failure, 'the old owner committed after being fenced').toBeDefined();
      expect(isFenced(failure)).toBe(true);
      // the new owner writes; a read_committed reader sees only its record
      const t2 = await fresh.transaction();
      await t2.send({ topic, messages: [{ value: 'from the new owner' }] });
      await t2.commit();
      const seen = await readTopic(brokers, topic, { until: (r) => r.length >= 1, timeoutMs: 10_000 });
      expect(seen.map((r) => r.value?.toString())).toEqual(['from the new owner']);
    } finally {
      await Promise.all([old.disconnect(), fresh.disconnect()]);
    }
  }, 60_000);
});

describe('a processor fenced with trips it latched but could not commit', () => {
  const brokers = inject('kafkaBrokers');

  it('trips them again when the partition comes back to it: an uncommitted latch never stands for a kill event', async () => {
    // Fenced between evaluating a batch and committing it, the processor drops the partition; its trips
    // of that batch were never written. When the group gives the partition back (here to the same
    // process, after another member came and went), the restore re-reads those decisions as live and
    // must trip again: the instance's view of who is blocked may hold only what the ledger holds.
    const dir = tempDir('kafka-fenced-latch-');
    const topics = freshTopics('fenced');
    const group = `g-${topics.decisions}`;
    const repartition = `${topics.decisions}.repartition`;
    const proc = await startProcessor(kafkaConfig(dir, brokers, topics, { partitions: 1 }));
    const kafka = kafkaClient(brokers);
    const A = 'spiffe://example.org/agent/fenced-a';
    const B = 'spiffe://example.org/agent/fenced-b';
    const zombieFence = kafka.producer({ transactionalId: `${group}.${topics.decisions}.0`, idempotent: true, maxInFlightRequests: 1 });
    const visitor = kafka.consumer({ groupId: group, partitionAssigners: [coPartitionedAssigner(topics.decisions, repartition)], sessionTimeout: 6000 });
    try {
      await fenceBeforeTrip(brokers, proc, topics, zombieFence, B, A);
      expect(await readTopic(brokers, topics.kills, { timeoutMs: 1000 })).toHaveLength(0);
      await zombieFence.disconnect();
      // a member joins and leaves: two rebalances, and partition 0 ends with the processor again
      let joined = false;
      visitor.on(visitor.events.GROUP_JOIN, () => {
        joined = true;
      });
      await visitor.connect();
      await visitor.subscribe({ topics: [topics.decisions, repartition] });
      await visitor.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: () => Promise.resolve() });
      await waitFor(() => joined, 30_000, () => 'the visiting member never joined the group');
      await visitor.disconnect();
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1, timeoutMs: 30_000 });
      expect(kills.map((k) => k.key)).toEqual([A]);
      await drainedOn(brokers, topics, group);
      expect(await readTopic(brokers, topics.kills, { timeoutMs: 1000 })).toHaveLength(1);
    } finally {
      await Promise.all([zombieFence.disconnect(), visitor.disconnect()]);
      await proc.stop();
    }
  }, 120_000);
});

describe('a processor fenced when no rebalance follows (a transaction timed out, or another process took its transactional id)', () => {
  const brokers = inject('kafkaBrokers');

  it('stops with exit 1 saying why, instead of leaving the partition unread; restarted, it trips what the fenced batch held', async () => {
    const dir = tempDir('kafka-fenced-alone-');
    const topics = freshTopics('fenced-alone');
    const group = `g-${topics.decisions}`;
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    let proc = await startProcessor(cfg);
    const A = 'spiffe://example.org/agent/fenced-alone';
    const zombieFence = kafkaClient(brokers).producer({ transactionalId: `${group}.${topics.decisions}.0`, idempotent: true, maxInFlightRequests: 1 });
    try {
      await fenceBeforeTrip(brokers, proc, topics, zombieFence, A, A);
      // nobody else is in the group: no rebalance comes, and the partition would stay unread
      await waitFor(() => proc.child.exitCode !== null, 40_000, () => `still running: ${proc.log()}`);
      expect(proc.child.exitCode).toBe(1);
      expect(proc.log()).toContain('partition 0 was fenced but no rebalance followed');
      await zombieFence.disconnect();
      proc = await startProcessor(cfg);
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1, timeoutMs: 30_000 });
      expect(kills.map((k) => k.key)).toEqual([A]);
    } finally {
      await zombieFence.disconnect();
      await proc.stop();
    }
  }, 150_000);
});

/**
 * Live on partition 0 (one decision of `first` processed and committed), then another producer takes
 * the partition's transactional id, and 10 denies of `tripping` come: the processor evaluates them,
 * trips, and its commit is fenced.
 */
async function fenceBeforeTrip(brokers: string, proc: LoggedCli, topics: TestTopics, zombie: Producer, first: string, tripping: string): Promise<void> {
  await produce(brokers, topics.decisions, [{ key: first, value: decision(first, 'allow', 0) }]);
  await drainedOn(brokers, topics, `g-${topics.decisions}`);
  await connectFenced(zombie);
  await produce(brokers, topics.decisions, Array.from({ length: 10 }, (_, i) => ({ key: tripping, value: decision(tripping, 'deny', 1 + i) })));
  await waitFor(() => proc.log().includes('taken over by another instance (fenced)'), 30_000, () => proc.log());
}

async function waitFor(done: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
