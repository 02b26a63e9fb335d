/**
 * Fencing on the real broker: a new owner of a transactional id must stop the old one from committing
 * before it reads what the old one committed (committed offsets, chain tips, the ledger). kafkajs
 * registers a transactional id only at the first `transaction()`, so `connectFenced` does that at once.
 */
import { describe, expect, inject, it } from 'vitest';
import { connectFenced, isFenced } from '../../src/adapters/kafka/transactional-committer.js';
import { createTopic, kafkaClient, readTopic } from '../helpers/kafka.js';
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
