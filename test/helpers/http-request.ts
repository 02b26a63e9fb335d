/** One HTTP(S) request with node's own client: status, headers and body as a user's client sees them. */
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createHash, randomBytes } from 'node:crypto';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function request(url: string, o: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer; tls?: { ca: string; key?: string; cert?: string } } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    // the path exactly as given: URL parsing would resolve dot segments (%2E%2E) before the server sees them
    const path = url.slice(url.indexOf('/', url.indexOf('//') + 2)) || '/';
    const options = { method: o.method ?? 'GET', headers: o.headers ?? {}, host: u.hostname, port: u.port, path, ...(o.tls ?? {}) };
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/**
 * Lowest and highest port freePort hands out: below Linux's ephemeral range (32768-60999 by default),
 * from which the kernel takes the local port of every outgoing connection (the Kafka clients of the
 * tests make many). A port taken from that range is free when probed but may be some connection's by
 * the time the child process that was given it listens.
 */
const PORTS_FROM = 20_000;
const PORTS_TO = 32_767;
let nextPort = PORTS_FROM + Math.floor(Math.random() * (PORTS_TO - PORTS_FROM));

/** A loopback port nothing listens on right now, outside the ephemeral range. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  for (let tries = 0; tries < 100; tries++) {
    const port = nextPort;
    nextPort = nextPort >= PORTS_TO ? PORTS_FROM : nextPort + 1;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free loopback port in ${PORTS_FROM}-${PORTS_TO} after 100 tries`);
}

/** Poll until `fn` resolves to something `ok` accepts. */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined;
    try {
      v = await fn();
      if (ok(v)) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fresh bearer token for the operator API and its SHA-256 (what `http.tokens` lists). */
export function apiToken(): { token: string; sha256: string } {
  const t = randomBytes(24).toString('base64url');
  return { token: t, sha256: createHash('sha256').update(t).digest('hex') };
}
