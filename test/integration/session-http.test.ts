/**
 * The guard in front of real HTTP servers: node:http, Express and Fastify, identity from a header or
 * from the URI SAN of a client certificate over a real TLS handshake.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionGuard, expressGuard, fastifyGuard, nodeHttpGuard, type SessionGuard } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { tempDir } from '../helpers/cli.js';
import { request } from '../helpers/http-request.js';
import { misspellings } from '../helpers/identity-spellings.js';
import { killEvent, signedLine, testKey } from '../helpers/ledger.js';
import { makeCa, makeCert } from '../helpers/tls.js';

const BLOCKED = 'spiffe://example.org/ns/prod/sa/scraper';
const FINE = 'spiffe://example.org/ns/prod/sa/summariser';
const AT = '2026-11-23T09:00:49.000Z';
const EXPECTED_BODY = { error: 'KILL_SWITCH_TRIPPED', detail: BLOCKED, agent_id: BLOCKED, blocked_at: AT, trigger: 'deny_rate', kill_event_id: killEvent({ agentId: BLOCKED, at: AT }).event_id };

let guard: SessionGuard;
let unavailableGuard: SessionGuard;
const servers: Server[] = [];
const closers: (() => Promise<unknown>)[] = [];

function listen(server: Server): Promise<string> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(String((server.address() as AddressInfo).port))));
}

const openSession = (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(201, { 'content-type': 'application/json' }).end('{"session":"opened"}');
};

beforeAll(async () => {
  const key = testKey();
  const dir = tempDir();
  const file = join(dir, 'kills.ndjson');
  writeFileSync(file, signedLine(key, { agentId: BLOCKED, at: AT }));
  guard = createSessionGuard({ ledger: { file }, jwks: key.jwks, logger: captureLogger() });
  unavailableGuard = createSessionGuard({ ledger: { file: join(dir, 'missing.ndjson') }, jwks: key.jwks, logger: captureLogger() });
  await guard.ready;
});

afterAll(async () => {
  for (const s of servers) s.close();
  await Promise.all(closers.map((c) => c()));
  await guard.close();
  await unavailableGuard.close();
});

describe.each([
  ['node:http', async (): Promise<string> => {
    const guardRequest = nodeHttpGuard(guard, { chainHeader: 'x-delegation-chain' });
    return listen(createServer((req, res) => {
      if (!guardRequest(req, res)) return;
      openSession(req, res);
    }));
  }],
  ['Express', async (): Promise<string> => {
    const app = express();
    app.use('/sessions', expressGuard(guard, { chainHeader: 'x-delegation-chain' }));
    app.post('/sessions', (req, res) => openSession(req, res));
    return listen(createServer(app));
  }],
  ['Fastify', async (): Promise<string> => {
    const app = Fastify();
    app.addHook('onRequest', fastifyGuard(guard, { chainHeader: 'x-delegation-chain' }));
    app.post('/sessions', async (_req, reply) => reply.code(201).send({ session: 'opened' }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return String((app.server.address() as AddressInfo).port);
  }],
])('%s middleware', (_name, start) => {
  let url = '';
  beforeAll(async () => {
    url = `http://127.0.0.1:${await start()}/sessions`;
  });

  it('refuses a blocked identity with 403 and the section 6 body', async () => {
    const r = await request(url, { method: 'POST', headers: { 'x-spiffe-id': BLOCKED } });
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(r.body)).toEqual(EXPECTED_BODY);
  });

  it('opens sessions for other identities and for anonymous requests', async () => {
    expect((await request(url, { method: 'POST', headers: { 'x-spiffe-id': FINE } })).status).toBe(201);
    expect((await request(url, { method: 'POST' })).status).toBe(201);
  });

  it('refuses when the delegation chain holds the blocked identity', async () => {
    const r = await request(url, { method: 'POST', headers: { 'x-spiffe-id': FINE, 'x-delegation-chain': `spiffe://example.org/root, ${BLOCKED}` } });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual(EXPECTED_BODY);
  });

  it('a blocked identity cannot slip through by sending the identity header twice', async () => {
    const r = await request(url, { method: 'POST', headers: { 'x-spiffe-id': [FINE, BLOCKED] } });
    expect(r.status).toBe(403);
  });

  it('a blocked identity cannot slip through spelled as an invalid SPIFFE ID: 400 IDENTITY_INVALID, in the header or the chain', async () => {
    for (const m of misspellings(BLOCKED)) {
      for (const headers of [{ 'x-spiffe-id': m.id }, { 'x-spiffe-id': FINE, 'x-delegation-chain': m.id }]) {
        const r = await request(url, { method: 'POST', headers });
        expect([m.what, r.status, r.headers['content-type']?.split(';')[0], JSON.parse(r.body)]).toEqual([m.what, 400, 'application/json', { error: 'IDENTITY_INVALID', detail: m.reason }]);
      }
    }
    expect((await request(url, { method: 'POST', headers: { 'x-spiffe-id': '' } })).status).toBe(201); // empty: anonymous
  });
});

describe('failure mode closed in middleware', () => {
  it('answers 503 KILL_SWITCH_UNAVAILABLE while the ledger cannot be read, anonymous requests still pass', async () => {
    const guardRequest = nodeHttpGuard(unavailableGuard);
    const port = await listen(createServer((req, res) => {
      if (guardRequest(req, res)) openSession(req, res);
    }));
    const r = await request(`http://127.0.0.1:${port}/`, { headers: { 'x-spiffe-id': FINE } });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('5');
    expect(JSON.parse(r.body)).toMatchObject({ error: 'KILL_SWITCH_UNAVAILABLE' });
    expect((await request(`http://127.0.0.1:${port}/`)).status).toBe(201);
  });
});

describe('identity from the client certificate (mTLS)', () => {
  it('reads the SPIFFE ID from the URI SAN of a verified client certificate, never from a header', async () => {
    const dir = tempDir();
    const ca = makeCa(dir);
    const server = makeCert(dir, 'server', 'IP:127.0.0.1', 'serverAuth');
    const blocked = makeCert(dir, 'blocked', `URI:${BLOCKED}`, 'clientAuth');
    const fine = makeCert(dir, 'fine', `URI:${FINE}`, 'clientAuth');
    const guardRequest = nodeHttpGuard(guard, { identity: 'client-certificate' });
    const https = createHttpsServer({ key: server.key, cert: server.cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      if (guardRequest(req, res)) openSession(req, res);
    });
    const port = await listen(https);
    const url = `https://127.0.0.1:${port}/sessions`;
    const asBlocked = await request(url, { method: 'POST', tls: { ca: ca.cert, key: blocked.key, cert: blocked.cert }, headers: { 'x-spiffe-id': FINE } });
    expect(asBlocked.status).toBe(403);
    expect(JSON.parse(asBlocked.body)).toEqual(EXPECTED_BODY);
    const asFine = await request(url, { method: 'POST', tls: { ca: ca.cert, key: fine.key, cert: fine.cert }, headers: { 'x-spiffe-id': BLOCKED } });
    expect(asFine.status).toBe(201);
    // without a client certificate the handshake itself fails: the server requires one
    await expect(request(url, { method: 'POST', tls: { ca: ca.cert } })).rejects.toThrow();
    // a SAN in the spiffe scheme but not a valid SPIFFE ID names an invalid identity, not nobody
    const upper = makeCert(dir, 'upper', `URI:${BLOCKED.replace('spiffe:', 'SPIFFE:')}`, 'clientAuth');
    const asUpper = await request(url, { method: 'POST', tls: { ca: ca.cert, key: upper.key, cert: upper.cert } });
    expect([asUpper.status, JSON.parse(asUpper.body)]).toEqual([400, { error: 'IDENTITY_INVALID', detail: 'scheme is missing or invalid (must be "spiffe://")' }]);
  });
});
