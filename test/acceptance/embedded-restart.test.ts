/**
 * Embedded mode restarted, again and again (docs/spec.md#12-embedded-mode-files): each input is taken
 * up where it stopped, never re-read from line 1 for output, so an identity an operator unblocked is
 * not blocked again from the same old decisions; an input that was truncated or replaced is a new
 * input; decisions posted over HTTP keep their windows across a restart.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decision, type KillEventLine, ndjson, parseLines, repeat, runCli, signedConfigFile, startLogged, tempDir, writeIn } from '../helpers/cli.js';
import { apiToken, eventually, freePort, request } from '../helpers/http-request.js';

const A = 'spiffe://example.org/agent/a';

/** A config with the operator API on a free port and one token with every role. */
async function serviceConfig(dir: string): Promise<{ cfg: string; url: string; token: string }> {
  signedConfigFile(dir); // makes the keys
  const port = await freePort();
  const t = apiToken();
  const cfg = writeIn(dir, 'service.json', JSON.stringify({
    kill_switch: { enabled: true }, data_dir: join(dir, 'data'), log: { level: 'warn' },
    signing: { private_key_file: join(dir, 'keys/signing-key.pem'), jwks_file: join(dir, 'keys/jwks.json') },
    http: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'ops', sha256: t.sha256, roles: ['viewer', 'operator', 'ingest'] }] },
  }));
  return { cfg, url: `http://127.0.0.1:${port}`, token: t.token };
}

/** Start the service, wait until it serves, do `f`, stop it with SIGTERM; its output. */
async function serve(args: string[], f: () => Promise<void> = () => Promise.resolve()): Promise<string> {
  const svc = startLogged(args);
  await eventually(() => Promise.resolve(svc.log()), (l) => l.includes('serving the operator API') || svc.child.exitCode !== null, 30_000);
  if (svc.child.exitCode !== null) throw new Error(svc.log());
  await f();
  expect(await svc.stop()).toBe(0);
  return svc.log();
}

const kills = (dir: string): KillEventLine[] => parseLines<KillEventLine>(readFileSync(join(dir, 'data/kills.ndjson'), 'utf8'));

