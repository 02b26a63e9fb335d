/**
 * Kafka mode with a Schema Registry, on the real broker and registry (Apicurio, Confluent-compatible
 * API): records whose schema we cannot read go to the DLQ and the stream goes on
 * (docs/spec.md#8-bad-records-and-the-dlq), also across a restart; Avro and JSON Schema decisions
 * written by confluent-kafka for Python (a client this project did not write) trip exactly the
 * identities `killswitch replay` trips on the same decisions as NDJSON (docs/spec.md#1-decision-events).
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { parseLines, ROOT, runCli, tempDir, writeIn } from '../helpers/cli.js';
import { ensureConfluentPython, produceWithConfluentPython } from '../helpers/confluent-python.js';
import { drainedOn, freshTopics, kafkaConfig, produce, readTopic, startProcessor, type ReadRecord, type TestTopics } from '../helpers/kafka.js';
import { startRegistryProxy } from '../helpers/registry-proxy.js';

const brokers = inject('kafkaBrokers');
const registryUrl = inject('schemaRegistryUrl');

type Doc = Record<string, unknown> & { agent_id: string; evidence?: Record<string, unknown> };
const parse = (r: ReadRecord): Doc => JSON.parse(r.value!.toString('utf8')) as Doc;

/** Decisions stamped relative to now (the broker's retention deletes old records), 1 s apart. */
function decisions(agent: string | null, verdicts: readonly string[], from: number, extra: Record<string, unknown> = {}): string[] {
  const base = Date.now() - 30 * 60_000;
  const run = randomUUID().slice(0, 8);
  return verdicts.map((verdict, i) => JSON.stringify({
    decision_id: `${run}-${from + i}`,
    ...(agent === null ? {} : { agent_id: agent }),
    decision: verdict,
    occurred_at: new Date(base + (from + i) * 1000).toISOString(),
    ...extra,
  }));
}
const denies = (n: number): string[] => Array.from({ length: n }, () => 'deny');
const keyed = (agent: string, values: readonly string[]): { key: string; value: string }[] => values.map((value) => ({ key: agent, value }));

async function register(subject: string, body: { schema: string; schemaType?: string; references?: { name: string; subject: string; version: number }[] }): Promise<number> {
  const res = await fetch(`${registryUrl}/subjects/${encodeURIComponent(subject)}/versions`, {
    method: 'POST', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify(body),
  });
  const json = (await res.json()) as { id?: number };
  if (res.status !== 200 || json.id === undefined) throw new Error(`registering ${subject}: ${res.status} ${JSON.stringify(json)}`);
  return json.id;
}

function frame(id: number, payload: Buffer | string): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(id, 1);
  return Buffer.concat([header, Buffer.from(payload)]);
}

/** Avro binary by hand (zigzag varints, length-prefixed strings): no serializer of ours or theirs. */
function avroLong(n: number): Buffer {
  const out: number[] = [];
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  do {
    const b = z % 128;
    z = Math.floor(z / 128);
    out.push(z > 0 ? b | 0x80 : b);
  } while (z > 0);
  return Buffer.from(out);
}
const avroString = (s: string): Buffer => Buffer.concat([avroLong(Buffer.byteLength(s)), Buffer.from(s)]);

/** Kill events compared without what depends on the carrier (topic offsets here, file lines in replay) and signatures. */
function comparable(doc: Doc): string {
  const { signature: _s, issuer: _i, evidence, ...rest } = doc;
  const { source: _src, ...ev } = evidence ?? {};
  return canonicalJson({ ...rest, evidence: ev });
}

const drained = (topics: TestTopics, timeoutMs?: number): Promise<void> => drainedOn(brokers, topics, `g-${topics.decisions}`, timeoutMs);

