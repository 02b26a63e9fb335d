/**
 * A partition pipeline as the owner of forwarded decisions (docs/spec.md#11-kafka-mode): what another
 * partition forwarded trips the identity here, with evidence naming where each decision was read,
 * whether it came in this version's format (decoded at its source) or in an older version's (the
 * records themselves, decoded again here, a bad one to the DLQ as if found bad where it was read).
 */
import { brotliCompressSync } from 'node:zlib';
import type { Client } from '@confluentinc/schemaregistry';
import { describe, expect, it } from 'vitest';
import { AddendumChains } from '../../../src/core/documents.js';
import { LedgerFold } from '../../../src/core/ledger-fold.js';
import { DecisionDecoder } from '../../../src/adapters/serde/decision-decoder.js';
import { KafkaValueDecoder } from '../../../src/adapters/serde/kafka-value-decoder.js';
import { KafkaRouting, ownerPartition } from '../../../src/adapters/kafka/repartition.js';
import { batchRecords, PartitionPipeline, type BatchRecords } from '../../../src/pipeline/partition-pipeline.js';
import type { InputRecord, OutputRecord } from '../../../src/ports/partition-records.js';
import { v1Entries } from '../../helpers/forwarded-v1.js';
import { tripConfig } from '../../helpers/trip-config.js';

const PARTITIONS = 4;
const T0 = Date.parse('2026-12-01T10:00:00Z');
const X = 'spiffe://example.org/agent/forwarded-x';
const OWNER = ownerPartition(X, PARTITIONS);
const SOURCE = (OWNER + 1) % PARTITIONS;

function pipelines(): { routing: KafkaRouting; source: PartitionPipeline; owner: PartitionPipeline } {
  const config = tripConfig();
  const decoder = new KafkaValueDecoder(new DecisionDecoder(config.classifier), undefined, 'decisions-value');
  const routing = new KafkaRouting({ decisionsTopic: 'decisions', repartitionTopic: 'decisions.repartition', partitions: PARTITIONS, groupId: 'g' });
  const shared = { routing, tripConfig: config, fold: new LedgerFold(), governor: undefined, decoder, chains: new AddendumChains(), signer: undefined };
  return { routing, source: new PartitionPipeline({ ...shared, partition: SOURCE }), owner: new PartitionPipeline({ ...shared, partition: OWNER }) };
}

/** Records of decisions partition SOURCE from offset 100: ten denies of X, one value that is not JSON after the fifth. */
function sourceRecords(): InputRecord[] {
  const values = Array.from({ length: 10 }, (_, i) => JSON.stringify({ decision_id: `fx-${i}`, agent_id: X, decision: 'deny', occurred_at: new Date(T0 + i * 1000).toISOString(), session_id: 's-1' }));
  values.splice(5, 0, '{"decision_id": "broken", ');
  return values.map((v, i) => ({ key: Buffer.from(X), value: Buffer.from(v), timestamp: String(T0 + i * 1000), offset: String(100 + i) }));
}

async function run(p: PartitionPipeline, forwarded: boolean, messages: InputRecord[]): Promise<BatchRecords> {
  const out = batchRecords();
  expect(await p.process({ forwarded, messages, upTo: messages.length, liveFrom: 0, isStale: () => false, now: 0 }, out)).not.toBe(false);
  return out;
}

const asRead = (r: OutputRecord, offset: number, value = r.value as Buffer, format?: string): InputRecord => ({
  key: null, value, timestamp: r.timestamp!, offset: String(offset), headers: { ...r.headers, ...(format === undefined ? {} : { 'killswitch.forwarded': format }) },
});

const evidenceOf = (out: BatchRecords): Record<string, unknown> => (JSON.parse(out.kills[0]!.value as string) as { evidence: Record<string, unknown> }).evidence;

