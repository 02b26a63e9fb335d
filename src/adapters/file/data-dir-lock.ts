/**
 * One process per data_dir (docs/spec.md#12-embedded-mode-files): two writers would fork the addendum
 * chains and the journal.
 *
 * The lock is a listening Unix domain socket bound at `data_dir/killswitch.lock`, not a PID file. A PID
 * says nothing after a restart: in a container the new process is PID 1 again, the very PID a stale
 * lock names, and any live process can hold a stale PID. A listening socket is live exactly as long as
 * its owner: the kernel closes it when the process dies, however it dies (SIGKILL included). So:
 * bind; if the address is in use, connect: an answer means a live owner (refused), a refusal (or no
 * file) means a socket left by a dead process, which is unlinked and bound again. The PID file of
 * earlier versions has the same name; connecting to a plain file is refused, so it is taken over too.
 *
 * Unlink-and-bind is two steps, so two processes starting at the same moment over one stale socket
 * could both get through. On Linux an abstract socket named after the directory's device and inode is
 * bound first: binding it is atomic, and the kernel frees it with its owner, so of two processes in one
 * network namespace only one passes. The file socket still matters: abstract names are per network
 * namespace, while a socket file is reached through the file system, so it also finds an owner in
 * another container that shares the volume.
 *
 * A socket address holds at most 107 bytes of path. A longer data_dir is reached through
 * `/proc/self/fd/<fd of data_dir>/killswitch.lock` (Linux), which names the same file in a few
 * dozen bytes; unlike binding a path relative to the working directory, it needs no process.chdir,
 * which would move every relative path in flight in the process. Elsewhere a longer path is refused.
 *
 * The owner writes its pid to whoever connects, so the refusal can name it; it is informative only.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, statSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { KillSwitchError } from '../../core/errors.js';
import { makeDirs } from './make-dirs.js';

export const LOCK_SOCKET_NAME = 'killswitch.lock';
/** sun_path is 108 bytes with its terminating NUL */
const MAX_SOCKET_PATH = 107;
const PROBE_TIMEOUT_MS = 2000;

export interface DataDirLock {
  /** the socket file that holds the lock */
  readonly socketPath: string;
  release(): Promise<void>;
}

type Probe = { live: true; pid: string | undefined } | { live: false };

export async function lockDataDir(dir: string): Promise<DataDirLock> {
  try {
    makeDirs(dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new KillSwitchError('CONFIG_INVALID', `data_dir ${dir}: cannot create it (${e.code ?? 'error'}${e.code === 'ENOTDIR' ? `: ${e.message}` : ''})`);
  }
  const socketPath = join(dir, LOCK_SOCKET_NAME);
  const servers: Server[] = [];
  let dirFd: number | undefined;
  const release = async (): Promise<void> => {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    servers.length = 0;
    if (dirFd !== undefined) closeSync(dirFd);
    dirFd = undefined;
  };
  try {
    if (process.platform === 'linux') {
      const st = statSync(dir);
      const abstract = `\0killswitch.lock.${createHash('sha256').update(`${st.dev}:${st.ino}`).digest('hex').slice(0, 40)}`;
      const r = await listen(abstract);
      if (r.server === undefined) await refuse(dir, abstract, r.code);
      else servers.push(r.server);
    }
    let bindPath = socketPath;
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      if (process.platform !== 'linux') {
        throw new KillSwitchError('CONFIG_INVALID', `data_dir ${dir}: the path is too long for its lock socket (${Buffer.byteLength(socketPath)} bytes, at most ${MAX_SOCKET_PATH})`);
      }
      dirFd = openSync(dir, 'r');
      bindPath = `/proc/self/fd/${dirFd}/${LOCK_SOCKET_NAME}`;
    }
    for (let attempt = 0; ; attempt++) {
      const r = await listen(bindPath);
      if (r.server !== undefined) {
        servers.push(r.server);
        break;
      }
      const probe = r.code === 'EADDRINUSE' ? await probeOwner(bindPath) : undefined;
      if (probe === undefined || probe.live || attempt > 0) await refuse(dir, bindPath, r.code, probe);
      try {
        unlinkSync(socketPath); // left by a process that is gone
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw lockError(dir, err);
      }
    }
    return { socketPath, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** Listen on `path`: the server, or why not. */
function listen(path: string): Promise<{ server: Server; code?: undefined } | { server?: undefined; code: string }> {
  return new Promise((resolve) => {
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end(`${process.pid}\n`);
    });
    server.once('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code ?? 'error' }));
    server.listen(path, () => {
      server.unref(); // holding the lock never keeps the process alive
      resolve({ server });
    });
  });
}

/** Is a live process listening on `path`? A socket left by a dead one refuses the connection. */
function probeOwner(path: string): Promise<Probe> {
  return new Promise((resolve) => {
    let said = '';
    let connected = false;
    const socket = createConnection(path);
    const done = (p: Probe): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(p);
    };
    // a stopped owner still accepts (the kernel does) but never answers: live, pid unknown
    const timer = setTimeout(() => done({ live: true, pid: undefined }), PROBE_TIMEOUT_MS);
    socket.on('connect', () => (connected = true));
    socket.on('data', (b: Buffer) => (said += b.toString('latin1')));
    socket.on('end', () => done({ live: true, pid: /^\d+/.exec(said)?.[0] }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) done({ live: true, pid: undefined });
      else if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') done({ live: false });
      else done({ live: true, pid: undefined }); // cannot tell: never take over what may be live
    });
  });
}

async function refuse(dir: string, path: string, code: string, probe?: Probe): Promise<never> {
  const p = probe ?? (code === 'EADDRINUSE' ? await probeOwner(path) : undefined);
  if (p !== undefined && p.live) {
    throw new KillSwitchError('CONFIG_INVALID', `data_dir ${dir} is in use by another killswitch process${p.pid === undefined ? '' : ` (pid ${p.pid})`}`);
  }
  throw new KillSwitchError('CONFIG_INVALID', `data_dir ${dir}: cannot take the lock ${join(dir, LOCK_SOCKET_NAME)} (${code})`);
}

function lockError(dir: string, err: unknown): KillSwitchError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new KillSwitchError('CONFIG_INVALID', `data_dir ${dir}: cannot take the lock ${join(dir, LOCK_SOCKET_NAME)} (${code})`, { cause: err });
}
