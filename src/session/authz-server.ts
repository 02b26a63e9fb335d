/**
 * `killswitch authz` (CONTRACTS.md section 7): an authorization endpoint for nginx `auth_request` and
 * Envoy `ext_authz` (HTTP mode). Every request, whatever its method and path, is a question about the
 * identity in its headers: 200 allowed, or the section 6 refusal. There is deliberately no health path
 * on this listener: a path answered differently could be used to get a blocked identity through.
 *
 * nginx does not pass an auth subrequest's body on, so a refusal also carries its JSON body in the
 * `x-killswitch-refusal` header, for `auth_request_set` (README, "Session managers").
 */
import { createServer, type Server } from 'node:http';
import type { SessionGuard } from './guard.js';
import { checkRequest, sendRefusal, type HttpGuardOptions } from './http.js';

export const REFUSAL_HEADER = 'x-killswitch-refusal';

export interface AuthzCounters {
  allowed: number;
  refused: number;
  unavailable: number;
}

export function createAuthzServer(guard: SessionGuard, options: HttpGuardOptions, onAnswer?: (outcome: 'allowed' | 'refused' | 'unavailable') => void): Server {
  const server = createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    // the question is in the headers; a body (Envoy can send one) is read and dropped
    req.resume();
    const r = checkRequest(guard, req, options);
    if (r.allowed) {
      onAnswer?.('allowed');
      res.writeHead(200, { 'content-length': 0, 'cache-control': 'no-store' });
      res.end();
      return;
    }
    onAnswer?.(r.status === 403 ? 'refused' : 'unavailable');
    res.setHeader(REFUSAL_HEADER, r.json);
    sendRefusal(res, r);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 65_000;
  return server;
}
