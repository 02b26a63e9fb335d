/**
 * Open Policy Agent's decision logs as a source (docs/opa.md): a real `opa` (built from the Go module
 * proxy by scripts/tools.mjs) runs examples/opa/policy.rego with examples/opa/opa-config.yaml and
 * uploads its decision logs to `killswitch run --config examples/opa/killswitch.yaml` (the files as
 * shipped; ports and directories come in through their ${VAR}s). Beside it, the receiver fed by hand
 * with OPA-shaped gzip batches: retried batches, limits, the mapping section, Kafka mode.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureOpa } from '../../scripts/tools.mjs';
import { type KillEventLine, parseLines, ROOT, runCli, startLogged, tempDir, writeIn, type LoggedCli } from '../helpers/cli.js';
import { apiToken, eventually, freePort, request, type Reply } from '../helpers/http-request.js';
import { freshTopics, kafkaConfig, readTopic, startProcessor, topicConfig } from '../helpers/kafka.js';

const EXAMPLES = join(ROOT, 'examples', 'opa');
const BAD = 'spiffe://example.org/ns/prod/sa/runaway-agent';
const GOOD = 'spiffe://example.org/ns/prod/sa/search-agent';
const MIXED = 'spiffe://example.org/ns/prod/sa/mixed-agent';

let opaBin: string;
/** processes to stop when the file is done, whatever failed */
const running: LoggedCli[] = [];
afterAll(async () => {
  for (const p of running) await p.stop();
}, 60_000);

beforeAll(async () => {
  // the first build takes minutes on 2 busy cores; later runs find it in .cache/tools. A missing Go fails here, loudly.
  opaBin = await ensureOpa();
}, 20 * 60_000);

/** Directories and ports of one kill switch set up as examples/opa/killswitch.yaml says. */
interface Setup {
  dir: string;
  env: NodeJS.ProcessEnv;
  url: string;
  authzUrl: string;
  opaToken: string;
  opsToken: string;
}

async function exampleSetup(prefix: string): Promise<Setup> {
  const dir = tempDir(prefix);
  const [port, authzPort] = [await freePort(), await freePort()];
  const env = {
    KILLSWITCH_DATA_DIR: join(dir, 'data'), KILLSWITCH_KEYS_DIR: join(dir, 'keys'), KILLSWITCH_TOKENS_DIR: join(dir, 'tokens'),
    KILLSWITCH_LISTEN: `127.0.0.1:${port}`, KILLSWITCH_AUTHZ_LISTEN: `127.0.0.1:${authzPort}`,
  };
  for (const args of [['keys', 'generate', '--out', env.KILLSWITCH_KEYS_DIR], ['tokens', 'generate', '--out', env.KILLSWITCH_TOKENS_DIR, '--name', 'opa', '--roles', 'opa'],
    ['tokens', 'generate', '--out', env.KILLSWITCH_TOKENS_DIR, '--name', 'ops', '--roles', 'viewer,operator,ingest']]) {
    const r = runCli(args, { env });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  }
  const token = (name: string): string => readFileSync(join(env.KILLSWITCH_TOKENS_DIR, `${name}.token`), 'utf8').trim();
  return { dir, env, url: `http://127.0.0.1:${port}`, authzUrl: `http://127.0.0.1:${authzPort}`, opaToken: token('opa'), opsToken: token('ops') };
}

/** `killswitch run` with the shipped example config, once it serves. */
async function startKillSwitch(s: Setup): Promise<LoggedCli> {
  const ks = startLogged(['run', '--config', join(EXAMPLES, 'killswitch.yaml')], { env: s.env });
  running.push(ks);
  await eventually(() => Promise.resolve(ks.log()), (l) => l.includes('serving the operator API') || ks.child.exitCode !== null, 30_000);
  if (ks.child.exitCode !== null) throw new Error(ks.log());
  return ks;
}

