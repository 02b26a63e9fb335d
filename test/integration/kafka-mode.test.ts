/**
 * Kafka mode on the real broker (and registry) started by test/setup/kafka-global.ts: trips from
 * kafkajs and kcat producers, exactly-once outputs under SIGKILL, scale-out, the DLQ, the ledger view,
 * Schema Registry framing.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { Ed25519Signer, checkSignature } from '../../src/adapters/signing/ed25519-signer.js';
import { generateSigningKey, loadJwks, loadSigningKey } from '../../src/adapters/signing/keys.js';
import { buildKillEvent } from '../../src/core/documents.js';
import { ownerPartition } from '../../src/adapters/kafka/repartition.js';
import { validator } from '../../src/schemas.js';
import { decision, parseLines, runCli, tempDir, writeIn } from '../helpers/cli.js';
import { apiToken, freePort, request } from '../helpers/http-request.js';
import { committedTotalOn, createTopic, drainedOn, freshTopics, kafkaClient, kafkaConfig, produce, readTopic, startProcessor, type ReadRecord, type TestTopics } from '../helpers/kafka.js';

const brokers = inject('kafkaBrokers');
const registryUrl = inject('schemaRegistryUrl');

type Doc = Record<string, unknown> & { agent_id: string; epoch: number; evidence?: Record<string, unknown> };

const denies = (agent: string, n: number, from: number): { key: string; value: string }[] =>
  Array.from({ length: n }, (_, i) => ({ key: agent, value: decision(agent, 'deny', from + i) }));

const parse = (r: ReadRecord): Doc => JSON.parse(r.value!.toString('utf8')) as Doc;

const committedTotal = (topics: TestTopics, group: string): Promise<number> => committedTotalOn(brokers, topics, group);
const drained = (topics: TestTopics, group: string, timeoutMs?: number): Promise<void> => drainedOn(brokers, topics, group, timeoutMs);

describe('killswitch run (Kafka mode)', () => {
  it('trips on decisions produced with kafkajs and with kcat; kill event and addendum are committed, signed and schema-valid', async () => {
    const dir = tempDir('kafka-trip-');
    const topics = freshTopics('trip');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const cfg = kafkaConfig(dir, brokers, topics, { http: `127.0.0.1:${port}` });
    const proc = await startProcessor(cfg);
    try {
      const A = 'spiffe://example.org/agent/kafkajs';
      const B = 'spiffe://example.org/agent/kcat';
      await produce(brokers, topics.decisions, denies(A, 10, 0));
      const lines = Array.from({ length: 10 }, (_, i) => `${B}\t${decision(B, 'deny', 100 + i, { session_id: 'kcat-session' })}`).join('\n') + '\n';
      execFileSync('kcat', ['-b', brokers, '-t', topics.decisions, '-P', '-K', '\t'], { input: lines });
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 2 });
      const addenda = await readTopic(brokers, topics.addenda, { until: (r) => r.length >= 2 });
      expect(kills.map((k) => k.key).sort()).toEqual([B, A].sort());
      const trusted = loadJwks(join(dir, 'keys/jwks.json'));
      for (const k of kills) {
        const doc = parse(k);
        expect(validator('killEvent')(doc)).toBe(true);
        expect(checkSignature(doc, trusted)).toMatchObject({ ok: true });
        expect(doc.evidence).toMatchObject({ calls: 10, denies: 10, source: { topic: topics.decisions } });
      }
      for (const a of addenda) {
        const doc = parse(a);
        expect(validator('addendum')(doc)).toBe(true);
        expect(checkSignature(doc, trusted)).toMatchObject({ ok: true });
        // the addendum sits in the addenda partition of its identity's owner partition (murmur2 of the
        // agent_id, where kafkajs's default partitioner put A and kcat's CRC32 may not have put B), chained per partition
        expect(a.partition).toBe(ownerPartition(a.key!, 3));
        expect(doc.chain).toMatchObject({ stream: `${topics.decisions}/${a.partition}` });
      }
      // A and B may share an owner: each partition's chain starts at genesis and counts up
      for (const p of new Set(addenda.map((a) => a.partition))) {
        const chain = addenda.filter((a) => a.partition === p).map((a) => parse(a).chain as { sequence_number: number; prev_hash: string });
        expect(chain.map((c) => c.sequence_number)).toEqual(chain.map((_, i) => i + 1));
        expect(chain[0]!.prev_hash).toBe('genesis');
      }
      expect(parse(addenda.find((a) => a.key === B)!).session_ids).toEqual(['kcat-session']);
      // metrics count what happened, and no SPIFFE ID appears in any label
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^killswitch_trips_total 2$/m);
      expect(metrics).toMatch(/^killswitch_decisions_total\{class="deny"\} 20$/m);
      expect(metrics).toMatch(/^killswitch_blocked_identities 2$/m);
      expect(metrics).not.toContain('spiffe://');
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    } finally {
      expect(await proc.stop()).toBe(0);
    }
  });

  it('refuses to start, in one line with exit 2, when an existing topic is set up wrongly', async () => {
    const dir = tempDir('kafka-topics-');
    const admin = kafkaClient(brokers).admin();
    await admin.connect();
    const notCompacted = freshTopics('badkills');
    const wrongCount = freshTopics('badaddenda');
    const compactedIds = freshTopics('badopaids');
    try {
      await admin.createTopics({
        topics: [
          { topic: notCompacted.kills, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'delete' }] },
          { topic: wrongCount.decisions, numPartitions: 3 },
          { topic: wrongCount.addenda, numPartitions: 2 },
          { topic: `${compactedIds.decisions}.opa-ids`, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
        ],
        waitForLeaders: true,
      });
    } finally {
      await admin.disconnect();
    }
    const kills = runCli(['run', '--config', kafkaConfig(dir, brokers, notCompacted)]);
    expect(kills.status).toBe(2);
    expect(kills.stderr.trim().split('\n').filter((l) => !l.startsWith('{'))).toEqual([
      `killswitch: kafka topic ${notCompacted.kills} has cleanup.policy=delete; the block ledger must be compacted (cleanup.policy=compact), or old blocks are deleted`,
    ]);
    const addenda = runCli(['run', '--config', kafkaConfig(dir, brokers, wrongCount)]);
    expect(addenda.status).toBe(2);
    expect(addenda.stderr).toContain(`killswitch: kafka topic ${wrongCount.addenda} has 2 partitions but ${wrongCount.decisions} has 3`);
    // the OPA ids' records have no key: a compacted topic would refuse every OPA upload
    const ids = runCli(['run', '--config', kafkaConfig(dir, brokers, compactedIds)]);
    expect(ids.status).toBe(2);
    expect(ids.stderr.trim().split('\n').filter((l) => !l.startsWith('{'))).toEqual([
      `killswitch: kafka topic ${compactedIds.decisions}.opa-ids has cleanup.policy=compact; its records have no key and a compacted topic refuses them (use cleanup.policy=delete)`,
    ]);
  });

  it('sends every kind of bad record to the DLQ with its reason and source, and the good records around them still trip', async () => {
    const dir = tempDir('kafka-dlq-');
    const topics = freshTopics('dlq');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1, registry: registryUrl });
    const proc = await startProcessor(cfg);
    try {
      const A = 'spiffe://example.org/agent/dlq';
      const framedUnknown = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from(decision(A, 'deny', 1))]);
      const bad: { value: Buffer | string; key?: string; reason: string }[] = [
        // not UTF-8 (docs/spec.md#1-decision-events, "Encoding")
        { value: Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37]), reason: 'invalid_utf8' },
        { value: decision(A, 'deny', 1).slice(0, 30), reason: 'invalid_json' },
        { value: JSON.stringify({ decision_id: 'x', agent_id: A, decision: 'deny' }), reason: 'schema_invalid' },
        { value: decision('spiffe://EXAMPLE.org/a', 'deny', 1), reason: 'invalid_spiffe_id' },
        { value: decision(A, 'deny', 1), key: 'spiffe://example.org/agent/other', reason: 'key_mismatch' },
        { value: `{"pad":"${'x'.repeat(1_000_000)}"}`, reason: 'too_large' },
        { value: framedUnknown, reason: 'unknown_schema' },
      ];
      const good = denies(A, 10, 10);
      // one send per record: a record batch holding the 1 MB value and others would pass the broker's limit
      for (const m of [...good.slice(0, 5), ...bad.map((b) => ({ key: b.key ?? A, value: b.value })), ...good.slice(5)]) {
        await produce(brokers, topics.decisions, [m]);
      }
      const dlq = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= bad.length });
      expect(dlq.map((r) => r.headers['killswitch.reason'])).toEqual(bad.map((b) => b.reason));
      dlq.forEach((r, i) => {
        const original = Buffer.from(bad[i]!.value);
        if (bad[i]!.reason === 'too_large') {
          // over 1,000,000 bytes: its first 64 KiB, its length and digest (the original stays in the decisions topic)
          expect(r.value!.equals(original.subarray(0, 65_536))).toBe(true);
          expect(r.headers).toMatchObject({ 'killswitch.original.length': String(original.length), 'killswitch.original.sha256': createHash('sha256').update(original).digest('hex') });
        } else {
          // the original bytes, untouched, with where they came from
          expect(Buffer.compare(r.value!, original)).toBe(0);
        }
        expect(r.headers).toMatchObject({ 'killswitch.source.topic': topics.decisions, 'killswitch.source.partition': '0', 'killswitch.source.offset': String(5 + i) });
        expect(r.headers['killswitch.message']!.length).toBeGreaterThan(0);
      });
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 });
      expect(kills).toHaveLength(1);
      expect(parse(kills[0]!).evidence).toMatchObject({ calls: 10, denies: 10, source: { offset_from: 0, offset_to: 16 } });
    } finally {
      await proc.stop();
    }
  });

  it('a record written by hand to the repartition topic with its group\'s headers goes to the DLQ as invalid_forwarded; one of another group is left alone; the stream goes on', async () => {
    const dir = tempDir('kafka-bad-forwarded-');
    const topics = freshTopics('badfwd');
    const group = `g-${topics.decisions}`;
    const repartition = `${topics.decisions}.repartition`;
    const proc = await startProcessor(kafkaConfig(dir, brokers, topics, { partitions: 2 }));
    try {
      const headers = (g: string): Record<string, string> => ({
        'killswitch.forwarded': 'v3', 'killswitch.source.topic': topics.decisions, 'killswitch.source.partition': '1', 'killswitch.source.group': g,
      });
      await produce(brokers, repartition, [
        { partition: 0, value: 'not a forwarded record', headers: headers('some-other-group') },
        { partition: 0, value: 'not a forwarded record either', headers: headers(group) },
      ]);
      // an identity owned by partition 0, produced to partition 1: forwarded, evaluated, tripped
      const A = Array.from({ length: 50 }, (_, i) => `spiffe://example.org/agent/badfwd-${i}`).find((id) => ownerPartition(id, 2) === 0)!;
      await produce(brokers, topics.decisions, denies(A, 10, 0).map((m) => ({ ...m, partition: 1 })));
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 });
      expect(kills.map((k) => k.key)).toEqual([A]);
      await drained(topics, group);
      const dlq = await readTopic(brokers, topics.dlq, { timeoutMs: 2000 });
      expect(dlq.map((r) => [r.value!.toString(), r.headers['killswitch.reason'], r.headers['killswitch.source.topic'], r.headers['killswitch.source.partition'], r.headers['killswitch.source.offset']]))
        .toEqual([['not a forwarded record either', 'invalid_forwarded', repartition, '0', '1']]);
    } finally {
      await proc.stop();
    }
  });

  it('decodes Schema Registry framing with a registered schema; the registry refuses an incompatible change', async () => {
    const dir = tempDir('kafka-sr-');
    const topics = freshTopics('sr');
    const subject = `${topics.decisions}-value`;
    // What a producer team registers: a draft-07 JSON schema of the decision (Apicurio checks
    // compatibility of draft-07 schemas; our own 2020-12 contract schema still validates every value).
    const producerSchema = {
      $schema: 'http://json-schema.org/draft-07/schema#', type: 'object',
      properties: { decision_id: { type: 'string' }, agent_id: { type: 'string' }, decision: { type: 'string' }, occurred_at: { type: 'string' } },
      required: ['decision_id', 'decision', 'occurred_at'],
    };
    const schema = JSON.stringify(producerSchema);
    const post = async (path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`${registryUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify(body) });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const put = await fetch(`${registryUrl}/config/${subject}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ compatibility: 'BACKWARD' }) });
    expect(put.status).toBe(200);
    const reg = await post(`/subjects/${subject}/versions`, { schemaType: 'JSON', schema });
    expect(reg.status).toBe(200);
    const id = reg.json.id as number;
    // an incompatible change: a new required field that old records do not have
    const incompatible = { ...producerSchema, required: [...producerSchema.required, 'tenant_id'], properties: { ...producerSchema.properties, tenant_id: { type: 'string' } } };
    const refused = await post(`/subjects/${subject}/versions`, { schemaType: 'JSON', schema: JSON.stringify(incompatible) });
    expect(refused.status).toBe(409);

    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1, registry: registryUrl });
    const proc = await startProcessor(cfg);
    try {
      const A = 'spiffe://example.org/agent/framed';
      const frame = (json: string): Buffer => {
        const header = Buffer.alloc(5);
        header.writeUInt32BE(id, 1);
        return Buffer.concat([header, Buffer.from(json)]);
      };
      await produce(brokers, topics.decisions, denies(A, 10, 0).map((m) => ({ key: m.key, value: frame(m.value) })));
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 });
      expect(kills.map((k) => k.key)).toEqual([A]);
    } finally {
      await proc.stop();
    }
  });

  it('never lifts a block on restart; an unblock written to the ledger clears the owner\'s window', async () => {
    const dir = tempDir('kafka-restart-');
    const topics = freshTopics('restart');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/restart';
    let proc = await startProcessor(cfg);
    await produce(brokers, topics.decisions, denies(A, 10, 0));
    await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 });
    expect(await proc.stop()).toBe(0);

    proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, denies(A, 20, 20));
      await drained(topics, `g-${topics.decisions}`);
      expect((await readTopic(brokers, topics.kills, { timeoutMs: 2000 })).map((k) => parse(k).epoch)).toEqual([1]);

      // An operator unblock of epoch 1, signed by the service key, written to the ledger by someone else.
      const block = parse((await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 }))[0]!);
      const unblock = new Ed25519Signer(loadSigningKey(join(dir, 'keys/signing-key.pem'))).sign(buildKillEvent({
        action: 'unblock', agentId: A, epoch: block.epoch, trigger: 'operator', at: new Date().toISOString(), reason: 'false positive',
        authorizedBy: 'oncall', killSwitch: block.kill_switch as never,
      }), false);
      await produce(brokers, topics.kills, [{ key: A, value: canonicalJson(unblock) }]);
      await new Promise((r) => setTimeout(r, 1500));
      // a fresh min_calls is needed: 9 denies do not trip, the 10th does, at epoch 2
      await produce(brokers, topics.decisions, denies(A, 9, 100));
      await drained(topics, `g-${topics.decisions}`);
      expect((await readTopic(brokers, topics.kills, { timeoutMs: 2000 })).filter((k) => parse(k).action === 'block')).toHaveLength(1);
      await produce(brokers, topics.decisions, denies(A, 1, 109));
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 3 });
      expect(kills.map((k) => [parse(k).action, parse(k).epoch])).toEqual([['block', 1], ['unblock', 1], ['block', 2]]);
      expect(parse(kills[2]!).evidence).toMatchObject({ calls: 10, denies: 10 });
    } finally {
      await proc.stop();
    }
  });

  it('restarted with decisions already waiting for it, trips the new identity among them and not the blocked one again', async () => {
    // The ledger is read while the consumer joins its group, and the first batch is there at once: A's
    // block must hold for it. (With the test broker's instant joins this does not force the ledger to
    // finish last; it fails when the restart ignores the ledger.)
    const dir = tempDir('kafka-waiting-');
    const topics = freshTopics('waiting');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/waiting-a';
    const B = 'spiffe://example.org/agent/waiting-b';
    let proc = await startProcessor(cfg);
    await produce(brokers, topics.decisions, denies(A, 10, 0));
    expect(await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 })).toHaveLength(1);
    expect(await proc.stop()).toBe(0);
    // while it is down: more denies of the blocked A and, in event-time order with them, a new B that trips
    await produce(brokers, topics.decisions, Array.from({ length: 30 }, (_, t) => [...denies(A, 1, 20 + t), ...(t < 10 ? denies(B, 1, 20 + t) : [])]).flat());
    proc = await startProcessor(cfg);
    try {
      await drained(topics, `g-${topics.decisions}`);
      const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 2 })).map(parse);
      expect(kills.map((k) => [k.agent_id, k.action, k.epoch])).toEqual([[A, 'block', 1], [B, 'block', 1]]);
    } finally {
      await proc.stop();
    }
  });

  it('restores windows after a restart when a producer sent its records long after the decisions occurred', async () => {
    // Six denies stamped when they occurred, 20 minutes ago, then a seventh of the same time sent only
    // now (a gateway that buffered it). After a restart the window must hold all seven: the restore reads
    // back from the stream time committed with the offset, not from the last record's timestamp (which
    // would skip the first six).
    const dir = tempDir('kafka-late-sender-');
    const topics = freshTopics('late-sender');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const C = 'spiffe://example.org/agent/late-sender';
    const base = Date.now() - 20 * 60_000;
    const deny = (i: number, stamped: number): { key: string; value: string; timestamp: string } => ({
      key: C,
      value: JSON.stringify({ decision_id: `late-${i}`, agent_id: C, decision: 'deny', occurred_at: new Date(base + i * 1000).toISOString() }),
      timestamp: String(stamped),
    });
    let proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [...Array.from({ length: 6 }, (_, i) => deny(i, base + i * 1000)), deny(6, Date.now())]);
      await drained(topics, `g-${topics.decisions}`);
    } finally {
      expect(await proc.stop()).toBe(0);
    }
    proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [7, 8, 9].map((i) => deny(i, Date.now())));
      await drained(topics, `g-${topics.decisions}`);
      const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 })).map(parse);
      expect(kills.map((k) => [k.agent_id, k.action])).toEqual([[C, 'block']]);
      expect(kills[0]!.evidence).toMatchObject({ calls: 10, denies: 10, tripping_decision_id: 'late-9', source: { offset_from: 0, offset_to: 9 } });
    } finally {
      await proc.stop();
    }
  });

  it('a record stamped in year 9999 goes to the DLQ as future_timestamp and the partition keeps enforcing; a decision delivered ten times counts once', async () => {
    const dir = tempDir('kafka-hostile-time-');
    const topics = freshTopics('hostile-time');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/clock-gone-wrong';
    const B = 'spiffe://example.org/agent/keeps-denying';
    const C = 'spiffe://example.org/agent/retried';
    const far = JSON.stringify({ decision_id: 'far-1', agent_id: A, decision: 'allow', occurred_at: '9999-12-31T23:59:59Z' });
    const retried = decision(C, 'deny', 1);
    const proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [
        { key: A, value: far }, ...Array.from({ length: 10 }, () => ({ key: C, value: retried })), ...denies(B, 10, 2),
      ]);
      await drained(topics, `g-${topics.decisions}`);
      const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1, timeoutMs: 5000 })).map(parse);
      expect(kills.map((k) => k.agent_id)).toEqual([B]);
      const dlq = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= 1 });
      expect(dlq.map((r) => [r.headers['killswitch.reason'], r.value!.toString('utf8')])).toEqual([['future_timestamp', far]]);
    } finally {
      await proc.stop();
    }
  });

  it('a value that is not UTF-8 and one with a duplicated agent_id go to the DLQ byte for byte, and the stream goes on', async () => {
    const dir = tempDir('kafka-bad-bytes-');
    const topics = freshTopics('bad-bytes');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/after-bad-bytes';
    const latin1 = Buffer.concat([Buffer.from(`{"decision_id":"x1","agent_id":"${A}","decision":"deny","occurred_at":"2026-11-23T09:00:00Z","tool_name":"caf`), Buffer.from([0xe9]), Buffer.from('"}')]);
    const twoIds = Buffer.from(`{"decision_id":"x2","agent_id":"spiffe://example.org/agent/innocent","agent_id":"${A}","decision":"deny","occurred_at":"2026-11-23T09:00:00Z"}`);
    const proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [{ key: null, value: latin1 }, { key: null, value: twoIds }, ...denies(A, 10, 2)]);
      await drained(topics, `g-${topics.decisions}`);
      const dlq = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= 2 });
      expect(dlq.map((r) => r.headers['killswitch.reason'])).toEqual(['invalid_utf8', 'invalid_json']);
      expect(dlq[0]!.value!.equals(latin1)).toBe(true);
      expect(dlq[1]!.value!.equals(twoIds)).toBe(true);
      expect(dlq[1]!.headers['killswitch.message']).toContain('duplicate key "agent_id"');
      const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1, timeoutMs: 5000 })).map(parse);
      expect(kills.map((k) => [k.agent_id, (k.evidence as { calls: number }).calls])).toEqual([[A, 10]]);
    } finally {
      await proc.stop();
    }
  });

  it('a record as large as the broker takes goes to the DLQ as a sample with its length and digest, and the stream goes on', async () => {
    const dir = tempDir('kafka-huge-');
    const topics = freshTopics('huge');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/after-huge';
    // its record batch just under the broker's default message size: the DLQ's headers would push a whole copy over
    const huge = Buffer.alloc(1_048_400, 'x');
    const proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [{ key: null, value: huge }]);
      await produce(brokers, topics.decisions, denies(A, 10, 0));
      await drained(topics, `g-${topics.decisions}`);
      const [dlq, ...more] = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= 1 });
      expect(more).toEqual([]);
      expect(dlq!.headers['killswitch.reason']).toBe('too_large');
      expect(dlq!.headers['killswitch.original.length']).toBe(String(huge.length));
      expect(dlq!.headers['killswitch.original.sha256']).toBe(createHash('sha256').update(huge).digest('hex'));
      expect(dlq!.value!.equals(huge.subarray(0, 65_536))).toBe(true);
      const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1, timeoutMs: 5000 })).map(parse);
      expect(kills.map((k) => k.agent_id)).toEqual([A]);
      expect(proc.child.exitCode).toBeNull();
    } finally {
      await proc.stop();
    }
  });

  it('a restart does not undo an unblock: the restored window does not trip the identity again from the decisions its unblock set aside', async () => {
    const dir = tempDir('kafka-unblock-restart-');
    const topics = freshTopics('unblock-restart');
    const port = await freePort();
    const operator = apiToken();
    const cfg = kafkaConfig(dir, brokers, topics, {
      partitions: 1, extra: { http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'alice', sha256: operator.sha256, roles: ['operator'] }] } },
    });
    const X = 'spiffe://example.org/agent/unblocked-then-restarted';
    let proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, denies(X, 10, 0));
      await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 });
      const un = await request(`http://127.0.0.1:${port}/v1/blocks/unblock`, {
        method: 'POST', headers: { authorization: `Bearer ${operator.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ agent_id: X, reason: 'false positive', authorized_by: 'alice' }),
      });
      expect(un.status, un.body).toBe(200);
    } finally {
      expect(await proc.stop()).toBe(0);
    }
    proc = await startProcessor(cfg);
    try {
      // one more call: 10 old denies and this allow would be 10 of 11, a trip at epoch 2
      await produce(brokers, topics.decisions, [{ key: X, value: decision(X, 'allow', 20) }]);
      await drained(topics, `g-${topics.decisions}`);
      await new Promise((r) => setTimeout(r, 1000));
      const events = (await readTopic(brokers, topics.kills, { timeoutMs: 3000 })).map(parse);
      expect(events.map((e) => [e.action, e.epoch])).toEqual([['block', 1], ['unblock', 1]]);
    } finally {
      await proc.stop();
    }
  });

  it('ignores a forged kill event on the ledger (an unblock signed by an untrusted key)', async () => {
    const dir = tempDir('kafka-forged-');
    const topics = freshTopics('forged');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1 });
    const A = 'spiffe://example.org/agent/forged';
    const proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, denies(A, 10, 0));
      const block = parse((await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 }))[0]!);
      const forged = new Ed25519Signer(generateSigningKey()).sign(buildKillEvent({
        action: 'unblock', agentId: A, epoch: block.epoch, trigger: 'operator', at: new Date().toISOString(), reason: 'let me in',
        authorizedBy: 'mallory', killSwitch: block.kill_switch as never,
      }), false);
      await produce(brokers, topics.kills, [{ key: A, value: canonicalJson(forged) }]);
      await new Promise((r) => setTimeout(r, 1500));
      // Had the forged unblock been obeyed, these would trip A again at epoch 2.
      await produce(brokers, topics.decisions, denies(A, 15, 100));
      await drained(topics, `g-${topics.decisions}`);
      const blocks = (await readTopic(brokers, topics.kills, { timeoutMs: 2500 })).map(parse).filter((d) => d.action === 'block');
      expect(blocks.map((b) => b.epoch)).toEqual([1]);
      expect(proc.log()).toMatch(/"reason":"unknown_kid"[^\n]*ignored a kill event/);
    } finally {
      await proc.stop();
    }
  });
});

/** Kill events compared without their source (file lines in replay, topic offsets in Kafka). */
function comparable(doc: Doc): unknown {
  const { signature: _s, issuer: _i, evidence, ...rest } = doc;
  const { source: _src, ...ev } = (evidence ?? {});
  return canonicalJson({ ...rest, evidence: ev });
}

