/**
 * The session guard and `killswitch authz` following the Kafka kills topic that a Kafka-mode processor
 * writes: a trip reaches them, a forged event on the topic is not obeyed, an unblock lifts the block,
 * and a guard that cannot reach its broker refuses with 503 (failure_mode closed).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { Ed25519Signer } from '../../src/adapters/signing/ed25519-signer.js';
import { loadSigningKey } from '../../src/adapters/signing/keys.js';
import { createSessionGuard } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { decision, startCli, tempDir } from '../helpers/cli.js';
import { eventually, freePort, request } from '../helpers/http-request.js';
import { freshTopics, kafkaConfig, produce, startProcessor } from '../helpers/kafka.js';
import { killEvent, signedLine, testKey } from '../helpers/ledger.js';

const brokers = inject('kafkaBrokers');
const BAD = 'spiffe://example.org/agent/guarded-bad';
const GOOD = 'spiffe://example.org/agent/guarded-good';

const denies = (agent: string, n: number): { key: string; value: string }[] =>
  Array.from({ length: n }, (_, i) => ({ key: agent, value: decision(agent, 'deny', i) }));

describe('session guard on the Kafka kills topic', () => {
  it('refuses what the processor tripped, ignores a forged event, lifts the block on an unblock; so does killswitch authz', async () => {
    const dir = tempDir('kafka-guard-');
    const topics = freshTopics('guard');
    const cfgFile = kafkaConfig(dir, brokers, topics);
    const authzPort = await freePort();
    const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgFile, JSON.stringify({ ...cfg, authz: { listen: `127.0.0.1:${authzPort}` } }));
    const proc = await startProcessor(cfgFile);
    const log = captureLogger();
    const guard = createSessionGuard({ ledger: { kafka: { brokers: brokers.split(',') }, topic: topics.kills }, jwks: join(dir, 'keys', 'jwks.json'), logger: log });
    const authz = startCli(['authz', '--config', cfgFile]);
    let authzLog = '';
    authz.stderr!.on('data', (b: Buffer) => (authzLog += b.toString()));
    try {
      await guard.ready;
      expect(guard.check(BAD).allowed).toBe(true);
      const blocked: string[] = [];
      guard.onBlock((b) => blocked.push(b.agentId));
      await produce(brokers, topics.decisions, denies(BAD, 10));
      await eventually(() => Promise.resolve(blocked), (b) => b.length === 1, 30_000);
      expect(blocked).toEqual([BAD]);
      const r = guard.check(BAD);
      expect(r.allowed === false && r.body).toMatchObject({ error: 'KILL_SWITCH_TRIPPED', agent_id: BAD, trigger: 'deny_rate' });
      const viaAuthz = await eventually(() => request(`http://127.0.0.1:${authzPort}/`, { headers: { 'x-spiffe-id': BAD } }), (x) => x.status === 403, 30_000);
      expect(JSON.parse(viaAuthz.body)).toEqual(r.allowed ? undefined : r.body);

      // forged: a block of GOOD signed by a key nobody trusts, and a genuine unblock's signature on another identity
      const key = loadSigningKey(join(dir, 'keys', 'signing-key.pem'));
      const signer = new Ed25519Signer(key);
      const genuineUnblock = signer.sign(killEvent({ agentId: BAD, epoch: 1, action: 'unblock' }), false);
      await produce(brokers, topics.kills, [
        { key: GOOD, value: signedLine(testKey(), { agentId: GOOD }).trim() },
        { key: 'spiffe://example.org/agent/x', value: canonicalJson({ ...genuineUnblock, agent_id: 'spiffe://example.org/agent/x' }) },
      ]);
      await eventually(() => Promise.resolve(log.lines.filter((l) => l.msg.startsWith('ignored a kill event')).length), (n) => n === 2, 15_000);
      expect(guard.check(GOOD).allowed).toBe(true);
      expect(guard.check(BAD).allowed).toBe(false);

      // an unblock signed by the trusted key lifts the block, in the guard and in authz
      await produce(brokers, topics.kills, [{ key: BAD, value: canonicalJson(genuineUnblock) }]);
      await eventually(() => Promise.resolve(guard.check(BAD).allowed), (a) => a, 15_000);
      await eventually(() => request(`http://127.0.0.1:${authzPort}/`, { headers: { 'x-spiffe-id': BAD } }), (x) => x.status === 200, 15_000);
      expect(authzLog).toContain('"reason":"unknown_kid"');
    } finally {
      authz.kill('SIGTERM');
      await guard.close();
      expect(await proc.stop()).toBe(0);
    }
  });

  it('failure_mode closed: a guard that cannot reach its broker is not ready and refuses with 503', async () => {
    const key = testKey();
    const guard = createSessionGuard({ ledger: { kafka: { brokers: [`127.0.0.1:${await freePort()}`] }, topic: 'nowhere' }, jwks: key.jwks, logger: captureLogger() });
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect(guard.state).toBe('starting');
      const r = guard.check(GOOD);
      expect(r.allowed === false && r.status).toBe(503);
      expect(guard.check(undefined).allowed).toBe(true);
    } finally {
      await guard.close();
    }
  });
});
