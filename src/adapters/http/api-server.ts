/**
 * The operator API on `http.listen` (node:http, JSON, `/v1`), with `/metrics`, `/healthz`, `/readyz`.
 * README "Operator API" lists every endpoint. Errors are `{"error": CODE, "detail": "..."}` with the
 * code's HTTP status (src/core/errors.ts); never a stack trace.
 *
 * Every body is read with a size bound and parsed as a strict document (docs/spec.md#6-strict-documents):
 * valid UTF-8, no repeated key, at most 64 levels deep. Identities are taken as given, never
 * normalised (docs/spec.md#7-refusing-a-session).
 */
import { isUtf8 } from 'node:buffer';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { canonicalJson } from '../../core/canonical-json.js';
import { ERROR_CODES, KillSwitchError, type ErrorCode } from '../../core/errors.js';
import { spiffeIdError } from '../../core/spiffe-id.js';
import { parseJsonStrict, StrictJsonError, type StrictJsonReason } from '../../core/strict-json.js';
import type { Logger } from '../../ports/logger.js';
import type { IngestRecord, OperatorService } from '../../ports/operator-service.js';
import type { LedgerFeed } from '../../core/ledger-feed.js';
import { resolveMapping } from '../opa/opa-mapping.js';
import { gunzipBounded, OpaBodyError, OpaReceiver } from '../opa/opa-receiver.js';
import type { ScannedArray } from '../opa/opa-scan.js';
import type { Authenticator} from './auth.js';
import { DualControl, hasRole, RateLimiter, type Principal, type Role } from './auth.js';

export interface ApiOptions {
  readonly service: OperatorService;
  readonly feed: LedgerFeed;
  readonly auth: Authenticator;
  readonly registry: Registry;
  readonly ready: () => boolean;
  readonly log: Logger;
  readonly maxBodyBytes: number;
  readonly dualControl: { readonly block: boolean; readonly unblock: boolean; readonly windowSeconds: number };
  readonly rateLimit: { readonly perMinute: number; readonly burst: number };
  /** seconds between SSE keep-alive comments */
  readonly heartbeatSeconds?: number;
  /** POST /v1/opa/logs; absent: a receiver with the default mapping (preset opa-envoy) */
  readonly opa?: OpaReceiver;
  readonly now?: () => number;
}

const MAX_PAGE = 1000;
const MAX_SSE_CLIENTS = 256;
/** an SSE client this far behind is dropped; it resumes with Last-Event-ID */
const MAX_SSE_BUFFER = 8 << 20;
const MAX_TEXT = 1024;

class HttpError extends KillSwitchError {
  constructor(code: ErrorCode, detail: string, readonly headers: Record<string, string> = {}) {
    super(code, detail);
  }
}

type BodyReason = StrictJsonReason | 'invalid_utf8';

/** A body that is not a strict JSON document: 400 INVALID_JSON, and the rule it breaks in `reason`. */
class BodyError extends HttpError {
  constructor(readonly reason: BodyReason, detail: string) {
    super('INVALID_JSON', detail);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, code: ErrorCode, detail: string, headers: Record<string, string> = {}): void {
  send(res, ERROR_CODES[code].status ?? 500, { error: code, detail }, headers);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > max) return Promise.reject(new HttpError('PAYLOAD_TOO_LARGE', `the body is ${declared} bytes; http.max_body_bytes is ${max}`, { connection: 'close' }));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > max) {
        failed = true;
        reject(new HttpError('PAYLOAD_TOO_LARGE', `the body is larger than http.max_body_bytes (${max})`, { connection: 'close' }));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
  });
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** A JSON body as text: a body that is not UTF-8 would otherwise be read with U+FFFD in place of its bad bytes. */
function utf8Text(body: Buffer): string {
  return utf8(body).toString('utf8');
}

/** `body`, refused unless it is valid UTF-8. */
function utf8(body: Buffer): Buffer {
  if (!isUtf8(body)) throw new BodyError('invalid_utf8', 'the body is not valid UTF-8');
  return body;
}