describe('the owner of forwarded decisions', () => {
  it('trips on decisions forwarded in this version\'s format, with evidence naming the partition and offsets they were read at', async () => {
    const { source, owner } = pipelines();
    const read = await run(source, false, sourceRecords());
    expect(read.kills).toHaveLength(0);
    expect(read.forwardedDecisions).toBe(10);
    // the broken record goes to the DLQ where it was read, and is not forwarded
    expect(read.dlq).toHaveLength(1);
    expect(read.dlq[0]!.headers).toMatchObject({ 'killswitch.source.partition': String(SOURCE), 'killswitch.source.offset': '105' });
    expect(read.forwarded.map((r) => r.partition)).toEqual([OWNER]);
    const got = await run(owner, true, read.forwarded.map((r, i) => asRead(r, i)));
    expect(got.kills.map((k) => k.key)).toEqual([X]);
    expect(evidenceOf(got)).toMatchObject({ calls: 10, denies: 10, source: { topic: 'decisions', partition: SOURCE, offset_from: 100, offset_to: 110 } });
    expect(got.dlq).toHaveLength(0);
  });

  it('trips on the same decisions forwarded by an older version (v2 and v1: the records themselves), with the same evidence; a bad one there goes to the DLQ as read at its source', async () => {
    const { source, owner } = pipelines();
    const read = await run(source, false, sourceRecords());
    const expected = evidenceOf(await run(owner, true, read.forwarded.map((r, i) => asRead(r, i))));
    // the version before forwarded the records as read, the broken one too when its registry had taken it
    const records = sourceRecords();
    // the stream time of SOURCE after each record: the latest decision time so far (the broken one moves nothing)
    let streamTime = -Infinity;
    const streamTimes = records.map((m) => {
      const at = /"occurred_at":"([^"]+)"/.exec(m.value!.toString())?.[1];
      if (at !== undefined) streamTime = Math.max(streamTime, Date.parse(at));
      return streamTime;
    });
    const entries = v1Entries(records.map((record, i) => ({ record, offset: Number(record.offset), streamTime: streamTimes[i]! })));
    for (const [format, value] of [['v2', brotliCompressSync(entries)], ['v1', entries]] as const) {
      const fresh = pipelines();
      const got = await run(fresh.owner, true, [asRead(read.forwarded[0]!, 0, value, format)]);
      expect(got.kills.map((k) => k.key), format).toEqual([X]);
      expect(evidenceOf(got), format).toEqual(expected);
      expect(got.dlq, format).toHaveLength(1);
      expect(got.dlq[0]!.headers, format).toMatchObject({ 'killswitch.reason': 'invalid_json', 'killswitch.source.partition': String(SOURCE), 'killswitch.source.offset': '105' });
    }
  });
});

describe('a batch of both formats (during an upgrade)', () => {
  it('evaluates its entries in order, also when an older record waits for the registry: the trip falls on the last decision', async () => {
    const config = tripConfig();
    // registry-framed values forwarded by an older version are decoded again at their owner: a schema fetch
    const registry = {
      config: () => ({ baseURLs: ['http://127.0.0.1:1'], maxRetries: 0 }),
      getBySubjectAndId: () => new Promise((resolve) => setTimeout(() => resolve({ schema: '{"type":"object"}', schemaType: 'JSON' }), 20)),
    } as unknown as Client;
    const decoder = new KafkaValueDecoder(new DecisionDecoder(config.classifier), registry, 'decisions-value');
    const routing = new KafkaRouting({ decisionsTopic: 'decisions', repartitionTopic: 'decisions.repartition', partitions: PARTITIONS, groupId: 'g' });
    const shared = { routing, tripConfig: config, fold: new LedgerFold(), governor: undefined, decoder, chains: new AddendumChains(), signer: undefined };
    const source = new PartitionPipeline({ ...shared, partition: SOURCE });
    const owner = new PartitionPipeline({ ...shared, partition: OWNER });
    const records = sourceRecords().filter((m) => !m.value!.toString().includes('broken'));
    // the first five forwarded by an older version (v1: the records themselves, framed), the last five by this one
    const older = records.slice(0, 5).map((record, i) => ({ record: { ...record, value: Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), record.value!]) }, offset: Number(record.offset), streamTime: T0 + i * 1000 }));
    const forwarded = (await run(source, false, records.slice(5))).forwarded;
    const v1 = asRead(forwarded[0]!, 0, v1Entries(older), 'v1');
    const v3 = forwarded.map((r, i) => asRead(r, 1 + i));
    const got = await run(owner, true, [v1, ...v3]);
    expect(got.kills.map((k) => k.key)).toEqual([X]);
    expect(evidenceOf(got)).toMatchObject({ calls: 10, denies: 10, tripping_decision_id: 'fx-9', source: { topic: 'decisions', partition: SOURCE } });
  });
});

