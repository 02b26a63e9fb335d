// Lint that catches real bugs: dropped promises lose data in consumer loops, and the core must stay pure.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioModules = [
  'fs', 'fs/promises', 'net', 'http', 'https', 'http2', 'child_process', 'dgram', 'tls', 'dns',
  'worker_threads', 'cluster', 'readline', 'timers', 'timers/promises', 'process', 'os',
];

// kafkajs is loaded in one module, which gives it its record decoder first (src/adapters/kafka/kafkajs.ts).
const kafkajsValues = {
  name: 'kafkajs', allowTypeImports: true,
  message: 'import kafkajs from src/adapters/kafka/kafkajs.ts: it installs the record decoder before kafkajs loads.',
};
const adapterPatterns = [{ group: ['**/service/**', '**/pipeline/**', '**/commands/**', '**/cli*'], message: 'src/adapters depend on ports and core only: nothing above them.' }];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [kafkajsValues] }] },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [
          ...ioModules.flatMap((m) => [m, `node:${m}`]).map((name) => ({
            name, message: 'src/core is pure: I/O belongs in src/adapters.',
          })),
          { name: 'kafkajs', message: 'src/core is pure: Kafka belongs in src/adapters/kafka.' },
          { name: 'pino', message: 'src/core does not log; return what happened instead.' },
        ],
        patterns: [{ group: ['**/adapters/**', '**/cli*', '**/app*'], message: 'src/core depends on nothing above it.' }],
      }],
      'no-restricted-globals': ['error',
        { name: 'process', message: 'src/core is pure: pass configuration in.' },
        { name: 'setTimeout', message: 'src/core has no timers: time comes in as an argument.' },
        { name: 'setInterval', message: 'src/core has no timers: time comes in as an argument.' },
      ],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'src/core reads no wall clock: time comes in as an argument.' },
        { object: 'performance', property: 'now', message: 'src/core reads no wall clock.' },
      ],
    },
  },
  // The layers above the core point one way (README.md, "Development"): commands -> service -> pipeline -> adapters
  // -> ports/core. An adapter talks to the rest through ports; it never reaches up.
  {
    files: ['src/adapters/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [kafkajsValues], patterns: adapterPatterns }] },
  },
  {
    files: ['src/adapters/kafka/kafkajs.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: adapterPatterns }] },
  },
  {
    files: ['src/pipeline/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'kafkajs', message: 'src/pipeline reads and writes records through ports (src/ports/partition-records.ts); Kafka is behind them.' }],
        patterns: [
          { group: ['**/service/**', '**/commands/**', '**/cli*'], message: 'src/pipeline runs decisions through the core; services and commands use it, not the other way.' },
          { group: ['**/adapters/kafka/**'], message: 'src/pipeline reads and writes records through ports (src/ports/partition-records.ts); Kafka is behind them.' },
        ],
      }],
    },
  },
  {
    files: ['src/service/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [kafkajsValues],
        patterns: [{ group: ['**/commands/**', '**/cli*'], message: 'src/service is used by the commands, never the other way.' }],
      }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', process: 'readonly', globalThis: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
