/** Long replays show progress on stderr when stderr is a terminal, and never otherwise. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, configFile, decision, ndjson, runCli, tempDir, writeIn } from '../helpers/cli.js';

describe('killswitch replay: progress', () => {
  const dir = tempDir('progress-');
  const cfg = configFile(dir);
  const lines = Array.from({ length: 150_000 }, (_, i) => decision(`spiffe://example.org/agent/${i % 500}`, 'allow', i / 100));
  const input = writeIn(dir, 'long.ndjson', ndjson(lines));
  const env = { KILLSWITCH_PROGRESS_INTERVAL_MS: '20' };

  it('prints nothing on stderr when stderr is a pipe', () => {
    const r = runCli(['replay', '--config', cfg, input], { env });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('shows a progress line on a terminal, and clears it at the end', () => {
    // `script` runs the command on a pseudo-terminal, as a person at a shell would.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} replay --config ${JSON.stringify(cfg)} ${JSON.stringify(input)} > /dev/null`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    const CLEAR = '\r\u001b[K'; // carriage return + erase to end of line
    const updates = r.stdout.split(CLEAR).filter((s) => s.length > 0);
    expect(updates.length).toBeGreaterThan(0);
    for (const u of updates) expect(u).toMatch(/^[\d,]+ lines, [\d,]+\/s, 0 trips, 0 invalid$/);
    // counted as they are read, not once the file is done: the updates climb through the file
    const counted = updates.map((u) => Number(u.split(' ')[0]!.replaceAll(',', '')));
    expect(counted.some((n) => n > 0 && n < lines.length)).toBe(true);
    expect(r.stdout.endsWith(CLEAR)).toBe(true);
  });
});