/**
 * `parseJsonStrict` (or `parse`, which gives its verdicts), its refusals as 400 INVALID_JSON; `where`
 * names the part of the body (an NDJSON line).
 */
function parseBody(text: string, where = 'the body', parse: (text: string) => unknown = parseJsonStrict): unknown {
  return strictBody(where, () => parse(text));
}

/** `parse`'s StrictJsonError as 400 INVALID_JSON; `where` names the part of the body. */
function strictBody<T>(where: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    throw new BodyError(err.reason, err.reason === 'invalid_json' ? `${where} is not valid JSON: ${err.message}` : `${where}: ${err.message}`);
  }
}

async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  if (mediaType(req) !== 'application/json') throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  return parseBody(utf8Text(await readBody(req, max)));
}

function requireText(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v.trim() === '') throw new HttpError('REQUEST_INVALID', `${field}: required, a non-empty string`);
  if (v.length > MAX_TEXT) throw new HttpError('REQUEST_INVALID', `${field}: at most ${MAX_TEXT} characters`);
  return v;
}

const identityInvalid = (field: string, reason: string): HttpError => new HttpError('IDENTITY_INVALID', `${field}: not a valid SPIFFE ID: ${reason}`);

function requireAgentId(value: unknown, field = 'agent_id'): string {
  if (typeof value !== 'string' || value === '') throw new HttpError('REQUEST_INVALID', `${field}: required, a SPIFFE ID`);
  const err = spiffeIdError(value);
  if (err !== null) throw identityInvalid(field, err);
  return value;
}

/**
 * `/v1/identities/{agent_id}`: the SPIFFE ID percent-encoded (`spiffe%3A%2F%2F...`) or with its slashes
 * as they are. Of the characters a SPIFFE ID may hold, only ':' and '/' need encoding in a path, so only
 * %3A and %2F are decoded: any other escape (`%61` for 'a') is a second spelling of some ID and stays in
 * the text, to be refused as one. When the fully decoded text is itself no SPIFFE ID (`%3F` for a query,
 * `%2E%2E`), that is the reason given.
 */
function agentIdFromPath(rawPath: string): string {
  const field = 'agent_id in the path';
  let decoded: string | undefined;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    // not decodable at all: refused below for the '%' it keeps
  }
  if (decoded !== undefined) {
    const err = spiffeIdError(decoded);
    if (err !== null) throw identityInvalid(field, err);
  }
  return requireAgentId(rawPath.replace(/%3a|%2f/gi, (e) => (e[2] === 'f' || e[2] === 'F' ? '/' : ':')), field);
}

function intParam(url: URL, name: string, dflt: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return dflt;
  if (!/^\d{1,15}$/.test(raw)) throw new HttpError('REQUEST_INVALID', `${name}: must be an integer`);
  const n = Number(raw);
  if (n < min || n > max) throw new HttpError('REQUEST_INVALID', `${name}: must be between ${min} and ${max}`);
  return n;
}

/**
 * POST /v1/decisions bodies: one JSON object, an array of them, or NDJSON; the records in the order of
 * the request, each at its index there. An NDJSON line that is not UTF-8 is a bad record of its own,
 * handed over as its bytes (IngestRecord.raw) for the service to keep in the DLQ; its neighbours are
 * still ingested. A line that is not JSON is left for the service to report. A repeated key or deep
 * nesting in any line refuses the whole body: what such a line means depends on the parser that reads
 * it, so none of it is stored anywhere.
 */
