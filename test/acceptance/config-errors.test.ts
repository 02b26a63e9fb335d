/** Config errors: one `path: message` line per problem, exit 2, never a stack trace. */
import { describe, expect, it } from 'vitest';
import { runCli, tempDir, writeIn } from '../helpers/cli.js';

const dir = tempDir('config-errors-');

function check(text: string, name = `c-${Math.random().toString(36).slice(2)}.yaml`, env: NodeJS.ProcessEnv = {}) {
  const file = writeIn(dir, name, text);
  return runCli(['run', '--config', file, '--check-config'], { env });
}

describe('killswitch run --check-config', () => {
  it('accepts the shipped example config', () => {
    const r = runCli(['run', '--config', 'examples/embedded.yaml', '--check-config']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('examples/embedded.yaml: configuration is valid\n');
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
    expect(r.stderr).toBe('${NO_SUCH_VARIABLE_XYZ}: environment variable is not set and has no default\n');
  });

  it('reports YAML syntax errors and unreadable files in one line', () => {
    const r = check('kill_switch: [unclosed\n');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^\/: not valid YAML or JSON: /);
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