interface Window { calls: number; denies: number }
async function windowOf(s: Setup, id: string): Promise<Window & { state: string }> {
  const r = await request(`${s.url}/v1/identities/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${s.opsToken}` } });
  if (r.status !== 200) throw new Error(`${r.status} ${r.body}`);
  const v = JSON.parse(r.body) as { state: string; window: Window };
  return { state: v.state, calls: v.window.calls, denies: v.window.denies };
}

const kills = (s: Setup): KillEventLine[] => parseLines<KillEventLine>(readFileSync(join(s.env.KILLSWITCH_DATA_DIR!, 'kills.ndjson'), 'utf8'));
const ingested = (s: Setup): { decision_id?: string; agent_id?: string }[] => parseLines(readFileSync(join(s.env.KILLSWITCH_DATA_DIR!, 'ingest.ndjson'), 'utf8'));

function metric(text: string, outcome: string): number {
  const m = new RegExp(`^killswitch_opa_events_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe('a real OPA uploading its decision logs to the kill switch (examples/opa as shipped)', () => {
  let opa: ChildProcess | undefined;
  let opaLog = '';
  afterAll(() => {
    opa?.kill('SIGTERM');
  });

  it('trips the identity OPA keeps denying, which killswitch authz then refuses, leaves the others alone, and loses or double-counts no batch across a stop of the kill switch', async () => {
    const s = await exampleSetup('opa-real-');
    let ks = await startKillSwitch(s);
    const opaPort = await freePort();
    opa = spawn(opaBin, ['run', '--server', '--addr', `127.0.0.1:${opaPort}`, '--config-file', join(EXAMPLES, 'opa-config.yaml'), join(EXAMPLES, 'policy.rego')], {
      env: { ...process.env, KILLSWITCH_URL: s.url, KILLSWITCH_OPA_TOKEN_FILE: join(s.env.KILLSWITCH_TOKENS_DIR!, 'opa.token') }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    opa.stdout!.on('data', (b: Buffer) => (opaLog += b.toString()));
    opa.stderr!.on('data', (b: Buffer) => (opaLog += b.toString()));
    const opaUrl = `http://127.0.0.1:${opaPort}`;
    await eventually(() => request(`${opaUrl}/health`), (r) => r.status === 200, 30_000);

    /** What Envoy's ext_authz filter asks OPA-Envoy, as a REST query of the same rule. */
    const ask = async (principal: string, path: string, rule = 'envoy/authz/allow'): Promise<{ decision_id: string; result: unknown }> => {
      const r = await request(`${opaUrl}/v1/data/${rule}`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { attributes: { source: { principal }, request: { http: { method: 'GET', path } } } } }),
      });
      expect(r.status).toBe(200);
      return JSON.parse(r.body) as { decision_id: string; result: unknown };
    };
    const asked: { id: string; agent: string; allowed: boolean }[] = [];
    const calls = async (agent: string, n: number, path: string): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const r = await ask(agent, path);
        asked.push({ id: r.decision_id, agent, allowed: r.result === true });
      }
    };

    // Before the stop: 5 denies of BAD, 6 allows of GOOD, 4 allows and 2 denies of MIXED
    await calls(BAD, 5, '/tools/admin/drop-tables');
    await calls(GOOD, 6, '/tools/search');
    await calls(MIXED, 4, '/tools/search');
    await calls(MIXED, 2, '/tools/admin/users');
    await eventually(() => Promise.all([windowOf(s, BAD), windowOf(s, GOOD), windowOf(s, MIXED)]), ([b, g, m]) => b.calls === 5 && g.calls === 6 && m.calls === 6, 30_000);
    expect(await windowOf(s, BAD)).toMatchObject({ state: 'active', calls: 5, denies: 5 });

    // The kill switch stops; OPA keeps deciding and fails to upload
    expect(await ks.stop()).toBe(0);
    await calls(BAD, 5, '/tools/admin/drop-tables');
    await calls(GOOD, 6, '/tools/search');
    await calls(MIXED, 2, '/tools/search');
    await ask('spiffe://Example.org/not-a-spiffe-id', '/tools/search'); // mapped nowhere: kept in the DLQ
    await ask(GOOD, '/tools/search', 'envoy/authz'); // another path: ignored
    const failedBefore = (opaLog.match(/log upload failed/g) ?? []).length;
    await eventually(() => Promise.resolve((opaLog.match(/log upload failed/g) ?? []).length), (n) => n >= failedBefore + 2, 30_000);

    // Restarted on the same data_dir and port: OPA's retries get through
    ks = await startKillSwitch(s);
    await eventually(() => Promise.resolve(ks.log()), (l) => l.includes(`BLOCKED ${BAD}`), 30_000);
    await eventually(() => windowOf(s, GOOD), (g) => g.calls === 12, 30_000);
    await eventually(() => request(`${s.url}/metrics`), (r) => metric(r.body, 'ignored_path') === 1 && metric(r.body, 'invalid_spiffe_id') === 1, 30_000);

    const badIds = asked.filter((a) => a.agent === BAD).map((a) => a.id);
    const [k, ...more] = kills(s);
    expect(more).toEqual([]);
    // the evidence counts exactly the 10 denied queries and names OPA's decision_id of the 10th
    expect(k).toMatchObject({ action: 'block', agent_id: BAD, trigger: 'deny_rate', evidence: { calls: 10, denies: 10, tripping_decision_id: badIds[9] } });
    expect(await windowOf(s, GOOD)).toMatchObject({ state: 'active', calls: 12, denies: 0 });
    expect(await windowOf(s, MIXED)).toMatchObject({ state: 'active', calls: 8, denies: 2 });
    // every decision OPA made on the rule is in ingest.ndjson exactly once, under OPA's decision_id
    const lines = ingested(s).filter((l) => l.decision_id !== undefined);
    expect(lines.map((l) => l.decision_id).sort()).toEqual(asked.map((a) => a.id).sort());
    const metrics = (await request(`${s.url}/metrics`)).body;
    // after the restart: the 13 decisions made while it was down, none of them twice
    expect([metric(metrics, 'mapped'), metric(metrics, 'duplicate')]).toEqual([13, 0]);
    const dlq = parseLines<{ reason: string; raw: string }>(readFileSync(join(s.env.KILLSWITCH_DATA_DIR!, 'dlq.ndjson'), 'utf8'));
    expect(dlq).toHaveLength(1);
    expect(JSON.parse(dlq[0]!.raw)).toMatchObject({ opa_unmapped: { reason: 'invalid_spiffe_id' }, opa_event: { path: 'envoy/authz/allow' } });

    // Envoy's other check, killswitch authz from the same config, refuses the blocked identity only
    const authz = startLogged(['authz', '--config', join(EXAMPLES, 'killswitch.yaml')], { env: s.env });
    running.push(authz);
    const check = (id: string): Promise<Reply> => request(`${s.authzUrl}/tools/search`, { headers: { 'x-spiffe-id': id } });
    expect((await eventually(() => check(BAD), (r) => r.status === 403, 30_000)).status).toBe(403);
    expect((await check(GOOD)).status).toBe(200);
    expect((await check(MIXED)).status).toBe(200);
  }, 240_000);
});

