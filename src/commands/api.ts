/** The operator API on `http.listen`, for both modes. */
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { createApiServer } from '../adapters/http/api-server.js';
import { Authenticator } from '../adapters/http/auth.js';
import { listenOn } from '../adapters/http/metrics-server.js';
import type { Logger } from '../ports/logger.js';
import type { LedgerFeed } from '../service/ledger-feed.js';
import type { OperatorService } from '../service/operator-service.js';
import { loadTokensFile } from './tokens.js';

export async function startApi(config: Config, service: OperatorService, feed: LedgerFeed, registry: Registry, ready: () => boolean, log: Logger): Promise<Server> {
  const http = config.http!;
  const auth = new Authenticator([...(http.tokens ?? []), ...(http.tokens_file === undefined ? [] : loadTokensFile(http.tokens_file))]);
  if (auth.configured === 0) log.warn({}, 'http.tokens is empty: every /v1 endpoint answers 401 until a token is configured');
  const server = createApiServer({
    service, feed, auth, registry, ready, log, maxBodyBytes: http.max_body_bytes,
    dualControl: { block: http.dual_control?.block ?? false, unblock: http.dual_control?.unblock ?? false, windowSeconds: http.dual_control?.window_seconds ?? 900 },
    rateLimit: { perMinute: http.rate_limit?.per_minute ?? 30, burst: http.rate_limit?.burst ?? 10 },
  });
  await listenOn(server, http.listen, 'http.listen');
  log.info({ listen: http.listen, tokens: auth.configured }, 'operator API listening');
  return server;
}

/** Stop accepting, end open connections (SSE streams included), resolve when closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
