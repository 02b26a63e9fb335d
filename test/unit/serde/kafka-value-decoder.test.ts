/**
 * KafkaValueDecoder on framed values (docs/spec.md#8-bad-records-and-the-dlq), against a registry
 * client stand-in that answers what a registry can answer: schemas of every type, 404, 500, no answer
 * at all, no answer in time. What must hold: a record is a decision or a refusal with its reason, never
 * an exception, unless the registry gave no answer; a poison id costs one registry call; Avro values
 * decode to the decision their JSON twin decodes to. The real registry and broker are in
 * test/integration/kafka-registry.test.ts.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { AvroDeserializer, type Client, RestError, type SchemaInfo, type SchemaMetadata, SchemaRegistryClient, SerdeType } from '@confluentinc/schemaregistry';
import { describe, expect, it } from 'vitest';
import { createClassifier } from '../../../src/core/decision-class.js';
import { KillSwitchError } from '../../../src/core/errors.js';
import { DecisionDecoder, type DecodeResult } from '../../../src/adapters/serde/decision-decoder.js';
import { KafkaValueDecoder } from '../../../src/adapters/serde/kafka-value-decoder.js';

const decisions = new DecisionDecoder(createClassifier());
const AVSC = readFileSync(new URL('../../../schemas/policy-decision.avsc', import.meta.url), 'utf8');
const A = 'spiffe://example.org/agent/a';

type Answer = SchemaInfo | Error | 'hang';
/** one answer for every call, or one per call in turn (the last one repeated) */
type Answers = Answer | readonly Answer[];

/** A registry client that answers from tables and counts what it was asked. */
function fakeRegistry(ids: Record<number, Answers>, versions: Record<string, Answers> = {}, config: { maxRetries?: number } = {}): Client & { calls: string[] } {
  const calls: string[] = [];
  const answer = <T>(answers: Answers | undefined, what: string): Promise<T> => {
    const before = calls.filter((c) => c === what).length;
    calls.push(what);
    const a = Array.isArray(answers) ? (answers[before] ?? answers[answers.length - 1]) as Answer : answers as Answer | undefined;
    if (a === undefined) return Promise.reject(new RestError('not found', 404, 40403));
    if (a === 'hang') return new Promise<T>(() => undefined);
    if (a instanceof Error) return Promise.reject(a);
    return Promise.resolve(a as T);
  };
  const client = {
    calls,
    config: () => ({ baseURLs: ['http://127.0.0.1:1'], ...config }),
    getBySubjectAndId: (_subject: string, id: number) => answer<SchemaInfo>(ids[id], `id ${id}`),
    getSchemaMetadata: (subject: string, version: number) => answer<SchemaMetadata>(versions[`${subject}/${version}`], `${subject}/${version}`),
  };
  return client as unknown as Client & { calls: string[] };
}

/** What axios throws when nothing answers. */
function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8081'), { isAxiosError: true, code: 'ECONNREFUSED' });
}

function frame(id: number, payload: Buffer | string): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(id, 1);
  return Buffer.concat([header, Buffer.from(payload)]);
}

async function avroType(schema: string): Promise<{ toBuffer(v: unknown): Buffer }> {
  const [type] = await new AvroDeserializer(fakeRegistry({}), SerdeType.VALUE, {}).toType({ schema });
  return type;
}

const json = (d: Record<string, unknown>): string => JSON.stringify(d);
const decision = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  decision_id: 'd-1', agent_id: A, decision: 'deny', occurred_at: '2026-11-23T09:00:00Z', ...extra,
});
const avroDecision = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  agent_id: null, session_id: null, tool_name: null, policy_rule: null, tenant: null, delegated_by: null, ...decision(extra),
});

const refusal = (r: DecodeResult): { reason: string } | 'ok' => (r.ok ? 'ok' : { reason: r.reason });