/**
 * The reference config for replay: the processor's rule. The blast-radius governor is off on both
 * sides: which trips it holds depends on how partitions interleave in Kafka mode (README), and this
 * storm would engage it.
 */
const NO_GOVERNOR = { governor: { enabled: false } };
const REPLAY_CONFIG = { kill_switch: { enabled: true }, ...NO_GOVERNOR };

/** What `killswitch replay` gives for the same decisions: each partition, in offset order, is one input. */
async function replayOfTopic(dir: string, topics: TestTopics, cfg: string): Promise<string[]> {
  const records = await readTopic(brokers, topics.decisions, { timeoutMs: 5000 });
  const inputs: string[] = [];
  for (const p of [...new Set(records.map((r) => r.partition))].sort()) {
    const lines = records.filter((r) => r.partition === p).map((r) => r.value!.toString('utf8'));
    inputs.push(writeIn(dir, `partition-${p}.ndjson`, lines.join('\n') + '\n'));
  }
  const r = runCli(['replay', '--config', cfg, ...inputs]);
  expect(r.status).toBe(0);
  return parseLines<Doc>(r.stdout).map(comparable).map(String).sort();
}

/**
 * Records stamped with their decision's event time (hours in the past), as a producer replaying history
 * would: restore must find the window by the committed records' timestamps, not by the wall clock.
 * The times are relative to now, never a fixed date: the broker deletes records older than its
 * retention (7 days by default), and records stamped with a fixed past date would be gone mid-test
 * once the calendar passes it.
 */
