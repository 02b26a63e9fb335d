import { defineConfig } from 'vitest/config';

// Three layers (README.md, "Development"): unit tests of the pure core, integration tests against real parts, and
// acceptance tests that run the built CLI as a user would. `npm test` builds first, so acceptance
// tests always exercise dist/.
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    teardownTimeout: 30_000, // stopping the broker and registry
    projects: [
      // Unit tests are quick alone, but CI runs them beside the integration tests' broker on 2 cores:
      // no test may depend on vitest's 5 s default (the long property tests carry budgets of their own).
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 30_000 } },
      {
        test: {
          name: 'integration', include: ['test/integration/**/*.test.ts'],
          // a real Kafka broker and Schema Registry, started once for the project (or KAFKA_BROKERS / SCHEMA_REGISTRY_URL)
          globalSetup: ['test/setup/kafka-global.ts'], testTimeout: 120_000, hookTimeout: 120_000,
        },
      },
      { test: { name: 'acceptance', include: ['test/acceptance/**/*.test.ts'], testTimeout: 60_000 } },
    ],
  },
});
