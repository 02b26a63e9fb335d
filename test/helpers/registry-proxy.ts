/**
 * A Schema Registry that fails on purpose: a tiny HTTP proxy on 127.0.0.1 in front of the real one,
 * forwarding every request except those whose path a test names, which get the status it names (a 500
 * for one schema id, a 404 for one reference). It records every path asked, so a test can count what
 * the processor asked the registry.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RegistryProxy {
  /** the proxy's URL, with the upstream's path (e.g. http://127.0.0.1:PORT/apis/ccompat/v7) */
  readonly url: string;
  /** every request's path (without the query), in order */
  readonly requests: string[];
  readonly close: () => Promise<void>;
}

/**
 * `failures`: path under the registry URL (e.g. `/schemas/ids/42`) -> the status to answer instead of
 * forwarding; the body is plain text, not the registry's JSON, as a broken gateway would answer.
 */
export async function startRegistryProxy(upstream: string, failures: ReadonlyMap<string, number>): Promise<RegistryProxy> {
  const base = new URL(upstream);
  const prefix = base.pathname.replace(/\/+$/, '');
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
    requests.push(path.startsWith(prefix) ? path.slice(prefix.length) : path);
    const status = failures.get(path.slice(prefix.length));
    if (status !== undefined) {
      res.writeHead(status, { 'content-type': 'text/plain' }).end(`injected by the test proxy: ${status}\n`);
      return;
    }
    forward(req, `${base.origin}${req.url ?? '/'}`).then(
      async (answer) => {
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
        res.end(Buffer.from(await answer.arrayBuffer()));
      },
      (err: unknown) => res.writeHead(502, { 'content-type': 'text/plain' }).end(String(err)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function forward(req: IncomingMessage, to: string): Promise<Response> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)) headers[k] = v;
  }
  const body = chunks.length === 0 ? null : Buffer.concat(chunks);
  return fetch(to, { method: req.method ?? 'GET', headers, ...(body === null ? {} : { body }), signal: AbortSignal.timeout(10_000) });
}
