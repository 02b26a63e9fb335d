/**
 * One-off reads on the real broker, as assignments use them (chain tips, restore offsets) and the
 * operator API (its chain's tip): complete up to the last committed record, and a read of nothing
 * joins no consumer group (a group join alone can take the broker's initial rebalance delay).
 */
import { describe, expect, inject, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { KafkaMessage } from 'kafkajs';
import { readTail } from '../../src/adapters/kafka/partition-reader.js';
import { createTopic, kafkaClient } from '../helpers/kafka.js';

async function groupsWithPrefix(brokers: string, prefix: string): Promise<string[]> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    return (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
  } finally {
    await admin.disconnect();
  }
}

describe('readTail', () => {
  const brokers = inject('kafkaBrokers');

  it('finds the last committed record behind an aborted transaction longer than the tail it reads first', async () => {
    const topic = `tail-${randomUUID().slice(0, 8)}`;
    await createTopic(brokers, topic, 2);
    const producer = kafkaClient(brokers).producer({ transactionalId: `tail-${randomUUID()}`, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (let i = 0; i < 5; i++) {
        const trx = await producer.transaction();
        await trx.send({ topic, messages: [{ partition: 0, value: `committed-${i}` }] });
        await trx.commit();
      }
      // a crashed batch of 100 records: more than the 64 offsets read first
      const aborted = await producer.transaction();
      await aborted.send({ topic, messages: Array.from({ length: 100 }, (_, i) => ({ partition: 0, value: `aborted-${i}` })) });
      await aborted.abort();
    } finally {
      await producer.disconnect();
    }
    const seen = new Map<number, string[]>();
    await readTail(kafkaClient(brokers), topic, [0, 1], `tail-test-${randomUUID().slice(0, 8)}`, (p, m) => {
      seen.set(p, [...(seen.get(p) ?? []), m.value?.toString() ?? '']);
    });
    // read again from 8 x 64 offsets back, which is the whole partition here; nothing aborted, in order
    expect(seen.get(0)).toEqual(['committed-0', 'committed-1', 'committed-2', 'committed-3', 'committed-4']);
    expect(seen.has(1)).toBe(false);
  }, 60_000);

  it('returns at once for empty partitions, without joining a consumer group', async () => {
    const topic = `tail-empty-${randomUUID().slice(0, 8)}`;
    await createTopic(brokers, topic, 3);
    const prefix = `tail-empty-test-${randomUUID().slice(0, 8)}`;
    const seen: KafkaMessage[] = [];
    await readTail(kafkaClient(brokers), topic, [0, 1, 2], prefix, (_p, m) => seen.push(m));
    expect(seen).toEqual([]);
    expect(await groupsWithPrefix(brokers, prefix)).toEqual([]);
  }, 60_000);
});
