/**
 * The observability endpoints on `http.listen`: GET /metrics (Prometheus text), /healthz and /readyz.
 * Read-only and bodiless: anything else is 404/405, request bodies are refused.
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { KillSwitchError } from '../../core/errors.js';

export interface HealthSource {
  ready(): boolean;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  if (m === null) throw new RangeError(`bad listen address ${listen}`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** Listen on `address`; an address in use or refused is a config error naming the config key. */
export async function listenOn(server: Server, address: string, key: string): Promise<void> {
  const { host, port } = parseListen(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new KillSwitchError('CONFIG_INVALID', `${key} ${address}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`)));
    server.listen(port, host, () => resolve());
  });
}

export async function startMetricsServer(listen: string, registry: Registry, health: HealthSource): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end('{"error":"METHOD_NOT_ALLOWED"}');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"METRICS_FAILED"}'),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (path === '/readyz') {
      const ok = health.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(ok ? '{"status":"ready"}' : '{"status":"starting"}');
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"NOT_FOUND"}');
    }
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxHeadersCount = 50;
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
