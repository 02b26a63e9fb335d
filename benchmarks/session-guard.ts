/**
 * Issue #5 figures: `guard.check()` per second with 1M blocked identities (and how long the guard takes
 * to read and verify that ledger), and the time from a kill event being committed on the Kafka kills
 * topic to the guard refusing, p50 and p99.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Kafka, logLevel } from 'kafkajs';
import { canonicalJson } from '../src/core/canonical-json.js';
import { buildKillEvent } from '../src/core/documents.js';
import { Ed25519Signer } from '../src/adapters/signing/ed25519-signer.js';
import { generateSigningKey, jwksDocument, loadSigningKey } from '../src/adapters/signing/keys.js';
import { createLogger } from '../src/adapters/log/logger.js';
import { createSessionGuard } from '../src/session/index.js';
import { BlockTable } from '../src/session/block-table.js';
import type * as Cluster from '../scripts/kafka/cluster.mjs';
import { mulberry32, report } from './util.js';

const BLOCKED = Number(process.env.GUARD_BENCH_BLOCKED ?? 1_000_000);
const CHECK_ROUNDS = 8;
const PROPAGATION_EVENTS = 400;
const PROPAGATION_RATE_PER_S = 20;
const KS = { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 };

/** compiled to dist/benchmarks: the repository's .cache */
const CACHE = fileURLToPath(new URL('../../.cache/bench', import.meta.url));

const agent = (i: number): string => `spiffe://bench.example/ns/prod/sa/agent-${i}`;

function killLine(signer: Ed25519Signer, agentId: string): string {
  return canonicalJson(signer.sign(buildKillEvent({
    action: 'block', agentId, epoch: 1, trigger: 'operator', at: '2026-11-23T09:00:00.000Z', reason: 'bench', authorizedBy: 'bench', killSwitch: KS,
  }), false));
}

// worker: sign a slice of the ledger into a file of its own (signing is the slow part of building a 1M-entry ledger)
if (!isMainThread && (workerData as { role?: string } | null)?.role === 'sign') {
  const { pem, from, to, out } = workerData as { pem: string; from: number; to: number; out: string };
  const { createPrivateKey } = await import('node:crypto');
  const { jwkThumbprint, publicJwk } = await import('../src/adapters/signing/keys.js');
  const privateKey = createPrivateKey(pem);
  const jwk = publicJwk(privateKey);
  const signer = new Ed25519Signer({ kid: jwkThumbprint(jwk), privateKey, jwk });
  writeFileSync(out, '');
  for (let i = from; i < to; i += 10_000) {
    const lines: string[] = [];
    for (let j = i; j < Math.min(to, i + 10_000); j++) lines.push(killLine(signer, agent(j)));
    appendFileSync(out, lines.join('\n') + '\n');
  }
  parentPort!.postMessage('done');
}

/** Sign the ledger with two worker threads, each into a part file, then join the parts into `file`. */
async function signedLedger(pem: string, n: number, file: string): Promise<void> {
  const half = Math.floor(n / 2);
  const parts = [[0, half], [half, n]].map(([from, to], k) => ({ from: from!, to: to!, out: `${file}.part${k}` }));
  await Promise.all(parts.map((p) => new Promise<void>((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { role: 'sign', pem, ...p } });
    let done = false;
    w.once('message', () => {
      done = true;
      resolve();
    });
    w.once('error', reject);
    w.once('exit', (code) => {
      if (!done) reject(new Error(`signing worker exited with ${code} before finishing`));
    });
  })));
  writeFileSync(file, '');
  for (const p of parts) {
    appendFileSync(file, readFileSync(p.out));
    rmSync(p.out);
  }
}

/**
 * Query texts laid out once, handed out as new string objects each round, as an HTTP parser makes a
 * header value: flat one-byte strings with no hash cached yet, allocated in query order. (Reusing the
 * same string objects every round, as the first rows do, lets V8 keep each string's hash from the round
 * before; `slice(0)` returns the very same string.)
 */
class FreshQueries {
  private readonly text: Buffer;
  private readonly ends: Uint32Array;
  constructor(queries: readonly string[]) {
    this.text = Buffer.from(queries.join(''), 'latin1');
    this.ends = new Uint32Array(queries.length);
    let o = 0;
    for (let i = 0; i < queries.length; i++) this.ends[i] = o += queries[i]!.length;
  }
  get length(): number {
    return this.ends.length;
  }
  make(): string[] {
    const out = new Array<string>(this.ends.length);
    let from = 0;
    for (let i = 0; i < this.ends.length; i++) {
      const to = this.ends[i]!;
      out[i] = this.text.toString('latin1', from, to);
      from = to;
    }
    return out;
  }
}

