/**
 * `killswitch replay` on a 1M-line file against a bare JSON.parse loop over the same file, in the same
 * run (issue #2 figure: ratio >= 0.5). Both run as separate node processes reading the file from disk;
 * each is timed three times, alternating, and the best time of each is compared.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32, report } from './util.js';

const LINES = 1_000_000;
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

const BARE = `
const fs = require('node:fs');
const text = fs.readFileSync(process.argv[1], 'utf8');
let n = 0, start = 0, nl;
while ((nl = text.indexOf('\\n', start)) !== -1) { const o = JSON.parse(text.slice(start, nl)); if (o.decision_id) n++; start = nl + 1; }
if (n === 0) process.exit(1);
`;

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function run(): void {
  const dir = mkdtempSync(join(tmpdir(), 'killswitch-bench-'));
  const file = join(dir, 'decisions.ndjson');
  const rnd = mulberry32(7);
  const decisions = ['allow', 'allow', 'allow', 'allow', 'allow', 'allow', 'deny', 'advisory_deny', 'step_up', 'fault'];
  const start = Date.UTC(2026, 10, 23);
  const lines: string[] = [];
  for (let i = 0; i < LINES; i++) {
    const who = Math.floor(rnd() * 10_000);
    const hot = who < 50; // 50 misbehaving identities: they trip
    lines.push(JSON.stringify({
      decision_id: `01J${i.toString(36).padStart(10, '0')}`,
      agent_id: `spiffe://bench.example/ns/prod/sa/agent-${who}`,
      decision: hot ? 'deny' : decisions[Math.floor(rnd() * decisions.length)],
      occurred_at: new Date(start + i * 2).toISOString(),
      session_id: `sess-${who}-${Math.floor(i / 100_000)}`,
      tool_name: 'web.fetch',
      policy_rule: 'egress-allowlist',
      tenant: 'acme',
    }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ kill_switch: { enabled: true }, data_dir: join(dir, 'data') }));

  let bare = Infinity;
  let ours = Infinity;
  let kills = 0;
  for (let i = 0; i < 3; i++) {
    bare = Math.min(bare, time(() => execFileSync(process.execPath, ['-e', BARE, file])));
    ours = Math.min(ours, time(() => {
      kills = execFileSync(process.execPath, [CLI, 'replay', '--config', config, file], { maxBuffer: 1 << 30 }).toString().split('\n').length - 1;
    }));
  }
  report('killswitch replay vs a bare JSON.parse loop (1M lines, separate processes, best of 3 each)', {
    'file size (MiB)': +(statSync(file).size / 2 ** 20).toFixed(1),
    'bare JSON.parse loop (s)': +bare.toFixed(2),
    'killswitch replay (s)': +ours.toFixed(2),
    'bare lines/s': Math.round(LINES / bare),
    'replay lines/s': Math.round(LINES / ours),
    'throughput ratio replay / bare': +(bare / ours).toFixed(2),
    'kill events': kills,
  });
}