describe('embedded mode: a restart resumes, never re-trips', () => {
  it('an identity unblocked by an operator stays unblocked through restarts with the same input; a fresh min_calls after the unblock blocks it again', async () => {
    const dir = tempDir('unblock-restart-');
    const { cfg, url, token } = await serviceConfig(dir);
    const input = writeIn(dir, 'in.ndjson', ndjson(repeat(A, 'deny', 10, 0)));

    const first = await serve(['run', '--config', cfg, input], () => {
      const r = runCli(['unblock', A, '--reason', 'false positive', '--by', 'oncall@example.org', '--url', url], { env: { KILLSWITCH_TOKEN: token } });
      expect(r.status).toBe(0);
      return Promise.resolve();
    });
    expect(first).toContain(`BLOCKED ${A} (epoch 1)`);
    expect(kills(dir).map((k) => [k.action, k.epoch])).toEqual([['block', 1], ['unblock', 1]]);

    for (let i = 0; i < 3; i++) {
      const again = await serve(['run', '--config', cfg, input]);
      expect(again).not.toContain('BLOCKED');
      expect(again).toContain(`resuming ${input} after line 10`);
    }
    expect(kills(dir)).toHaveLength(2);

    // The unblock emptied the window: five more denies are not enough, even across a restart ...
    appendFileSync(input, ndjson(repeat(A, 'deny', 5, 20)));
    expect(await serve(['run', '--config', cfg, input])).not.toContain('BLOCKED');
    // ... ten after the unblock are.
    appendFileSync(input, ndjson(repeat(A, 'deny', 5, 25)));
    const last = await serve(['run', '--config', cfg, input]);
    expect(last).toContain(`BLOCKED ${A} (epoch 2)`);
    const k = kills(dir);
    expect(k.map((e) => [e.action, e.epoch])).toEqual([['block', 1], ['unblock', 1], ['block', 2]]);
    expect(k[2]!.evidence).toMatchObject({ calls: 10, denies: 10, source: { file: input, line_to: 20 } });
  }, 120_000);

  it('resumes an input file after its last line read (a bad line is kept once); a truncated or replaced file is read from its start as a new input', () => {
    const dir = tempDir('resume-');
    const cfg = signedConfigFile(dir);
    const B = 'spiffe://example.org/agent/b';
    const C = 'spiffe://example.org/agent/c';
    const input = writeIn(dir, 'in.ndjson', ndjson(['not json', ...repeat(A, 'deny', 10, 0)]));
    const dlq = (): { file: string; line: number }[] => parseLines(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(runCli(['run', '--config', cfg, input]).stdout).toContain(`BLOCKED ${A}`);
    expect(dlq()).toHaveLength(1);

    // appended to: read on from line 12, numbered as before
    appendFileSync(input, ndjson(repeat(B, 'deny', 10, 100)));
    let r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`resuming ${input} after line 11`);
    expect(r.stdout).toContain(`BLOCKED ${B} (epoch 1)`);
    expect(r.stdout).toContain('done: 10 decisions from 1 input: 1 new block, 0 invalid lines skipped');
    expect(kills(dir).find((e) => e.agent_id === B)!.evidence.source).toMatchObject({ file: input, line_to: 21 });
    expect(dlq()).toHaveLength(1);

    // truncated: shorter than where it was read to
    writeFileSync(input, ndjson(['not json', decision(C, 'deny', 200)]));
    r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${input} is not the input read before \\(it is shorter \\(\\d+ bytes\\) than where it was read to \\(\\d+\\)\\): reading it from its start as a new input`));
    expect(r.stdout).toContain('done: 1 decision from 1 input: 0 new blocks, 1 invalid line skipped');
    expect(dlq()).toHaveLength(2);

    // replaced by a longer file with other content
    writeFileSync(input, ndjson(['{"also": "bad"}', ...repeat(C, 'deny', 10, 300), ...repeat(B, 'allow', 30, 300)]));
    r = runCli(['run', '--config', cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${input} is not the input read before (its first bytes differ): reading it from its start as a new input`);
    expect(r.stdout).toContain(`BLOCKED ${C} (epoch 1)`);
    expect(kills(dir).find((e) => e.agent_id === C)!.evidence.source).toMatchObject({ file: input, line_to: 11 });
    expect(dlq()).toHaveLength(3);
  });

  it('decisions posted over HTTP keep their window across a restart: five denies before it and five after trip, with evidence in ingest.ndjson', async () => {
    const dir = tempDir('ingest-restart-');
    const { cfg, url, token } = await serviceConfig(dir);
    const post = async (lines: string[]): Promise<Record<string, unknown>> => {
      const r = await request(`${url}/v1/decisions`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' }, body: ndjson(lines),
      });
      expect(r.status).toBe(202);
      return JSON.parse(r.body) as Record<string, unknown>;
    };
    await serve(['run', '--config', cfg], async () => {
      expect(await post(repeat(A, 'deny', 5, 0))).toMatchObject({ accepted: 5, trips: 0 });
    });
    const second = await serve(['run', '--config', cfg], async () => {
      expect(await post(repeat(A, 'deny', 5, 5))).toMatchObject({ accepted: 5, trips: 1 });
    });
    expect(second).toContain(`BLOCKED ${A} (epoch 1)`);
    expect(kills(dir)[0]!.evidence).toMatchObject({ calls: 10, denies: 10, source: { file: join(dir, 'data/ingest.ndjson'), line_from: 1, line_to: 10 } });
    // and a third start neither re-trips nor loses the block
    const third = await serve(['run', '--config', cfg]);
    expect(third).toContain(`still blocked: ${A} (epoch 1`);
    expect(third).not.toContain('BLOCKED');
    expect(kills(dir)).toHaveLength(1);
  }, 120_000);

  it('a posted decision stamped too far ahead of its arrival is refused before ingest.ndjson, so no restart ever reads it', async () => {
    const dir = tempDir('ingest-future-');
    const { cfg, url, token } = await serviceConfig(dir);
    const future = JSON.stringify({ decision_id: 'from-the-future', agent_id: A, decision: 'deny', occurred_at: new Date(Date.now() + 86_400_000).toISOString() });
    const lines = [decision(A, 'deny', 0), future, decision(A, 'deny', 1)];
    await serve(['run', '--config', cfg], async () => {
      const r = await request(`${url}/v1/decisions`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' }, body: ndjson(lines),
      });
      expect(r.status).toBe(202);
      expect(JSON.parse(r.body)).toMatchObject({ accepted: 2, invalid: 1, errors: [{ index: 1, reason: 'future_timestamp' }] });
    });
    expect(readFileSync(join(dir, 'data/ingest.ndjson'), 'utf8')).toBe(ndjson([lines[0]!, lines[2]!]));
    const dlq = parseLines<Record<string, unknown>>(readFileSync(join(dir, 'data/dlq.ndjson'), 'utf8'));
    expect(dlq).toEqual([{ file: 'http:/v1/decisions', index: 1, reason: 'future_timestamp', message: expect.any(String) as string, raw: future }]);
  }, 60_000);
});