/** An OPA decision-log event as OPA writes it (OPA-Envoy input). */
function opaEvent(principal: string | null, allowed: unknown, o: { id?: string; path?: string; at?: number } = {}): Record<string, unknown> {
  return {
    labels: { id: 'a3b1c2d4-0000-4000-8000-000000000001', version: '1.22.4' },
    decision_id: o.id ?? randomUUID(),
    path: o.path ?? 'envoy/authz/allow',
    input: { attributes: { ...(principal === null ? {} : { source: { principal } }), request: { http: { method: 'GET', path: '/tools/x', headers: { 'x-request-id': randomUUID() } } } } },
    result: allowed,
    requested_by: '127.0.0.1:50000',
    timestamp: new Date(o.at ?? Date.now()).toISOString().replace('Z', '123456Z'),
    metrics: { timer_rego_query_eval_ns: 51000, timer_server_handler_ns: 98000 },
    req_id: 1,
  };
}

function postOpa(url: string, token: string, body: Buffer | string, headers: Record<string, string> = { 'content-encoding': 'gzip' }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // node's client with a Buffer body: request() of the helpers sends text only
    void import('node:http').then(({ request: raw }) => {
      const req = raw(`${url}/v1/opa/logs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end(body);
    });
  });
}

const gz = (events: unknown): Buffer => gzipSync(JSON.stringify(events));
/** status and error code of a refusal */
const refusal = (r: Reply): [number, string] => [r.status, (JSON.parse(r.body) as { error: string }).error];

describe('the OPA receiver (POST /v1/opa/logs), fed OPA-shaped batches', () => {
  it('a batch OPA sends again, before or after a restart, is not counted twice; the answer is 200 only once the batch is in ingest.ndjson', async () => {
    const s = await exampleSetup('opa-retry-');
    const ks = await startKillSwitch(s);
    const id = 'spiffe://example.org/ns/prod/sa/retried';
    // 12 allows and 6 denies of one identity (allow, allow, deny, ...): below the example's 0.5
    const t0 = Date.now() - 60_000;
    const batch = Array.from({ length: 18 }, (_, i) => opaEvent(id, i % 3 !== 2, { at: t0 + i }));
    const first = await postOpa(s.url, s.opaToken, gz(batch));
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toMatchObject({ events: 18, accepted: 18, invalid: 0, duplicates: 0, trips: 0 });
    expect(ingested(s)).toHaveLength(18);
    const again = await postOpa(s.url, s.opaToken, gz(batch));
    expect(JSON.parse(again.body)).toMatchObject({ events: 18, accepted: 0, duplicates: 18, trips: 0 });
    expect(await windowOf(s, id)).toMatchObject({ calls: 18, denies: 6 });
    // OPA timed out waiting and sent it again while the first attempt was still being written: one of the two takes it
    const late = Array.from({ length: 30 }, (_, i) => opaEvent(id, true, { at: t0 + 100 + i }));
    const both = (await Promise.all([postOpa(s.url, s.opaToken, gz(late)), postOpa(s.url, s.opaToken, gz(late))])).map((r) => JSON.parse(r.body) as { accepted: number; duplicates: number });
    expect(both.map((b) => [b.accepted, b.duplicates]).sort()).toEqual([[0, 30], [30, 0]]);
    expect(await windowOf(s, id)).toMatchObject({ calls: 48, denies: 6 });

    // a crash between the fsync and the answer looks like this to OPA: it sends the batch to the restarted instance
    expect(await ks.stop()).toBe(0);
    await startKillSwitch(s);
    const afterRestart = await postOpa(s.url, s.opaToken, gz(batch));
    expect(JSON.parse(afterRestart.body)).toMatchObject({ accepted: 0, duplicates: 18 });
    expect(JSON.parse((await postOpa(s.url, s.opaToken, gz(late))).body)).toMatchObject({ accepted: 0, duplicates: 30 });
    expect(await windowOf(s, id)).toMatchObject({ state: 'active', calls: 48, denies: 6 });
    expect(ingested(s)).toHaveLength(48);
    expect(kills(s)).toEqual([]);
  }, 120_000);

  it('a mapped decision the service refuses as any posted one (a time ahead of its clock, a decision_id over 128 characters) is answered and kept in the DLQ, the one ahead never in ingest.ndjson; a restart reads back the same decisions', async () => {
    const s = await exampleSetup('opa-refused-');
    const ks = await startKillSwitch(s);
    const id = 'spiffe://example.org/ns/prod/sa/refused';
    const long = 'x'.repeat(129);
    const batch = [opaEvent(id, true), opaEvent(id, false, { at: Date.now() + 3_600_000 }), opaEvent(id, false, { id: long }), opaEvent(id, false)];
    const r = await postOpa(s.url, s.opaToken, gz(batch));
    expect(r.status).toBe(200);
    const answer = JSON.parse(r.body) as { errors: { index: number; reason: string; decision_id: string }[] };
    expect(answer).toMatchObject({ events: 4, accepted: 2, invalid: 2, trips: 0 });
    expect(answer.errors.map((e) => [e.index, e.reason, e.decision_id])).toEqual([[1, 'future_timestamp', batch[1]!.decision_id], [2, 'schema_invalid', long]]);
    expect(ingested(s).map((d) => d.decision_id)).toEqual([batch[0]!.decision_id, long, batch[3]!.decision_id]);
    const dlq = parseLines<{ file: string; reason: string }>(readFileSync(join(s.env.KILLSWITCH_DATA_DIR!, 'dlq.ndjson'), 'utf8'));
    expect(dlq.map((d) => d.reason)).toEqual(['future_timestamp', 'schema_invalid']);
    expect(dlq[0]!.file).toBe('http:/v1/decisions');
    expect(await windowOf(s, id)).toMatchObject({ calls: 2, denies: 1 });
    expect(await ks.stop()).toBe(0);
    await startKillSwitch(s);
    expect(await windowOf(s, id)).toMatchObject({ calls: 2, denies: 1 });
  }, 120_000);

  it('refuses what OPA would never send: no token, a token without the opa role, a zip bomb, a body over http.max_body_bytes, broken gzip, a repeated key, an object instead of an array', async () => {
    const s = await exampleSetup('opa-limits-');
    await startKillSwitch(s);
    const one = [opaEvent(GOOD, true)];
    expect((await postOpa(s.url, 'not-a-token', gz(one))).status).toBe(401);
    const forbidden = await postOpa(s.url, s.opsToken, gz(one));
    expect(refusal(forbidden)).toEqual([403, 'FORBIDDEN']);
    // 64 MiB of spaces in a JSON array: about 64 KiB compressed, refused at opa.max_decompressed_bytes (16 MiB)
    const bomb = gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(64 << 20, 0x20), Buffer.from(']')]), { level: 9 });
    expect(bomb.length).toBeLessThan(1 << 20);
    const bombed = await postOpa(s.url, s.opaToken, bomb);
    expect(refusal(bombed)).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    expect((await postOpa(s.url, s.opaToken, Buffer.alloc(2 << 20, 1))).status).toBe(413);
    const broken = await postOpa(s.url, s.opaToken, gz(one).subarray(0, 20));
    expect(refusal(broken)).toEqual([400, 'REQUEST_INVALID']);
    const dup = await postOpa(s.url, s.opaToken, gzipSync('[{"decision_id":"a","decision_id":"b"}]'));
    expect(JSON.parse(dup.body)).toMatchObject({ error: 'INVALID_JSON', reason: 'duplicate_key' });
    const notArray = await postOpa(s.url, s.opaToken, JSON.stringify(one[0]), {});
    expect(refusal(notArray)).toEqual([400, 'REQUEST_INVALID']);
    // none of it reached the decisions
    expect(() => ingested(s)).toThrow();
    // the same event plain (no Content-Encoding) is taken
    const plain = await postOpa(s.url, s.opaToken, JSON.stringify(one), {});
    expect(JSON.parse(plain.body)).toMatchObject({ accepted: 1 });
  }, 120_000);

  it('maps with the opa section: a set of result values, a session id, the paths that count; events that do not map are answered, counted and kept in the DLQ', async () => {
    const dir = tempDir('opa-mapping-');
    expect(runCli(['keys', 'generate', '--out', join(dir, 'keys')]).status).toBe(0);
    const port = await freePort();
    const t = apiToken();
    const cfg = writeIn(dir, 'ks.yaml', [
      'kill_switch: {enabled: true, min_calls: 3, deny_rate_threshold: 0.6}',
      `data_dir: ${join(dir, 'data')}`,
      `signing: {private_key_file: ${join(dir, 'keys/signing-key.pem')}}`,
      `http: {listen: "127.0.0.1:${port}", tokens: [{name: opa, sha256: "${t.sha256}", roles: [opa]}]}`,
      'opa:',
      '  preset: boolean-allow',
      '  paths: [agents/tools/decision]',
      '  identity: /input/agent/spiffe_id',
      '  session_id: /input/session',
      '  result: {field: outcome, allow: [ok], deny: [refused], advisory_deny: [warn]}',
      'log: {level: warn}',
    ].join('\n'));
    expect(runCli(['run', '--config', cfg, '--check-config']).status).toBe(0);
    const ks = startLogged(['run', '--config', cfg]);
    running.push(ks);
    await eventually(() => Promise.resolve(ks.log()), (l) => l.includes('serving the operator API') || ks.child.exitCode !== null, 30_000);
    const A = 'spiffe://example.org/agent/a';
    const ev = (who: unknown, outcome: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      decision_id: randomUUID(), path: 'agents/tools/decision', input: { agent: { spiffe_id: who }, session: 'sess-1' }, result: { outcome }, timestamp: new Date().toISOString(), ...extra,
    });
    const batch = [
      ev(A, 'refused'), ev(A, 'warn'), ev(A, 'ok'),
      ev(A, 'refused', { path: 'agents/tools/other' }), // not a path that counts
      ev(undefined, 'refused'), // no identity
      ev('spiffe://example.org/a//b', 'refused'), // not a SPIFFE ID
      ev(A, 'maybe'), // in no list
      ev(A, 'refused', { timestamp: 'yesterday' }),
    ];
    const r = await postOpa(`http://127.0.0.1:${port}`, t.token, gz(batch));
    expect(r.status).toBe(200);
    const answer = JSON.parse(r.body) as { errors: { index: number; reason: string; decision_id: string }[] };
    expect(answer).toMatchObject({ events: 8, accepted: 3, invalid: 4, ignored: 1, duplicates: 0, trips: 1 });
    expect(answer.errors.map((e) => [e.index, e.reason, e.decision_id])).toEqual([
      [4, 'no_identity', batch[4]!.decision_id], [5, 'invalid_spiffe_id', batch[5]!.decision_id], [6, 'unmappable_result', batch[6]!.decision_id], [7, 'bad_timestamp', batch[7]!.decision_id],
    ]);
    const decisions = parseLines<Record<string, unknown>>(readFileSync(join(dir, 'data/ingest.ndjson'), 'utf8')).slice(0, 3);
    expect(decisions.map((d) => [d.decision_id, d.decision, d.session_id, d.policy_rule])).toEqual([
      [batch[0]!.decision_id, 'deny', 'sess-1', 'agents/tools/decision'], [batch[1]!.decision_id, 'advisory_deny', 'sess-1', 'agents/tools/decision'], [batch[2]!.decision_id, 'allow', 'sess-1', 'agents/tools/decision'],
    ]);
    const kill = parseLines<KillEventLine>(readFileSync(join(dir, 'data/kills.ndjson'), 'utf8'));
    expect(kill).toHaveLength(1);
    expect(kill[0]!.evidence).toMatchObject({ calls: 3, denies: 2, advisory_denies: 1, tripping_decision_id: batch[2]!.decision_id });
    const dlq = parseLines<{ reason: string; raw: string }>(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(dlq.map((d) => (JSON.parse(d.raw) as { opa_unmapped: { reason: string }; opa_event: { decision_id: string } })).map((d) => [d.opa_unmapped.reason, d.opa_event.decision_id]))
      .toEqual([4, 5, 6, 7].map((i) => [answer.errors[i - 4]!.reason, batch[i]!.decision_id]));
    const metrics = (await request(`http://127.0.0.1:${port}/metrics`)).body;
    expect(['mapped', 'ignored_path', 'no_identity', 'invalid_spiffe_id', 'unmappable_result', 'bad_timestamp'].map((o) => metric(metrics, o))).toEqual([3, 1, 1, 1, 1, 1]);
  }, 120_000);

  it('refuses an opa section that maps one result value to two decisions, or a path that is not a JSON pointer (--check-config)', () => {
    const dir = tempDir('opa-config-');
    const check = (text: string): { status: number | null; stderr: string } => runCli(['run', '--config', writeIn(dir, `${randomUUID()}.yaml`, text), '--check-config']);
    expect(check('opa: {identity: input.attributes.source.principal}\n')).toMatchObject({ status: 2, stderr: expect.stringContaining('/opa/identity: has the wrong form') as unknown });
    expect(check('opa: {result: {allow: [true, "yes"], deny: ["yes"]}}\n')).toMatchObject({ status: 2, stderr: expect.stringContaining('/opa/result/deny: "yes" is also in /opa/result/allow') as unknown });
    expect(check('opa: {preset: boolean-allow, identity: /input/subject, result: {allow: ["yes"], deny: ["no"]}}\n')).toMatchObject({ status: 0 });
  });
});

describe('the OPA receiver in Kafka mode', () => {
  it('produces the mapped decisions to the decisions topic keyed by identity under OPA\'s decision_id, the unmapped ones to the DLQ, before it answers; a batch sent again is skipped', async () => {
    const brokers = inject('kafkaBrokers');
    const dir = tempDir('opa-kafka-');
    const topics = freshTopics('opa');
    const port = await freePort();
    const t = apiToken();
    const cfg = kafkaConfig(dir, brokers, topics, { extra: { http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'opa', sha256: t.sha256, roles: ['opa'] }] }, opa: { paths: ['envoy/authz/allow'] } } });
    const p = await startProcessor(cfg);
    try {
      const url = `http://127.0.0.1:${port}`;
      await eventually(() => request(`${url}/readyz`), (r) => r.status === 200, 60_000);
      const batch = [...Array.from({ length: 12 }, () => opaEvent(BAD, false)), opaEvent(GOOD, true), opaEvent(null, true)];
      const r = await postOpa(url, t.token, gz(batch));
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ events: 14, accepted: 13, invalid: 1, trips: null, errors: [{ index: 13, reason: 'no_identity' }] });
      // produced before the answer: on the topic, committed
      const records = await readTopic(brokers, topics.decisions, { until: (rs) => rs.length >= 13 });
      expect(records.map((x) => [x.key, (JSON.parse(x.value!.toString()) as { decision_id: string }).decision_id]).sort())
        .toEqual(batch.slice(0, 13).map((e) => [(e.input as { attributes: { source: { principal: string } } }).attributes.source.principal, e.decision_id]).sort());
      const dlq = await readTopic(brokers, topics.dlq, { until: (rs) => rs.length >= 1 });
      expect(dlq).toHaveLength(1);
      expect(JSON.parse(dlq[0]!.value!.toString())).toMatchObject({ opa_unmapped: { reason: 'no_identity' }, opa_event: { decision_id: batch[13]!.decision_id } });
      // the retry of the same batch produces nothing
      expect(JSON.parse((await postOpa(url, t.token, gz(batch))).body)).toMatchObject({ accepted: 0, invalid: 0, duplicates: 14 });
      // and the owner of BAD's partition trips it once, from the 12 denies
      const killed = await readTopic(brokers, topics.kills, { until: (rs) => rs.length >= 1, timeoutMs: 30_000 });
      expect(killed.map((k) => (JSON.parse(k.value!.toString()) as KillEventLine).agent_id)).toEqual([BAD]);
      expect((await readTopic(brokers, topics.decisions, { timeoutMs: 3_000 })).length).toBe(13);
    } finally {
      expect(await p.stop()).toBe(0);
    }
  }, 180_000);

  it('a batch one instance took is skipped when OPA sends it again to another instance, or to the same one after a SIGKILL and a restart: the ids travel on the opa-ids topic with the decisions', async () => {
    const brokers = inject('kafkaBrokers');
    const dir = tempDir('opa-kafka-ids-');
    const topics = freshTopics('opaids');
    const t = apiToken();
    const instance = async (): Promise<{ cfg: string; url: string }> => {
      const port = await freePort();
      const cfg = kafkaConfig(dir, brokers, topics, { extra: { http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'opa', sha256: t.sha256, roles: ['opa'] }] } } });
      return { cfg, url: `http://127.0.0.1:${port}` };
    };
    const ready = async (url: string): Promise<void> => {
      await eventually(() => request(`${url}/readyz`), (r) => r.status === 200, 60_000);
    };
    const [a, b] = [await instance(), await instance()];
    let pa = await startProcessor(a.cfg);
    const pb = await startProcessor(b.cfg);
    try {
      await ready(a.url);
      await ready(b.url);
      const batch = [...Array.from({ length: 8 }, () => opaEvent(BAD, false)), opaEvent(GOOD, true)];
      expect(JSON.parse((await postOpa(a.url, t.token, gz(batch))).body)).toMatchObject({ events: 9, accepted: 9, duplicates: 0 });
      // OPA sends a batch again only after a failure or its 10 s timeout: by then the commit markers
      // (written a few ms after the commit) are there
      await readTopic(brokers, `${topics.decisions}.opa-ids`, { until: (rs) => rs.length >= 1 });
      // OPA behind a load balancer: the retry reaches the other instance
      expect(JSON.parse((await postOpa(b.url, t.token, gz(batch))).body)).toMatchObject({ events: 9, accepted: 0, duplicates: 9 });
      // the instance that took it is killed and comes back: its memory is read back from the topic
      await pa.stop('SIGKILL');
      pa = await startProcessor(a.cfg);
      await ready(a.url);
      expect(JSON.parse((await postOpa(a.url, t.token, gz(batch))).body)).toMatchObject({ events: 9, accepted: 0, duplicates: 9 });
      // a batch with one new event: that one is taken, on whichever instance
      const more = [...batch, opaEvent(BAD, false)];
      expect(JSON.parse((await postOpa(b.url, t.token, gz(more))).body)).toMatchObject({ events: 10, accepted: 1, duplicates: 9 });
      // each event once on the decisions topic, its id once on the opa-ids topic
      // (all answered, so all committed: what a 15 s read finds is all there is)
      const records = await readTopic(brokers, topics.decisions, { timeoutMs: 15_000 });
      expect(records.map((x) => (JSON.parse(x.value!.toString()) as { decision_id: string }).decision_id).sort()).toEqual(more.map((e) => e.decision_id).sort());
      const ids = await readTopic(brokers, `${topics.decisions}.opa-ids`, { timeoutMs: 15_000 });
      expect(ids.flatMap((x) => JSON.parse(x.value!.toString()) as string[]).sort()).toEqual(more.map((e) => e.decision_id as string).sort());
      // created bounded (16 MiB: more than opa.dedup_size's 100,000 UUIDs), so every instance reads it whole at start
      expect(await topicConfig(brokers, `${topics.decisions}.opa-ids`, ['cleanup.policy', 'retention.bytes', 'retention.ms'])).toEqual({ 'cleanup.policy': 'delete', 'retention.bytes': String(16 << 20), 'retention.ms': '-1' });
    } finally {
      await pa.stop();
      await pb.stop();
    }
  }, 240_000);
});