function decisionsWithTrips(n: number, identities: number, bad: number): { key: string; value: string; timestamp: string }[] {
  const out: { key: string; value: string; timestamp: string }[] = [];
  const base = Date.now() - 3 * 3_600_000;
  for (let i = 0; i < n; i++) {
    const who = (i * 7919) % identities;
    const agent = `spiffe://example.org/fleet/agent-${who}`;
    const deny = who < bad ? i % 20 !== 0 : i % 5 === 0;
    const at = base + i * 10;
    out.push({ key: agent, value: decision(agent, deny ? 'deny' : 'allow', 0, { occurred_at: new Date(at).toISOString() }), timestamp: String(at) });
  }
  return out;
}

/**
 * Kill the processor while it works: each round starts it, waits for the first committed progress, then
 * SIGKILLs it at a random moment soon after. Rounds stop once everything is committed. Returns the
 * records committed after each round.
 */
async function killAtRandomMoments(cfg: string, topics: TestTopics, total: number, logs: string[] = []): Promise<number[]> {
  const group = `g-${topics.decisions}`;
  const progress: number[] = [];
  for (let round = 0; round < 4; round++) {
    const before = await committedTotal(topics, group);
    if (before >= total) break;
    const proc = await startProcessor(cfg);
    const deadline = Date.now() + 45_000;
    while ((await committedTotal(topics, group)) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (Date.now() >= deadline) process.stderr.write(`round ${round}: no progress in 45 s; processor log:\n${proc.log().slice(-8000)}\n`);
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 100)));
    await proc.stop('SIGKILL');
    logs.push(proc.log());
    progress.push(await committedTotal(topics, group));
  }
  return progress;
}

