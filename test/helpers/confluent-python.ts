/**
 * confluent-kafka for Python in a virtualenv under .cache/python-venv, installed by the test that needs
 * it (pip, from PyPI) when it is missing; anything that cannot be installed or run fails the test with
 * the command and its output, never skips it. The venv may hold other tests' packages too: this only
 * adds its own.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from './cli.js';

export const PYTHON_VENV = join(ROOT, '.cache', 'python-venv');
const PACKAGES = ['confluent-kafka[avro,json]==2.16.1'];
const PRODUCER = join(ROOT, 'test', 'helpers', 'confluent_producer.py');

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000 });
  const out = `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error === undefined ? '' : `\n${r.error.message}`}`.trim();
  return { ok: r.status === 0 && r.error === undefined, out };
}

/**
 * Test files run in parallel processes, and two of them need this venv: on a clean machine one makes it
 * while the other waits (a directory as the lock, atomic to create; one older than 10 minutes is left
 * from a killed run and is taken over).
 */
function withVenvLock<T>(fn: () => T): T {
  const lock = `${PYTHON_VENV}.lock`;
  mkdirSync(dirname(lock), { recursive: true });
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = lockAge(lock);
      if (age === undefined) continue; // released meanwhile
      if (age > 10 * 60_000) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`waited 15 minutes for ${lock}`, { cause: err });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function lockAge(lock: string): number | undefined {
  try {
    return Date.now() - statSync(lock).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The venv's python, with confluent-kafka's Avro and JSON Schema serializers importable. */
export function ensureConfluentPython(): string {
  const python = join(PYTHON_VENV, 'bin', 'python');
  const probe = ['-c', 'import confluent_kafka, fastavro, jsonschema; from confluent_kafka.schema_registry.avro import AvroSerializer; import importlib.metadata as m; assert m.version("confluent-kafka") == "2.16.1"'];
  if (existsSync(python) && run(python, probe).ok) return python;
  return withVenvLock(() => installConfluentPython(python, probe));
}

function installConfluentPython(python: string, probe: string[]): string {
  if (existsSync(python) && run(python, probe).ok) return python; // made by another test while this one waited
  if (!existsSync(python)) {
    const venv = run('python3', ['-m', 'venv', PYTHON_VENV]);
    if (!venv.ok) throw new Error(`\`python3 -m venv ${PYTHON_VENV}\` failed (needs python3 with venv):\n${venv.out}`);
  }
  const pip = run(join(PYTHON_VENV, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--no-input', '--quiet', ...PACKAGES]);
  if (!pip.ok) throw new Error(`\`pip install ${PACKAGES.join(' ')}\` into ${PYTHON_VENV} failed (needs PyPI):\n${pip.out.slice(-4000)}`);
  const check = run(python, probe);
  if (!check.ok) throw new Error(`confluent-kafka for Python does not import after pip install:\n${check.out}`);
  return python;
}

/**
 * Produces NDJSON decisions with test/helpers/confluent_producer.py; returns the schema id it registered.
 * Asynchronous, so a processor started by the same test keeps having its output read meanwhile.
 */
export async function produceWithConfluentPython(o: {
  python: string; brokers: string; registry: string; topic: string; format: 'avro' | 'json'; schemaFile: string; subject: string; decisions: readonly string[];
}): Promise<number> {
  const args = [PRODUCER, '--bootstrap', o.brokers, '--registry', o.registry, '--topic', o.topic, '--format', o.format, '--schema', o.schemaFile, '--subject', o.subject];
  const child = spawn(o.python, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
    child.stdin.end(o.decisions.join('\n') + '\n');
  }).finally(() => clearTimeout(timer));
  if (code !== 0) throw new Error(`confluent_producer.py (${o.format}) exited with ${code}:\n${stdout}\n${stderr}`);
  const last = JSON.parse(stdout.trim().split('\n').pop()!) as { produced: number; schema_id: number };
  if (last.produced !== o.decisions.length) throw new Error(`confluent_producer.py produced ${last.produced} of ${o.decisions.length}`);
  return last.schema_id;
}
