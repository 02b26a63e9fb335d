import { defineConfig } from 'vitest/config';

// Three layers (STYLE.md): unit tests of the pure core, integration tests against real parts, and
// acceptance tests that run the built CLI as a user would. `npm test` builds first, so acceptance
// tests always exercise dist/.
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 60_000 } },
      { test: { name: 'acceptance', include: ['test/acceptance/**/*.test.ts'], testTimeout: 60_000 } },
    ],
  },
});
