/**
 * No stack trace anywhere a user can reach (docs/spec.md#9-command-line): every command, run with broken
 * arguments, paths and configs, answers with short lines on stderr and exit 1 or 2.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, tempDir, writeIn } from '../helpers/cli.js';

describe('every command with broken arguments, paths and configs', () => {
  const dir = tempDir('no-trace-');
  const aDir = join(dir, 'a-directory');
  mkdirSync(aDir);
  const empty = writeIn(dir, 'empty.yaml', '');
  const notYaml = writeIn(dir, 'not-yaml.yaml', 'kill_switch: [\n');
  const notJson = writeIn(dir, 'not-json.json', '{"keys": [');
  const notAKey = writeIn(dir, 'not-a-key.pem', '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n');
  const enabledNoKey = writeIn(dir, 'enabled.yaml', 'kill_switch: { enabled: true }\n');
  const unwritableData = writeIn(dir, 'proc-data.yaml', 'kill_switch: { enabled: false }\ndata_dir: /proc/nope/data\n');
  const badListen = writeIn(dir, 'listen.yaml', 'kill_switch: { enabled: false }\ndata_dir: ' + join(dir, 'd') + '\nhttp: { listen: "999.999.999.999:8080" }\n');
  const authzNoKeys = writeIn(dir, 'authz.yaml', `data_dir: ${join(dir, 'd2')}\nauthz: { listen: "127.0.0.1:0" }\n`);
  const ok = writeIn(dir, 'ok.yaml', `kill_switch: { enabled: false }\ndata_dir: ${join(dir, 'd3')}\n`);
  const binary = join(dir, 'binary.ndjson');
  writeFileSync(binary, Buffer.from([0xff, 0xfe, 0x00, 0x0a]));
  const missing = join(dir, 'missing');

  const cases: string[][] = [
    ['run'], ['run', '--config'], ['run', '--config', missing], ['run', '--config', aDir], ['run', '--config', empty, '--check-config', '--bogus'],
    ['run', '--config', notYaml], ['run', '--config', enabledNoKey], ['run', '--config', unwritableData], ['run', '--config', badListen, '--check-config'],
    ['run', '--config', ok, missing], ['run', '--config', ok, aDir],
    ['replay', '--config', missing], ['replay', '--config', ok, missing], ['replay', '--config', ok, '--key', missing], ['replay', '--config', ok, '--key', notAKey],
    ['replay', '--config', ok, '--key', aDir], ['replay', '--config', ok, '--addenda', '/proc/nope/addenda.ndjson', binary],
    ['verify'], ['verify', '--jwks', missing, missing], ['verify', '--jwks', aDir, missing], ['verify', '--jwks', notJson, missing],
    ['verify', '--jwks', notJson, aDir], ['verify', '--jwks', notAKey, binary], ['verify', '--jwks', missing, '--decisions', missing, missing],
    ['authz'], ['authz', '--config', missing], ['authz', '--config', authzNoKeys], ['authz', '--config', notYaml],
    ['keys'], ['keys', 'make'], ['keys', 'generate'], ['keys', 'generate', '--out', '/proc/nope'], ['keys', 'generate', '--out', empty],
    ['tokens', 'generate', '--out', dir, '--name', 'bad name', '--roles', 'viewer'], ['tokens', 'generate', '--out', dir, '--name', 'x', '--roles', 'root'],
    ['tokens', 'generate', '--out', empty, '--name', 'x', '--roles', 'viewer'],
    ['block', 'spiffe://example.org/a', '--reason', 'r', '--by', 'b', '--url', 'not a url'], ['status', 'spiffe://example.org/a', '--url', 'http://127.0.0.1:1'],
    ['blocks', '--url', 'http://127.0.0.1:1'], ['unblock'], ['frobnicate'], ['--bogus'],
  ];

  it.each(cases.map((c) => [c.join(' ').replaceAll(dir, '$DIR'), c] as const))('%s', (_name, args) => {
    const r = runCli(args, { env: { KILLSWITCH_TOKEN: 'not-a-token' }, timeoutMs: 20_000 });
    expect([1, 2], `${r.status}: ${r.stderr}`).toContain(r.status);
    expect(r.stderr.length, 'says why on stderr').toBeGreaterThan(0);
    expect(r.stderr, 'no stack trace').not.toMatch(/\n\s+at |^\s+at |node:internal|Error: .*\n.*\n/m);
    expect(r.stderr.split('\n').filter((l) => l !== '').length, r.stderr).toBeLessThanOrEqual(5);
  }, 30_000);
});
