/** Run the built `killswitch` CLI as a user would: a real process, real files, real stdout/stderr. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `timeoutMs`: a command that hangs is killed and reported as such (a synchronous wait is beyond any test timeout). */
export function runCli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
    cwd: options.cwd ?? ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const }),
  });
  if (r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
    return { status: null, stdout: r.stdout, stderr: `${r.stderr}\n(killed: no answer within ${options.timeoutMs} ms)` };
  }
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function startCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ReturnType<typeof spawn> {
  return spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, cwd: options.cwd ?? ROOT, stdio: 'pipe' });
}

export interface LoggedCli {
  readonly child: ReturnType<typeof spawn>;
  /** stdout and stderr so far, interleaved */
  readonly log: () => string;
  /** SIGTERM (SIGKILL after 30 s: a process that does not stop is a failure the caller sees, not a hang); resolves with the exit code */
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** A long-running CLI process whose output is collected. */
export function startLogged(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): LoggedCli {
  const child = startCli(args, options);
  let log = '';
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    log: () => log,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export function tempDir(prefix = 'killswitch-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Write a file into `dir` and return its path. */
export function writeIn(dir: string, name: string, content: string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** A config file with the given kill_switch block (enabled unless said otherwise) and data_dir in `dir`. */
export function configFile(dir: string, killSwitch: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): string {
  const cfg = { kill_switch: { enabled: true, ...killSwitch }, data_dir: join(dir, 'data'), log: { level: 'warn' }, ...extra };
  return writeIn(dir, 'config.json', JSON.stringify(cfg, null, 2));
}

/** A config whose run signs with a key generated into `dir/keys` (`killswitch keys generate`). */
export function signedConfigFile(dir: string, killSwitch: Record<string, unknown> = {}): string {
  const keys = join(dir, 'keys');
  const r = runCli(['keys', 'generate', '--out', keys, '--if-missing']);
  if (r.status !== 0) throw new Error(`keys generate failed: ${r.stderr}`);
  return configFile(dir, killSwitch, { signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') } });
}

export const T0 = Date.UTC(2026, 10, 23, 9, 0, 0);

let seq = 0;
/** One decision line; `at` is seconds after T0 (fractions allowed). */
export function decision(agent: string | null, verdict: string, at: number, extra: Record<string, unknown> = {}): string {
  seq++;
  return JSON.stringify({
    decision_id: `dec-${seq}`,
    ...(agent === null ? {} : { agent_id: agent }),
    decision: verdict,
    occurred_at: new Date(T0 + Math.round(at * 1000)).toISOString(),
    ...extra,
  });
}

/** `n` decisions of one kind for one agent, one per second starting at `from`. */
export function repeat(agent: string | null, verdict: string, n: number, from: number, step = 1): string[] {
  return Array.from({ length: n }, (_, i) => decision(agent, verdict, from + i * step));
}

export function ndjson(lines: readonly string[]): string {
  return lines.join('\n') + '\n';
}

export interface KillEventLine {
  type: string;
  event_id: string;
  action: string;
  agent_id: string;
  epoch: number;
  trigger: string;
  at: string;
  reason: string;
  kill_switch: Record<string, unknown>;
  evidence: {
    window_start: string; window_end: string; calls: number; denies: number; advisory_denies: number; deny_rate: number;
    tripping_decision_id: string; source: Record<string, unknown>;
  };
}

export function parseLines<T>(text: string): T[] {
  return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as T);
}