/** A draft-07 decision schema as a producer team would register it (Apicurio checks draft-07 well). */
const DECISION_JSON_SCHEMA = JSON.stringify({
  $schema: 'http://json-schema.org/draft-07/schema#', title: 'PolicyDecision', type: 'object',
  properties: {
    decision_id: { type: 'string', minLength: 1, maxLength: 128 }, agent_id: { type: 'string' }, decision: { type: 'string' },
    occurred_at: { type: 'string' }, session_id: { type: 'string' }, tool_name: { type: 'string' },
  },
  required: ['decision_id', 'decision', 'occurred_at'],
});

describe('Kafka mode: records whose registered schema cannot be read', () => {
  it('sends each poison schema\'s records to the DLQ with its reason and exact bytes, keeps running, trips identities before and after them, and a restart does not exit', async () => {
    const dir = tempDir('kafka-registry-poison-');
    const topics = freshTopics('poison');
    const subject = (name: string): string => `${topics.decisions}-${name}`;
    // What the registry holds: an unrelated Avro record (no schemaType: Avro, as Confluent's convention
    // says), JSON Schemas Ajv cannot compile, a type nobody reads, a good schema the registry will fail on.
    const avroOther = await register(subject('invoice'), {
      schema: JSON.stringify({ type: 'record', name: 'Invoice', namespace: 'com.example.billing', fields: [{ name: 'invoice_id', type: 'string' }, { name: 'cents', type: 'long' }] }),
    });
    const draft4 = await register(subject('draft4'), {
      schemaType: 'JSON',
      schema: JSON.stringify({ $schema: 'http://json-schema.org/draft-04/schema#', id: 'http://example.com/decision', type: 'object', properties: { score: { type: 'number', maximum: 1, exclusiveMaximum: true } } }),
    });
    const dangling = await register(subject('dangling'), {
      schemaType: 'JSON', schema: JSON.stringify({ type: 'object', properties: { decision_id: { $ref: 'common-ids.json' } } }),
    });
    const common = await register(subject('common'), { schemaType: 'JSON', schema: JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { tenant: { type: 'string' } } }) });
    const referencing = await register(subject('referencing'), {
      schemaType: 'JSON', schema: JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { context: { $ref: 'common.json' } } }),
      references: [{ name: 'common.json', subject: subject('common'), version: 1 }],
    });
    const xml = await register(subject('xml'), { schemaType: 'XML', schema: '<decision/>' });
    const protobuf = await register(subject('proto'), { schemaType: 'PROTOBUF', schema: 'syntax = "proto3";\nmessage PolicyDecision { string decision_id = 1; }\n' });
    const failing = await register(subject('failing'), { schemaType: 'JSON', schema: DECISION_JSON_SCHEMA });
    expect(common).toBeGreaterThan(0);
    const missing = 0x7ffffff0;
    expect((await fetch(`${registryUrl}/schemas/ids/${missing}`)).status).toBe(404);

    // The registry as the processor sees it: the same, but answering 500 for one id and 404 for the
    // reference of another.
    const proxy = await startRegistryProxy(registryUrl, new Map([
      [`/schemas/ids/${failing}`, 500],
      [`/subjects/${subject('common')}/versions/1`, 404],
    ]));
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1, registry: proxy.url });
    const P = 'spiffe://example.org/agent/before';
    const A = 'spiffe://example.org/agent/around';
    const B = 'spiffe://example.org/agent/after';
    const C = 'spiffe://example.org/agent/after-restart';
    const poison: { value: Buffer; reason: string; id: number }[] = [
      { id: avroOther, value: frame(avroOther, Buffer.concat([avroString('inv-1'), avroLong(1999)])), reason: 'schema_invalid' },
      { id: draft4, value: frame(draft4, decisions(A, ['deny'], 100)[0]!), reason: 'schema_unsupported' },
      { id: dangling, value: frame(dangling, decisions(A, ['deny'], 101)[0]!), reason: 'schema_unsupported' },
      { id: referencing, value: frame(referencing, decisions(A, ['deny'], 102)[0]!), reason: 'schema_unsupported' },
      { id: xml, value: frame(xml, '<decision/>'), reason: 'schema_unsupported' },
      { id: protobuf, value: frame(protobuf, Buffer.from([0, 0x0a, 0x01, 0x78])), reason: 'schema_unsupported' },
      { id: missing, value: frame(missing, decisions(A, ['deny'], 103)[0]!), reason: 'unknown_schema' },
      { id: failing, value: frame(failing, decisions(A, ['deny'], 104)[0]!), reason: 'registry_error' },
    ];
    // every poison id twice: the registry is asked once per id, not once per record
    const twice = poison.flatMap((p) => [p, p]);
    let proc = await startProcessor(cfg);
    try {
      await produce(brokers, topics.decisions, [
        ...keyed(P, decisions(P, denies(10), 0)),
        ...keyed(A, decisions(A, denies(5), 10)),
        ...twice.map((p) => ({ key: A, value: p.value })),
        ...keyed(A, decisions(A, denies(5), 15)),
        ...keyed(B, decisions(B, denies(10), 20)),
      ]);
      const dlq = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= twice.length, timeoutMs: 60_000 });
      expect(dlq.map((r) => r.headers['killswitch.reason'])).toEqual(twice.map((p) => p.reason));
      dlq.forEach((r, i) => {
        expect(Buffer.compare(r.value!, twice[i]!.value), `DLQ record ${i} keeps the exact bytes`).toBe(0);
        expect(r.headers).toMatchObject({ 'killswitch.source.topic': topics.decisions, 'killswitch.source.offset': String(15 + i) });
        // refused for its schema: the message names the id (a record read and then refused says why instead)
        if (twice[i]!.reason === 'schema_invalid') expect(r.headers['killswitch.message']).toMatch(/decision_id: is required/);
        else expect(r.headers['killswitch.message']).toContain(`schema id ${twice[i]!.id}`);
      });
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 3, timeoutMs: 30_000 });
      expect(kills.map((k) => k.key).sort()).toEqual([A, B, P].sort());
      expect(parse(kills.find((k) => k.key === A)!).evidence).toMatchObject({ calls: 10, denies: 10 });
      expect(proc.child.exitCode, proc.log().slice(-3000)).toBeNull();
      expect(proc.log()).not.toContain('kafka processing failed');
      // one request per poison id (the 500 one: one retry series of the registry client)
      const asked = (id: number): number => proxy.requests.filter((p) => p === `/schemas/ids/${id}`).length;
      for (const p of poison.filter((x) => x.id !== failing)) expect(asked(p.id), `requests for schema id ${p.id}`).toBe(1);
      expect(asked(failing)).toBeGreaterThanOrEqual(1);
      expect(asked(failing)).toBeLessThanOrEqual(4);

      // The restart re-reads the poison records to restore windows: no exit, no second DLQ copy, and
      // the decisions after it still trip.
      expect(await proc.stop()).toBe(0);
      proc = await startProcessor(cfg);
      await produce(brokers, topics.decisions, keyed(C, decisions(C, denies(10), 40)));
      const after = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 4, timeoutMs: 30_000 });
      expect(after.map((k) => k.key).sort()).toEqual([A, B, C, P].sort());
      await drained(topics);
      expect(await readTopic(brokers, topics.dlq, { timeoutMs: 3000 })).toHaveLength(twice.length);
      expect(proc.child.exitCode, proc.log().slice(-3000)).toBeNull();
      expect(proc.log()).not.toContain('kafka processing failed');
    } finally {
      const code = await proc.stop();
      await proxy.close();
      expect(code, `the processor exited; its log:\n${proc.log().slice(-4000)}`).toBe(0);
    }
  }, 240_000);
});

