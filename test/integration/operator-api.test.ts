/**
 * The operator API of the long-running embedded service, through a real `killswitch run` process:
 * authentication and roles, request limits, odd agent_id encodings, ingest, trip, operator unblock and
 * manual block, the change feed (polling and SSE), dual control and the rate limit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionGuard, type SessionGuard } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { decision, ndjson, parseLines, repeat, runCli, startCli, tempDir, writeIn } from '../helpers/cli.js';
import { apiToken, eventually, freePort, request, type Reply } from '../helpers/http-request.js';
import { misspellings } from '../helpers/identity-spellings.js';

const BAD = 'spiffe://example.org/ns/prod/sa/scraper';
const GOOD = 'spiffe://example.org/ns/prod/sa/summariser';
const enc = (id: string): string => encodeURIComponent(id);
const token = apiToken;

interface Service {
  base: string;
  dir: string;
  stop: () => Promise<number | null>;
  out: () => string;
}

async function startService(dir: string, http: Record<string, unknown>, tokens: Record<string, { sha256: string; roles: string[] }>): Promise<Service> {
  const keys = join(dir, 'keys');
  runCli(['keys', 'generate', '--out', keys, '--if-missing']);
  const port = await freePort();
  const cfg = writeIn(dir, 'config.json', JSON.stringify({
    kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.5, min_calls: 10 },
    data_dir: join(dir, 'data'),
    signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') },
    http: { listen: `127.0.0.1:${port}`, max_body_bytes: 64 * 1024, tokens: Object.entries(tokens).map(([name, t]) => ({ name, ...t })), ...http },
    log: { level: 'info' },
  }));
  const child = startCli(['run', '--config', cfg]);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  await eventually(() => Promise.resolve(out), (o) => o.includes('serving the operator API') || child.exitCode !== null, 30_000);
  if (child.exitCode !== null) throw new Error(out);
  return {
    base: `http://127.0.0.1:${port}`, dir, out: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

const admin = token();
const second = token();
const viewer = token();
const ingest = token();
let svc: Service;

const call = (path: string, o: { method?: string; tok?: string; body?: unknown; type?: string; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> =>
  request(`${svc.base}${path}`, {
    method: o.method ?? (o.body !== undefined || o.raw !== undefined ? 'POST' : 'GET'),
    headers: {
      ...(o.tok === undefined ? {} : { authorization: `Bearer ${o.tok}` }),
      ...(o.body !== undefined || o.raw !== undefined ? { 'content-type': o.type ?? 'application/json' } : {}),
      ...o.headers,
    },
    ...(o.raw !== undefined ? { body: o.raw } : o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
  });
const json = (r: Reply): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

beforeAll(async () => {
  svc = await startService(tempDir('operator-api-'), { rate_limit: { per_minute: 600, burst: 50 } }, {
    alice: { sha256: admin.sha256, roles: ['operator'] },
    bob: { sha256: second.sha256, roles: ['operator'] },
    watcher: { sha256: viewer.sha256, roles: ['viewer'] },
    gateway: { sha256: ingest.sha256, roles: ['ingest'] },
  });
}, 60_000);

afterAll(async () => {
  expect(await svc.stop()).toBe(0);
});

describe('authentication and authorisation', () => {
  it('401 without a token or with an unknown one, 403 with the wrong role', async () => {
    const none = await call(`/v1/identities/${enc(GOOD)}`);
    expect([none.status, json(none).error, none.headers['www-authenticate']]).toEqual([401, 'UNAUTHENTICATED', 'Bearer realm="killswitch"']);
    expect((await call(`/v1/identities/${enc(GOOD)}`, { tok: 'not-a-token' })).status).toBe(401);
    expect((await call(`/v1/identities/${enc(GOOD)}`, { headers: { authorization: `Basic ${admin.token}` } })).status).toBe(401);
    const wrongRole = await call('/v1/blocks', { tok: viewer.token, body: { agent_id: GOOD, reason: 'x', authorized_by: 'y' } });
    expect([wrongRole.status, json(wrongRole).error]).toEqual([403, 'FORBIDDEN']);
    expect((await call(`/v1/identities/${enc(GOOD)}`, { tok: ingest.token })).status).toBe(403);
    expect((await call('/v1/decisions', { tok: viewer.token, body: {} })).status).toBe(403);
    // operator includes viewer
    expect((await call(`/v1/identities/${enc(GOOD)}`, { tok: admin.token })).status).toBe(200);
  });

  it('health, readiness and metrics need no token', async () => {
    expect((await call('/healthz')).status).toBe(200);
    expect(json(await call('/readyz'))).toEqual({ status: 'ready' });
    const m = await call('/metrics');
    expect(m.status).toBe(200);
    expect(m.body).toContain('killswitch_blocked_identities');
  });
});

describe('bad requests', () => {
  it('413 for a body over max_body_bytes, 400 INVALID_JSON, 415, 400 REQUEST_INVALID, 404, 405', async () => {
    const big = await call('/v1/decisions', { tok: ingest.token, raw: 'x'.repeat(70 * 1024), type: 'application/x-ndjson' });
    expect([big.status, json(big).error]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const malformed = await call('/v1/blocks', { tok: admin.token, raw: '{"agent_id": ' });
    expect([malformed.status, json(malformed).error]).toEqual([400, 'INVALID_JSON']);
    expect(json(await call('/v1/blocks', { tok: admin.token, raw: 'agent_id=x', type: 'application/x-www-form-urlencoded' })).error).toBe('UNSUPPORTED_MEDIA_TYPE');
    const missing = await call('/v1/blocks', { tok: admin.token, body: { agent_id: GOOD, reason: 'r' } });
    expect([missing.status, json(missing)]).toEqual([400, { error: 'REQUEST_INVALID', detail: 'authorized_by: required, a non-empty string' }]);
    expect(json(await call('/v1/blocks', { tok: admin.token, body: { agent_id: GOOD, reason: 'r', authorized_by: 'a', extra: 1 } })).detail).toBe('extra: unknown field');
    const unknown = await call('/v1/nothing', { tok: admin.token });
    expect([unknown.status, json(unknown).error]).toEqual([404, 'NOT_FOUND']);
    const method = await call('/v1/blocks/unblock', { tok: admin.token, method: 'GET' });
    expect([method.status, method.headers.allow, json(method).error]).toEqual([405, 'POST', 'METHOD_NOT_ALLOWED']);
    for (const r of [big, malformed, missing, unknown]) expect(r.body).not.toMatch(/at .*\.js:\d+/);
  });

  it('odd agent_id encodings: percent-encoded or raw slashes work; dot segments, double encoding and non-SPIFFE ids are 400 IDENTITY_INVALID', async () => {
    expect(json(await call(`/v1/identities/${enc(GOOD)}`, { tok: viewer.token })).agent_id).toBe(GOOD);
    expect(json(await call(`/v1/identities/${GOOD}`, { tok: viewer.token })).agent_id).toBe(GOOD);
    expect(json(await call(`/v1/identities/${GOOD.replaceAll(':', '%3a').replaceAll('/', '%2f')}`, { tok: viewer.token })).agent_id).toBe(GOOD);
    for (const path of [
      `/v1/identities/${enc('spiffe://example.org/ns/../admin')}`,
      '/v1/identities/spiffe://example.org/ns/%2E%2E/admin',
      `/v1/identities/${enc(enc(GOOD))}`,
      '/v1/identities/not-a-spiffe-id',
      '/v1/identities/spiffe%3A%2F%2FEXAMPLE.org%2Fx',
      '/v1/identities/%E0%A4%A',
    ]) {
      const r = await call(path, { tok: viewer.token });
      expect([path, r.status, json(r).error]).toEqual([path, 400, 'IDENTITY_INVALID']);
    }
  });

  it('one identity, one spelling: every invalid spelling of an ID in the path or a body is 400 IDENTITY_INVALID with the reason, never read as the ID', async () => {
    // percent-encoding a character that needs none is a second spelling, not the same ID (this one once read as GOOD)
    const pct = await call(`/v1/identities/${GOOD.replace('summariser', '%73ummariser')}`, { tok: viewer.token });
    expect([pct.status, json(pct)]).toEqual([400, { error: 'IDENTITY_INVALID', detail: 'agent_id in the path: not a valid SPIFFE ID: path cannot contain percent-encoded characters' }]);
    for (const m of misspellings(GOOD)) {
      const viewed = await call(`/v1/identities/${enc(m.id)}`, { tok: viewer.token });
      expect([m.what, viewed.status, json(viewed)]).toEqual([m.what, 400, { error: 'IDENTITY_INVALID', detail: `agent_id in the path: not a valid SPIFFE ID: ${m.reason}` }]);
      for (const agentId of [m.id, `${m.id}/*`]) {
        // bob's token: these 28 operator actions come out of his rate-limit budget, not alice's
        const blocked = await call('/v1/blocks', { tok: second.token, body: { agent_id: agentId, reason: 'r', authorized_by: 'a' } });
        expect([agentId, blocked.status, json(blocked).error]).toEqual([agentId, 400, 'IDENTITY_INVALID']);
      }
    }
  });
});

describe('trip, unblock, re-trip, manual block (embedded mode)', () => {
  it('ingest trips; the guard refuses; an operator unblock lifts it and empties the window; a re-trip needs a fresh min_calls', async () => {
    const jwks = JSON.parse(readFileSync(join(svc.dir, 'keys', 'jwks.json'), 'utf8')) as { keys: object[] };
    const guard: SessionGuard = createSessionGuard({ ledger: { file: join(svc.dir, 'data', 'kills.ndjson'), pollMs: 20 }, jwks, logger: captureLogger() });
    try {
      await guard.ready;
      const posted = await call('/v1/decisions', { tok: ingest.token, raw: ndjson([...repeat(BAD, 'deny', 10, 0), 'not json', decision(GOOD, 'allow', 11)]), type: 'application/x-ndjson' });
      expect(posted.status).toBe(202);
      expect(json(posted)).toMatchObject({ accepted: 11, invalid: 1, trips: 1, errors: [{ index: 10, reason: 'invalid_json' }] });
      const id = json(await call(`/v1/identities/${enc(BAD)}`, { tok: viewer.token }));
      expect(id).toMatchObject({ agent_id: BAD, state: 'blocked', epoch: 1, window: { calls: 10, denies: 10 }, last_kill_event: { trigger: 'deny_rate', epoch: 1 } });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (a) => !a, 5000);
      const list = json(await call('/v1/blocks?limit=10', { tok: viewer.token }));
      expect(list).toMatchObject({ total: 1, next_cursor: null, items: [{ agent_id: BAD, action: 'block' }] });

      const notBlocked = await call('/v1/blocks/unblock', { tok: admin.token, body: { agent_id: GOOD, reason: 'r', authorized_by: 'alice@example.org' } });
      expect([notBlocked.status, json(notBlocked).error]).toEqual([404, 'NOT_BLOCKED']);
      const un = await call('/v1/blocks/unblock', { tok: admin.token, body: { agent_id: BAD, reason: 'false positive, INC-42', authorized_by: 'alice@example.org' } });
      expect(un.status).toBe(200);
      expect(json(un)).toMatchObject({ action: 'unblock', agent_id: BAD, epoch: 1, trigger: 'operator', reason: 'false positive, INC-42', authorized_by: 'alice@example.org' });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (a) => a, 5000);
      expect(json(await call(`/v1/identities/${enc(BAD)}`, { tok: viewer.token }))).toMatchObject({ state: 'active', epoch: 1, window: { calls: 0, denies: 0 } });
      // 9 more denies: below min_calls in the emptied window
      await call('/v1/decisions', { tok: ingest.token, body: repeat(BAD, 'deny', 9, 20).map((l) => JSON.parse(l) as object) });
      expect(json(await call(`/v1/identities/${enc(BAD)}`, { tok: viewer.token }))).toMatchObject({ state: 'active', window: { calls: 9 } });
      const tenth = await call('/v1/decisions', { tok: ingest.token, body: JSON.parse(decision(BAD, 'deny', 30)) as object });
      expect(json(tenth)).toMatchObject({ accepted: 1, trips: 1 });
      expect(json(await call(`/v1/identities/${enc(BAD)}`, { tok: viewer.token }))).toMatchObject({ state: 'blocked', epoch: 2 });
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (a) => !a, 5000);

      // a manual block, recorded with who asked; blocking twice is a conflict
      const manual = await call('/v1/blocks', { tok: admin.token, body: { agent_id: GOOD, reason: 'incident INC-7', authorized_by: 'alice@example.org' } });
      expect(manual.status).toBe(201);
      expect(json(manual)).toMatchObject({ action: 'block', agent_id: GOOD, epoch: 1, trigger: 'operator', authorized_by: 'alice@example.org' });
      expect(json(await call('/v1/blocks', { tok: admin.token, body: { agent_id: GOOD, reason: 'again', authorized_by: 'a' } })).error).toBe('ALREADY_BLOCKED');
      await eventually(() => Promise.resolve(guard.check(GOOD).allowed), (a) => !a, 5000);
    } finally {
      await guard.close();
    }
    // every addendum, operator ones included, verifies offline; the trips re-derive from what was ingested
    const v = runCli(['verify', '--jwks', join(svc.dir, 'keys', 'jwks.json'), '--decisions', join(svc.dir, 'data', 'ingest.ndjson'), join(svc.dir, 'data', 'addenda.ndjson')]);
    expect(v.status, v.stdout + v.stderr).toBe(0);
  });

  it('the change feed: polling with since, and SSE resumable with Last-Event-ID', async () => {
    const all = json(await call('/v1/blocks/changes?since=0', { tok: viewer.token })) as { events: { seq: number; event: { action: string; agent_id: string } }[]; next: number; last_seq: number };
    expect(all.events.map((e) => `${e.seq}:${e.event.action}:${e.event.agent_id}`)).toEqual([`1:block:${BAD}`, `2:unblock:${BAD}`, `3:block:${BAD}`, `4:block:${GOOD}`]);
    expect([all.next, all.last_seq]).toEqual([4, 4]);
    expect((json(await call('/v1/blocks/changes?since=3', { tok: viewer.token })) as { events: unknown[] }).events).toHaveLength(1);
    expect(json(await call('/v1/blocks/changes?since=-1', { tok: viewer.token })).error).toBe('REQUEST_INVALID');

    const res = await fetch(`${svc.base}/v1/blocks/stream`, { headers: { authorization: `Bearer ${viewer.token}`, 'last-event-id': '2' } });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (needle: string): Promise<void> => {
      while (!text.includes(needle)) {
        const { value, done } = (await reader.read()) as { value?: Uint8Array; done: boolean };
        if (done) throw new Error(`stream ended before ${needle}: ${text}`);
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil('event: caught-up');
    expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => m[1])).toEqual(['3', '4']);
    // live: an unblock shows up as the next id
    await call('/v1/blocks/unblock', { tok: admin.token, body: { agent_id: GOOD, reason: 'resolved', authorized_by: 'alice@example.org' } });
    await readUntil('id: 5');
    expect(text).toContain('"action":"unblock"');
    await reader.cancel();
  });
});

describe('dual control and the rate limit', () => {
  let dual: Service;
  beforeAll(async () => {
    dual = await startService(tempDir('operator-dual-'), { dual_control: { block: true, unblock: true, window_seconds: 60 }, rate_limit: { per_minute: 1, burst: 3 } }, {
      alice: { sha256: admin.sha256, roles: ['operator'] },
      bob: { sha256: second.sha256, roles: ['operator'] },
    });
  }, 60_000);
  afterAll(async () => {
    expect(await dual.stop()).toBe(0);
  });
  const post = (tok: string, body: object): Promise<Reply> =>
    request(`${dual.base}/v1/blocks`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('a manual block needs a second, different token; the same token twice is refused; then the rate limit holds', async () => {
    const first = await post(admin.token, { agent_id: BAD, reason: 'runaway', authorized_by: 'alice@example.org' });
    expect(first.status).toBe(202);
    expect(json(first)).toMatchObject({ status: 'pending_approval', action: 'block', agent_id: BAD, approved_by: ['alice@example.org'] });
    const again = await post(admin.token, { agent_id: BAD, reason: 'runaway', authorized_by: 'alice@example.org' });
    expect([again.status, json(again).error]).toEqual([409, 'SAME_APPROVER']);
    expect(json(await request(`${dual.base}/v1/identities/${enc(BAD)}`, { headers: { authorization: `Bearer ${second.token}` } })).state).toBe('active');
    const done = await post(second.token, { agent_id: BAD, reason: 'runaway', authorized_by: 'bob@example.org' });
    expect(done.status).toBe(201);
    expect(json(done)).toMatchObject({ action: 'block', authorized_by: 'alice@example.org + bob@example.org', reason: 'runaway' });
    const kills = parseLines<{ agent_id: string; authorized_by: string }>(readFileSync(join(dual.dir, 'data', 'kills.ndjson'), 'utf8'));
    expect(kills.map((k) => k.authorized_by)).toEqual(['alice@example.org + bob@example.org']);
    // alice has used two of her burst of 3 (a refused approval counts too); the fourth action is 429 with Retry-After
    expect((await post(admin.token, { agent_id: GOOD, reason: 'x', authorized_by: 'alice@example.org' })).status).toBe(202);
    const limited = await post(admin.token, { agent_id: GOOD, reason: 'x', authorized_by: 'alice@example.org' });
    expect([limited.status, json(limited).error]).toEqual([429, 'RATE_LIMITED']);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
  });
});

describe('session guard following the service over SSE', () => {
  it('obeys blocks and unblocks made through the API; a wrong token leaves it not ready (503)', async () => {
    const jwks = join(svc.dir, 'keys', 'jwks.json');
    const X = 'spiffe://example.org/ns/prod/sa/sse-followed';
    const guard = createSessionGuard({ ledger: { http: { url: svc.base, token: viewer.token } }, jwks, logger: captureLogger() });
    const wrong = createSessionGuard({ ledger: { http: { url: svc.base, token: 'wrong' } }, jwks, logger: captureLogger() });
    try {
      await guard.ready;
      expect(guard.check(BAD).allowed).toBe(false); // the backlog: BAD was tripped again above
      await call('/v1/blocks', { tok: admin.token, body: { agent_id: X, reason: 'sse test', authorized_by: 'alice@example.org' } });
      await eventually(() => Promise.resolve(guard.check(X).allowed), (a) => !a, 5000);
      await call('/v1/blocks/unblock', { tok: admin.token, body: { agent_id: X, reason: 'sse test over', authorized_by: 'alice@example.org' } });
      await eventually(() => Promise.resolve(guard.check(X).allowed), (a) => a, 5000);
      expect(wrong.state).toBe('starting');
      expect((wrong.check(X) as { status?: number }).status).toBe(503);
    } finally {
      await guard.close();
      await wrong.close();
    }
  });

  it('goes stale when the service stops, and refuses with 503 (failure_mode closed)', async () => {
    const own = await startService(tempDir('operator-sse-stale-'), {}, { watcher: { sha256: viewer.sha256, roles: ['viewer'] } });
    const guard = createSessionGuard({ ledger: { http: { url: own.base, token: viewer.token } }, jwks: join(own.dir, 'keys', 'jwks.json'), logger: captureLogger(), maxStalenessMs: 500 });
    try {
      await guard.ready;
      expect(guard.check(GOOD).allowed).toBe(true);
      expect(await own.stop()).toBe(0);
      await eventually(() => Promise.resolve(guard.state), (s) => s === 'stale', 5000);
      expect((guard.check(GOOD) as { status?: number }).status).toBe(503);
    } finally {
      await guard.close();
    }
  });
});

describe('killswitch block | unblock | status | blocks', () => {
  const Y = 'spiffe://example.org/ns/prod/sa/cli-target';
  const cli = (args: string[], tok = admin.token): ReturnType<typeof runCli> => runCli([...args, '--url', svc.base], { env: { KILLSWITCH_TOKEN: tok } });

  it('blocks, shows, lists and unblocks an identity with readable output', () => {
    const b = cli(['block', Y, '--reason', 'incident INC-9', '--by', 'carol@example.org']);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(new RegExp(`^BLOCKED ${Y} \\(epoch 1\\)\\n  reason: incident INC-9\\n  authorized by: carol@example.org\\n  kill event sha256:[0-9a-f]{64}\\n$`));
    const s = cli(['status', Y], viewer.token);
    expect(s.stdout).toContain(`${Y}: BLOCKED (epoch 1)`);
    expect(s.stdout).toContain('last kill event: block epoch 1, operator');
    const l = cli(['blocks'], viewer.token);
    expect(l.stdout).toMatch(new RegExp(`^blocked identities \\(\\d+\\):\\n`));
    expect(l.stdout).toContain(`  ${Y}  epoch 1, operator, since `);
    const j = cli(['status', Y, '--json'], viewer.token);
    expect(JSON.parse(j.stdout)).toMatchObject({ agent_id: Y, state: 'blocked' });
    const u = cli(['unblock', Y, '--reason', 'resolved', '--by', 'carol@example.org']);
    expect(u.stdout).toContain(`UNBLOCKED ${Y} (epoch 1)`);
  });

  it('reports refusals and failures in one line: no token (exit 2), wrong role, not blocked, unreachable (exit 1)', async () => {
    const closedPort = await freePort();
    const noToken = runCli(['status', Y, '--url', svc.base], { env: { KILLSWITCH_TOKEN: '' } });
    expect([noToken.status, noToken.stderr]).toEqual([2, 'killswitch: set KILLSWITCH_TOKEN (or pass --token-file FILE) to a token for the operator API\n']);
    const role = cli(['block', Y, '--reason', 'r', '--by', 'x'], viewer.token);
    expect([role.status, role.stderr]).toEqual([1, 'killswitch: FORBIDDEN: token "watcher" lacks the operator role\n']);
    const nb = cli(['unblock', Y, '--reason', 'r', '--by', 'x']);
    expect([nb.status, nb.stderr]).toEqual([1, `killswitch: NOT_BLOCKED: ${Y} is not blocked\n`]);
    const missing = cli(['block', Y, '--by', 'x']);
    expect([missing.status, missing.stderr]).toEqual([2, 'killswitch: block: --reason is required (see: killswitch block --help)\n']);
    const down = runCli(['status', Y, '--url', `http://127.0.0.1:${closedPort}`], { env: { KILLSWITCH_TOKEN: 't' } });
    expect([down.status, down.stderr]).toEqual([1, `killswitch: cannot reach the service at http://127.0.0.1:${closedPort} (ECONNREFUSED)\n`]);
  });
});

describe('scopes: blocking a path prefix or a trust domain by hand', () => {
  it('a scope block refuses every identity below it at the guard, with the scope in the body; lifting it lets them through', async () => {
    const jwks = join(svc.dir, 'keys', 'jwks.json');
    const guard = createSessionGuard({ ledger: { http: { url: svc.base, token: viewer.token } }, jwks, logger: captureLogger() });
    const inside = 'spiffe://example.org/ns/incident/sa/agent-7';
    const outside = 'spiffe://example.org/ns/calm/sa/agent-8';
    const otherDomain = 'spiffe://other.example/sa/agent-9';
    try {
      await guard.ready;
      const b = await call('/v1/blocks', { tok: admin.token, body: { agent_id: 'spiffe://example.org/ns/incident/*', reason: 'INC-77 whole namespace', authorized_by: 'alice@example.org' } });
      expect(b.status).toBe(201);
      expect(json(b)).toMatchObject({ action: 'block', agent_id: 'spiffe://example.org/ns/incident', scope: 'subtree', trigger: 'operator', epoch: 1 });
      const td = await call('/v1/blocks', { tok: admin.token, body: { agent_id: 'spiffe://other.example/*', reason: 'compromised trust domain', authorized_by: 'alice@example.org' } });
      expect(td.status).toBe(201);
      await eventually(() => Promise.resolve(guard.check(inside).allowed), (a) => !a, 5000);
      const r = guard.check(inside);
      expect(r.allowed === false && r.body).toMatchObject({ error: 'KILL_SWITCH_TRIPPED', agent_id: inside, detail: inside, scope: 'spiffe://example.org/ns/incident/*', trigger: 'operator', kill_event_id: json(b).event_id });
      await eventually(() => Promise.resolve(guard.check(otherDomain).allowed), (a) => !a, 5000); // the trust-domain scope
      expect(guard.check(outside).allowed).toBe(true);
      expect(guard.check(outside, [inside]).allowed).toBe(false); // a chain through the scope
      expect(json(await call(`/v1/identities/${enc(inside)}`, { tok: viewer.token }))).toMatchObject({ state: 'active', blocked_by_scope: 'spiffe://example.org/ns/incident/*' });
      const listed = (json(await call('/v1/blocks?limit=1000', { tok: viewer.token })).items as { agent_id: string; scope?: string }[]).filter((e) => e.scope === 'subtree').map((e) => e.agent_id);
      expect(listed.sort()).toEqual(['spiffe://example.org/ns/incident', 'spiffe://other.example']);
      expect(json(await call('/v1/blocks', { tok: admin.token, body: { agent_id: 'spiffe://example.org/ns/incident/*', reason: 'again', authorized_by: 'a' } })).error).toBe('ALREADY_BLOCKED');
      const un = await call('/v1/blocks/unblock', { tok: admin.token, body: { agent_id: 'spiffe://example.org/ns/incident/*', reason: 'INC-77 over', authorized_by: 'alice@example.org' } });
      expect(json(un)).toMatchObject({ action: 'unblock', scope: 'subtree', epoch: 1 });
      await eventually(() => Promise.resolve(guard.check(inside).allowed), (a) => a, 5000);
      expect(guard.check(otherDomain).allowed).toBe(false);
      expect(json(await call('/v1/blocks', { tok: admin.token, body: { agent_id: 'spiffe://example.org/ns/*/x', reason: 'r', authorized_by: 'a' } })).error).toBe('IDENTITY_INVALID');
    } finally {
      await guard.close();
    }
    const v = runCli(['verify', '--jwks', join(svc.dir, 'keys', 'jwks.json'), join(svc.dir, 'data', 'addenda.ndjson')]);
    expect(v.status, v.stdout).toBe(0);
  });
});

