// Vitest global setup for tests against the real parts (README.md, "Development": integration tests run against real parts): a
// single-node KRaft Kafka broker and Apicurio Registry (Confluent-compatible API), unless
// KAFKA_BROKERS / SCHEMA_REGISTRY_URL point at existing ones. Tests read them with
// inject('kafkaBrokers') / inject('schemaRegistryUrl'); child processes find them in the environment.
// Anything that cannot start fails the run: these tests are never skipped.
import type { TestProject } from 'vitest/node';
import { ensureKcat, startKafka, startSchemaRegistry } from '../../scripts/kafka/cluster.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string;
    schemaRegistryUrl: string;
  }
}

interface Endpoint {
  address: string;
  /** present when this setup started the process */
  stop?: () => Promise<void>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const existingBrokers = process.env.KAFKA_BROKERS;
  const existingRegistry = process.env.SCHEMA_REGISTRY_URL;

  // In parallel: each is a JVM that takes a few seconds to start.
  const [kafka, registry] = await Promise.allSettled([
    existingBrokers
      ? Promise.resolve<Endpoint>({ address: existingBrokers })
      : startKafka().then((k): Endpoint => ({ address: k.brokers, stop: k.stop })),
    existingRegistry
      ? Promise.resolve<Endpoint>({ address: existingRegistry })
      : startSchemaRegistry().then((r): Endpoint => ({ address: r.url, stop: r.stop })),
  ]);
  const started = [kafka, registry].flatMap((r) => (r.status === 'fulfilled' && r.value.stop ? [r.value.stop] : []));
  const teardown = async (): Promise<void> => {
    await Promise.all(started.map((stop) => stop()));
  };

  try {
    if (kafka.status === 'rejected') throw kafka.reason;
    if (registry.status === 'rejected') throw registry.reason;
    ensureKcat();
  } catch (err) {
    await teardown();
    throw err;
  }

  const brokers = kafka.value.address;
  const url = registry.value.address.replace(/\/+$/, '');
  process.env.KAFKA_BROKERS = brokers;
  process.env.SCHEMA_REGISTRY_URL = url;
  project.provide('kafkaBrokers', brokers);
  project.provide('schemaRegistryUrl', url);
  return teardown;
}
