// Real infrastructure for tests and local use, without Docker (README.md, "Development": integration tests run against real parts):
// a single-node KRaft Apache Kafka broker and an Apicurio Registry (Confluent-compatible API), both
// fetched from Maven Central, cached under <repo>/.cache, and run as child processes on free
// loopback ports. Plain Node ESM with no dependencies, so it runs without a build step:
//
//   node scripts/kafka/cluster.mjs start     (npm run kafka:start)
//
// prints KAFKA_BROKERS=... and SCHEMA_REGISTRY_URL=... and runs until SIGINT/SIGTERM.
//
// Downloads: Maven (~/.m2) fetches the artifacts; the jars and the unpacked registry are kept under
// <repo>/.cache/{kafka,apicurio}/<version>/ (or KILLSWITCH_CACHE_DIR), with class-data-sharing
// archives that make later JVM starts faster. Delete the directory to start cold.
//
// Child processes never outlive us: on Linux they are started under `setpriv --pdeathsig KILL` (the
// kernel kills them if this process dies, even by SIGKILL); a process 'exit' handler kills them and
// removes their temp dirs; temp dirs left by a process that was killed outright are removed on the
// next start.
import { Buffer } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { clearTimeout, setInterval, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/* global fetch, AbortSignal */

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const pomFile = path.join(here, 'pom.xml');

/** Kafka version fetched by default (the pom's kafka.version, overridable per call). */
export const KAFKA_VERSION = '4.3.1';
/** Apicurio Registry version fetched by default; 3.2+ needs Java 21+. */
export const APICURIO_VERSION = '3.3.3';

const READY_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 20_000;
const TEMP_PREFIX = 'killswitch-it-';

// ---------------------------------------------------------------------------------------------------
// Child process bookkeeping: whatever happens to this process, no broker is left behind.

/** @type {Set<{ child: import('node:child_process').ChildProcess, tempDir: string, keepTemp: boolean }>} */
const live = new Set();
let exitHookInstalled = false;

function track(entry) {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const { child, tempDir, keepTemp } of live) {
        try {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        } catch {
          // already gone
        }
        if (!keepTemp) fs.rmSync(tempDir, { recursive: true, force: true });
      }
      live.clear();
    });
  }
  live.add(entry);
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM';
  }
}

/** Temp dirs are named <prefix><kind>-<pid>-<random>; remove those whose owning process is gone. */
function removeStaleTempDirs() {
  let entries;
  try {
    entries = fs.readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const name of entries) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const match = /-(\d+)-[^-]+$/.exec(name);
    if (!match || pidAlive(Number(match[1]))) continue;
    fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

function makeTempDir(kind) {
  removeStaleTempDirs();
  return fs.mkdtempSync(path.join(os.tmpdir(), `${TEMP_PREFIX}${kind}-${process.pid}-`));
}

let pdeathsigSupport;
/** `setpriv --pdeathsig KILL` (util-linux) makes the kernel kill the child when we die. */
function deathSignalPrefix() {
  if (pdeathsigSupport === undefined) {
    pdeathsigSupport = false;
    if (process.platform === 'linux') {
      const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
      pdeathsigSupport = r.status === 0 && r.stdout.includes('--pdeathsig');
    }
  }
  return pdeathsigSupport ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

function spawnTracked(command, args, { tempDir, logFile, keepTemp, env, afterExit }) {
  const prefix = deathSignalPrefix();
  const argv = [...prefix, command, ...args];
  const out = fs.openSync(logFile, 'a');
  const child = spawn(/** @type {string} */ (argv[0]), argv.slice(1), {
    cwd: tempDir,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...env },
  });
  fs.closeSync(out);
  const entry = { child, tempDir, keepTemp };
  track(entry);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  }).then((result) => {
    afterExit?.(result);
    return result;
  });
  return { child, entry, exited };
}

