/**
 * "One identity, one spelling" (docs/spec.md#7-refusing-a-session): an identity that is present but
 * not a valid SPIFFE ID is refused with IDENTITY_INVALID, never looked up as it is (a blocked
 * identity, or one under a blocked scope, would pass under another spelling) and never taken for
 * anonymous. Met where users meet it: the real `killswitch authz` in both failure modes, nginx
 * `auth_request` in front of it, and the guard library.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginx, type RunningNginx } from '../../scripts/nginx.mjs';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { buildKillEvent } from '../../src/core/documents.js';
import { createSessionGuard, IdentityInvalidError, type SessionGuard } from '../../src/session/index.js';
import { authzServerBlock } from '../helpers/authz-nginx.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { startLogged, tempDir, writeIn, type LoggedCli } from '../helpers/cli.js';
import { eventually, freePort, request, type Reply } from '../helpers/http-request.js';
import { misspellings } from '../helpers/identity-spellings.js';
import { KS, testKey } from '../helpers/ledger.js';

const BLOCKED = 'spiffe://example.org/ns/prod/sa/scraper';
/** under the blocked path scope `spiffe://example.org/ns/incident/*` */
const IN_SCOPE = 'spiffe://example.org/ns/incident/sa/agent-7';
/** under the blocked trust-domain scope `spiffe://other.example/*` */
const IN_DOMAIN = 'spiffe://other.example/sa/agent-9';
const FINE = 'spiffe://example.org/ns/prod/sa/summariser';
const CHAIN = 'x-delegation-chain';

/** every invalid spelling of each refused identity */
const CASES = [BLOCKED, IN_SCOPE, IN_DOMAIN].flatMap((target) => misspellings(target).map((m) => ({ target, ...m })));

const key = testKey();
let dir = '';
let closed: LoggedCli | undefined;
let open: LoggedCli | undefined;
let nginx: RunningNginx | undefined;
let closedUrl = '';
let openUrl = '';
let openMetrics = '';
let front = '';
let guard: SessionGuard;
/** the session manager behind nginx */
let app: Server | undefined;

function operatorBlock(agentId: string, scope: boolean): string {
  const ev = buildKillEvent({
    action: 'block', agentId, ...(scope ? { scope: 'subtree' as const } : {}), epoch: 1, trigger: 'operator',
    at: '2026-11-23T09:00:00.000Z', reason: 'test', authorizedBy: 'tester@example.org', killSwitch: KS,
  });
  return `${canonicalJson(key.signer.sign(ev, false))}\n`;
}

async function startAuthz(name: string, authz: Record<string, unknown>): Promise<LoggedCli> {
  const cfg = writeIn(dir, `${name}.json`, JSON.stringify({
    data_dir: join(dir, 'data'), signing: { jwks_file: join(dir, 'jwks.json') },
    authz: { chain_header: CHAIN, ...authz }, log: { level: 'info' },
  }));
  const cli = startLogged(['authz', '--config', cfg]);
  await eventually(() => Promise.resolve(cli.log()), (l) => l.includes('session guard ready') || cli.child.exitCode !== null, 20_000);
  if (cli.child.exitCode !== null) throw new Error(cli.log());
  return cli;
}

beforeAll(async () => {
  dir = tempDir('identity-spelling-');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(key.jwks));
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'kills.ndjson'), operatorBlock(BLOCKED, false) + operatorBlock('spiffe://example.org/ns/incident', true) + operatorBlock('spiffe://other.example', true));

  const [closedPort, openPort, metricsPort, nginxPort, appPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  app = createServer((_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' }).end('{"session":"opened"}');
  });
  await new Promise<void>((resolve) => app!.listen(appPort, '127.0.0.1', () => resolve()));
  [closed, open] = await Promise.all([
    startAuthz('closed', { listen: `127.0.0.1:${closedPort}` }),
    startAuthz('open', { listen: `127.0.0.1:${openPort}`, failure_mode: 'open', metrics_listen: `127.0.0.1:${metricsPort}` }),
  ]);
  closedUrl = `http://127.0.0.1:${closedPort}/`;
  openUrl = `http://127.0.0.1:${openPort}/`;
  openMetrics = `http://127.0.0.1:${metricsPort}/metrics`;

  // the README's nginx configuration, IDENTITY_INVALID mapping included
  nginx = await startNginx({ dir: join(dir, 'nginx'), port: nginxPort, httpBlock: authzServerBlock({ nginxPort, authzPort: closedPort, appPort }) });
  front = `http://127.0.0.1:${nginxPort}/sessions`;

  guard = createSessionGuard({ ledger: { file: join(dir, 'data', 'kills.ndjson') }, jwks: key.jwks, logger: captureLogger() });
  await guard.ready;
}, 120_000);

afterAll(async () => {
  await nginx?.stop();
  app?.close();
  await guard?.close();
  expect(await closed?.stop()).toBe(0);
  expect(await open?.stop()).toBe(0);
});

const ask = (url: string, headers: Record<string, string> = {}): Promise<Reply> => request(url, { method: 'POST', headers });
const invalidBody = (reason: string): object => ({ error: 'IDENTITY_INVALID', detail: reason });