describe('KafkaValueDecoder: Avro values', () => {
  it('decodes an Avro decision of schemas/policy-decision.avsc to the decision its JSON twin decodes to', async () => {
    const type = await avroType(AVSC);
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 7: { schema: AVSC } }), 'decisions-value');
    for (const d of [decision(), decision({ session_id: 's-1', tool_name: 'fetch', decision: 'n/a' }), decision({ agent_id: null })]) {
      const got = await kafka.decode(frame(7, type.toBuffer(avroDecision(d))), d.agent_id === null ? null : Buffer.from(A));
      const { agent_id, ...rest } = d;
      expect(got).toStrictEqual(decisions.decodeText(json(agent_id === null ? rest : d), agent_id === null ? undefined : A));
      expect(got.ok).toBe(true);
    }
  });

  it('decodes from the cache without a promise once the id is known', async () => {
    const type = await avroType(AVSC);
    const registry = fakeRegistry({ 7: { schema: AVSC, schemaType: 'AVRO' } });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value');
    const value = frame(7, type.toBuffer(avroDecision(decision())));
    await kafka.decode(value, null);
    const second = kafka.decode(value, null);
    expect(second).not.toBeInstanceOf(Promise);
    expect(refusal(second as DecodeResult)).toBe('ok');
    expect(registry.calls).toEqual(['id 7']);
  });

  it('refuses an Avro record of another shape as schema_invalid, and the key check still applies', async () => {
    const other = '{"type":"record","name":"Other","fields":[{"name":"x","type":"int"}]}';
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 1: { schema: other }, 7: { schema: AVSC } }), 'decisions-value');
    expect(refusal(await kafka.decode(frame(1, (await avroType(other)).toBuffer({ x: 5 })), null))).toEqual({ reason: 'schema_invalid' });
    const type = await avroType(AVSC);
    const r = await kafka.decode(frame(7, type.toBuffer(avroDecision(decision()))), Buffer.from('spiffe://example.org/agent/other'));
    expect(refusal(r)).toEqual({ reason: 'key_mismatch' });
  });

  it('refuses bytes that are not an Avro value of the schema: truncated, trailing, out-of-range union branch', async () => {
    const type = await avroType(AVSC);
    const good = type.toBuffer(avroDecision(decision()));
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 7: { schema: AVSC } }), 'decisions-value');
    expect(refusal(await kafka.decode(frame(7, good.subarray(0, good.length - 3)), null))).toEqual({ reason: 'schema_invalid' });
    expect(refusal(await kafka.decode(frame(7, Buffer.concat([good, Buffer.from([0])])), null))).toEqual({ reason: 'schema_invalid' });
    // decision_id "d-1" (length 3 as zigzag 6), then agent_id's union index 9: no such branch
    expect(refusal(await kafka.decode(frame(7, Buffer.from([6, 0x64, 0x2d, 0x31, 18])), null))).toEqual({ reason: 'schema_invalid' });
  });

  it('refuses a string that is not UTF-8 as invalid_utf8, never decoding it with replacement characters', async () => {
    const type = await avroType(AVSC);
    const value = type.toBuffer(avroDecision(decision({ decision_id: 'abc' })));
    const at = value.indexOf('abc');
    value[at + 1] = 0xff;
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 7: { schema: AVSC } }), 'decisions-value');
    expect(refusal(await kafka.decode(frame(7, value), null))).toEqual({ reason: 'invalid_utf8' });
  });

  it('refuses in an instant a few bytes that declare billions of array items or nest without end', async () => {
    const arrays = '{"type":"record","name":"R","fields":[{"name":"xs","type":{"type":"array","items":"null"}}]}';
    const list = '{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}';
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 1: { schema: arrays }, 2: { schema: list } }), 'decisions-value');
    const started = performance.now();
    // one block of 2^31 nulls: 5 bytes of varint, nothing after
    expect(refusal(await kafka.decode(frame(1, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x10, 0])), null))).toEqual({ reason: 'schema_invalid' });
    expect(refusal(await kafka.decode(frame(2, Buffer.alloc(100_000, 2)), null))).toEqual({ reason: 'schema_invalid' });
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('KafkaValueDecoder: what the registry answers', () => {
  const value = frame(9, json(decision()));

  it('a 404 is unknown_schema; asked once, then again after the answer expires', async () => {
    const registry = fakeRegistry({});
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value', { answerTtlMs: 50 });
    for (let i = 0; i < 5; i++) expect(refusal(await kafka.decode(value, null))).toEqual({ reason: 'unknown_schema' });
    expect(registry.calls).toEqual(['id 9']);
    await new Promise((r) => setTimeout(r, 80));
    await kafka.decode(value, null);
    expect(registry.calls).toEqual(['id 9', 'id 9']);
  });

  it('an error status other than 404 is registry_error, asked once for many records', async () => {
    const registry = fakeRegistry({ 9: new RestError('Unknown error: Request failed with status code 500', 500, -1) });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value');
    const results = await Promise.all(Array.from({ length: 20 }, async () => kafka.decode(value, null)));
    expect(new Set(results.map((r) => JSON.stringify(refusal(r))))).toEqual(new Set([JSON.stringify({ reason: 'registry_error' })]));
    expect(results[0]).toMatchObject({ message: expect.stringContaining('500') as unknown });
    expect(registry.calls).toEqual(['id 9']);
  });

  it('an error status the client does not retry is asked three times in all, 100 and 300 ms apart, before it is registry_error', async () => {
    const forbidden = new RestError('forbidden', 403, 40301);
    const registry = fakeRegistry({ 9: forbidden, 10: [forbidden, { schema: '{"type":"object"}', schemaType: 'JSON' }] });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value');
    const started = performance.now();
    expect(refusal(await kafka.decode(value, null))).toEqual({ reason: 'registry_error' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
    expect(registry.calls).toEqual(['id 9', 'id 9', 'id 9']);
    // an answer that does not persist is no refusal
    expect(refusal(await kafka.decode(frame(10, json(decision())), null))).toBe('ok');
    // a client configured not to retry: a 500 gets the quick tries too
    const noRetries = fakeRegistry({ 9: new RestError('boom', 500, 50001) }, {}, { maxRetries: 0 });
    expect(refusal(await new KafkaValueDecoder(decisions, noRetries, 'decisions-value').decode(value, null))).toEqual({ reason: 'registry_error' });
    expect(noRetries.calls).toHaveLength(3);
  });

  it('no answer at all throws KAFKA_FAILED and is not cached: the next record asks again', async () => {
    const registry = fakeRegistry({ 9: refused() });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value');
    await expect(kafka.decode(value, null)).rejects.toBeInstanceOf(KillSwitchError);
    await expect(kafka.decode(value, null)).rejects.toMatchObject({ code: 'KAFKA_FAILED' });
    expect(registry.calls).toEqual(['id 9', 'id 9']);
  });

  it('the real registry client, nothing listening on its port: KAFKA_FAILED', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const client = new SchemaRegistryClient({ baseURLs: [`http://127.0.0.1:${port}`], maxRetries: 0 });
    const kafka = new KafkaValueDecoder(decisions, client, 'decisions-value');
    await expect(kafka.decode(value, null)).rejects.toMatchObject({ code: 'KAFKA_FAILED', message: expect.stringContaining('unreachable') as unknown });
  });

  it('no answer in time throws KAFKA_FAILED', async () => {
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 9: 'hang' }), 'decisions-value', { registryTimeoutMs: 50 });
    await expect(kafka.decode(value, null)).rejects.toMatchObject({ code: 'KAFKA_FAILED', message: expect.stringContaining('did not answer') as unknown });
  });

  it('schema types other than JSON and Avro are schema_unsupported, Protobuf named as such', async () => {
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({
      1: { schema: '<a/>', schemaType: 'XML' },
      2: { schema: 'syntax = "proto3"; message M { string a = 1; }', schemaType: 'PROTOBUF' },
    }), 'decisions-value');
    const xml = await kafka.decode(frame(1, 'x'), null);
    expect(xml).toMatchObject({ ok: false, reason: 'schema_unsupported', message: expect.stringContaining('XML') as unknown });
    expect(await kafka.decode(frame(2, 'x'), null)).toMatchObject({ ok: false, reason: 'schema_unsupported', message: expect.stringContaining('Protobuf') as unknown });
  });

  it('schemas that do not compile or cannot be resolved are schema_unsupported; a resolvable reference works', async () => {
    const draft4 = json({ $schema: 'http://json-schema.org/draft-04/schema#', id: 'urn:d', type: 'object', properties: { n: { type: 'number', maximum: 10, exclusiveMaximum: true } } });
    const dangling = json({ type: 'object', properties: { decision_id: { $ref: 'missing.json' } } });
    const withRef = json({ type: 'object', properties: { decision_id: { $ref: 'id.json' } } });
    const registry = fakeRegistry({
      1: { schema: draft4, schemaType: 'JSON' },
      2: { schema: dangling, schemaType: 'JSON' },
      3: { schema: withRef, schemaType: 'JSON', references: [{ name: 'id.json', subject: 'ids', version: 1 }] },
      4: { schema: withRef, schemaType: 'JSON', references: [{ name: 'id.json', subject: 'gone', version: 1 }] },
      // Avro naming a type nobody defined
      5: { schema: '{"type":"record","name":"R","fields":[{"name":"x","type":"Missing"}]}' },
      6: { schema: json(decision()), schemaType: 'JSON', ruleSet: { domainRules: [{ name: 'r', type: 'CEL', kind: 'CONDITION' }] } },
    }, { 'ids/1': { schema: json({ type: 'string', minLength: 2 }), schemaType: 'JSON' } });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value');
    for (const id of [1, 2, 4, 5, 6]) expect(refusal(await kafka.decode(frame(id, json(decision())), null)), `schema ${id}`).toEqual({ reason: 'schema_unsupported' });
    expect(refusal(await kafka.decode(frame(3, json(decision())), null))).toBe('ok');
    expect(refusal(await kafka.decode(frame(3, json(decision({ decision_id: 'x' }))), null))).toEqual({ reason: 'schema_invalid' });
  });

  it('a reference the registry answers 404 for is asked again once the answer expires; a null ruleSet is no rule', async () => {
    const withRef = json({ type: 'object', properties: { decision_id: { $ref: 'id.json' } } });
    const registry = fakeRegistry({
      1: { schema: withRef, schemaType: 'JSON', references: [{ name: 'id.json', subject: 'late', version: 1 }] },
      2: { schema: '{"type":"object"}', schemaType: 'JSON', ruleSet: null } as unknown as SchemaInfo,
    });
    const kafka = new KafkaValueDecoder(decisions, registry, 'decisions-value', { answerTtlMs: 50 });
    expect(refusal(await kafka.decode(frame(1, json(decision())), null))).toEqual({ reason: 'schema_unsupported' });
    expect(refusal(await kafka.decode(frame(1, json(decision())), null))).toEqual({ reason: 'schema_unsupported' });
    expect(registry.calls).toEqual(['id 1', 'late/1']);
    await new Promise((r) => setTimeout(r, 80));
    await kafka.decode(frame(1, json(decision())), null);
    expect(registry.calls).toEqual(['id 1', 'late/1', 'id 1', 'late/1']);
    expect(refusal(await kafka.decode(frame(2, json(decision())), null))).toBe('ok');
  });

  it('a framed JSON value is strict like a plain one: invalid UTF-8 and duplicate keys are refused', async () => {
    const kafka = new KafkaValueDecoder(decisions, fakeRegistry({ 1: { schema: '{"type":"object"}', schemaType: 'JSON' } }), 'decisions-value');
    expect(refusal(await kafka.decode(frame(1, Buffer.concat([Buffer.from('{"decision_id":"'), Buffer.from([0xff]), Buffer.from('"}')])), null))).toEqual({ reason: 'invalid_utf8' });
    expect(refusal(await kafka.decode(frame(1, `{"agent_id":"${A}","agent_id":"spiffe://example.org/x","decision_id":"d","decision":"deny","occurred_at":"2026-11-23T09:00:00Z"}`), null))).toEqual({ reason: 'invalid_json' });
  });

  it('without a configured registry a framed value is unknown_schema', async () => {
    const kafka = new KafkaValueDecoder(decisions, undefined, 'decisions-value');
    expect(refusal(await kafka.decode(value, null))).toEqual({ reason: 'unknown_schema' });
  });
});