async function stopTracked({ child, entry, exited }) {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), STOP_GRACE_MS);
    });
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  }
  live.delete(entry);
  if (!entry.keepTemp) fs.rmSync(entry.tempDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------
// Helpers

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n').trimEnd();
  } catch {
    return '(no log)';
  }
}

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Runs a command to completion; rejects with its last output lines when it fails. */
function run(command, args, what) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks = [];
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    child.once('error', (err) => {
      const hint = /** @type {NodeJS.ErrnoException} */ (err).code === 'ENOENT' ? ` (is ${command} installed and on PATH?)` : '';
      reject(new Error(`${what}: cannot run ${command}${hint}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      const output = Buffer.concat(chunks).toString('utf8');
      if (code === 0) resolve(output);
      else {
        const last = output.trim().split('\n').slice(-40).join('\n');
        reject(new Error(`${what}: ${command} ${args.join(' ')} exited with ${code ?? signal}\n${last}`));
      }
    });
  });
}

function mvn(args, what) {
  return run('mvn', ['-q', '-B', '-Dstyle.color=never', '-f', pomFile, ...args], what);
}

/** Where downloads are kept between runs: <repo>/.cache, or KILLSWITCH_CACHE_DIR. */
function cacheRoot() {
  return process.env.KILLSWITCH_CACHE_DIR ? path.resolve(process.env.KILLSWITCH_CACHE_DIR) : path.join(repoRoot, '.cache');
}

/**
 * Fills `finalDir` once, atomically: work happens in a sibling temp dir that is renamed into place,
 * so concurrent callers and interrupted downloads never see a half-filled cache. Work dirs of
 * processes that died are removed.
 */
async function fillCacheDir(finalDir, fill) {
  if (fs.existsSync(path.join(finalDir, '.complete'))) return;
  const parent = path.dirname(finalDir);
  fs.mkdirSync(parent, { recursive: true });
  const prefix = `${path.basename(finalDir)}.tmp-`;
  for (const name of fs.readdirSync(parent)) {
    const pid = name.startsWith(prefix) ? Number(/^(\d+)-/.exec(name.slice(prefix.length))?.[1]) : NaN;
    if (Number.isInteger(pid) && !pidAlive(pid)) fs.rmSync(path.join(parent, name), { recursive: true, force: true });
  }
  const work = fs.mkdtempSync(path.join(parent, `${prefix}${process.pid}-`));
  try {
    await fill(work);
    fs.writeFileSync(path.join(work, '.complete'), new Date().toISOString());
    if (fs.existsSync(finalDir) && !fs.existsSync(path.join(finalDir, '.complete'))) {
      fs.rmSync(finalDir, { recursive: true, force: true });
    }
    try {
      fs.renameSync(work, finalDir);
    } catch (err) {
      // Someone else finished first: theirs is as good as ours.
      if (!fs.existsSync(path.join(finalDir, '.complete'))) throw err;
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function javaVersionOf(home) {
  const release = readText(path.join(home, 'release'));
  const match = /^JAVA_VERSION="(\d+)(?:\.(\d+))?/m.exec(release);
  if (!match) return 0;
  const major = Number(match[1]);
  return major === 1 ? Number(match[2]) : major; // 1.8 -> 8
}

function javaHomeOnPath() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'java');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return path.dirname(path.dirname(fs.realpathSync(candidate)));
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A `java` binary of at least `minMajor`: the explicit one, then the one on PATH / JAVA_HOME, then
 * the newest JDK under /usr/lib/jvm (Debian) or /opt/java.
 */
export function findJava(minMajor, explicit) {
  if (explicit) return explicit;
  const homes = [javaHomeOnPath(), process.env.JAVA_HOME].filter((h) => h !== undefined && h !== '');
  for (const root of ['/usr/lib/jvm', '/opt/java', '/Library/Java/JavaVirtualMachines']) {
    let names;
    try {
      names = fs.readdirSync(root);
    } catch {
      continue;
    }
    const found = names
      .map((name) => {
        const home = path.join(root, name);
        return fs.existsSync(path.join(home, 'Contents', 'Home')) ? path.join(home, 'Contents', 'Home') : home;
      })
      .map((home) => ({ home, version: javaVersionOf(home) }))
      .sort((a, b) => b.version - a.version);
    homes.push(...found.map((f) => f.home));
  }
  for (const home of homes) {
    if (javaVersionOf(home) >= minMajor && fs.existsSync(path.join(home, 'bin', 'java'))) {
      return path.join(home, 'bin', 'java');
    }
  }
  throw new Error(`no Java ${minMajor}+ found (looked at PATH, JAVA_HOME, /usr/lib/jvm, /opt/java); install one or pass options.java`);
}

function javaMajorAndBuild(javaBin) {
  const home = path.dirname(path.dirname(fs.realpathSync(javaBin)));
  const build = /^JAVA_RUNTIME_VERSION="([^"]+)"/m.exec(readText(path.join(home, 'release')))?.[1] ?? 'unknown';
  return { major: javaVersionOf(home), build: build.replace(/[^A-Za-z0-9._-]/g, '_') };
}

/**
 * Application class-data sharing (JDK 13+), which cuts JVM start time by a third: the first run
 * records the classes it loads into a private archive file when the JVM exits cleanly; that file is
 * then renamed into the cache, and later runs map it. The archive is per JDK build, since a JDK
 * rejects archives of another build. KAFKA_NO_CDS=1 turns it off.
 * @returns {{ args: string[], done: (result: { code: number | null, signal: string | null }) => void }}
 */
function classDataSharing(cacheDir, name, javaBin) {
  const off = { args: [], done: () => {} };
  if (process.env.KAFKA_NO_CDS === '1') return off;
  let jdk;
  try {
    jdk = javaMajorAndBuild(javaBin);
  } catch {
    return off;
  }
  if (jdk.major < 17) return off;
  const quiet = ['-Xlog:cds=off', '-Xlog:cds+dynamic=off'];
  const archive = path.join(cacheDir, `${name}-jdk-${jdk.build}.jsa`);
  // Pending archives of runs that were killed before their JVM exited cleanly.
  for (const file of fs.readdirSync(cacheDir)) {
    const pid = file.startsWith(`${path.basename(archive)}.tmp-`) ? Number(/\.tmp-(\d+)-/.exec(file)?.[1]) : NaN;
    if (Number.isInteger(pid) && !pidAlive(pid)) fs.rmSync(path.join(cacheDir, file), { force: true });
  }
  if (fs.existsSync(archive)) return { args: [`-XX:SharedArchiveFile=${archive}`, ...quiet], done: () => {} };
  const pending = `${archive}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  return {
    args: [`-XX:ArchiveClassesAtExit=${pending}`, ...quiet],
    done: ({ signal }) => {
      try {
        if (signal === null && fs.statSync(pending).size > 0 && !fs.existsSync(archive)) fs.renameSync(pending, archive);
      } catch {
        // no archive this time
      }
      fs.rmSync(pending, { force: true });
    },
  };
}

async function waitUntil(what, logFile, exited, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let exit;
  void exited.then((e) => {
    exit = e;
  });
  for (;;) {
    if (exit) {
      const how = exit.error ? exit.error.message : `code ${exit.code}, signal ${exit.signal}`;
      throw new Error(`${what} exited during startup (${how}). Last log lines (${logFile}):\n${tail(logFile)}`);
    }
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(`${what} not ready after ${timeoutMs / 1000} s. Last log lines (${logFile}):\n${tail(logFile)}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------
// Kafka

/** Copies the broker's jars from Maven Central (through ~/.m2) into .cache/kafka/<version>/libs once. */
export async function ensureKafkaLibs(version = KAFKA_VERSION) {
  const libs = path.join(cacheRoot(), 'kafka', version, 'libs');
  await fillCacheDir(libs, async (work) => {
    await mvn(['dependency:copy-dependencies', `-Dkafka.version=${version}`, `-DoutputDirectory=${work}`],
      `fetching Kafka ${version} jars from Maven Central`);
  });
  return libs;
}

/**
 * A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, like `kafka-storage
 * random-uuid`, which (like this) never starts with '-' so it cannot be taken for a command-line flag.
 */
function randomClusterId() {
  for (;;) {
    const id = crypto.randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function kafkaLog4j(level) {
  return [
    'status = warn',
    'appender.out.type = Console',
    'appender.out.name = STDOUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    `rootLogger.level = ${level}`,
    'rootLogger.appenderRef.out.ref = STDOUT',
    // Always logged, whatever the level: the readiness line and the broker's own start/stop story.
    'logger.server.name = kafka.server.KafkaRaftServer',
    'logger.server.level = INFO',
    'logger.kafka.name = kafka.Kafka',
    'logger.kafka.level = INFO',
    // Noisy on every run and harmless for a single node.
    'logger.state.name = state.change.logger',
    'logger.state.level = ERROR',
    '',
  ].join('\n');
}

function serverProperties({ brokerPort, controllerPort, dataDir, extra }) {
  const props = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    'listeners': `PLAINTEXT://127.0.0.1:${brokerPort},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${brokerPort}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': dataDir,
    'num.partitions': '1',
    'default.replication.factor': '1',
    'min.insync.replicas': '1',
    'auto.create.topics.enable': 'false',
    'delete.topic.enable': 'true',
    // Every internal topic on one replica; fewer partitions so the first group / transaction is quick.
    'offsets.topic.replication.factor': '1',
    'offsets.topic.num.partitions': '10',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'transaction.state.log.num.partitions': '10',
    'share.coordinator.state.topic.replication.factor': '1',
    'share.coordinator.state.topic.min.isr': '1',
    'group.initial.rebalance.delay.ms': '0',
    // Lets tests use short session timeouts so a killed consumer leaves its group quickly.
    'group.min.session.timeout.ms': '1000',
    // Quick clean shutdown of a single node.
    'controlled.shutdown.enable': 'true',
    ...extra,
  };
  return Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
}

/**
 * Proves the broker answers a client and creates its internal topics now, so the first test's
 * transaction or consumer group does not pay for them (nor log "coordinator loading" retries):
 * an admin lists topics, a transactional producer initialises (__transaction_state) and an empty
 * group is described (__consumer_offsets). Uses kafkajs from node_modules when it is installed.
 */
async function warmUp(brokers, logFile, timeoutMs) {
  let kafkajs;
  try {
    kafkajs = await import('kafkajs');
  } catch {
    return; // no client available: the log line and the open port have to do
  }
  const { Kafka, logLevel } = kafkajs.default ?? kafkajs;
  const kafka = new Kafka({
    clientId: 'cluster-mjs-warm-up',
    brokers: [brokers],
    logLevel: logLevel.NOTHING,
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const admin = kafka.admin();
  const producer = kafka.producer({ transactionalId: `warm-up-${crypto.randomUUID()}`, idempotent: true, maxInFlightRequests: 1 });
  let timer;
  const work = (async () => {
    await admin.connect();
    await admin.listTopics();
    await producer.connect();
    const tx = await producer.transaction();
    await tx.abort();
    await admin.describeGroups([`warm-up-${crypto.randomUUID()}`]);
  })();
  try {
    await Promise.race([work, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    })]);
  } catch (err) {
    throw new Error(`Kafka broker ${brokers} started but does not serve clients: ${err instanceof Error ? err.message : String(err)}\n` +
      `Last log lines (${logFile}):\n${tail(logFile)}`, { cause: err });
  } finally {
    clearTimeout(timer);
    work.catch(() => {});
    await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
  }
}

/**
 * Starts a single-node KRaft broker on free loopback ports.
 * @param {{ version?: string, port?: number, controllerPort?: number, java?: string,
 *   timeoutMs?: number, logLevel?: string, keepTemp?: boolean, heap?: string,
 *   serverProperties?: Record<string, string>, warmUp?: boolean }} [options]
 * @returns {Promise<{ brokers: string, port: number, logFile: string, tempDir: string, stop: () => Promise<void> }>}
 */
export async function startKafka(options = {}) {
  const version = options.version ?? KAFKA_VERSION;
  const timeoutMs = options.timeoutMs ?? READY_TIMEOUT_MS;
  const java = findJava(17, options.java);
  const t0 = Date.now();
  const libs = await ensureKafkaLibs(version);
  const fetchMs = Date.now() - t0;
  const classpath = path.join(libs, '*');

  let lastError;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const tempDir = makeTempDir('kafka');
    const keepTemp = options.keepTemp ?? process.env.KAFKA_KEEP_TEMP === '1';
    const logFile = path.join(tempDir, 'kafka.log');
    const brokerPort = options.port ?? (await freePort());
    let controllerPort = options.controllerPort ?? (await freePort());
    while (controllerPort === brokerPort) controllerPort = await freePort();
    const dataDir = path.join(tempDir, 'data');
    const propsFile = path.join(tempDir, 'server.properties');
    const log4jFile = path.join(tempDir, 'log4j2.properties');
    fs.writeFileSync(propsFile, serverProperties({ brokerPort, controllerPort, dataDir, extra: options.serverProperties ?? {} }));
    fs.writeFileSync(log4jFile, kafkaLog4j(options.logLevel ?? process.env.KAFKA_LOG_LEVEL ?? 'WARN'));
    const jvm = [
      `-Xms256m`, `-Xmx${options.heap ?? '1g'}`,
      '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-XX:+ExplicitGCInvokesConcurrent',
      '-Djava.awt.headless=true',
      `-Djava.io.tmpdir=${tempDir}`,
      `-Dlog4j2.configurationFile=${log4jFile}`,
      `-Dkafka.logs.dir=${tempDir}`,
      '-cp', classpath,
    ];

    const cacheDir = path.dirname(libs);
    const formatCds = classDataSharing(cacheDir, 'storage-tool', java);
    const t1 = Date.now();
    try {
      await run(java, [...formatCds.args, ...jvm, 'kafka.tools.StorageTool', 'format', '--config', propsFile, '--cluster-id', randomClusterId()],
        'formatting Kafka storage');
      formatCds.done({ code: 0, signal: null });
    } catch (err) {
      formatCds.done({ code: 1, signal: 'failed' });
      throw err; // the temp dir stays for a look at server.properties; a later start removes it
    }

    const cds = classDataSharing(cacheDir, 'broker', java);
    const formatMs = Date.now() - t1;
    const deadline = Date.now() + timeoutMs;
    const proc = spawnTracked(java, [...cds.args, ...jvm, 'kafka.Kafka', propsFile],
      { tempDir, logFile, keepTemp, env: {}, afterExit: cds.done });
    const stop = () => stopTracked(proc);
    try {
      await waitUntil(`Kafka broker on 127.0.0.1:${brokerPort}`, logFile, proc.exited, timeoutMs,
        async () => readText(logFile).includes('Kafka Server started') && (await canConnect(brokerPort)));
      const startMs = Date.now() - deadline + timeoutMs;
      const t2 = Date.now();
      if (options.warmUp !== false) await warmUp(`127.0.0.1:${brokerPort}`, logFile, Math.max(10_000, deadline - Date.now()));
      const timings = { fetchMs, formatMs, startMs, warmUpMs: Date.now() - t2, totalMs: Date.now() - t0 };
      return { brokers: `127.0.0.1:${brokerPort}`, port: brokerPort, logFile, tempDir, stop, timings };
    } catch (err) {
      const bindClash = /Address already in use/.test(readText(logFile));
      const retry = bindClash && options.port === undefined;
      // Keep the log of a real failure (the error names it); a later start removes it once we are gone.
      if (!retry) proc.entry.keepTemp = true;
      await stop();
      lastError = err;
      // A free port can be taken between our probe and the broker's bind; try other ports.
      if (!retry) throw err;
    }
  }
  throw lastError;
}

// ---------------------------------------------------------------------------------------------------
// Apicurio Registry

/** Unpacks io.apicurio:apicurio-registry-app:<version>:tar.gz:all into .cache/apicurio/<version>/app once. */
export async function ensureApicurio(version = APICURIO_VERSION) {
  const dir = path.join(cacheRoot(), 'apicurio', version, 'app');
  await fillCacheDir(dir, async (work) => {
    const what = `fetching Apicurio Registry ${version} from Maven Central`;
    await mvn(['dependency:copy', `-Dartifact=io.apicurio:apicurio-registry-app:${version}:tar.gz:all`, `-DoutputDirectory=${work}`], what);
    const tarball = fs.readdirSync(work).find((f) => f.endsWith('.tar.gz'));
    if (!tarball) throw new Error(`${what}: no tarball was copied`);
    await run('tar', ['-xzf', path.join(work, tarball), '-C', work], `${what}: unpacking`);
    fs.rmSync(path.join(work, tarball));
    if (!fs.existsSync(path.join(work, 'quarkus-run.jar'))) throw new Error(`${what}: quarkus-run.jar missing from the tarball`);
  });
  return dir;
}

/**
 * Starts Apicurio Registry (in-memory storage) on a free loopback port.
 * @param {{ version?: string, port?: number, java?: string, timeoutMs?: number, keepTemp?: boolean }} [options]
 * @returns {Promise<{ url: string, port: number, logFile: string, tempDir: string, stop: () => Promise<void> }>}
 */
export async function startSchemaRegistry(options = {}) {
  const version = options.version ?? APICURIO_VERSION;
  const timeoutMs = options.timeoutMs ?? READY_TIMEOUT_MS;
  const [major, minor] = version.split('.').map(Number);
  const java = findJava((major ?? 3) > 3 || ((major ?? 3) === 3 && (minor ?? 0) >= 2) ? 21 : 17, options.java);
  const t0 = Date.now();
  const appDir = await ensureApicurio(version);
  const fetchMs = Date.now() - t0;

  let lastError;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const tempDir = makeTempDir('apicurio');
    const keepTemp = options.keepTemp ?? process.env.KAFKA_KEEP_TEMP === '1';
    const logFile = path.join(tempDir, 'apicurio.log');
    const port = options.port ?? (await freePort());
    let managementPort = await freePort();
    while (managementPort === port) managementPort = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const cds = classDataSharing(path.dirname(appDir), 'registry', java);
    const args = [
      ...cds.args,
      '-Xms128m', '-Xmx768m', '-XX:TieredStopAtLevel=1',
      `-Djava.io.tmpdir=${tempDir}`,
      `-Dvertx.cacheDirBase=${path.join(tempDir, 'vertx')}`,
      `-Dquarkus.http.host=127.0.0.1`,
      `-Dquarkus.http.port=${port}`,
      // The management interface (health, metrics) is built in; keep it on loopback and off 9000.
      `-Dquarkus.management.host=127.0.0.1`,
      `-Dquarkus.management.port=${managementPort}`,
      '-Dquarkus.http.access-log.enabled=false',
      '-Dquarkus.otel.sdk.disabled=true',
      '-Dquarkus.banner.enabled=false',
      '-Dquarkus.log.category."io.apicurio".level=WARN',
      `-Dapicurio.storage.snapshot.location=${tempDir}`,
      `-Dapicurio.import.work-dir=${tempDir}`,
      '-jar', path.join(appDir, 'quarkus-run.jar'),
    ];
    const t1 = Date.now();
    const proc = spawnTracked(java, args, { tempDir, logFile, keepTemp, env: {}, afterExit: cds.done });
    const stop = () => stopTracked(proc);
    try {
      await waitUntil(`Apicurio Registry on ${base}`, logFile, proc.exited, timeoutMs, async () => {
        try {
          const res = await fetch(`${base}/apis/ccompat/v7/subjects`, { signal: AbortSignal.timeout(2000) });
          await res.arrayBuffer();
          return res.status === 200;
        } catch {
          return false;
        }
      });
      const timings = { fetchMs, startMs: Date.now() - t1, totalMs: Date.now() - t0 };
      return { url: `${base}/apis/ccompat/v7`, port, logFile, tempDir, stop, timings };
    } catch (err) {
      const bindClash = /Address already in use|Port already bound|seems to be in use/i.test(readText(logFile));
      const retry = bindClash && options.port === undefined;
      if (!retry) proc.entry.keepTemp = true;
      await stop();
      lastError = err;
      if (!retry) throw err;
    }
  }
  throw lastError;
}

// ---------------------------------------------------------------------------------------------------
// kcat

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Returns the path of `kcat`, installing the Debian package when it is missing (needs root). */
export function ensureKcat() {
  const found = onPath('kcat');
  if (found) return found;
  const howTo = 'install it with `apt-get install kcat` (Debian/Ubuntu) or your package manager';
  if (!onPath('apt-get')) throw new Error(`kcat is not on PATH and apt-get is not available: ${howTo}`);
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(`kcat is not on PATH and installing it needs root: ${howTo}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'kcat']]) {
    const r = spawnSync('apt-get', args, { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) {
      const output = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
      throw new Error(`kcat is not on PATH and \`apt-get ${args.join(' ')}\` failed (${r.error?.message ?? `exit ${r.status}`}):\n${output}`);
    }
  }
  const installed = onPath('kcat');
  if (!installed) throw new Error(`apt-get installed kcat but it is not on PATH: ${howTo}`);
  return installed;
}

