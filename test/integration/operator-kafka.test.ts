/**
 * The operator API in Kafka mode, on the real broker, with two `killswitch run` instances in one group:
 * ingest over HTTP, a trip by the partition's owner, an operator unblock through the other instance
 * that empties the owner's window, a re-trip that needs a fresh min_calls, manual blocks raced from
 * both instances (one operator chain, no fork), the change feed numbered by offset, and the governor
 * and shadow rules writing shadow events to their topic.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkSignature } from '../../src/adapters/signing/ed25519-signer.js';
import { loadJwks } from '../../src/adapters/signing/keys.js';
import { validator } from '../../src/schemas.js';
import { createSessionGuard } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { decision, ndjson, repeat, runCli, tempDir, writeIn } from '../helpers/cli.js';
import { apiToken, eventually, freePort, request, type Reply } from '../helpers/http-request.js';
import { freshTopics, kafkaConfig, produce, readTopic, startProcessor, type TestTopics } from '../helpers/kafka.js';

const BAD = 'spiffe://example.org/ns/prod/sa/scraper';
const GOOD = 'spiffe://example.org/ns/prod/sa/summariser';
const enc = (id: string): string => encodeURIComponent(id);
const token = apiToken;

const op = token();
const viewer = token();
const ingest = token();
const tokens = [
  { name: 'alice', sha256: op.sha256, roles: ['operator'] },
  { name: 'watcher', sha256: viewer.sha256, roles: ['viewer'] },
  { name: 'gateway', sha256: ingest.sha256, roles: ['ingest'] },
];

const json = (r: Reply): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

function call(base: string, path: string, o: { tok?: string; body?: unknown; raw?: string; type?: string } = {}): Promise<Reply> {
  const hasBody = o.body !== undefined || o.raw !== undefined;
  return request(`${base}${path}`, {
    method: hasBody ? 'POST' : 'GET',
    headers: { ...(o.tok === undefined ? {} : { authorization: `Bearer ${o.tok}` }), ...(hasBody ? { 'content-type': o.type ?? 'application/json' } : {}) },
    ...(o.raw !== undefined ? { body: o.raw } : o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
  });
}

type Processor = Awaited<ReturnType<typeof startProcessor>>;

describe('operator API in Kafka mode, two instances in one group', () => {
  const brokers = inject('kafkaBrokers');
  let dir: string;
  let topics: TestTopics;
  const procs: Processor[] = [];
  const bases: string[] = [];

  beforeAll(async () => {
    dir = tempDir('operator-kafka-');
    topics = freshTopics('opk');
    const group = `g-${topics.decisions}`;
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const cfg = kafkaConfig(dir, brokers, topics, {
        group, partitions: 4, killSwitch: { window_seconds: 300, deny_rate_threshold: 0.5, min_calls: 10 },
        extra: { http: { listen: `127.0.0.1:${port}`, tokens, rate_limit: { per_minute: 600, burst: 100 } } },
      });
      procs.push(await startProcessor(cfg));
      bases.push(`http://127.0.0.1:${port}`);
    }
    // both members have their partitions before anything is posted
    await eventually(() => Promise.resolve(procs.map((p) => p.log()).join('')), (l) => (l.match(/"partition assigned"/g) ?? []).length >= 4, 60_000);
    for (const b of bases) await eventually(() => call(b, '/readyz'), (r) => r.status === 200, 30_000);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) expect(await p.stop(), p.log().slice(-2000)).toBe(0);
  }, 60_000);

  it('ingest trips on the owner; an unblock through the other instance empties the owner\'s window; a re-trip needs a fresh min_calls', async () => {
    const jwks = JSON.parse(readFileSync(join(dir, 'keys', 'jwks.json'), 'utf8')) as { keys: object[] };
    const guard = createSessionGuard({ ledger: { kafka: { brokers: brokers.split(',') }, topic: topics.kills }, jwks, logger: captureLogger() });
    try {
      await guard.ready;
      const [a, b] = bases as [string, string];
      const posted = await call(a, '/v1/decisions', { tok: ingest.token, raw: ndjson([...repeat(BAD, 'deny', 10, 0), 'not json', decision(GOOD, 'allow', 11)]), type: 'application/x-ndjson' });
      expect(posted.status).toBe(202);
      // produced, not evaluated yet: the trip happens on the partition's owner, after the answer
      expect(json(posted)).toMatchObject({ accepted: 11, invalid: 1, trips: null, errors: [{ index: 10, reason: 'invalid_json' }] });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (x) => !x, 20_000);

      // the owner shows the window; the other instance says which partition holds it and that it is not its own
      const views = await Promise.all(bases.map(async (base) => json(await call(base, `/v1/identities/${enc(BAD)}`, { tok: viewer.token }))));
      const owner = views.findIndex((v) => (v.partition as { owned: boolean }).owned);
      expect(owner).toBeGreaterThanOrEqual(0);
      const other = 1 - owner;
      expect(views[owner]).toMatchObject({ state: 'blocked', epoch: 1, window: { calls: 10, denies: 10 }, last_kill_event: { trigger: 'deny_rate', epoch: 1 } });
      expect(views[other]).toMatchObject({ state: 'blocked', epoch: 1, window: null, partition: { number: (views[owner]!.partition as { number: number }).number, owned: false } });
      expect(json(await call(b, '/v1/blocks', { tok: viewer.token }))).toMatchObject({ total: 1, items: [{ agent_id: BAD, action: 'block' }] });
      // the operator CLI says where the window is when asked on the other instance
      const status = runCli(['status', BAD, '--url', bases[other]!], { env: { KILLSWITCH_TOKEN: viewer.token } });
      expect(status.stdout).toBe(`${BAD}: BLOCKED (epoch 1)\n  window: on the instance that owns decisions partition ${(views[owner]!.partition as { number: number }).number} (ask that one)\n` +
        `  last kill event: block epoch 1, deny_rate, ${(views[owner]!.last_kill_event as { at: string }).at}, "${(views[owner]!.last_kill_event as { reason: string }).reason}"\n`);

      // a line that is not UTF-8 is a bad record too, kept byte for byte
      const notUtf8 = Buffer.concat([Buffer.from(decision(GOOD, 'allow', 12).slice(0, -2)), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
      const refused = await request(`${a}/v1/decisions`, { method: 'POST', headers: { authorization: `Bearer ${ingest.token}`, 'content-type': 'application/x-ndjson' }, body: notUtf8 });
      expect([refused.status, JSON.parse(refused.body)]).toEqual([202, { accepted: 0, invalid: 1, trips: null, errors: [{ index: 0, reason: 'invalid_utf8', message: 'the line is not valid UTF-8' }] }]);
      // the invalid lines went to the DLQ with their reason; the valid ones to the decisions topic, keyed by agent_id
      const dlq = await readTopic(brokers, topics.dlq, { until: (r) => r.length >= 2 });
      expect(dlq.map((r) => [r.value?.toString('base64'), r.headers['killswitch.reason']]).sort((x, y) => x[1]!.localeCompare(y[1]!)))
        .toEqual([[Buffer.from('not json').toString('base64'), 'invalid_json'], [notUtf8.toString('base64'), 'invalid_utf8']]);
      // and counted, by the instance that took them
      const scraped = (await request(`${a}/metrics`)).body;
      expect(scraped).toContain('killswitch_dlq_total{reason="invalid_json"} 1');
      expect(scraped).toContain('killswitch_dlq_total{reason="invalid_utf8"} 1');

      // unblock through the instance that does not own the identity's partition
      const notBlocked = await call(bases[other]!, '/v1/blocks/unblock', { tok: op.token, body: { agent_id: GOOD, reason: 'r', authorized_by: 'alice@example.org' } });
      expect([notBlocked.status, json(notBlocked).error]).toEqual([404, 'NOT_BLOCKED']);
      const un = await call(bases[other]!, '/v1/blocks/unblock', { tok: op.token, body: { agent_id: BAD, reason: 'false positive, INC-42', authorized_by: 'alice@example.org' } });
      expect(un.status, un.body).toBe(200);
      expect(json(un)).toMatchObject({ action: 'unblock', agent_id: BAD, epoch: 1, trigger: 'operator', authorized_by: 'alice@example.org' });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (x) => x, 10_000);
      await eventually(async () => json(await call(bases[owner]!, `/v1/identities/${enc(BAD)}`, { tok: viewer.token })),
        (v) => v.state === 'active' && (v.window as { calls: number }).calls === 0, 10_000);

      // 9 more denies: below min_calls in the emptied window; the tenth trips again, at epoch 2
      await call(a, '/v1/decisions', { tok: ingest.token, body: repeat(BAD, 'deny', 9, 20).map((l) => JSON.parse(l) as object) });
      await eventually(async () => json(await call(bases[owner]!, `/v1/identities/${enc(BAD)}`, { tok: viewer.token })),
        (v) => (v.window as { calls: number }).calls === 9, 20_000);
      expect(guard.check(BAD).allowed).toBe(true);
      await call(b, '/v1/decisions', { tok: ingest.token, body: JSON.parse(decision(BAD, 'deny', 30)) as object });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (x) => !x, 20_000);
      expect(json(await call(a, `/v1/identities/${enc(BAD)}`, { tok: viewer.token }))).toMatchObject({ state: 'blocked', epoch: 2 });

      // a manual block and a conflict
      const manual = await call(a, '/v1/blocks', { tok: op.token, body: { agent_id: GOOD, reason: 'incident INC-7', authorized_by: 'alice@example.org' } });
      expect(manual.status, manual.body).toBe(201);
      expect(json(manual)).toMatchObject({ action: 'block', agent_id: GOOD, epoch: 1, trigger: 'operator' });
      const again = await call(b, '/v1/blocks', { tok: op.token, body: { agent_id: GOOD, reason: 'again', authorized_by: 'a' } });
      expect([again.status, json(again).error]).toEqual([409, 'ALREADY_BLOCKED']);
      await eventually(() => Promise.resolve(guard.check(GOOD).allowed), (x) => !x, 10_000);
    } finally {
      await guard.close();
    }
  }, 120_000);

  it('takes a body near http.max_body_bytes of one identity\'s decisions in one request (sent in parts, one transaction)', async () => {
    const busy = 'spiffe://example.org/ns/prod/sa/busy';
    const lines = repeat(busy, 'allow', 7500, 100, 0.01);
    const body = ndjson(lines);
    // under http.max_body_bytes (1 MiB); with keys and record overhead over the broker's 1 MB batch limit in one send
    expect(Buffer.byteLength(body)).toBeGreaterThan(1_000_000);
    expect(Buffer.byteLength(body)).toBeLessThan(1_048_576);
    const r = await call(bases[0]!, '/v1/decisions', { tok: ingest.token, raw: body, type: 'application/x-ndjson' });
    expect([r.status, json(r)]).toEqual([202, { accepted: 7500, invalid: 0, trips: null, errors: [] }]);
    const owner = async (): Promise<Record<string, unknown>[]> => Promise.all(bases.map(async (b) => json(await call(b, `/v1/identities/${enc(busy)}`, { tok: viewer.token }))));
    const views = await eventually(owner, (vs) => vs.some((v) => (v.window as { calls: number } | null)?.calls === 7500), 30_000);
    expect(views.filter((v) => v.window !== null)).toHaveLength(1);
  }, 60_000);

  it('manual blocks raced from both instances all land once, in one operator chain that verifies offline; the feed is numbered by offset', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/ns/incident/sa/agent-${i}`);
    const replies = await Promise.all(ids.map((id, i) => call(bases[i % 2]!, '/v1/blocks', { tok: op.token, body: { agent_id: id, reason: 'incident INC-9', authorized_by: 'alice@example.org' } })));
    expect(replies.map((r) => r.status), replies.map((r) => r.body).join('\n')).toEqual(ids.map(() => 201));
    // a scope block through the API too
    const scope = await call(bases[1]!, '/v1/blocks', { tok: op.token, body: { agent_id: 'spiffe://example.org/ns/quarantine/*', reason: 'namespace quarantined', authorized_by: 'alice@example.org' } });
    expect(scope.status, scope.body).toBe(201);
    expect(json(scope)).toMatchObject({ agent_id: 'spiffe://example.org/ns/quarantine', scope: 'subtree', epoch: 1 });
    const inside = runCli(['status', 'spiffe://example.org/ns/quarantine/sa/x', '--url', bases[0]!], { env: { KILLSWITCH_TOKEN: viewer.token } });
    expect(inside.stdout).toContain('ACTIVE (epoch 0)\n  refused by session guards: the scope spiffe://example.org/ns/quarantine/* is blocked\n');

    const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 4 + ids.length + 1 });
    const operatorAddenda = await readTopic(brokers, topics.operator_addenda, { until: (r) => r.length >= 2 + ids.length + 1 });
    const addenda = await readTopic(brokers, topics.addenda, { until: (r) => r.length >= 2 });
    const blocks = kills.map((r) => JSON.parse(r.value!.toString()) as { agent_id: string; action: string }).filter((e) => ids.includes(e.agent_id));
    expect(blocks.map((e) => e.agent_id).sort()).toEqual([...ids].sort());
    expect(operatorAddenda.every((r) => r.partition === 0)).toBe(true);
    expect(addenda).toHaveLength(2); // the two automatic trips

    // every addendum verifies offline, and the operator chain is one unbroken chain (a fork would fail)
    // (a regulator dumps both addenda topics into one file, as README "For regulators" says)
    const file = writeIn(dir, 'addenda.ndjson', ndjson([...addenda, ...operatorAddenda].map((r) => r.value!.toString())));
    const v = runCli(['verify', '--jwks', join(dir, 'keys', 'jwks.json'), file]);
    expect(v.status, v.stdout + v.stderr).toBe(0);
    const links = operatorAddenda.map((r) => (JSON.parse(r.value!.toString()) as { chain: { stream: string; sequence_number: number } }).chain);
    expect(links.map((l) => `${l.stream}:${l.sequence_number}`)).toEqual(links.map((_, i) => `operator:${i + 1}`));

    // both instances number the feed by the kills topic offset + 1, the same on both
    const feeds = await Promise.all(bases.map(async (b) => json(await call(b, '/v1/blocks/changes?since=0', { tok: viewer.token })) as { events: { seq: number; event: { event_id: string } }[] }));
    expect(feeds[0]!.events.map((e) => e.seq)).toEqual(kills.map((r) => r.offset + 1));
    expect(feeds[1]!.events.map((e) => [e.seq, e.event.event_id])).toEqual(feeds[0]!.events.map((e) => [e.seq, e.event.event_id]));
    const tail = json(await call(bases[0]!, `/v1/blocks/changes?since=${kills[kills.length - 2]!.offset + 1}`, { tok: viewer.token })) as { events: { seq: number }[] };
    expect(tail.events.map((e) => e.seq)).toEqual([kills[kills.length - 1]!.offset + 1]);
  }, 120_000);
});

describe('governor and shadow rules in Kafka mode', () => {
  const brokers = inject('kafkaBrokers');

  it('a trip storm is held to max_blocks_per_minute, the rest become shadow events; a shadow rule reports and never blocks', async () => {
    const dir = tempDir('governor-kafka-');
    const topics = freshTopics('gov');
    const port = await freePort();
    const cfg = kafkaConfig(dir, brokers, topics, {
      partitions: 3, killSwitch: { window_seconds: 300, deny_rate_threshold: 1, min_calls: 2 },
      extra: {
        http: { listen: `127.0.0.1:${port}` },
        governor: { max_blocks_per_minute: 20, max_blocked_share: 0.5, share_floor: 10 },
        overrides: [{ match: 'spiffe://example.org/ns/canary/*', mode: 'shadow', min_calls: 4, deny_rate_threshold: 0.5 }],
      },
    });
    const proc = await startProcessor(cfg);
    try {
      // 300 identities each deny once (all active), then each a second time: 300 trips within one minute
      // of event time, far below the share limit (150 of 300), so the rate limit binds. 3 canary
      // identities deny half their calls: the main rule (100% over 2) leaves them alone, the stricter
      // shadow rule (50% over 4) trips.
      const storm = Array.from({ length: 300 }, (_, i) => `spiffe://example.org/ns/prod/sa/storm-${i}`);
      const canary = Array.from({ length: 3 }, (_, i) => `spiffe://example.org/ns/canary/sa/c-${i}`);
      const lines = [
        ...storm.map((id, i) => decision(id, 'deny', i * 0.1)),
        ...storm.map((id, i) => decision(id, 'deny', 30 + i * 0.09)),
        ...canary.flatMap((id) => [decision(id, 'deny', 57), decision(id, 'allow', 57.5), decision(id, 'deny', 58), decision(id, 'allow', 58.5)]),
      ];
      await produce(brokers, topics.decisions, lines.map((l) => ({ key: (JSON.parse(l) as { agent_id: string }).agent_id, value: l })));
      const shadow = await readTopic(brokers, topics.shadow, { until: (r) => r.length >= 280 + 3, timeoutMs: 60_000 });
      const kills = await readTopic(brokers, topics.kills, { until: (r) => r.length >= 20, timeoutMs: 30_000 });
      const events = shadow.map((r) => JSON.parse(r.value!.toString()) as { agent_id: string; reason: string; rule?: string });
      expect(kills).toHaveLength(20);
      expect(kills.every((r) => storm.includes(r.key!))).toBe(true);
      expect(events.filter((e) => e.reason === 'governor_rate')).toHaveLength(280);
      expect(events.filter((e) => e.reason === 'shadow_rule').map((e) => [e.agent_id, e.rule]).sort()).toEqual(canary.map((id) => [id, 'spiffe://example.org/ns/canary/*']).sort());
      // a shadow event is signed like a kill event and valid against its schema
      const trusted = loadJwks(join(dir, 'keys', 'jwks.json'));
      const valid = validator('shadowEvent');
      for (const r of shadow) {
        const doc = JSON.parse(r.value!.toString()) as Record<string, unknown>;
        expect(valid(doc), JSON.stringify(valid.errors)).toBe(true);
        expect(checkSignature(doc, trusted).ok).toBe(true);
      }
      const metrics = (await request(`http://127.0.0.1:${port}/metrics`)).body;
      expect(metrics).toContain('killswitch_governor_held_total{reason="governor_rate"} 280');
      expect(metrics).toContain('killswitch_governor_held_total{reason="shadow_rule"} 3');
      expect(metrics).toContain('killswitch_trips_total 20');
    } finally {
      expect(await proc.stop()).toBe(0);
    }
  }, 180_000);
});
