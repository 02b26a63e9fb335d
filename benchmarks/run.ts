/** `npm run bench [name ...]`: runs the named scenarios (all when none), one file per scenario. */
import { cpus } from 'node:os';

const scenarios: Record<string, () => Promise<{ run: () => void | Promise<void> }>> = {
  'core-throughput': () => import('./core-throughput.js'),
  decode: () => import('./decode.js'),
  'kafka-pipeline': () => import('./kafka-pipeline.js'),
  'kafka-startup': () => import('./kafka-startup.js'),
  'memory-per-identity': () => import('./memory-per-identity.js'),
  'partition-pipeline': () => import('./partition-pipeline.js'),
  peers: () => import('./peers/index.js'),
  'replay-throughput': () => import('./replay-throughput.js'),
  'session-guard': () => import('./session-guard.js'),
  signing: () => import('./signing.js'),
};

const wanted = process.argv.slice(2);
const names = wanted.length > 0 ? wanted : Object.keys(scenarios);
console.log(`# deny-rate-killswitch benchmarks — node ${process.version}, ${cpus().length} cores, ${cpus()[0]?.model ?? '?'}`);
for (const name of names) {
  const load = scenarios[name];
  if (load === undefined) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(scenarios).join(', ')}`);
    process.exit(2);
  }
  await (await load()).run();
}
