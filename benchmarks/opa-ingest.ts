/**
 * OPA decision logs through the receiver (POST /v1/opa/logs) against the same decisions posted as
 * NDJSON to POST /v1/decisions, in one run of the built CLI in embedded mode (every request appended
 * to data_dir/ingest.ndjson, fsynced, evaluated). OPA-Envoy-shaped events (~1 KB of JSON each: the
 * request's headers, source and destination) in gzip batches of OPA's default upload size (32 KiB
 * compressed), sent one after another as one OPA does; the NDJSON requests carry the same number of
 * decisions each (the mapped decisions, with fresh ids so the evaluator's de-duplication plays no part).
 *
 * The two kinds of request alternate (one upload, then its NDJSON twin), each timed on its own, so a
 * change of load on a shared machine weighs on both alike and the ratio is one of the same moments.
 * Besides the wall-clock rates, the service's CPU time per request of each kind (all its threads, from
 * /proc/PID/task/TID/schedstat, read while it waits for the next request: Linux only) is steadier.
 *
 *   npm run build --silent && node dist/benchmarks/opa-ingest.js
 *
 * Node options given to this script are passed to the service it starts, so `node --cpu-prof
 * --cpu-prof-dir=prof dist/benchmarks/opa-ingest.js` profiles both (the service's file is the larger).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { report } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const EVENTS = Number(process.env.OPA_EVENTS ?? 200_000);
const IDENTITIES = 1000;
/** OPA's decision_logs.reporting.upload_size_limit_bytes default */
const UPLOAD_LIMIT = 32768;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function post(url: string, token: string, body: Buffer, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-length': String(body.length), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 || res.statusCode === 202 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** CPU nanoseconds used so far by all threads of process `pid` (their schedstat), or NaN when not on Linux. */
function cpuNs(pid: number): number {
  const dir = `/proc/${pid}/task`;
  if (!existsSync(dir)) return NaN;
  let ns = 0;
  for (const tid of readdirSync(dir)) {
    try {
      ns += Number(readFileSync(`${dir}/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended since the listing: its time is no longer counted anywhere, for either kind
    }
  }
  return ns;
}

function opaEvent(i: number): Record<string, unknown> {
  const agent = `spiffe://example.org/ns/prod/sa/agent-${i % IDENTITIES}`;
  return {
    labels: { id: '1780d507-aea2-45cc-ae50-fa153c8e4a5a', version: '1.22.4' },
    decision_id: randomUUID(),
    path: 'envoy/authz/allow',
    input: {
      attributes: {
        source: { address: { socketAddress: { address: '10.1.2.3', portValue: 40000 + (i % 20000) } }, principal: agent },
        destination: { address: { socketAddress: { address: '10.4.5.6', portValue: 8443 } }, principal: 'spiffe://example.org/ns/prod/sa/tools' },
        request: {
          time: new Date().toISOString(),
          http: {
            id: String(1e15 + i), method: 'POST', path: `/tools/search?q=${i % 97}`, host: 'tools.prod.svc', protocol: 'HTTP/2',
            headers: { ':authority': 'tools.prod.svc', ':method': 'POST', ':path': `/tools/search?q=${i % 97}`, 'content-type': 'application/json', 'user-agent': 'agent-runtime/2.3', 'x-request-id': randomUUID(), 'x-session-id': `sess-${i % 5000}`, 'x-forwarded-proto': 'https' },
          },
        },
      },
      parsed_path: ['tools', 'search'],
      truncated_body: false,
    },
    result: true,
    timestamp: new Date().toISOString().replace('Z', '000123Z'),
    metrics: { timer_rego_query_eval_ns: 41230, timer_server_handler_ns: 98000 },
  };
}

/** The most events of this shape whose gzip stays within OPA's upload limit. */
function eventsPerUpload(): number {
  let n = 16;
  while (gzipSync(JSON.stringify(Array.from({ length: n * 2 }, (_, i) => opaEvent(i)))).length <= UPLOAD_LIMIT) n *= 2;
  let lo = n;
  let hi = n * 2;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (gzipSync(JSON.stringify(Array.from({ length: mid }, (_, i) => opaEvent(i)))).length <= UPLOAD_LIMIT) lo = mid;
    else hi = mid;
  }
  return lo;
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-opa-'));
  const port = await freePort();
  const token = randomBytes(24).toString('base64url');
  const sha256 = createHash('sha256').update(token).digest('hex');
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({
    kill_switch: { enabled: true }, data_dir: join(dir, 'data'), signing: { allow_unsigned: true }, log: { level: 'error' },
    http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'bench', sha256, roles: ['ingest', 'opa'] }] },
    opa: { paths: ['envoy/authz/allow'] },
  }));
  const child = spawn(process.execPath, [...process.execArgv, CLI, 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const started = Date.now();
  while (!out.includes('serving the operator API')) {
    if (child.exitCode !== null || Date.now() - started > 30_000) throw new Error(`killswitch did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    const url = `http://127.0.0.1:${port}`;
    const per = eventsPerUpload();
    const uploads: { gz: Buffer; json: number; ndjson: Buffer }[] = [];
    for (let i = 0; i < EVENTS; i += per) {
      const events = Array.from({ length: Math.min(per, EVENTS - i) }, (_, k) => opaEvent(i + k));
      const json = JSON.stringify(events);
      // the same decisions as the receiver makes of them, under fresh ids
      const ndjson = events.map((e) => {
        const a = (e.input as { attributes: { source: { principal: string }; request: { http: { path: string } } } }).attributes;
        return JSON.stringify({ decision_id: randomUUID(), agent_id: a.source.principal, decision: 'allow', occurred_at: e.timestamp, policy_rule: e.path, tool_name: a.request.http.path });
      }).join('\n') + '\n';
      uploads.push({ gz: gzipSync(json), json: Buffer.byteLength(json), ndjson: Buffer.from(ndjson) });
    }
    // a short warm-up of both paths (JIT), not counted
    await post(`${url}/v1/opa/logs`, token, gzipSync(JSON.stringify([opaEvent(0)])), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    await post(`${url}/v1/decisions`, token, uploads[0]!.ndjson.subarray(0, uploads[0]!.ndjson.indexOf(0x0a) + 1), { 'content-type': 'application/x-ndjson' });

    const opa = { ms: 0, cpuNs: 0, accepted: 0 };
    const nd = { ms: 0, cpuNs: 0, accepted: 0 };
    const timed = async (into: typeof opa, send: () => Promise<string>): Promise<void> => {
      const cpu = cpuNs(child.pid!);
      const t = performance.now();
      const answer = await send();
      into.ms += performance.now() - t;
      into.cpuNs += cpuNs(child.pid!) - cpu;
      into.accepted += (JSON.parse(answer) as { accepted: number }).accepted;
    };
    for (const u of uploads) {
      await timed(opa, () => post(`${url}/v1/opa/logs`, token, u.gz, { 'content-type': 'application/json', 'content-encoding': 'gzip' }));
      await timed(nd, () => post(`${url}/v1/decisions`, token, u.ndjson, { 'content-type': 'application/x-ndjson' }));
    }
    if (opa.accepted !== EVENTS) throw new Error(`the receiver accepted ${opa.accepted} of ${EVENTS}`);
    if (nd.accepted !== EVENTS) throw new Error(`/v1/decisions accepted ${nd.accepted} of ${EVENTS}`);

    const gzBytes = uploads.reduce((s, u) => s + u.gz.length, 0);
    const jsonBytes = uploads.reduce((s, u) => s + u.json, 0);
    const ndBytes = uploads.reduce((s, u) => s + u.ndjson.length, 0);
    const cpuMs = (k: typeof opa): string => (k.cpuNs / 1e6 / uploads.length).toFixed(2);
    report(`OPA decision logs vs NDJSON, embedded mode, ${EVENTS} decisions, ${IDENTITIES} identities, ${uploads.length} requests of ${per} decisions each way, alternating, one at a time`, {
      'POST /v1/opa/logs events/s': Math.round(EVENTS / (opa.ms / 1000)),
      'POST /v1/opa/logs gzip KiB per request': (gzBytes / uploads.length / 1024).toFixed(1),
      'POST /v1/opa/logs JSON KiB per request (decompressed)': (jsonBytes / uploads.length / 1024).toFixed(1),
      'POST /v1/opa/logs ms per request': (opa.ms / uploads.length).toFixed(2),
      'POST /v1/opa/logs service CPU ms per request': cpuMs(opa),
      'POST /v1/decisions (NDJSON) decisions/s': Math.round(EVENTS / (nd.ms / 1000)),
      'POST /v1/decisions NDJSON KiB per request': (ndBytes / uploads.length / 1024).toFixed(1),
      'POST /v1/decisions ms per request': (nd.ms / uploads.length).toFixed(2),
      'POST /v1/decisions service CPU ms per request': cpuMs(nd),
      'ratio of rates (OPA / NDJSON)': (nd.ms / opa.ms).toFixed(2),
      'ratio of service CPU per decision (NDJSON / OPA)': (nd.cpuNs / opa.cpuNs).toFixed(2),
    });
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
