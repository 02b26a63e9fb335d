// The test infrastructure itself is real (README.md, "Development": integration tests run against real parts): a KRaft broker that
// does transactions and read_committed, that kcat (librdkafka) talks to, and a Schema Registry that
// answers the Confluent-compatible REST API. If this file fails, the Kafka tests' failures are about
// the setup, not the processor.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const brokers = inject('kafkaBrokers');
const registryUrl = inject('schemaRegistryUrl');

async function waitFor(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs kcat with stdin, failing with its stderr on a non-zero exit. */
function kcat(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('kcat', args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`kcat ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin?.end(input ?? '');
  });
}

describe('real Kafka broker', () => {
  const topic = `infra-${randomUUID()}`;
  const kafka = new Kafka({ clientId: 'kafka-infra-test', brokers: [brokers], logLevel: logLevel.WARN });
  let admin: Admin;
  let producer: Producer | undefined;
  let consumer: Consumer | undefined;
  const received: Array<{ partition: number; key: string; value: string }> = [];

  beforeAll(async () => {
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  });

  afterAll(async () => {
    await consumer?.disconnect();
    await producer?.disconnect();
    await admin.deleteTopics({ topics: [topic] });
    expect(await admin.listTopics()).not.toContain(topic);
    await admin.disconnect();
  });

  it('has the topic with 3 partitions', async () => {
    const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
    expect(meta?.partitions).toHaveLength(3);
  });

  it('delivers a transaction of 10 messages to a read_committed consumer', async () => {
    producer = kafka.producer({
      transactionalId: `infra-tx-${randomUUID()}`,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    const tx = await producer.transaction();
    try {
      await tx.send({
        topic,
        messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: JSON.stringify({ n: i }) })),
      });
      await tx.commit();
    } catch (err) {
      await tx.abort();
      throw err;
    }

    // An aborted transaction must stay invisible to read_committed.
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [{ key: 'aborted', value: 'never seen' }] });
    await aborted.abort();

    consumer = kafka.consumer({ groupId: `infra-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 200 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push({ partition, key: message.key?.toString() ?? '', value: message.value?.toString() ?? '' });
        return Promise.resolve();
      },
    });
    await waitFor('10 committed messages', () => received.length >= 10);
    expect(received.map((m) => m.key).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort());
    expect(new Set(received.map((m) => m.partition)).size).toBeGreaterThan(1);
    expect(received.some((m) => m.key === 'aborted')).toBe(false);
  });

  it('takes a message from kcat and hands it back to kcat and kafkajs', async () => {
    await kcat(['-b', brokers, '-t', topic, '-P', '-K', '\t'], 'from-kcat\t{"via":"kcat"}\n');

    // kafkajs (still subscribed from the previous test) sees it...
    await waitFor('the kcat message in kafkajs', () => received.some((m) => m.key === 'from-kcat'));
    expect(received.find((m) => m.key === 'from-kcat')?.value).toBe('{"via":"kcat"}');

    // ...and so does kcat, reading read_committed (librdkafka's default) from the beginning.
    const out = await kcat(['-b', brokers, '-t', topic, '-C', '-o', 'beginning', '-e', '-q', '-f', '%k\t%s\n',
      '-X', 'isolation.level=read_committed']);
    const lines = out.trim().split('\n');
    expect(lines).toContain('from-kcat\t{"via":"kcat"}');
    expect(lines).toHaveLength(11);
    expect(lines.some((l) => l.startsWith('aborted'))).toBe(false);
  });
});

describe('real Schema Registry (Confluent-compatible API)', () => {
  const contentType = 'application/vnd.schemaregistry.v1+json';

  it('registers a JSON schema and reads it back by id', async () => {
    const subject = `infra-${randomUUID()}-value`;
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      properties: { n: { type: 'integer' } },
      required: ['n'],
    };
    const post = await fetch(`${registryUrl}/subjects/${encodeURIComponent(subject)}/versions`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: JSON.stringify({ schemaType: 'JSON', schema: JSON.stringify(schema) }),
    });
    const posted = (await post.json()) as { id?: number };
    expect(post.status, JSON.stringify(posted)).toBe(200);
    expect(typeof posted.id).toBe('number');

    const get = await fetch(`${registryUrl}/schemas/ids/${posted.id}`, { headers: { accept: contentType } });
    const body = (await get.json()) as { schema: string; schemaType?: string };
    expect(get.status).toBe(200);
    expect(JSON.parse(body.schema)).toEqual(schema);
    expect(body.schemaType).toBe('JSON');

    const subjects = (await (await fetch(`${registryUrl}/subjects`)).json()) as string[];
    expect(subjects).toContain(subject);
  });
});
