/**
 * What a session-manager author and an operator meet first: the package's `./session` export resolves
 * by name, and `killswitch authz` refuses to start on a bad setup with one line and exit 2.
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli, startLogged, tempDir, writeIn } from '../helpers/cli.js';
import { freePort } from '../helpers/http-request.js';

function importByName(specifier: string): string[] {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(specifier)}); console.log(JSON.stringify(Object.keys(m).sort()));`], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string[];
}

describe('package exports', () => {
  it('deny-rate-killswitch/session offers the guard, its errors, the middleware and the authz server by name', () => {
    expect(importByName('deny-rate-killswitch/session')).toEqual(expect.arrayContaining([
      'createSessionGuard', 'SessionGuard', 'KillSwitchTrippedError', 'KillSwitchUnavailableError', 'IdentityInvalidError',
      'nodeHttpGuard', 'expressGuard', 'fastifyGuard', 'createAuthzServer', 'FileLedgerSource', 'KafkaLedgerSource',
    ]));
  });

  it('deny-rate-killswitch offers the core, config loading and the verifier', () => {
    expect(importByName('deny-rate-killswitch')).toEqual(expect.arrayContaining(['Evaluator', 'LedgerFold', 'canonicalJson', 'loadConfig', 'verifyAddenda', 'KillSwitchError']));
  });
});

describe('killswitch authz start-up errors', () => {
  it('without trusted keys: one line, exit 2', () => {
    const dir = tempDir();
    const cfg = writeIn(dir, 'c.json', JSON.stringify({ data_dir: join(dir, 'data'), authz: { listen: '127.0.0.1:0' } }));
    const r = runCli(['authz', '--config', cfg]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('killswitch: authz obeys only signed kill events: set signing.jwks_file (the keys trusted to sign them)\n');
  });

  it('says where it listens whatever log.level is', async () => {
    const dir = tempDir();
    expect(runCli(['keys', 'generate', '--out', join(dir, 'keys')]).status).toBe(0);
    const port = await freePort();
    const cfg = writeIn(dir, 'quiet.json', JSON.stringify({
      data_dir: join(dir, 'data'), signing: { jwks_file: join(dir, 'keys', 'jwks.json') }, authz: { listen: `127.0.0.1:${port}` }, log: { level: 'error' },
    }));
    const az = startLogged(['authz', '--config', cfg]);
    try {
      const deadline = Date.now() + 20_000;
      while (!az.log().includes('listening on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(az.log()).toContain(`killswitch authz listening on http://127.0.0.1:${port}`);
    } finally {
      expect(await az.stop()).toBe(0);
    }
  });

  it('on an address already in use: one line naming the key, exit 2', async () => {
    const dir = tempDir();
    expect(runCli(['keys', 'generate', '--out', join(dir, 'keys')]).status).toBe(0);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
    const port = (busy.address() as { port: number }).port;
    try {
      const cfg = writeIn(dir, 'c.json', JSON.stringify({
        data_dir: join(dir, 'data'), signing: { jwks_file: join(dir, 'keys', 'jwks.json') }, authz: { listen: `127.0.0.1:${port}` }, log: { level: 'error' },
      }));
      const r = runCli(['authz', '--config', cfg]);
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`killswitch: authz.listen 127.0.0.1:${port}: address already in use\n`);
    } finally {
      busy.close();
    }
  });

  it('with a stray argument: usage error, exit 2', () => {
    const r = runCli(['authz', '--config', 'x.json', 'extra']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('killswitch: authz: unexpected argument "extra" (see: killswitch authz --help)\n');
  });
});
