/** Config errors: one `path: message` line per problem, exit 2, never a stack trace. */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { runCli, tempDir, writeIn } from '../helpers/cli.js';

const dir = tempDir('config-errors-');

function check(text: string, name = `c-${Math.random().toString(36).slice(2)}.yaml`, env: NodeJS.ProcessEnv = {}) {
  const file = writeIn(dir, name, text);
  return runCli(['run', '--config', file, '--check-config'], { env });
}

describe('killswitch run --check-config', () => {
  it('accepts the shipped example config once its keys exist, and refuses it while they do not', () => {
    const keys = join(tempDir('config-keys-'), 'keys');
    const before = runCli(['run', '--config', 'examples/embedded.yaml', '--check-config'], { env: { KILLSWITCH_KEYS_DIR: keys } });
    expect(before.status).toBe(2);
    expect(before.stderr).toMatch(/signing-key\.pem/);
    expect(runCli(['keys', 'generate', '--out', keys]).status).toBe(0);
    const r = runCli(['run', '--config', 'examples/embedded.yaml', '--check-config'], { env: { KILLSWITCH_KEYS_DIR: keys } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('examples/embedded.yaml: configuration is valid\n');
  });

  it('refuses what run would refuse at start: no signing key, a missing key file, a file that is not a key, a missing tokens_file; --schema-only checks the file alone', () => {
    const d = tempDir('config-preflight-');
    const keys = join(d, 'keys');
    expect(runCli(['keys', 'generate', '--out', keys]).status).toBe(0);
    const notAKey = writeIn(d, 'not-a-key.pem', 'hello\n');
    const cases: [string, RegExp][] = [
      ['kill_switch: { enabled: true }\n', /no signing key is configured/],
      [`kill_switch: { enabled: true }\nsigning: { private_key_file: ${d}/missing.pem }\n`, /missing\.pem/],
      [`kill_switch: { enabled: true }\nsigning: { private_key_file: ${notAKey} }\n`, /not-a-key\.pem/],
      [`kill_switch: { enabled: true }\nsigning: { private_key_file: ${keys}/signing-key.pem }\nhttp: { listen: "127.0.0.1:8080", tokens_file: ${d}/no-tokens.json }\n`, /no-tokens\.json: does not exist/],
    ];
    for (const [text, why] of cases) {
      const r = check(text);
      expect(r.status, text).toBe(2);
      expect(r.stderr.trim().split('\n'), text).toHaveLength(1);
      expect(r.stderr, text).toMatch(why);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const file = writeIn(d, 'schema-only.yaml', text);
      const schemaOnly = runCli(['run', '--config', file, '--check-config', '--schema-only']);
      expect(schemaOnly.status, text).toBe(0);
    }
  });

  it('checks the INPUT files named beside it', () => {
    const d = tempDir('config-inputs-');
    const cfg = writeIn(d, 'c.yaml', `data_dir: ${d}/data\n`);
    const r = runCli(['run', '--config', cfg, '--check-config', writeIn(d, 'good.ndjson', ''), `${d}/missing.ndjson`]);
    expect([r.status, r.stderr]).toEqual([2, `killswitch: ${d}/missing.ndjson: cannot read input (ENOENT)\n`]);
  });

  it('checks ports and says what a host:port or a topic name must look like, not the regular expression', () => {
    const r = check('http: { listen: "127.0.0.1:99999" }\nkafka: { brokers: ["localhost"], topics: { decisions: "bad topic!" } }\n');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n').sort()).toEqual([
      '/http/listen: port 99999 is not between 0 and 65535',
      '/kafka/brokers/0: must be host:port (or [IPv6-address]:port), e.g. 127.0.0.1:9092',
      '/kafka/topics/decisions: must be a Kafka topic name: 1 to 249 letters, digits, ".", "_" or "-"',
    ].sort());
  });

  it('lists every problem as a path: message line and exits 2', () => {
    const r = check([
      'kill_switch:',
      '  enabled: yes-please',
      '  deny_rate_threshold: 1.5',
      '  min_calls: 0',
      '  window_seconds: 2.5',
      '  colour: blue',
      'kafka: {}',
    ].join('\n'));
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n').sort()).toEqual([
      '/kafka/brokers: is required',
      '/kill_switch/colour: unknown key',
      '/kill_switch/deny_rate_threshold: must be <= 1',
      '/kill_switch/enabled: must be boolean',
      '/kill_switch/min_calls: must be >= 1',
      '/kill_switch/window_seconds: must be integer',
    ]);
  });

  it('rejects a boolean threshold', () => {
    const r = check('kill_switch: { deny_rate_threshold: true }\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('/kill_switch/deny_rate_threshold: must be number\n');
  });

  it('rejects rules a schema cannot express, each on its own line', () => {
    const r = check('kill_switch: { window_seconds: 1, resolution_ms: 5000, deny_decisions: [deny, fault] }\n');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      '/kill_switch/resolution_ms: must be <= the window (1000 ms)',
      '/kill_switch/deny_decisions: "fault" is not in call_decisions (every deny is also a call)',
    ]);
  });

  it('refuses two Kafka topics with the same name (the shadow topic defaults to killswitch.shadow)', () => {
    const r = check('kafka: { brokers: ["127.0.0.1:9092"], topics: { kills: killswitch.shadow, dlq: policy.decisions } }\n');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n').sort()).toEqual([
      '/kafka/topics/dlq: "policy.decisions" is also /kafka/topics/decisions; every topic needs its own name',
      '/kafka/topics/shadow: "killswitch.shadow" is also /kafka/topics/kills; every topic needs its own name',
    ]);
  });

  it('substitutes ${VAR:default} before parsing, and names an unset variable without default', () => {
    expect(check('kill_switch: { min_calls: ${MIN_CALLS:7} }\n').status).toBe(0);
    expect(check('kill_switch: { min_calls: ${MIN_CALLS} }\n', undefined, { MIN_CALLS: '0' }).stderr).toBe('/kill_switch/min_calls: must be >= 1\n');
    const r = check('data_dir: ${NO_SUCH_VARIABLE_XYZ}\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('/data_dir: ${NO_SUCH_VARIABLE_XYZ}: environment variable is not set and has no default\n');
    const nested = check('kafka:\n  brokers: ["${NO_BROKER_XYZ}"]\n');
    expect(nested.stderr).toBe('/kafka/brokers/0: ${NO_BROKER_XYZ}: environment variable is not set and has no default\n');
  });

  it('reports YAML syntax errors and unreadable files in one line', () => {
    const r = check('kill_switch: [unclosed\n');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^\/: not valid YAML or JSON \(line [12], column \d+\): /); // unclosed: where the file ends
    const later = check('kill_switch:\n  enabled: true\n  min_calls: [3\n');
    expect(later.stderr).toMatch(/^\/: not valid YAML or JSON \(line [34], column \d+\): /);
    const missing = runCli(['run', '--config', `${dir}/nope.yaml`, '--check-config']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe(`/: cannot read ${dir}/nope.yaml (ENOENT)\n`);
  });

  it('gives usage errors in one line with exit 2, never a stack trace', () => {
    for (const args of [['run'], ['replay'], ['frobnicate'], ['run', '--config'], ['replay', '--config', 'examples/embedded.yaml', '--bogus']]) {
      const r = runCli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('killswitch <command> --help', () => {
  const commands = ['run', 'replay', 'verify', 'authz', 'block', 'unblock', 'status', 'blocks', 'keys generate', 'tokens generate', 'keys', 'tokens'];
  it.each(commands)('%s: usage, options and an example, exit 0 (with --help and -h)', (name) => {
    const command = name.split(' ');
    for (const flag of ['--help', '-h']) {
      const r = runCli([...command, flag]);
      expect(r.status, `${command.join(' ')} ${flag}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^usage: killswitch /);
      expect(r.stdout).toContain('\noptions:\n');
      expect(r.stdout).toMatch(/\nexample:\n {2}killswitch \S+/);
    }
  });

  it('a usage error names the command and points to its help, without parseArgs\'s quoting', () => {
    const unknown = runCli(['replay', '--config', 'examples/embedded.yaml', '--bogus']);
    expect([unknown.status, unknown.stderr]).toEqual([2, 'killswitch: replay: unknown option --bogus (see: killswitch replay --help)\n']);
    const missing = runCli(['run', '--config']);
    expect([missing.status, missing.stderr]).toEqual([2, 'killswitch: run: --config needs a value (see: killswitch run --help)\n']);
  });
});

describe('keys generate and tokens generate --out', () => {
  it('an existing file, an unwritable place or a path under /proc: one line, exit 2, promptly', () => {
    const d = tempDir('out-errors-');
    const file = writeIn(d, 'a-file', 'x');
    const cases: [string[], RegExp][] = [
      [['keys', 'generate', '--out', file], /--out .*a-file: .*exists and is not a directory/],
      [['tokens', 'generate', '--out', file, '--name', 'alice', '--roles', 'viewer'], /--out .*a-file: .*exists and is not a directory/],
      [['keys', 'generate', '--out', '/proc/nope'], /cannot create \/proc\/nope/],
      [['keys', 'generate', '--out', join(file, 'below')], /is not a directory/],
    ];
    for (const [args, why] of cases) {
      const started = Date.now();
      const r = runCli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(why);
      expect(Date.now() - started).toBeLessThan(30_000);
    }
  });
});
