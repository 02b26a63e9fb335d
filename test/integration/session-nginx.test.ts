/**
 * nginx in front of a small session-manager app, asking `killswitch authz` through `auth_request`:
 * an identity tripped by `killswitch run` gets 403 from nginx with the refusal body
 * (docs/spec.md#7-refusing-a-session), an invalid spelling of it 400, a forged kill event is not
 * obeyed, an unblock lets the identity through again, and a stale ledger gives 503.
 */
import { appendFileSync, readFileSync, renameSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginx, type RunningNginx } from '../../scripts/nginx.mjs';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { Ed25519Signer } from '../../src/adapters/signing/ed25519-signer.js';
import { loadSigningKey } from '../../src/adapters/signing/keys.js';
import { decision, ndjson, parseLines, repeat, runCli, startCli, tempDir, writeIn, type KillEventLine } from '../helpers/cli.js';
import { authzServerBlock } from '../helpers/authz-nginx.js';
import { eventually, freePort, request, type Reply } from '../helpers/http-request.js';
import { killEvent, signedLine, testKey } from '../helpers/ledger.js';

const BAD = 'spiffe://example.org/ns/prod/sa/scraper';
const GOOD = 'spiffe://example.org/ns/prod/sa/summariser';

let dir = '';
let kills = '';
let nginx: RunningNginx | undefined;
let authz: ReturnType<typeof startCli> | undefined;
let authzLog = '';
let app: Server | undefined;
let front = '';
let authzUrl = '';
let block: KillEventLine;

beforeAll(async () => {
  dir = tempDir();
  const keys = join(dir, 'keys');
  expect(runCli(['keys', 'generate', '--out', keys]).status).toBe(0);
  const [appPort, authzPort, nginxPort] = [await freePort(), await freePort(), await freePort()];
  const config = writeIn(dir, 'config.json', JSON.stringify({
    kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.5, min_calls: 10 },
    data_dir: join(dir, 'data'),
    signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') },
    authz: { listen: `127.0.0.1:${authzPort}`, max_staleness_seconds: 1 },
    log: { level: 'info' },
  }));
  // the processor trips BAD (10 denies) and not GOOD
  const input = writeIn(dir, 'decisions.ndjson', ndjson([...repeat(BAD, 'deny', 10, 0), ...repeat(GOOD, 'allow', 10, 0), decision(GOOD, 'deny', 11)]));
  const run = runCli(['run', '--config', config, input]);
  expect(run.status, run.stderr).toBe(0);
  kills = join(dir, 'data', 'kills.ndjson');
  const events = parseLines<KillEventLine>(readFileSync(kills, 'utf8'));
  expect(events.map((e) => e.agent_id)).toEqual([BAD]);
  block = events[0]!;

  app = createServer((req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ session: 'opened', for: req.headers['x-spiffe-id'] ?? null }));
  });
  await new Promise<void>((resolve) => app!.listen(appPort, '127.0.0.1', () => resolve()));

  authz = startCli(['authz', '--config', config]);
  authz.stderr!.on('data', (b: Buffer) => (authzLog += b.toString()));
  authzUrl = `http://127.0.0.1:${authzPort}/`;
  await eventually(() => request(authzUrl), (r) => r.status === 200, 20_000);

  nginx = await startNginx({
    dir: join(dir, 'nginx'), port: nginxPort,
    httpBlock: authzServerBlock({ nginxPort, authzPort, appPort, subrequestHeaders: 'proxy_set_header X-Original-URI $request_uri;' }),
  });
  front = `http://127.0.0.1:${nginxPort}/sessions`;
}, 120_000);

afterAll(async () => {
  await nginx?.stop();
  authz?.kill('SIGTERM');
  app?.close();
});

const open = (id?: string): Promise<Reply> => request(front, { method: 'POST', headers: id === undefined ? {} : { 'x-spiffe-id': id } });

describe('nginx auth_request -> killswitch authz', () => {
  it('refuses the identity the processor tripped with 403 and the section 6 body; others and anonymous get their session', async () => {
    const refused = await open(BAD);
    expect(refused.status).toBe(403);
    expect(refused.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(refused.body)).toEqual({
      error: 'KILL_SWITCH_TRIPPED', detail: BAD, agent_id: BAD, blocked_at: block.at, trigger: 'deny_rate', kill_event_id: block.event_id,
    });
    const ok = await open(GOOD);
    expect(ok.status).toBe(201);
    expect(JSON.parse(ok.body)).toEqual({ session: 'opened', for: GOOD });
    expect((await open()).status).toBe(201);
    // the tripped identity spelled with an uppercase scheme: refused as invalid, not let through as someone else
    const misspelt = await open(BAD.replace('spiffe:', 'SPIFFE:'));
    expect([misspelt.status, JSON.parse(misspelt.body)]).toEqual([400, { error: 'IDENTITY_INVALID', detail: 'scheme is missing or invalid (must be "spiffe://")' }]);
  });

  it('does not obey a forged kill event on the ledger', async () => {
    const forger = testKey();
    const genuine = new Ed25519Signer(loadSigningKey(join(dir, 'keys', 'signing-key.pem'))).sign(killEvent({ agentId: GOOD, epoch: 1 }), false);
    appendFileSync(kills, signedLine(forger, { agentId: GOOD }) + `${canonicalJson({ ...genuine, agent_id: 'spiffe://example.org/ns/prod/sa/other' })}\n`);
    await eventually(() => Promise.resolve(authzLog), (l) => (l.match(/ignored a kill event/g) ?? []).length >= 2, 5000);
    expect((await open(GOOD)).status).toBe(201);
    expect((await open('spiffe://example.org/ns/prod/sa/other')).status).toBe(201);
    expect(authzLog).toContain('"reason":"unknown_kid"');
    expect(authzLog).toContain('"reason":"bad_signature"');
  });

  it('lets an unblocked identity through again', async () => {
    const signer = new Ed25519Signer(loadSigningKey(join(dir, 'keys', 'signing-key.pem')));
    appendFileSync(kills, `${canonicalJson(signer.sign(killEvent({ agentId: BAD, epoch: 1, action: 'unblock' }), false))}\n`);
    const r = await eventually(() => open(BAD), (x) => x.status === 201, 5000);
    expect(JSON.parse(r.body)).toEqual({ session: 'opened', for: BAD });
  });

  it('failure_mode closed: a stale ledger gives 503 KILL_SWITCH_UNAVAILABLE, from authz and through nginx', async () => {
    renameSync(kills, `${kills}.away`);
    const direct = await eventually(() => request(authzUrl, { headers: { 'x-spiffe-id': GOOD } }), (r) => r.status === 503, 10_000);
    expect(direct.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(direct.body)).toMatchObject({ error: 'KILL_SWITCH_UNAVAILABLE' });
    const viaNginx = await open(GOOD);
    expect(viaNginx.status).toBe(503);
    expect(JSON.parse(viaNginx.body)).toMatchObject({ error: 'KILL_SWITCH_UNAVAILABLE' });
    expect((await open()).status).toBe(201); // anonymous: never refused by the kill switch
    expect(authzLog).toContain('session guard stale');
    renameSync(`${kills}.away`, kills);
    await eventually(() => open(GOOD), (x) => x.status === 201, 10_000);
  });

  it('stops on SIGTERM with exit 0; nginx then fails closed', async () => {
    const exited = new Promise<number | null>((resolve) => authz!.once('exit', (code) => resolve(code)));
    authz!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(authzLog).toContain('authz stopping');
    expect((await open(GOOD)).status).toBe(503);
  });
});
