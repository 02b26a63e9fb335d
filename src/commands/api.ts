/** The operator API on `http.listen`, for both modes. */
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { createApiServer } from '../adapters/http/api-server.js';
import { Authenticator } from '../adapters/http/auth.js';
import { listenOn } from '../adapters/http/metrics-server.js';
import { resolveMapping } from '../adapters/opa/opa-mapping.js';
import { DEFAULT_DEDUP_SIZE, OpaReceiver, recentDecisionIds } from '../adapters/opa/opa-receiver.js';
import type { Logger } from '../ports/logger.js';
import type { LedgerFeed } from '../core/ledger-feed.js';
import type { OperatorService, SharedDecisionIds } from '../ports/operator-service.js';
import { loadTokensFile } from './tokens.js';

export async function startApi(
  config: Config, service: OperatorService, feed: LedgerFeed, registry: Registry, ready: () => boolean, log: Logger, sharedOpaIds?: SharedDecisionIds,
): Promise<Server> {
  const http = config.http!;
  const auth = new Authenticator([...(http.tokens ?? []), ...(http.tokens_file === undefined ? [] : loadTokensFile(http.tokens_file))]);
  if (auth.configured === 0) log.warn({}, 'http.tokens is empty: every /v1 endpoint answers 401 until a token is configured');
  const dedupSize = config.opa?.dedup_size ?? DEFAULT_DEDUP_SIZE;
  // embedded mode: OPA ids this data_dir already took, so a batch retried after a crash is not counted twice (docs/opa.md)
  const seed = config.kafka === undefined ? recentDecisionIds(join(config.data_dir, 'ingest.ndjson'), dedupSize * 512).slice(-dedupSize) : [];
  const opa = new OpaReceiver({
    service, registry, log, mapping: resolveMapping(config.opa), dedupSize, seed, ...(sharedOpaIds === undefined ? {} : { shared: sharedOpaIds }),
    ...(config.opa === undefined ? {} : { maxDecompressedBytes: config.opa.max_decompressed_bytes }),
  });
  const server = createApiServer({
    service, feed, auth, registry, ready, log, maxBodyBytes: http.max_body_bytes, opa,
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