/**
 * Killed at random moments (killAtRandomMoments) with work committed before and left after the first
 * kill, then run to the end. Returns each process's log, for the test to show when the outputs differ.
 */
async function runThroughKills(cfg: string, topics: TestTopics, total: number): Promise<string[]> {
  const logs: string[] = [];
  const progress = await killAtRandomMoments(cfg, topics, total, logs);
  expect(progress[0]!).toBeGreaterThan(0);
  expect(progress[0]!).toBeLessThan(total);
  const proc = await startProcessor(cfg);
  try {
    await drained(topics, `g-${topics.decisions}`, 120_000);
  } catch (err) {
    process.stderr.write(`processor log:\n${proc.log().slice(-6000)}\n`);
    throw err;
  } finally {
    expect(await proc.stop()).toBe(0);
    logs.push(proc.log());
  }
  return logs;
}

/** What the processes logged about assignments and restores, and the kill events that differ from `expected`: shown when a crash test fails. */
function explainDifference(written: readonly string[], expected: readonly string[], logs: readonly string[]): void {
  const w = new Set(written);
  const e = new Set(expected);
  const missing = expected.filter((x) => !w.has(x));
  const extra = written.filter((x) => !e.has(x));
  if (missing.length === 0 && extra.length === 0 && written.length === expected.length) return;
  const lines = logs.map((log, i) => `process ${i}:\n${log.split('\n').filter((l) => /partition assigned|restor|fenc|failed|error/i.test(l)).join('\n')}`);
  process.stderr.write(`kill events missing: ${JSON.stringify(missing)}\nextra: ${JSON.stringify(extra)}\n${lines.join('\n')}\n`);
}