describe('Kafka mode: decisions from confluent-kafka for Python', () => {
  it('Avro and JSON Schema decisions written by its SerializingProducer trip exactly the identities killswitch replay trips', async () => {
    const python = ensureConfluentPython();
    const dir = tempDir('kafka-registry-python-');
    const topics = freshTopics('pyserde');
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1, registry: registryUrl, extra: { governor: { enabled: false } } });
    // Twelve identities, six per format: all denies, 90%, just under 90% (8 of 9 then allows), half,
    // advisory denies, allows only; sessions, context fields, anonymous decisions and n/a besides.
    const patterns: string[][] = [
      denies(12),
      [...denies(9), 'allow', ...denies(2)],
      [...denies(8), 'allow', 'allow', 'deny', 'allow'],
      ['deny', 'allow', 'deny', 'allow', 'deny', 'allow', 'deny', 'allow', 'deny', 'allow', 'deny', 'allow'],
      [...Array.from({ length: 10 }, () => 'advisory_deny'), 'n/a', 'deny'],
      Array.from({ length: 12 }, () => 'allow'),
    ];
    let at = 0;
    const group = (format: string): string[] => patterns.flatMap((verdicts, k) => {
      const agent = `spiffe://example.org/ns/${format}/sa/agent-${k}`;
      const out = decisions(agent, verdicts, at, k % 2 === 0 ? { session_id: `${format}-session-${k}` } : { tool_name: 'http.fetch' });
      at += verdicts.length;
      const anonymous = decisions(null, ['deny'], at++);
      return [...out, ...anonymous];
    });
    const avro = group('avro');
    const json = group('json');
    const jsonSchemaFile = writeIn(dir, 'decision.schema.json', DECISION_JSON_SCHEMA);

    const proc = await startProcessor(cfg);
    let avroId: number;
    let jsonId: number;
    try {
      avroId = await produceWithConfluentPython({
        python, brokers, registry: registryUrl, topic: topics.decisions, format: 'avro', decisions: avro,
        schemaFile: join(ROOT, 'schemas', 'policy-decision.avsc'), subject: `${topics.decisions}-value`,
      });
      jsonId = await produceWithConfluentPython({
        python, brokers, registry: registryUrl, topic: topics.decisions, format: 'json', decisions: json,
        schemaFile: jsonSchemaFile, subject: `${topics.decisions}-json-value`,
      });
      await drained(topics);
    } finally {
      const code = await proc.stop();
      expect(code, `the processor exited; its log:\n${proc.log().slice(-4000)}`).toBe(0);
    }
    // what the registry says those ids are: Avro without a schemaType (the convention), and JSON
    const avroInfo = (await (await fetch(`${registryUrl}/schemas/ids/${avroId}`)).json()) as { schemaType?: string };
    const jsonInfo = (await (await fetch(`${registryUrl}/schemas/ids/${jsonId}`)).json()) as { schemaType?: string };
    expect([avroInfo.schemaType ?? 'AVRO', jsonInfo.schemaType]).toEqual(['AVRO', 'JSON']);
    // the values on the topic are framed with those ids, as the Python client wrote them
    const records = await readTopic(brokers, topics.decisions, { until: (r) => r.length >= avro.length + json.length });
    expect(records.map((r) => r.value!.readUInt32BE(1))).toEqual([...avro.map(() => avroId), ...json.map(() => jsonId)]);
    expect(records.every((r) => r.value![0] === 0)).toBe(true);

    const replay = runCli(['replay', '--config', writeIn(dir, 'replay.json', JSON.stringify({ kill_switch: { enabled: true }, governor: { enabled: false } })), writeIn(dir, 'decisions.ndjson', [...avro, ...json].join('\n') + '\n')]);
    expect(replay.status, replay.stderr).toBe(0);
    const expected = parseLines<Doc>(replay.stdout);
    // both formats trip, and not every identity does
    expect(expected.filter((d) => d.agent_id.includes('/avro/')).length).toBeGreaterThanOrEqual(2);
    expect(expected.filter((d) => d.agent_id.includes('/json/')).length).toBeGreaterThanOrEqual(2);
    expect(expected.length).toBeLessThan(patterns.length * 2);
    const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= expected.length })).map(parse);
    expect(kills.map(comparable).sort()).toEqual(expected.map(comparable).sort());
    // nothing was refused: every record of both formats was read
    expect(await readTopic(brokers, topics.dlq, { timeoutMs: 2000 })).toEqual([]);
  }, 300_000);
});
