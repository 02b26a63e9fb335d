/** `killswitch run` in Kafka mode: the processor, the operator API (with /metrics), signals. */
import type { Server } from 'node:http';
import type { Config } from '../config/config.js';
import { KillSwitchError } from '../core/errors.js';
import { createKafka } from '../adapters/kafka/client.js';
import { createMetrics } from '../adapters/metrics/metrics.js';
import { DecisionDecoder } from '../adapters/serde/decision-decoder.js';
import { KafkaValueDecoder } from '../adapters/serde/kafka-value-decoder.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import { tripRuleConfig } from '../pipeline/trip-rule-config.js';
import { KafkaProcessor } from '../service/kafka-processor.js';
import { KafkaService } from '../service/kafka-service.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import { closeServer, startApi } from './api.js';
import { OpaIdsFollower } from '../adapters/kafka/opa-ids.js';
import { DEFAULT_DEDUP_SIZE } from '../adapters/opa/opa-receiver.js';

export async function runKafka(config: Config, signer: Signer | undefined, trusted: ReadonlyMap<string, TrustedKey>, log: Logger): Promise<number> {
  const k = config.kafka!;
  const trip = tripRuleConfig(config);
  const metrics = createMetrics();
  const sr = config.schema_registry;
  // Loaded only when configured: the registry client's SDK takes about 0.6 s to load.
  const registry = sr === undefined ? undefined : new (await import('@confluentinc/schemaregistry')).SchemaRegistryClient({
    baseURLs: [sr.url],
    // A 5xx for one schema id becomes registry_error (DLQ) after these retries: a few hundred ms, not the
    // client's default of several seconds per poison record; an unreachable registry still stops us.
    maxRetries: 2, retriesWaitMs: 100, retriesMaxWaitMs: 300, createAxiosDefaults: { timeout: 10_000 },
    ...(sr.basic_auth === undefined ? {} : { basicAuthCredentials: { credentialsSource: 'USER_INFO', userInfo: `${sr.basic_auth.username}:${sr.basic_auth.password}` } }),
  });
  const decisionDecoder = new DecisionDecoder(trip.classifier);
  const decoder = new KafkaValueDecoder(decisionDecoder, registry, `${k.topics.decisions}-value`);
  const kafka = createKafka(k.brokers, k.client_id, log);
  const processor = new KafkaProcessor({
    kafka, groupId: k.group_id, topics: k.topics, partitions: k.partitions,
    replicationFactor: k.replication_factor, opaDedupSize: config.opa?.dedup_size ?? DEFAULT_DEDUP_SIZE, transactionTimeoutMs: k.transaction_timeout_ms, sessionTimeoutMs: k.session_timeout_ms, maxPartitionFetchBytes: k.max_partition_fetch_bytes, fetchMaxBytes: k.fetch_max_bytes, tripConfig: trip, decoder, signer, trusted, log, metrics,
  });
  const service = new KafkaService({
    kafka, groupId: k.group_id, topics: k.topics, transactionTimeoutMs: k.transaction_timeout_ms, processor, decoder: decisionDecoder,
    settings: trip.settings, signer, log, countDeadLetter: (reason) => metrics.dlq.inc({ reason }),
  });
  // the OPA decision ids every instance took (docs/opa.md): followed once the topics exist, read before each OPA batch
  const opaIds = config.http === undefined ? undefined : new OpaIdsFollower({ kafka, topic: k.topics.opa_ids, groupPrefix: `${k.group_id}.opa-ids`, log });
  let ready = false;
  let server: Server | undefined;
  if (config.http !== undefined) server = await startApi(config, service, processor.feed, metrics.registry, () => ready, log, opaIds);
  let stop: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const onSignal = (signal: string): void => stop(signal);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    const starting = processor.start();
    const first = await Promise.race([starting.then(() => 'started'), processor.failed.then(() => 'failed'), stopped]);
    if (first === 'started') {
      ready = true;
      opaIds?.catchUp().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'opa-ids: not read to its end yet; OPA batches are refused (503) until it is'));
      log.info({ group: k.group_id, topics: k.topics, instance: processor.instanceId }, 'kafka mode running');
      const end = await Promise.race([processor.failed.then(() => 'failed'), stopped]);
      if (end === 'failed') return 1;
      log.info({ signal: end }, 'stopping: finishing the batch in hand, leaving the group');
      return 0;
    }
    return first === 'failed' ? 1 : 0;
  } catch (err) {
    if (err instanceof KillSwitchError) throw err;
    throw new KillSwitchError('KAFKA_FAILED', `kafka: ${(err as Error).message}`, { cause: err });
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    if (server !== undefined) await closeServer(server);
    await opaIds?.stop();
    await service.close();
    await processor.stop();
  }
}