/** Three instances in one group; the second stops cleanly after the first half of `decisions`; every instance exits 0. */
async function runScaledOut(cfg: string, topics: TestTopics, decisions: readonly { key: string; value: string; timestamp: string; partition?: number }[]): Promise<void> {
  const procs = [await startProcessor(cfg), await startProcessor(cfg), await startProcessor(cfg)];
  let ok = false;
  try {
    await produce(brokers, topics.decisions, decisions.slice(0, decisions.length / 2));
    await new Promise((r) => setTimeout(r, 1000));
    expect(await procs[1]!.stop()).toBe(0);
    await produce(brokers, topics.decisions, decisions.slice(decisions.length / 2));
    await drained(topics, `g-${topics.decisions}`, 120_000);
    ok = true;
  } finally {
    const codes = await Promise.all(procs.map((p) => p.stop()));
    if (!ok) for (const p of procs) process.stderr.write(p.log().slice(-4000) + '\n----\n');
    expect(codes).toEqual([0, 0, 0]);
  }
}

describe('exactly once, on the real broker', () => {
  it('SIGKILLed at random moments and restarted, it writes exactly the kill events replay gives: nothing missing, nothing twice', async () => {
    const dir = tempDir('kafka-crash-');
    const topics = freshTopics('crash');
    // Small fetches, so the 50k decisions are many batches and transactions (the default 4 MiB per
    // partition would take them in one per partition): many moments to be killed between and inside them.
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 3, extra: NO_GOVERNOR, kafka: { max_partition_fetch_bytes: 65_536 } });
    const decisions = decisionsWithTrips(50_000, 1000, 300);
    await createTopic(brokers, topics.decisions, 3);
    await produce(brokers, topics.decisions, decisions);
    const expected = await replayOfTopic(dir, topics, writeIn(dir, 'replay.json', JSON.stringify(REPLAY_CONFIG)));
    expect(expected.length).toBeGreaterThanOrEqual(200);

    const logs = await runThroughKills(cfg, topics, decisions.length);
    const written = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length, timeoutMs: 20_000 })).map(parse);
    explainDifference(written.map(comparable).map(String), expected, logs);
    expect(written.map(comparable).map(String).sort()).toEqual(expected);
    // and every addendum chain is continuous: sequence 1..n per partition, no gap, no duplicate
    const addenda = (await readTopic(brokers, topics.addenda, { until: (r) => r.length >= expected.length })).map(parse);
    const byStream = new Map<string, number[]>();
    for (const a of addenda) {
      const c = a.chain as { stream: string; sequence_number: number };
      byStream.set(c.stream, [...(byStream.get(c.stream) ?? []), c.sequence_number]);
    }
    for (const seqs of byStream.values()) expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }, 300_000);

  it('scales out: three instances in one group, one stopped mid-stream, the same kill events', async () => {
    const dir = tempDir('kafka-scale-');
    const topics = freshTopics('scale');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 6, extra: NO_GOVERNOR });
    await runScaledOut(cfg, topics, decisionsWithTrips(30_000, 600, 200));
    const expected = await replayOfTopic(dir, topics, writeIn(dir, 'replay.json', JSON.stringify(REPLAY_CONFIG)));
    expect(expected.length).toBeGreaterThanOrEqual(100);
    const written = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length })).map(parse);
    expect(written.map(comparable).map(String).sort()).toEqual(expected);
  }, 300_000);
});