async function ingestBody(req: IncomingMessage, max: number): Promise<IngestRecord[]> {
  const type = mediaType(req);
  if (type !== 'application/json' && type !== 'application/x-ndjson') throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 'send decisions as application/json (an object or an array) or application/x-ndjson');
  const body = await readBody(req, max);
  if (type === 'application/json') {
    const doc = parseBody(utf8Text(body));
    return (Array.isArray(doc) ? doc : [doc]).map((d) => ({ text: JSON.stringify(d) }));
  }
  const records: IngestRecord[] = [];
  for (let start = 0, lineNo = 1; start < body.length; lineNo++) {
    const nl = body.indexOf(0x0a, start);
    const end = nl === -1 ? body.length : nl;
    const line = body.subarray(start, end > start && body[end - 1] === 0x0d ? end - 1 : end);
    start = end + 1;
    if (!isUtf8(line)) {
      records.push({ text: '', raw: Buffer.from(line) });
      continue;
    }
    const text = line.toString('utf8');
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = parseBody(text, `line ${lineNo}`);
    } catch (err) {
      // not JSON at all: a bad record like any other, reported by the service (which parses the text)
      if (!(err instanceof BodyError) || err.reason !== 'invalid_json') throw err;
      records.push({ text });
      continue;
    }
    // the line as parsed, by the parser the service would use: it decodes this, not the text again
    records.push({ text, value });
  }
  return records;
}

/**
 * An OPA decision-log upload (docs/opa.md): a JSON array of events, gzip-compressed
 * (`Content-Encoding: gzip`, what OPA sends) or plain. The compressed body is bounded by
 * http.max_body_bytes, the decompressed one by opa.max_decompressed_bytes; the JSON is a strict
 * document (docs/spec.md#6-strict-documents), refused whole when it is not.
 */
