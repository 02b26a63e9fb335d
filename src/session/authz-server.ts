/**
 * `killswitch authz` (docs/spec.md#9-command-line): an authorization endpoint for nginx `auth_request`
 * and Envoy `ext_authz` (HTTP mode). Every request, whatever its method and path, is a question about
 * the identity in its headers: 200 allowed, or a refusal (docs/spec.md#7-refusing-a-session): 403 for a
 * blocked identity, 400 IDENTITY_INVALID for one that is not a valid SPIFFE ID (failure mode closed),
 * 503 while the ledger cannot vouch for anyone. There is deliberately no health path on this listener:
 * a path answered differently could be used to get a blocked identity through.
 *
 * nginx does not pass an auth subrequest's body on, so a refusal also carries its JSON body in the
 * `x-killswitch-refusal` header, for `auth_request_set` (README, "Session managers").
 */
import { createServer, type Server } from 'node:http';
import type { SessionGuard } from './guard.js';
import { checkRequest, sendRefusal, type HttpGuardOptions } from './http.js';

export const REFUSAL_HEADER = 'x-killswitch-refusal';

export type AuthzOutcome = 'allowed' | 'refused' | 'invalid' | 'unavailable';

const OUTCOME = { KILL_SWITCH_TRIPPED: 'refused', IDENTITY_INVALID: 'invalid', KILL_SWITCH_UNAVAILABLE: 'unavailable' } as const;

export function createAuthzServer(guard: SessionGuard, options: HttpGuardOptions, onAnswer?: (outcome: AuthzOutcome) => void): Server {
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
    onAnswer?.(OUTCOME[r.code]);
    res.setHeader(REFUSAL_HEADER, r.json);
    sendRefusal(res, r);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 65_000;
  return server;
}