/**
 * Half the records misrouted, as a producer with another partitioner (CRC32, FNV-1a, round robin)
 * beside a murmur2 one would leave them: each identity's decisions alternate between its owner partition
 * (murmur2 of the agent_id) and the next partition. `bad` identities deny all of their 12 calls, split
 * 6 and 6: only evaluated in one window do they trip (at their 10th call, 10 of 10, whatever order the
 * owner reads the two halves in). The others deny a quarter of 40 calls, spread out, and never trip.
 * Everything lies within one window (5 ms apart), so the counts at a trip do not depend on the order.
 */
function misroutedDecisions(identities: number, bad: number, partitions: number): { key: string; value: string; timestamp: string; partition: number }[] {
  const out: { key: string; value: string; timestamp: string; partition: number }[] = [];
  const base = Date.now() - 3 * 3_600_000;
  for (let j = 0; j < 40; j++) {
    for (let who = 0; who < identities; who++) {
      const isBad = who < bad;
      if (isBad && j >= 12) continue;
      const agent = `spiffe://example.org/misrouted/agent-${who}`;
      const owner = ownerPartition(agent, partitions);
      const at = base + out.length * 5;
      out.push({
        key: agent, value: decision(agent, isBad || j % 4 === 1 ? 'deny' : 'allow', 0, { occurred_at: new Date(at).toISOString() }), timestamp: String(at),
        partition: j % 2 === 0 ? owner : (owner + 1) % partitions,
      });
    }
  }
  return out;
}