interface Rates { first: number; median: number; best: number; cpuMedian: number; refused: number }

/**
 * `refusals` (one loop over the queries, returning how many were refused; written out at each call
 * site so that each loop's call is monomorphic) over new string objects each round: wall-clock rate
 * (first, median of rounds 3..8, best) and the rate per CPU-second of this thread.
 */
function measureFresh(queries: FreshQueries, refusals: (qs: readonly string[]) => number): Rates {
  const wall: number[] = [];
  const cpu: number[] = [];
  let refused = 0;
  for (let round = 0; round < CHECK_ROUNDS; round++) {
    const qs = queries.make();
    const c0 = process.cpuUsage();
    const s = performance.now();
    refused = refusals(qs);
    const seconds = (performance.now() - s) / 1000;
    const c = process.cpuUsage(c0);
    wall.push(qs.length / seconds);
    cpu.push(qs.length / ((c.user + c.system) / 1e6));
  }
  const med = (xs: number[]): number => xs.slice(2).sort((a, b) => a - b)[Math.floor((CHECK_ROUNDS - 2) / 2)]!;
  return { first: wall[0]!, median: med(wall), best: Math.max(...wall), cpuMedian: med(cpu), refused };
}

const rateLine = (r: Rates): string => `${Math.round(r.median).toLocaleString('en-US')} (first round ${Math.round(r.first).toLocaleString('en-US')}, best ${Math.round(r.best).toLocaleString('en-US')}; per CPU-second ${Math.round(r.cpuMedian).toLocaleString('en-US')}; refused ${r.refused.toLocaleString('en-US')})`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function checkThroughput(): Promise<void> {
  // Under the repository's .cache, not the shared /tmp (a 0.5 GB ledger other cleanups must not remove
  // mid-run), and kept between runs with its key: signing 1M events takes a while.
  const dir = join(CACHE, `guard-ledger-${BLOCKED}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'kills.ndjson');
  const keyFile = join(dir, 'key.pem');
  let signSeconds = 0;
  if (!existsSync(file) || !existsSync(keyFile)) {
    const fresh = generateSigningKey().privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const t0 = performance.now();
    await signedLedger(fresh, BLOCKED, file);
    signSeconds = (performance.now() - t0) / 1000;
    writeFileSync(keyFile, fresh, { mode: 0o600 });
  }
  const key = loadSigningKey(keyFile);

  const t1 = performance.now();
  const guard = createSessionGuard({ ledger: { file }, jwks: jwksDocument([key.jwk]), logger: createLogger('warn') });
  await guard.ready;
  const bootstrapSeconds = (performance.now() - t1) / 1000;
  if (guard.blockedCount !== BLOCKED) throw new Error(`expected ${BLOCKED} blocked, got ${guard.blockedCount}`);

  // queries: half blocked, half never blocked, as strings built apart from the ledger's
  const rnd = mulberry32(5);
  const pool: string[] = [];
  for (let j = 0; j < BLOCKED; j++) pool.push(agent(j), `spiffe://bench.example/ns/prod/sa/other-${j}`);
  const uniform: string[] = [];
  for (let i = 0; i < 2 * BLOCKED; i++) uniform.push(pool[Math.floor(rnd() * pool.length)]!.slice(0)); // fresh string objects
  // Zipf s=1 over the same 2M identities: a few identities open most sessions, as in real traffic
  const harmonic = new Float64Array(pool.length);
  let h = 0;
  for (let k = 0; k < pool.length; k++) harmonic[k] = h += 1 / (k + 1);
  const zipf: string[] = [];
  for (let i = 0; i < 2 * BLOCKED; i++) {
    const u = rnd() * h;
    let lo = 0;
    let hi = pool.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (harmonic[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    zipf.push(pool[lo]!);
  }
  const measure = (queries: readonly string[]): { first: number; median: number; best: number; refused: number } => {
    const rates: number[] = [];
    let refused = 0;
    for (let round = 0; round < CHECK_ROUNDS; round++) {
      refused = 0;
      const s = performance.now();
      for (let i = 0; i < queries.length; i++) if (!guard.check(queries[i]).allowed) refused++;
      rates.push(queries.length / ((performance.now() - s) / 1000));
    }
    const steady = rates.slice(2).sort((a, b) => a - b);
    return { first: rates[0]!, median: steady[Math.floor(steady.length / 2)]!, best: Math.max(...rates), refused };
  };
  const u = measure(uniform);
  const z = measure(zipf);
  // the floor: a bare Map.get over a Map with the same 1M keys, on the same uniform queries
  const bare = new Map<string, number>();
  for (let j = 0; j < BLOCKED; j++) bare.set(agent(j), j);
  const floorRates: number[] = [];
  let found = 0;
  for (let round = 0; round < CHECK_ROUNDS; round++) {
    found = 0;
    const s = performance.now();
    for (let i = 0; i < uniform.length; i++) if (bare.get(uniform[i]!) !== undefined) found++;
    floorRates.push(uniform.length / ((performance.now() - s) / 1000));
  }
  const floor = floorRates.slice(2).sort((a, b) => a - b)[Math.floor((CHECK_ROUNDS - 2) / 2)]!;

  // Fresh strings each round (FreshQueries), three mixes: (a) only blocked identities, (b) most
  // sessions allowed: 1 in 100 queries a blocked identity, the rest never blocked, (c) the Zipf mix
  // above. Beside each, a bare Map.get on the same 1M keys and the same fresh strings.
  const loadBefore = loadavg();
  const onlyBlocked: string[] = [];
  for (let i = 0; i < 2 * BLOCKED; i++) onlyBlocked.push(agent(Math.floor(rnd() * BLOCKED)));
  const mostlyAllowed: string[] = [];
  for (let i = 0; i < 2 * BLOCKED; i++) mostlyAllowed.push(rnd() < 0.01 ? agent(Math.floor(rnd() * BLOCKED)) : `spiffe://bench.example/ns/prod/sa/other-${Math.floor(rnd() * BLOCKED)}`);
  const fresh: Record<string, Rates> = {};
  for (const [name, qs] of [['a', onlyBlocked], ['b', mostlyAllowed], ['c', zipf]] as const) {
    const queries = new FreshQueries(qs);
    fresh[`${name} check`] = measureFresh(queries, (qs) => {
      let r = 0;
      for (let i = 0; i < qs.length; i++) if (!guard.check(qs[i]).allowed) r++;
      return r;
    });
    fresh[`${name} floor`] = measureFresh(queries, (qs) => {
      let r = 0;
      for (let i = 0; i < qs.length; i++) if (bare.get(qs[i]!) !== undefined) r++;
      return r;
    });
  }
  const loadAfter = loadavg();
  await guard.close();
  report(`session guard check(), ${BLOCKED.toLocaleString('en-US')} blocked identities, one thread, queries over 2M identities (half blocked)`, {
    'uniform: check() per second, first round (string hashes not yet cached)': Math.round(u.first),
    'uniform: check() per second, median of rounds 3..8': Math.round(u.median),
    'uniform: check() per second, best round': Math.round(u.best),
    [`uniform: refused per round (of ${uniform.length.toLocaleString('en-US')})`]: u.refused,
    'floor, same uniform queries: a bare Map.get on a Map of the same 1M keys, per second': Math.round(floor),
    'uniform: ratio to the floor': (u.median / floor).toFixed(2),
    [`floor: found per round (of ${uniform.length.toLocaleString('en-US')})`]: found,
    'Zipf s=1: check() per second, median of rounds 3..8': Math.round(z.median),
    'Zipf s=1: check() per second, best round': Math.round(z.best),
    'ledger signed by 2 worker threads (s; 0 = reused from .cache/bench)': signSeconds.toFixed(1),
    'guard bootstrap: read + verify every entry (s)': bootstrapSeconds.toFixed(1),
    'guard bootstrap: entries verified per second': Math.round(BLOCKED / bootstrapSeconds),
  });
  report(`session guard check(), ${BLOCKED.toLocaleString('en-US')} blocked identities, new string objects every round (as read from a header); median of rounds 3..8 per second`, {
    '(a) only blocked identities, uniform: check()': rateLine(fresh['a check']!),
    '(a) floor: bare Map.get, same fresh strings': rateLine(fresh['a floor']!),
    '(b) 1% blocked, 99% never blocked (most sessions allowed): check()': rateLine(fresh['b check']!),
    '(b) floor: bare Map.get, same fresh strings': rateLine(fresh['b floor']!),
    '(c) Zipf s=1 over 2M identities (half blocked): check()': rateLine(fresh['c check']!),
    '(c) floor: bare Map.get, same fresh strings': rateLine(fresh['c floor']!),
    'load average (1, 5, 15 min) before / after these rows': `${loadBefore.map((x) => x.toFixed(2)).join(' ')} / ${loadAfter.map((x) => x.toFixed(2)).join(' ')}`,
  });
  lookAlikeTails();
}

/**
 * The BlockTable alone (check()'s lookup, no guard) on identities that differ only in the middle
 * (`.../ns/team-N/sa/default-service-account`): the tail bits cannot tell them apart, so every
 * query reads the whole string. Mix (b): 1% blocked.
 */
function lookAlikeTails(): void {
  const id = (i: number): string => `spiffe://bench.example/ns/team-${i}/sa/default-service-account`;
  const other = (i: number): string => `spiffe://bench.example/ns/unit-${i}/sa/default-service-account`;
  const table = new BlockTable<{ readonly allowed: false }>();
  const bare = new Map<string, { readonly allowed: false }>();
  for (let i = 0; i < BLOCKED; i++) {
    const refusal = Object.freeze({ allowed: false as const, n: i });
    const k = id(i);
    table.set(k, refusal);
    bare.set(k, refusal);
  }
  const rnd = mulberry32(7);
  const qs: string[] = [];
  for (let i = 0; i < 2 * BLOCKED; i++) qs.push(rnd() < 0.01 ? id(Math.floor(rnd() * BLOCKED)) : other(Math.floor(rnd() * BLOCKED)));
  const queries = new FreshQueries(qs);
  const t = measureFresh(queries, (qs) => {
    let r = 0;
    for (let i = 0; i < qs.length; i++) if (table.get(qs[i]!) !== undefined) r++;
    return r;
  });
  const m = measureFresh(queries, (qs) => {
    let r = 0;
    for (let i = 0; i < qs.length; i++) if (bare.get(qs[i]!) !== undefined) r++;
    return r;
  });
  report(`BlockTable alone, ${BLOCKED.toLocaleString('en-US')} identities alike in their last 16 chars, mix (b), fresh strings; median of rounds 3..8 per second`, {
    'BlockTable.get': rateLine(t),
    'floor: bare Map.get': rateLine(m),
  });
}

async function propagation(): Promise<void> {
  // compiled to dist/benchmarks; the cluster script stays in scripts/
  const cluster = (await import(new URL('../../scripts/kafka/cluster.mjs', import.meta.url).href)) as typeof Cluster;
  const kafka = await cluster.startKafka();
  try {
    const client = new Kafka({ brokers: [kafka.brokers], clientId: 'bench', logLevel: logLevel.NOTHING });
    const topic = 'bench.guard.kills';
    const admin = client.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }], waitForLeaders: true });
    await admin.disconnect();
    const key = generateSigningKey();
    const signer = new Ed25519Signer(key);
    const guard = createSessionGuard({ ledger: { kafka: client, topic }, jwks: jwksDocument([key.jwk]), logger: createLogger('silent') });
    await guard.ready;
    const committedAt = new Map<string, number>();
    const latencies: number[] = [];
    guard.onBlock((b) => {
      const c = committedAt.get(b.agentId);
      if (c !== undefined) latencies.push(performance.now() - c);
    });
    const producer = client.producer({ transactionalId: 'bench-guard', maxInFlightRequests: 1, idempotent: true });
    await producer.connect();
    const gap = 1000 / PROPAGATION_RATE_PER_S;
    for (let i = 0; i < PROPAGATION_EVENTS; i++) {
      const started = performance.now();
      const id = `spiffe://bench.example/propagation/${i}`;
      const tx = await producer.transaction();
      await tx.send({ topic, messages: [{ key: id, value: killLine(signer, id) }] });
      // the clock starts when the commit is acknowledged: from then on the event is readable (read_committed)
      await tx.commit();
      committedAt.set(id, performance.now());
      const left = gap - (performance.now() - started);
      if (left > 0) await new Promise((r) => setTimeout(r, left));
    }
    const deadline = Date.now() + 10_000;
    while (latencies.length < PROPAGATION_EVENTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await producer.disconnect();
    await guard.close();
    if (latencies.length === 0) throw new Error('the guard saw none of the kill events');
    const sorted = [...latencies].sort((a, b) => a - b);
    report(`session guard propagation, Kafka source: kill event committed -> guard refuses (${PROPAGATION_EVENTS} events at ${PROPAGATION_RATE_PER_S}/s)`, {
      'events seen by the guard': `${latencies.length} of ${PROPAGATION_EVENTS}`,
      'p50 (ms)': percentile(sorted, 50).toFixed(1),
      'p99 (ms)': percentile(sorted, 99).toFixed(1),
      'max (ms)': sorted[sorted.length - 1]!.toFixed(1),
    });
  } finally {
    await kafka.stop();
  }
}

export async function run(): Promise<void> {
  await checkThroughput();
  await propagation();
}
