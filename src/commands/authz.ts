/** `killswitch authz`: the session guard behind an HTTP endpoint for nginx `auth_request` / Envoy `ext_authz`. */
import type { Server } from 'node:http';
import { Counter, Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { KillSwitchError } from '../core/errors.js';
import { createKafka } from '../adapters/kafka/client.js';
import { ledgerPaths } from '../adapters/file/ledger-files.js';
import { listenOn, startMetricsServer } from '../adapters/http/metrics-server.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import type { Logger } from '../ports/logger.js';
import { SessionGuard } from '../session/guard.js';
import { createAuthzServer } from '../session/authz-server.js';
import type { LedgerSource } from '../session/ledger-source.js';
import { FileLedgerSource } from '../session/sources/file-source.js';
import { KafkaLedgerSource } from '../session/sources/kafka-source.js';

const DEFAULTS = { listen: '127.0.0.1:8181', identity_header: 'x-spiffe-id', failure_mode: 'closed', max_staleness_seconds: 30 } as const;

export async function runAuthz(config: Config, trusted: ReadonlyMap<string, TrustedKey>, log: Logger): Promise<number> {
  if (trusted.size === 0) {
    throw new KillSwitchError('SIGNING_REQUIRED', 'authz obeys only signed kill events: set signing.jwks_file (the keys trusted to sign them)');
  }
  const a = { ...DEFAULTS, ...config.authz };
  const source: LedgerSource = config.kafka === undefined
    ? new FileLedgerSource(ledgerPaths(config.data_dir).kills)
    : new KafkaLedgerSource(createKafka(config.kafka.brokers, `${config.kafka.client_id}-authz`, log), config.kafka.topics.kills, `${config.kafka.group_id}.authz`);
  const registry = new Registry();
  const answers = new Counter({ name: 'killswitch_authz_answers_total', help: 'Authorization answers, by outcome (allowed, refused: blocked, invalid: not a valid SPIFFE ID, unavailable)', labelNames: ['outcome'] as const, registers: [registry] });
  const guard = new SessionGuard({
    source, trusted, registry, log: log.child({ component: 'session-guard' }),
    failureMode: a.failure_mode, maxStalenessMs: a.max_staleness_seconds * 1000,
  });
  const server = createAuthzServer(guard, { header: a.identity_header, ...(a.chain_header === undefined ? {} : { chainHeader: a.chain_header }) },
    (outcome) => answers.inc({ outcome }));
  let metricsServer: Server | undefined;
  let stop: (signal: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    await listenOn(server, a.listen, 'authz.listen');
    if (a.metrics_listen !== undefined) {
      metricsServer = await startMetricsServer(a.metrics_listen, registry, { ready: () => guard.state === 'ready' }).catch((err: unknown) => {
        throw new KillSwitchError('CONFIG_INVALID', `authz.metrics_listen ${a.metrics_listen}: ${(err as Error).message}`);
      });
    }
    log.info({ listen: a.listen, source: source.description, identity_header: a.identity_header, failure_mode: a.failure_mode, trusted_keys: trusted.size }, 'authz listening');
    // whatever log.level says: where it answers is what its operator needs first
    process.stdout.write(`killswitch authz listening on http://${a.listen} (ledger: ${source.description}; failure_mode ${a.failure_mode})` +
      `${a.metrics_listen === undefined ? '' : `, /metrics on http://${a.metrics_listen}`}\n`);
    if (a.failure_mode === 'open') log.warn({ failure_mode: 'open' }, 'authz lets through identities that are not valid SPIFFE IDs (counted in killswitch_guard_identity_invalid_total) and, while the ledger is not ready, every identity not known to be blocked');
    const signal = await stopped;
    log.info({ signal }, 'authz stopping');
    return 0;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    metricsServer?.close();
    await guard.close();
  }
}