/** A trip as replay and Kafka mode must agree on whatever order the owner read an identity's two halves in. */
function tripCounts(doc: Doc): string {
  const e = doc.evidence as { calls: number; denies: number; advisory_denies: number };
  return `${doc.agent_id} ${String(doc.action)} epoch=${doc.epoch} calls=${e.calls} denies=${e.denies} advisory=${e.advisory_denies}`;
}

async function replayCountsOfTopic(dir: string, topics: TestTopics): Promise<string[]> {
  const records = await readTopic(brokers, topics.decisions, { timeoutMs: 5000 });
  const inputs: string[] = [];
  for (const p of [...new Set(records.map((r) => r.partition))].sort()) {
    inputs.push(writeIn(dir, `partition-${p}.ndjson`, records.filter((r) => r.partition === p).map((r) => r.value!.toString('utf8')).join('\n') + '\n'));
  }
  const r = runCli(['replay', '--config', writeIn(dir, 'replay.json', JSON.stringify(REPLAY_CONFIG)), ...inputs]);
  expect(r.status).toBe(0);
  return parseLines<Doc>(r.stdout).map(tripCounts).sort();
}

/** Every addendum in its identity's owner partition, and each partition's chain 1..n without a gap or a repeat. */
function expectOwnerChains(addenda: ReadRecord[], topics: TestTopics, partitions: number): void {
  for (const a of addenda) {
    expect(a.partition).toBe(ownerPartition(a.key!, partitions));
    expect((parse(a).chain as { stream: string }).stream).toBe(`${topics.decisions}/${a.partition}`);
  }
  for (let p = 0; p < partitions; p++) {
    const seqs = addenda.filter((a) => a.partition === p).map((a) => (parse(a).chain as { sequence_number: number }).sequence_number);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }
}