describe('strict request bodies (docs/spec.md#6-strict-documents): deep nesting, repeated keys, bytes that are not UTF-8', () => {
  let big: Service;
  beforeAll(async () => {
    // room for a body 100,000 levels deep
    big = await startService(tempDir('operator-strict-'), { max_body_bytes: 1 << 20 }, {
      alice: { sha256: admin.sha256, roles: ['operator'] },
      gateway: { sha256: ingest.sha256, roles: ['ingest'] },
    });
  }, 60_000);
  afterAll(async () => {
    expect(await big.stop()).toBe(0);
  });

  const post = async (path: string, tok: string, type: string, body: string | Buffer): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${big.base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': type }, body });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const windowOf = async (id: string): Promise<unknown> => json(await request(`${big.base}/v1/identities/${enc(id)}`, { headers: { authorization: `Bearer ${admin.token}` } })).window;
  const DEEP = 100_000;
  const deepArray = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
  const tooDeep = (where: string): object => ({ error: 'INVALID_JSON', reason: 'too_deep', detail: `${where}: nesting deeper than 64` });

  it('100,000 levels deep: 400 INVALID_JSON too_deep on every body path, never 500; nothing of such a body is ingested', async () => {
    const X = 'spiffe://example.org/ns/prod/sa/deep-neighbour';
    const cases: [string, string, string, string][] = [
      ['/v1/decisions', 'application/json', deepArray(DEEP), 'the body'],
      ['/v1/decisions', 'application/json', `${'{"a":'.repeat(DEEP)}1${'}'.repeat(DEEP)}`, 'the body'],
      ['/v1/decisions', 'application/x-ndjson', `${decision(X, 'allow', 1)}\n${deepArray(DEEP)}\n`, 'line 2'],
      ['/v1/blocks', 'application/json', `{"agent_id":${deepArray(DEEP)}}`, 'the body'],
      ['/v1/blocks/unblock', 'application/json', deepArray(DEEP), 'the body'],
    ];
    for (const [path, type, body, where] of cases) {
      const r = await post(path, path === '/v1/decisions' ? ingest.token : admin.token, type, body);
      expect([path, type, r.status, r.body]).toEqual([path, type, 400, tooDeep(where)]);
    }
    expect(await windowOf(X)).toMatchObject({ calls: 0 });
    // the limit is 64: one level less is read (and is a bad record, not a decision), one more is not
    expect(await post('/v1/decisions', ingest.token, 'application/json', `[${deepArray(63)}]`)).toMatchObject({ status: 202, body: { accepted: 0, invalid: 1 } });
    expect(await post('/v1/decisions', ingest.token, 'application/json', `[${deepArray(64)}]`)).toEqual({ status: 400, body: tooDeep('the body') });
    expect((await request(`${big.base}/healthz`)).status).toBe(200);
  });

  it('a repeated key: 400 INVALID_JSON duplicate_key for decisions (JSON and NDJSON) and blocks; nothing is ingested or blocked', async () => {
    const VICTIM = 'spiffe://example.org/ns/prod/sa/dup-victim';
    const OTHER = 'spiffe://example.org/ns/prod/sa/dup-other';
    // JSON.parse keeps the last of two keys, other parsers the first: the body would mean two things
    const twice = (id: string): string => decision(VICTIM, 'deny', 2).replace(`"agent_id":"${VICTIM}"`, `"agent_id":"${id}","agent_id":"${VICTIM}"`);
    const dup = { error: 'INVALID_JSON', reason: 'duplicate_key' };
    expect(await post('/v1/decisions', ingest.token, 'application/json', `[${decision(OTHER, 'allow', 1)},${twice(OTHER)}]`)).toEqual({ status: 400, body: { ...dup, detail: 'the body: duplicate key "agent_id"' } });
    expect(await post('/v1/decisions', ingest.token, 'application/x-ndjson', `${decision(OTHER, 'allow', 1)}\n${twice(OTHER)}\n`)).toEqual({ status: 400, body: { ...dup, detail: 'line 2: duplicate key "agent_id"' } });
    const block = await post('/v1/blocks', admin.token, 'application/json', `{"agent_id":"${OTHER}","agent_id":"${VICTIM}","reason":"r","authorized_by":"a"}`);
    expect(block).toEqual({ status: 400, body: { ...dup, detail: 'the body: duplicate key "agent_id"' } });
    const escaped = await post('/v1/blocks', admin.token, 'application/json', `{"agent_id":"${OTHER}","agent\\u005fid":"${VICTIM}","reason":"r","authorized_by":"a"}`);
    expect([escaped.status, escaped.body.reason]).toEqual([400, 'duplicate_key']);
    for (const id of [VICTIM, OTHER]) {
      expect(json(await request(`${big.base}/v1/identities/${enc(id)}`, { headers: { authorization: `Bearer ${admin.token}` } }))).toMatchObject({ state: 'active', window: { calls: 0 } });
    }
  });

  it('bytes that are not UTF-8: 400 invalid_utf8 for a JSON body; in NDJSON the line is a bad record, kept in the DLQ byte for byte and never in ingest.ndjson, and its neighbours are ingested', async () => {
    const Y = 'spiffe://example.org/ns/prod/sa/utf8-sender';
    const bad = (line: string): Buffer => Buffer.concat([Buffer.from(line.replace('"allow"', '"allow","tool_name":"web.')), Buffer.from([0xff, 0xfe]), Buffer.from(line.endsWith('}') ? '"}' : '')]);
    const badLine = bad(decision(Y, 'allow', 2).slice(0, -1) + '}');
    const notUtf8 = { error: 'INVALID_JSON', reason: 'invalid_utf8', detail: 'the body is not valid UTF-8' };
    expect(await post('/v1/decisions', ingest.token, 'application/json', badLine)).toEqual({ status: 400, body: notUtf8 });
    const block = Buffer.concat([Buffer.from(`{"agent_id":"${Y}","reason":"r`), Buffer.from([0xc3]), Buffer.from('","authorized_by":"a"}')]);
    expect(await post('/v1/blocks', admin.token, 'application/json', block)).toEqual({ status: 400, body: notUtf8 });
    const body = Buffer.concat([Buffer.from(`${decision(Y, 'allow', 1)}\n`), badLine, Buffer.from(`\r\nnot json\n${decision(Y, 'allow', 3)}\n`)]);
    const r = await post('/v1/decisions', ingest.token, 'application/x-ndjson', body);
    expect(r).toEqual({
      status: 202, body: {
        accepted: 2, invalid: 2, trips: 0,
        errors: [{ index: 1, reason: 'invalid_utf8', message: 'the line is not valid UTF-8' }, { index: 2, reason: 'invalid_json', message: expect.stringMatching(/^not valid JSON/) as unknown }],
      },
    });
    expect(await windowOf(Y)).toMatchObject({ calls: 2 });
    const data = join(big.dir, 'data');
    const dlq = parseLines<Record<string, unknown>>(readFileSync(join(data, 'dlq.ndjson'), 'utf8')).filter((d) => d.reason === 'invalid_utf8');
    expect(dlq).toEqual([{ file: 'http:/v1/decisions', index: 1, reason: 'invalid_utf8', message: 'the line is not valid UTF-8', raw_base64: badLine.toString('base64') }]);
    expect(readFileSync(join(data, 'ingest.ndjson')).includes(Buffer.from([0xff, 0xfe]))).toBe(false);
  });
});