// ---------------------------------------------------------------------------------------------------
// CLI: node scripts/kafka/cluster.mjs start

async function main(argv) {
  const command = argv[0];
  if (command !== 'start') {
    process.stderr.write('usage: node scripts/kafka/cluster.mjs start\n' +
      '  env: KAFKA_PORT, SCHEMA_REGISTRY_PORT (fixed ports), KAFKA_LOG_LEVEL, KAFKA_KEEP_TEMP=1\n');
    process.exitCode = 2;
    return;
  }
  const envPort = (name) => (process.env[name] ? Number(process.env[name]) : undefined);
  const started = Date.now();
  const kafkaPort = envPort('KAFKA_PORT');
  const registryPort = envPort('SCHEMA_REGISTRY_PORT');
  const results = await Promise.allSettled([
    startKafka(kafkaPort === undefined ? {} : { port: kafkaPort }),
    startSchemaRegistry(registryPort === undefined ? {} : { port: registryPort }),
  ]);
  const running = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  if (failures.length > 0) {
    await Promise.all(running.map((r) => r.stop()));
    for (const f of failures) process.stderr.write(`${f instanceof Error ? f.message : String(f)}\n`);
    process.exitCode = 1;
    return;
  }
  const [kafka, registry] = /** @type {[any, any]} */ (running);
  process.stdout.write(`KAFKA_BROKERS=${kafka.brokers}\nSCHEMA_REGISTRY_URL=${registry.url}\n`);
  process.stderr.write(`# started in ${((Date.now() - started) / 1000).toFixed(1)} s ` +
    `(kafka ${JSON.stringify(kafka.timings)}, registry ${JSON.stringify(registry.timings)})\n` +
    `# logs: ${kafka.logFile} ${registry.logFile}\n` +
    '# Ctrl-C stops both.\n');

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`# ${signal}: stopping\n`);
    await Promise.all([kafka.stop(), registry.stop()]);
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void shutdown('SIGHUP'));
  // Stay in the foreground; also notice if a child dies on its own.
  const keepAlive = setInterval(() => {
    for (const { child } of live) {
      if (child.exitCode !== null || child.signalCode !== null) {
        process.stderr.write(`# a child process exited unexpectedly (see logs above); stopping\n`);
        void shutdown('child exit');
        return;
      }
    }
  }, 1000);
  void keepAlive;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