async function opaBatch(req: IncomingMessage, max: number, opa: OpaReceiver): Promise<ScannedArray> {
  const maxDecompressed = opa.maxDecompressedBytes;
  if (mediaType(req) !== 'application/json') throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 'send decision logs as application/json (OPA does)');
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'gzip' && encoding !== 'identity') throw new HttpError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${encoding}: only gzip or none`);
  let body = await readBody(req, max);
  if (encoding === 'gzip') {
    try {
      body = await gunzipBounded(body, maxDecompressed);
    } catch (err) {
      if (!(err instanceof OpaBodyError)) throw err;
      throw err.kind === 'too_large' ? new HttpError('PAYLOAD_TOO_LARGE', err.message) : new HttpError('REQUEST_INVALID', err.message);
    }
  } else if (body.length > maxDecompressed) {
    throw new HttpError('PAYLOAD_TOO_LARGE', `the batch is larger than opa.max_decompressed_bytes (${maxDecompressed})`);
  }
  // ~500 KB of JSON per upload of OPA's default size, of which the mapping reads a few values per event:
  // checked and read in one pass, never parsed whole
  const batch = strictBody('the body', () => opa.read(utf8(body)));
  if (batch === null) throw new HttpError('REQUEST_INVALID', 'an OPA decision-log batch is a JSON array of events');
  return batch;
}

export function createApiServer(o: ApiOptions): Server {
  const now = o.now ?? Date.now;
  const limiter = new RateLimiter(o.rateLimit.perMinute, o.rateLimit.burst, now);
  const dual = new DualControl(o.dualControl.windowSeconds * 1000, now);
  const heartbeatMs = (o.heartbeatSeconds ?? 10) * 1000;
  let sseClients = 0;
  const opa = o.opa ?? new OpaReceiver({ service: o.service, mapping: resolveMapping(undefined), registry: o.registry, log: o.log });

  const principalFor = (req: IncomingMessage, role: Role): Principal => {
    const p = o.auth.authenticate(req.headers.authorization);
    if (p === undefined) {
      throw new HttpError('UNAUTHENTICATED', o.auth.configured === 0 ? 'no tokens are configured (http.tokens): the API is closed' : 'missing or unknown bearer token',
        { 'www-authenticate': 'Bearer realm="killswitch"' });
    }
    if (!hasRole(p, role)) throw new HttpError('FORBIDDEN', `token "${p.name}" lacks the ${role} role`);
    return p;
  };

  const operatorAction = async (req: IncomingMessage, res: ServerResponse, action: 'block' | 'unblock'): Promise<void> => {
    const p = principalFor(req, 'operator');
    const wait = limiter.take(p.name);
    if (wait > 0) throw new HttpError('RATE_LIMITED', `too many operator actions from token "${p.name}"`, { 'retry-after': String(wait) });
    const body = await readJson(req, o.maxBodyBytes);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError('REQUEST_INVALID', 'the body must be a JSON object');
    const b = body as Record<string, unknown>;
    // `spiffe://td/ns/prod/*` or `spiffe://td/*`: a scope (README "Scopes")
    const scoped = typeof b.agent_id === 'string' && b.agent_id.endsWith('/*');
    const agentId = requireAgentId(scoped ? (b.agent_id as string).slice(0, -2) : b.agent_id);
    const scope = scoped ? { scope: 'subtree' as const } : {};
    const target = scoped ? `${agentId}/*` : agentId;
    const reason = requireText(b, 'reason');
    const authorizedBy = requireText(b, 'authorized_by');
    for (const k of Object.keys(b)) if (!['agent_id', 'reason', 'authorized_by'].includes(k)) throw new HttpError('REQUEST_INVALID', `${k}: unknown field`);
    let by = authorizedBy;
    let why = reason;
    if (action === 'block' ? o.dualControl.block : o.dualControl.unblock) {
      // refuse early what could never complete, so a first approval is not held for nothing
      const blocked = o.service.isBlocked(target);
      if (action === 'unblock' && !blocked) throw new HttpError('NOT_BLOCKED', `${target} is not blocked`);
      if (action === 'block' && blocked) throw new HttpError('ALREADY_BLOCKED', `${target} is already blocked`);
      const r = dual.approve(action, target, p.name, authorizedBy, reason);
      if (r.kind === 'same') throw new HttpError('SAME_APPROVER', `token "${p.name}" already approved this ${action}; a second, different token must approve it`);
      if (r.kind === 'first') {
        o.log.info({ action, agent_id: target, token: p.name, authorized_by: authorizedBy }, `operator ${action} awaiting a second approval`);
        send(res, 202, { status: 'pending_approval', action, agent_id: target, approved_by: [authorizedBy], expires_at: new Date(r.expiresAt).toISOString() });
        return;
      }
      by = `${r.first.authorizedBy} + ${authorizedBy}`;
      why = r.first.reason === reason ? reason : `${r.first.reason} / ${reason}`;
    }
    const ev = action === 'block'
      ? await o.service.block({ agentId, ...scope, reason: why, authorizedBy: by })
      : await o.service.unblock({ agentId, ...scope, reason: why, authorizedBy: by });
    o.log.info({ action, agent_id: target, token: p.name, authorized_by: by }, `audit: operator ${action} by token ${p.name}`);
    send(res, action === 'block' ? 201 : 200, ev);
  };

  const stream = (req: IncomingMessage, res: ServerResponse, url: URL): void => {
    principalFor(req, 'viewer');
    if (sseClients >= MAX_SSE_CLIENTS) throw new HttpError('RATE_LIMITED', `at most ${MAX_SSE_CLIENTS} streams at once`, { 'retry-after': '5' });
    const lastId = req.headers['last-event-id'];
    const raw = typeof lastId === 'string' ? lastId : url.searchParams.get('since') ?? '0';
    if (!/^\d{1,15}$/.test(raw)) throw new HttpError('REQUEST_INVALID', 'Last-Event-ID / since: must be an integer');
    let next = Number(raw);
    sseClients++;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const write = (text: string): void => {
      res.write(text);
      if (res.writableLength > MAX_SSE_BUFFER) res.destroy();
    };
    const frame = (seq: number, event: object): string => `id: ${seq}\nevent: kill\ndata: ${canonicalJson(event)}\n\n`;
    for (;;) {
      const batch = o.feed.since(next, MAX_PAGE);
      if (batch.length === 0) break;
      write(batch.map((e) => frame(e.seq, e.event)).join(''));
      next = batch[batch.length - 1]!.seq;
    }
    write(`event: caught-up\ndata: {"seq":${o.feed.lastSeq}}\n\n`);
    const unsubscribe = o.feed.subscribe((e) => write(frame(e.seq, e.event)));
    const beat = setInterval(() => write(': keep-alive\n\n'), heartbeatMs);
    res.on('close', () => {
      sseClients--;
      clearInterval(beat);
      unsubscribe();
    });
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const rawUrl = req.url ?? '/';
    const rawPath = rawUrl.split('?')[0]!;
    const url = new URL(rawUrl.startsWith('/') ? rawUrl : `/${rawUrl}`, 'http://localhost');
    const method = req.method ?? 'GET';
    const only = (...methods: string[]): void => {
      if (!methods.includes(method)) throw new HttpError('METHOD_NOT_ALLOWED', `${rawPath} takes ${methods.join(', ')}`, { allow: methods.join(', ') });
    };

    if (rawPath === '/healthz') {
      only('GET', 'HEAD');
      return send(res, 200, { status: 'ok' });
    }
    if (rawPath === '/readyz') {
      only('GET', 'HEAD');
      const ok = o.ready();
      return send(res, ok ? 200 : 503, { status: ok ? 'ready' : 'starting' });
    }
    if (rawPath === '/metrics') {
      only('GET', 'HEAD');
      const text = await o.registry.metrics();
      res.writeHead(200, { 'content-type': o.registry.contentType });
      res.end(text);
      return;
    }
    if (rawPath.startsWith('/v1/identities/')) {
      only('GET');
      principalFor(req, 'viewer');
      return send(res, 200, o.service.identity(agentIdFromPath(rawPath.slice('/v1/identities/'.length))));
    }
    switch (rawPath) {
      case '/v1/blocks':
        only('GET', 'POST');
        if (method === 'POST') return operatorAction(req, res, 'block');
        principalFor(req, 'viewer');
        {
          const cursor = url.searchParams.get('cursor');
          return send(res, 200, o.service.blocks(intParam(url, 'limit', 100, 1, MAX_PAGE), cursor === null || cursor === '' ? undefined : cursor));
        }
      case '/v1/blocks/unblock':
        only('POST');
        return operatorAction(req, res, 'unblock');
      case '/v1/blocks/changes': {
        only('GET');
        principalFor(req, 'viewer');
        const since = intParam(url, 'since', 0, 0, Number.MAX_SAFE_INTEGER);
        const events = o.feed.since(since, intParam(url, 'limit', MAX_PAGE, 1, MAX_PAGE));
        return send(res, 200, { events, next: events.length === 0 ? since : events[events.length - 1]!.seq, last_seq: o.feed.lastSeq });
      }
      case '/v1/blocks/stream':
        only('GET');
        return stream(req, res, url);
      case '/v1/decisions': {
        only('POST');
        principalFor(req, 'ingest');
        const records = await ingestBody(req, o.maxBodyBytes);
        if (records.length === 0) throw new HttpError('REQUEST_INVALID', 'no decisions in the body');
        return send(res, 202, await o.service.ingest(records));
      }
      case '/v1/opa/logs': {
        only('POST');
        principalFor(req, 'opa');
        const batch = await opaBatch(req, o.maxBodyBytes, opa);
        // 200 only now: the batch is durable (docs/opa.md); anything thrown above makes OPA send it again
        return send(res, 200, await opa.accept(batch));
      }
      default:
        throw new HttpError('NOT_FOUND', `no endpoint ${rawPath}`);
    }
  };

  const server = createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    route(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof BodyError) {
        send(res, 400, { error: err.code, reason: err.reason, detail: err.message });
        return;
      }
      if (err instanceof KillSwitchError && ERROR_CODES[err.code].status !== undefined) {
        sendError(res, err.code, err.message, err instanceof HttpError ? err.headers : {});
        return;
      }
      o.log.error({ err: (err as Error).message, path: (req.url ?? '').split('?')[0] }, 'operator API request failed');
      sendError(res, 'INTERNAL', 'internal error (logged)');
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 100;
  return server;
}