describe('killswitch authz, failure_mode closed (the default)', () => {
  it('refuses the identity and the scopes as spelled in the ledger (403): the spellings below are refused for being invalid, not for being unknown', async () => {
    for (const id of [BLOCKED, IN_SCOPE, IN_DOMAIN]) expect((await ask(closedUrl, { 'x-spiffe-id': id })).status, id).toBe(403);
    expect((await ask(closedUrl, { 'x-spiffe-id': FINE })).status).toBe(200);
  });

  it.each(CASES)('$what of $target: 400 IDENTITY_INVALID with the reason, in the body and the refusal header', async ({ id, reason }) => {
    const r = await ask(closedUrl, { 'x-spiffe-id': id });
    expect([r.status, r.headers['content-type']]).toEqual([400, 'application/json']);
    expect(JSON.parse(r.body)).toEqual(invalidBody(reason));
    expect(JSON.parse(String(r.headers['x-killswitch-refusal']))).toEqual(invalidBody(reason));
  });

  it.each(CASES)('$what of $target in the delegation chain of an allowed caller: 400 IDENTITY_INVALID', async ({ id, reason }) => {
    const r = await ask(closedUrl, { 'x-spiffe-id': FINE, [CHAIN]: `spiffe://example.org/root, ${id}` });
    expect([r.status, JSON.parse(r.body)]).toEqual([400, invalidBody(reason)]);
  });

  it('a blocked identity in the request is refused 403 even beside an invalid one', async () => {
    const r = await ask(closedUrl, { 'x-spiffe-id': CASES[0]!.id, [CHAIN]: BLOCKED });
    expect([r.status, (JSON.parse(r.body) as { error: string }).error]).toEqual([403, 'KILL_SWITCH_TRIPPED']);
  });

  it('a missing or empty identity header is still anonymous: allowed', async () => {
    expect((await ask(closedUrl)).status).toBe(200);
    expect((await ask(closedUrl, { 'x-spiffe-id': '' })).status).toBe(200);
    expect((await ask(closedUrl, { 'x-spiffe-id': FINE, [CHAIN]: '' })).status).toBe(200);
  });
});

describe('nginx auth_request in front of killswitch authz', () => {
  it.each(CASES)('$what of $target: the client gets 400 IDENTITY_INVALID, never a session', async ({ id, reason }) => {
    const r = await ask(front, { 'x-spiffe-id': id });
    expect([r.status, JSON.parse(r.body)]).toEqual([400, invalidBody(reason)]);
  });

  it('the blocked identity as spelled gets 403, a fine one and an anonymous request get their session', async () => {
    expect((await ask(front, { 'x-spiffe-id': BLOCKED })).status).toBe(403);
    expect((await ask(front, { 'x-spiffe-id': FINE })).status).toBe(201);
    expect((await ask(front)).status).toBe(201);
  });
});

describe('killswitch authz, failure_mode open (the operator chose availability)', () => {
  it('lets every invalid spelling through, counts each one and logs it; the identities as spelled are still refused', async () => {
    for (const c of CASES) expect((await ask(openUrl, { 'x-spiffe-id': c.id })).status, c.id).toBe(200);
    const metrics = (await request(openMetrics)).body;
    expect(metrics).toContain(`killswitch_guard_identity_invalid_total{outcome="allowed"} ${CASES.length}`);
    expect(metrics).toContain('killswitch_guard_identity_invalid_total{outcome="refused"} 0');
    for (const id of [BLOCKED, IN_SCOPE, IN_DOMAIN]) expect((await ask(openUrl, { 'x-spiffe-id': id })).status, id).toBe(403);
    expect(open!.log()).toContain('authz lets through identities that are not valid SPIFFE IDs');
    expect(open!.log()).toContain('let through an identity that is not a valid SPIFFE ID (failure mode open)');
  });
});

describe('the guard library (check, assertAllowed), failure mode closed', () => {
  it.each(CASES)('$what of $target: check() answers IDENTITY_INVALID (400), assertAllowed() throws IdentityInvalidError', ({ id, reason }) => {
    for (const r of [guard.check(id), guard.check(FINE, [id]), guard.check(undefined, [id])]) {
      expect(r.allowed === false && { status: r.status, code: r.code, body: r.body }).toEqual({ status: 400, code: 'IDENTITY_INVALID', body: invalidBody(reason) });
    }
    expect(() => guard.assertAllowed(id)).toThrow(IdentityInvalidError);
    expect(() => guard.assertAllowed(FINE, [id])).toThrow(expect.objectContaining({ status: 400, code: 'IDENTITY_INVALID', detail: reason, agent_id: id }));
  });

  it('anonymous stays allowed (undefined, null, empty), and the identities as spelled are refused 403', () => {
    for (const anon of [undefined, null, '']) expect(guard.check(anon).allowed).toBe(true);
    for (const id of [BLOCKED, IN_SCOPE, IN_DOMAIN]) expect(guard.check(id)).toMatchObject({ allowed: false, status: 403 });
    expect(guard.check(FINE).allowed).toBe(true);
  });
});