describe('a batch that goes stale while a schema is fetched', () => {
  it('forwards nothing of it: the next batch carries only its own decisions', async () => {
    const config = tripConfig();
    // a registry that answers, but only after the batch has gone stale (a seek, a rebalance)
    const registry = {
      config: () => ({ baseURLs: ['http://127.0.0.1:1'], maxRetries: 0 }),
      getBySubjectAndId: () => Promise.resolve({ schema: '{"type":"object"}', schemaType: 'JSON' }),
    } as unknown as Client;
    const decoder = new KafkaValueDecoder(new DecisionDecoder(config.classifier), registry, 'decisions-value');
    const routing = new KafkaRouting({ decisionsTopic: 'decisions', repartitionTopic: 'decisions.repartition', partitions: PARTITIONS, groupId: 'g' });
    const source = new PartitionPipeline({ routing, tripConfig: config, fold: new LedgerFold(), governor: undefined, decoder, chains: new AddendumChains(), signer: undefined, partition: SOURCE });
    const [first, ...rest] = sourceRecords();
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), rest[0]!.value!]);
    const stale = [first!, { ...rest[0]!, value: framed }];
    expect(await source.process({ forwarded: false, messages: stale, upTo: 2, liveFrom: 0, isStale: () => true, now: 0 }, batchRecords())).toBe(false);
    const next = await run(source, false, [rest[1]!]);
    expect(next.forwardedDecisions).toBe(1);
    const unpacker = routing.unpacker();
    for (const r of next.forwarded) unpacker.unpack(asRead(r, 0));
    expect(Array.from({ length: unpacker.count }, (_, i) => unpacker.offset(i))).toEqual([Number(rest[1]!.offset)]);
  });
});

describe('a repartition record this deployment forwarded that cannot be read', () => {
  it('goes to the DLQ as invalid_forwarded with the repartition partition and offset, and the records beside it are evaluated', async () => {
    const { source, owner } = pipelines();
    const read = await run(source, false, sourceRecords());
    const good = asRead(read.forwarded[0]!, 7);
    const damaged = { ...asRead(read.forwarded[0]!, 6), value: Buffer.from('not brotli') };
    // another consumer group's record on the same topic: not ours, and not a bad record either
    const foreign = { ...asRead(read.forwarded[0]!, 5), headers: { ...good.headers, 'killswitch.source.group': 'other' } };
    const got = await run(owner, true, [foreign, damaged, good]);
    expect(got.kills.map((k) => k.key)).toEqual([X]);
    expect(got.dlq).toHaveLength(1);
    expect(got.dlq[0]!.headers).toMatchObject({
      'killswitch.reason': 'invalid_forwarded', 'killswitch.source.topic': 'decisions.repartition', 'killswitch.source.partition': String(OWNER), 'killswitch.source.offset': '6',
    });
    expect(got.dlq[0]!.value).toEqual(Buffer.from('not brotli'));
  });

  it('is not sent again when a restore re-reads it', async () => {
    const { source, owner } = pipelines();
    const read = await run(source, false, sourceRecords());
    const damaged = { ...asRead(read.forwarded[0]!, 0), value: Buffer.from('not brotli') };
    const out = batchRecords();
    await owner.process({ forwarded: true, messages: [damaged], upTo: 1, liveFrom: 1, isStale: () => false, now: 0 }, out);
    expect(out.dlq).toHaveLength(0);
  });
});
