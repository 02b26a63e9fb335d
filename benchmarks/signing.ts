/**
 * Issue #4 figures: documents signed and verified per second (Ed25519 over canonical JSON, one thread),
 * and the time `killswitch verify` takes for 100k addenda, with and without --decisions.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalJson } from '../src/core/canonical-json.js';
import { AddendumChains, buildAddendum, buildKillEvent, type TraceAddendum } from '../src/core/documents.js';
import { checkSignature, Ed25519Signer } from '../src/adapters/signing/ed25519-signer.js';
import { generateSigningKey, jwksDocument, parseJwks } from '../src/adapters/signing/keys.js';
import { report } from './util.js';

const N = 100_000;
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function run(): void {
  const key = generateSigningKey();
  const signer = new Ed25519Signer(key);
  const dir = mkdtempSync(join(tmpdir(), 'killswitch-sign-'));
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify(jwksDocument([key.jwk])));
  const trusted = parseJwks(JSON.stringify(jwksDocument([key.jwk])), jwksFile);

  // 100k trips of 100k identities, each tripping at its 10th deny, one decision file, one chain.
  const decisions: string[] = [];
  const start = Date.UTC(2026, 10, 23);
  for (let i = 0; i < N * 10; i++) {
    const who = i % N;
    decisions.push(JSON.stringify({ decision_id: `d${i}`, agent_id: `spiffe://bench.example/agent/${who}`, decision: 'deny', occurred_at: new Date(start + Math.floor(i / 20_000) * 1000).toISOString() }));
  }
  const decisionsFile = join(dir, 'decisions.ndjson');
  writeFileSync(decisionsFile, decisions.join('\n') + '\n');

  const settings = { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 };
  const chains = new AddendumChains();
  const unsigned = Array.from({ length: N }, (_, i) => buildKillEvent({
    action: 'block', agentId: `spiffe://bench.example/agent/${i}`, epoch: 1, trigger: 'deny_rate', at: new Date(start).toISOString(),
    reason: 'deny_rate_threshold', killSwitch: settings,
    evidence: { window_start: new Date(start - 300_000).toISOString(), window_end: new Date(start).toISOString(), calls: 10, denies: 10,
      advisory_denies: 0, deny_rate: 1, tripping_decision_id: `d${i}`, source: { file: 'x', line_from: 1, line_to: i + 1 } },
  }));
  const addenda: TraceAddendum[] = [];
  const signSecs = seconds(() => {
    for (const ke of unsigned) {
      const signedKe = signer.sign(ke, false);
      const ad = signer.sign(buildAddendum(signedKe, ['s'], chains.link('bench')), true);
      chains.append(ad);
      addenda.push(ad);
    }
  });
  let ok = 0;
  const verifySecs = seconds(() => {
    for (const a of addenda) if (checkSignature(a as unknown as Record<string, unknown>, trusted).ok) ok++;
  });
  if (ok !== N) throw new Error(`only ${ok} of ${N} signatures verified`);

  // The same number of addenda through the CLI: a genuine replay of the decisions file.
  const addendaFile = join(dir, 'addenda.ndjson');
  const keyFile = join(dir, 'key.pem');
  writeFileSync(keyFile, key.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const config = join(dir, 'config.json');
  // every trip signed: the governor (on by default) would hold most of this storm
  writeFileSync(config, JSON.stringify({ kill_switch: { enabled: true }, governor: { enabled: false } }));
  execFileSync(process.execPath, [CLI, 'replay', '--config', config, '--key', keyFile, '--addenda', addendaFile, decisionsFile], { stdio: ['ignore', 'ignore', 'inherit'] });
  const verifyWith = (args: string[]): { secs: number; addenda: number; matched: number } => {
    let out = '';
    const secs = seconds(() => {
      out = execFileSync(process.execPath, [CLI, 'verify', '--jwks', jwksFile, ...args, addendaFile], { maxBuffer: 1 << 28 }).toString();
    });
    const r = JSON.parse(out) as { valid: boolean; addenda: number; rederived?: { matched: number } };
    if (!r.valid) throw new Error('verify found the benchmark addenda invalid');
    return { secs, addenda: r.addenda, matched: r.rederived?.matched ?? 0 };
  };
  const plain = verifyWith([]);
  const withDecisions = verifyWith(['--decisions', decisionsFile]);
  if (plain.addenda !== N || withDecisions.matched !== N) throw new Error(`expected ${N} addenda, got ${plain.addenda} (${withDecisions.matched} re-derived)`);
  const verifyCli = plain.secs;
  const verifyCliDecisions = withDecisions.secs;
  report('signing and verifying (Ed25519 over canonical JSON, one thread)', {
    'documents signed/s (kill event + addendum each count)': Math.round((2 * N) / signSecs),
    'addenda verified/s (signature, in process)': Math.round(N / verifySecs),
    'addendum size (bytes)': canonicalJson(addenda[0]).length,
    'killswitch verify, 100k addenda (s)': +verifyCli.toFixed(2),
    'killswitch verify --decisions, 100k addenda + 1M decisions (s)': +verifyCliDecisions.toFixed(2),
  });
}
