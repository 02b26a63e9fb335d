/**
 * The Kafka Streams peer (benchmarks/peers/kafka-streams, Java): built with Maven when its classes are
 * missing or older than its sources, run as a child process (`java -cp target/classes:target/lib/*`),
 * one stream thread, exactly_once_v2, state under .cache/peers/.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../kafka-harness.js';

/** Compiled to dist/benchmarks/peers: the Maven project stays in benchmarks/peers/kafka-streams. */
const PROJECT = fileURLToPath(new URL('../../../benchmarks/peers/kafka-streams/', import.meta.url));
const CACHE = fileURLToPath(new URL('../../../.cache/peers/', import.meta.url));
const MAIN_CLASS = 'local.killswitch.peer.DenyRateStreams';

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds the peer unless target/ is newer than pom.xml and src/; returns the seconds the build took (0: none). */
export function ensureStreamsApp(): number {
  const built = join(PROJECT, 'target/classes/local/killswitch/peer/DenyRateStreams.class');
  const sources = Math.max(statSync(join(PROJECT, 'pom.xml')).mtimeMs, newestSource(join(PROJECT, 'src')));
  if (existsSync(built) && existsSync(join(PROJECT, 'target/lib')) && statSync(built).mtimeMs >= sources) return 0;
  const t0 = performance.now();
  execFileSync('mvn', ['-q', '-B', '-Dstyle.color=never', '-f', join(PROJECT, 'pom.xml'), 'package', 'dependency:copy-dependencies'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return (performance.now() - t0) / 1000;
}

export function javaVersion(): string {
  const r = spawnSync('java', ['-version'], { encoding: 'utf8' });
  return (r.stderr.split('\n')[1] ?? '?').trim();
}

export interface StreamsApp {
  readonly child: ChildProcess;
  readonly pid: number;
  log(): string;
  /** counters printed by the app when it stops */
  stop(): Promise<{ code: number | null; records?: number; trips?: number; invalid?: number; late?: number }>;
}

/** On Linux the kernel kills the JVM if this process dies (as scripts/kafka/cluster.mjs starts the broker). */
const deathSignal = spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') === true
  ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];

/** Starts the app and resolves once Kafka Streams reports RUNNING (partitions assigned, state restored). */
export async function startStreamsApp(o: { brokers: string; input: string; output: string; applicationId: string }): Promise<StreamsApp> {
  const stateDir = join(CACHE, 'streams-state', o.applicationId);
  mkdirSync(stateDir, { recursive: true });
  const argv = [
    ...deathSignal, 'java', '-cp', `${join(PROJECT, 'target/classes')}:${join(PROJECT, 'target/lib')}/*`, MAIN_CLASS,
    '--brokers', o.brokers, '--input', o.input, '--output', o.output, '--application-id', o.applicationId, '--state-dir', stateDir,
  ];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = Date.now();
  while (!log.includes('{"state":"RUNNING"}')) {
    if (child.exitCode !== null) throw new Error(`the Kafka Streams peer exited with ${child.exitCode}:\n${log.slice(-4000)}`);
    if (Date.now() - started > 120_000) throw new Error(`the Kafka Streams peer did not start:\n${log.slice(-4000)}`);
    await sleep(50);
  }
  return {
    child,
    pid: child.pid!,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
      let code: number | null;
      try {
        code = await exited;
      } finally {
        clearTimeout(timer);
        rmSync(stateDir, { recursive: true, force: true });
      }
      const last = log.split('\n').find((l) => l.startsWith('{"state":"STOPPED"'));
      // 143: the JVM's exit status after SIGTERM once its shutdown hook has closed the app
      return { code: code === 143 ? 0 : code, ...(last === undefined ? {} : (JSON.parse(last) as { records: number; trips: number })) };
    },
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100 on Linux)
  } catch {
    return NaN;
  }
}