describe('exactly once with half the records misrouted (forwarded to their owner partitions)', () => {
  it('SIGKILLed at random moments and restarted with half the records misrouted: every trip replay gives, each once', async () => {
    const dir = tempDir('kafka-crash-misrouted-');
    const topics = freshTopics('crash-misrouted');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 3, extra: NO_GOVERNOR, kafka: { max_partition_fetch_bytes: 65_536 } });
    const decisions = misroutedDecisions(800, 240, 3);
    await createTopic(brokers, topics.decisions, 3);
    await produce(brokers, topics.decisions, decisions);
    const expected = await replayCountsOfTopic(dir, topics);
    expect(expected).toHaveLength(240);
    const logs = await runThroughKills(cfg, topics, decisions.length);
    const written = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length, timeoutMs: 20_000 })).map(parse);
    explainDifference(written.map(tripCounts), expected, logs);
    expect(written.map(tripCounts).sort()).toEqual(expected);
    const addenda = await readTopic(brokers, topics.addenda, { until: (r) => r.length >= expected.length });
    expect(addenda).toHaveLength(expected.length);
    expectOwnerChains(addenda, topics, 3);
  }, 300_000);

  it('scales out with half the records misrouted: three instances, one stopped mid-stream, every trip replay gives, each once', async () => {
    const dir = tempDir('kafka-scale-misrouted-');
    const topics = freshTopics('scale-misrouted');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 6, extra: NO_GOVERNOR });
    await runScaledOut(cfg, topics, misroutedDecisions(600, 180, 6));
    const expected = await replayCountsOfTopic(dir, topics);
    expect(expected).toHaveLength(180);
    const written = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length })).map(parse);
    expect(written.map(tripCounts).sort()).toEqual(expected);
    const addenda = await readTopic(brokers, topics.addenda, { until: (r) => r.length >= expected.length });
    expect(addenda).toHaveLength(expected.length);
    expectOwnerChains(addenda, topics, 6);
  }, 300_000);
});
