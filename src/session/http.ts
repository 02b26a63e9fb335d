/**
 * The guard in front of HTTP servers: who is asking (a header set by a trusted hop, or the URI SAN of
 * a verified client certificate), and the refusal written back (docs/spec.md#7-refusing-a-session).
 * Middleware for node:http, Express (and anything Connect-shaped) and Fastify, with no dependency on
 * either framework. Identities are passed to the guard exactly as received: no case folding, no
 * percent-decoding, no path clean-up, so a second spelling of an ID is refused as invalid rather than
 * checked as some other identity.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { SessionGuard } from './guard.js';
import type { CheckResult, Refusal } from './refusal.js';

export interface HttpGuardOptions {
  /**
   * `'header'` (default): the SPIFFE ID is in `header`, set by a hop you trust (a gateway that
   * authenticated the caller), never passed on from the client as is. `'client-certificate'`: the URI
   * SAN of the TLS client certificate, when this server terminates mTLS and verified the certificate.
   */
  readonly identity?: 'header' | 'client-certificate';
  /** the header carrying the SPIFFE ID (default `x-spiffe-id`) */
  readonly header?: string;
  /** a header listing the delegation chain, comma-separated SPIFFE IDs; refused if any of them is blocked */
  readonly chainHeader?: string;
}

const DEFAULT_HEADER = 'x-spiffe-id';

/** Every identity a header names. A header sent twice arrives joined by commas, and SPIFFE IDs hold no commas: each one counts. */
function fromHeader(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : value;
  const ids: string[] = [];
  for (const part of text.split(',')) {
    const id = part.trim();
    if (id !== '') ids.push(id);
  }
  return ids;
}

/**
 * The URI SANs of a verified client certificate in the `spiffe` scheme (in any case: `SPIFFE://` is an
 * invalid SPIFFE ID to refuse, not someone else's URI to ignore). Node prints a SAN with odd characters
 * JSON-quoted; one that cannot be unquoted is passed on as printed, and is invalid.
 */
export function spiffeIdsFromCertificate(req: IncomingMessage): string[] {
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.encrypted !== true || socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return [];
  const san = socket.getPeerCertificate().subjectaltname;
  if (typeof san !== 'string') return [];
  const ids: string[] = [];
  for (const entry of san.split(', ')) {
    if (!entry.startsWith('URI:')) continue;
    let uri = entry.slice(4);
    if (uri.startsWith('"')) {
      try {
        uri = JSON.parse(uri) as string;
      } catch {
        // left as printed
      }
    }
    if (/^"?spiffe:/i.test(uri)) ids.push(uri);
  }
  return ids;
}

/** The identities a request speaks for: the caller first, then any others the request names. Empty = anonymous. */
export function requestIdentities(req: IncomingMessage, options: HttpGuardOptions = {}): string[] {
  const ids = options.identity === 'client-certificate'
    ? spiffeIdsFromCertificate(req)
    : fromHeader(req.headers[(options.header ?? DEFAULT_HEADER).toLowerCase()]);
  if (options.chainHeader !== undefined) ids.push(...fromHeader(req.headers[options.chainHeader.toLowerCase()]));
  return ids;
}

export function checkRequest(guard: SessionGuard, req: IncomingMessage, options: HttpGuardOptions = {}): CheckResult {
  const ids = requestIdentities(req, options);
  if (ids.length === 0) return guard.check(undefined);
  return ids.length === 1 ? guard.check(ids[0]) : guard.check(ids[0], ids.slice(1));
}

/** Write the refusal: its status, `application/json`, its body (docs/spec.md#7-refusing-a-session). */
export function sendRefusal(res: ServerResponse, refusal: Refusal): void {
  res.writeHead(refusal.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(refusal.json),
    'cache-control': 'no-store',
    ...(refusal.status === 503 ? { 'retry-after': '5' } : {}),
  });
  res.end(refusal.json);
}

/** node:http: `if (!guardRequest(req, res)) return;` at the top of the handler that opens sessions. */
export function nodeHttpGuard(guard: SessionGuard, options: HttpGuardOptions = {}): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const r = checkRequest(guard, req, options);
    if (r.allowed) return true;
    sendRefusal(res, r);
    return false;
  };
}

/** Express / Connect middleware: `app.use('/sessions', expressGuard(guard))`. */
export function expressGuard(guard: SessionGuard, options: HttpGuardOptions = {}): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  const allow = nodeHttpGuard(guard, options);
  return (req, res, next) => {
    if (allow(req, res)) next();
  };
}

/** The parts of Fastify's request and reply the hook uses. */
export interface FastifyLikeRequest {
  readonly raw: IncomingMessage;
}
export interface FastifyLikeReply {
  code(status: number): FastifyLikeReply;
  header(name: string, value: string): FastifyLikeReply;
  send(payload: string): FastifyLikeReply;
}

/** Fastify `onRequest` hook: `app.addHook('onRequest', fastifyGuard(guard))`. */
export function fastifyGuard(guard: SessionGuard, options: HttpGuardOptions = {}): (request: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<FastifyLikeReply | undefined> {
  return (request, reply) => {
    const r = checkRequest(guard, request.raw, options);
    if (r.allowed) return Promise.resolve(undefined);
    let out = reply.code(r.status).header('content-type', 'application/json').header('cache-control', 'no-store');
    if (r.status === 503) out = out.header('retry-after', '5');
    return Promise.resolve(out.send(r.json));
  };
}
