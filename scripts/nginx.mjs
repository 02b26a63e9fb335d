// nginx for the session-manager tests (the Debian package, unpacked into .cache/nginx, never installed
// as a system service: nothing starts on port 80, nothing outside the repository changes except the
// shared libraries apt-get may install). Plain JavaScript so the test setup needs no build step.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import process from 'node:process';
import { setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = path.join(ROOT, '.cache', 'nginx');
const BIN = path.join(CACHE, 'root', 'usr', 'sbin', 'nginx');
const LIBS = ['libssl3', 'libpcre2-8-0', 'zlib1g', 'libcrypt1'];

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, ...options });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`.trim() };
}

function fail(what, out) {
  throw new Error(`nginx: ${what}\n${out.split('\n').slice(-15).join('\n')}\n(install nginx yourself and set NGINX_BIN to its path)`);
}

function works(bin) {
  const r = run(bin, ['-V']);
  return r.ok && r.out.includes('--with-http_auth_request_module');
}

/** The path of an nginx binary with auth_request: NGINX_BIN, else the cached unpacked Debian package, fetched with apt-get when missing. */
export function ensureNginx() {
  if (process.env.NGINX_BIN) {
    if (!works(process.env.NGINX_BIN)) fail(`NGINX_BIN=${process.env.NGINX_BIN} does not run or lacks the auth_request module`, '');
    return process.env.NGINX_BIN;
  }
  if (fs.existsSync(BIN) && works(BIN)) return BIN;
  if (!run('apt-get', ['--version']).ok) fail('not cached and apt-get is not available', '');
  fs.mkdirSync(CACHE, { recursive: true });
  let dl = run('apt-get', ['download', 'nginx'], { cwd: CACHE });
  if (!dl.ok) {
    const up = run('apt-get', ['update']);
    if (!up.ok) fail('`apt-get update` failed', up.out);
    dl = run('apt-get', ['download', 'nginx'], { cwd: CACHE });
    if (!dl.ok) fail('`apt-get download nginx` failed', dl.out);
  }
  const deb = fs.readdirSync(CACHE).filter((f) => /^nginx_.*\.deb$/.test(f)).sort().pop();
  if (deb === undefined) fail('apt-get download left no nginx_*.deb', dl.out);
  const x = run('dpkg', ['-x', path.join(CACHE, deb), path.join(CACHE, 'root')]);
  if (!x.ok) fail(`dpkg -x ${deb} failed`, x.out);
  if (!works(BIN)) {
    // the binary needs a few shared libraries a minimal image may lack
    const inst = run('apt-get', ['install', '-y', '--no-install-recommends', ...LIBS]);
    if (!inst.ok || !works(BIN)) fail(`${BIN} does not run`, `${run(BIN, ['-V']).out}\n${inst.out}`);
  }
  return BIN;
}

function waitForPort(port, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`nginx exited with ${child.exitCode}`));
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nginx did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * Run nginx in the foreground with `httpBlock` as the body of its `http {}` block, everything else
 * (pid, temp paths, logs) inside `dir`. Resolves once `port` accepts connections.
 */
export async function startNginx({ dir, httpBlock, port }) {
  const bin = ensureNginx();
  const temp = (name) => path.join(dir, name);
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) fs.mkdirSync(temp(d), { recursive: true });
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `${asRoot ? 'user root;\n' : ''}worker_processes 1;
pid ${temp('nginx.pid')};
error_log ${temp('logs/error.log')} info;
events { worker_connections 256; }
http {
  access_log ${temp('logs/access.log')};
  client_body_temp_path ${temp('client_body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
${httpBlock}
}
`;
  const confFile = temp('nginx.conf');
  fs.writeFileSync(confFile, conf);
  const child = spawn(bin, ['-p', dir, '-c', confFile, '-e', temp('logs/error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  try {
    await waitForPort(port, child, 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    const log = fs.existsSync(temp('logs/error.log')) ? fs.readFileSync(temp('logs/error.log'), 'utf8') : '';
    throw new Error(`${err.message}\n${stderr}\n${log.split('\n').slice(-15).join('\n')}`, { cause: err });
  }
  return {
    errorLog: () => fs.readFileSync(temp('logs/error.log'), 'utf8'),
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGQUIT');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }),
  };
}
