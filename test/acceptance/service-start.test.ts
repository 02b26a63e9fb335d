/** What `npm start` runs: keys and a token made once, the example decisions read, then the operator API served until SIGTERM. */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli, tempDir } from '../helpers/cli.js';
import { eventually, freePort, request } from '../helpers/http-request.js';

describe('npm start: the long-running embedded service', () => {
  it('blocks the scraper from the examples, then serves the API with the generated token; SIGTERM prints the summary, exit 0', async () => {
    const dir = tempDir('service-start-');
    const port = await freePort();
    const env = { KILLSWITCH_DATA_DIR: join(dir, 'data'), KILLSWITCH_KEYS_DIR: join(dir, 'keys'), KILLSWITCH_TOKENS_DIR: join(dir, 'tokens'), KILLSWITCH_HTTP_LISTEN: `127.0.0.1:${port}` };
    expect(runCli(['keys', 'generate', '--out', env.KILLSWITCH_KEYS_DIR, '--if-missing']).status).toBe(0);
    const t = runCli(['tokens', 'generate', '--out', env.KILLSWITCH_TOKENS_DIR, '--name', 'local-operator', '--roles', 'viewer,operator,ingest', '--if-missing']);
    expect(t.stdout).toBe(`operator API token written to ${env.KILLSWITCH_TOKENS_DIR}/local-operator.token (mode 0600); its SHA-256 and roles to ${env.KILLSWITCH_TOKENS_DIR}/tokens.json (http.tokens_file)\n`);
    expect(statSync(join(env.KILLSWITCH_TOKENS_DIR, 'local-operator.token')).mode & 0o777).toBe(0o600);
    expect(runCli(['tokens', 'generate', '--out', env.KILLSWITCH_TOKENS_DIR, '--name', 'local-operator', '--roles', 'viewer', '--if-missing']).stdout).toContain('already in');
    const token = readFileSync(join(env.KILLSWITCH_TOKENS_DIR, 'local-operator.token'), 'utf8').trim();
    expect(readFileSync(join(env.KILLSWITCH_TOKENS_DIR, 'tokens.json'), 'utf8')).not.toContain(token);

    const child = startCli(['run', '--config', 'examples/service.yaml', 'examples/decisions.ndjson'], { env });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    try {
      await eventually(() => Promise.resolve(out), (o) => o.includes('serving the operator API'), 30_000);
      expect(out).toContain('BLOCKED spiffe://example.org/ns/prod/sa/scraper-agent (epoch 1)');
      expect(out).toContain(`serving the operator API on http://127.0.0.1:${port}`);
      const blocks = runCli(['blocks', '--url', `http://127.0.0.1:${port}`], { env: { KILLSWITCH_TOKEN: token } });
      expect(blocks.stdout).toContain('  spiffe://example.org/ns/prod/sa/scraper-agent  epoch 1, deny_rate');
      expect((await request(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      // /metrics carries the series the dashboard, the alerts and the health check read in both modes
      const unblock = runCli(['unblock', 'spiffe://example.org/ns/prod/sa/scraper-agent', '--reason', 'test', '--by', 'ci', '--url', `http://127.0.0.1:${port}`], { env: { KILLSWITCH_TOKEN: token } });
      expect(unblock.status, unblock.stderr).toBe(0);
      const sample = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      const metrics = await eventually(async () => (await request(`http://127.0.0.1:${port}/metrics`)).body,
        (text) => sample(text, 'killswitch_unblocks_total') === 1, 10_000);
      expect(sample(metrics, 'killswitch_trips_total')).toBe(1);
      expect(sample(metrics, 'killswitch_decisions_total{class="deny"}')).toBeGreaterThan(0);
      expect(sample(metrics, 'killswitch_decisions_total{class="call"}')).toBeGreaterThan(0);
      expect(sample(metrics, 'killswitch_tracked_identities')).toBeGreaterThan(0);
      expect(sample(metrics, 'killswitch_blocked_identities')).toBe(0);
      expect(metrics).toMatch(/^killswitch_process_cpu_seconds_total /m);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toContain('stopped: 35 decisions from 1 input and the API: 1 new block');
  });
});
