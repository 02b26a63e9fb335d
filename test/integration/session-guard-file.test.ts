/**
 * The session guard following a ledger file (embedded mode's kills.ndjson, or an air-gapped copy):
 * what it refuses, what it ignores, and how it behaves when the ledger goes away.
 */
import { appendFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { createSessionGuard, FileLedgerSource, KillSwitchTrippedError, KillSwitchUnavailableError, type SessionGuard, type SessionGuardOptions } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { tempDir } from '../helpers/cli.js';
import { killEvent, signedLine, testKey } from '../helpers/ledger.js';

const A = 'spiffe://example.org/ns/prod/sa/scraper';
const B = 'spiffe://example.org/ns/prod/sa/summariser';
const C = 'spiffe://example.org/ns/prod/sa/orchestrator';

const guards: SessionGuard[] = [];
afterEach(async () => {
  await Promise.all(guards.splice(0).map((g) => g.close()));
});

function guardOn(file: string, jwks: SessionGuardOptions['jwks'], o: Partial<SessionGuardOptions> = {}) {
  const log = captureLogger();
  const registry = new Registry();
  const guard = createSessionGuard({ ledger: { file, pollMs: 20 }, jwks, logger: log, registry, ...o });
  guards.push(guard);
  return { guard, log, registry };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('session guard on a ledger file', () => {
  it('refuses a blocked identity with the section 6 refusal and lets others and anonymous requests through', async () => {
    const key = testKey();
    const dir = tempDir();
    const file = join(dir, 'kills.ndjson');
    writeFileSync(file, signedLine(key, { agentId: A, at: '2026-11-23T09:00:49.000Z' }));
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    expect(guard.state).toBe('ready');
    const r = guard.check(A);
    expect(r.allowed).toBe(false);
    if (r.allowed) return;
    const ke = killEvent({ agentId: A, at: '2026-11-23T09:00:49.000Z' });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.json)).toEqual({
      error: 'KILL_SWITCH_TRIPPED', detail: A, agent_id: A, blocked_at: '2026-11-23T09:00:49.000Z', trigger: 'deny_rate', kill_event_id: ke.event_id,
    });
    expect(guard.check(B)).toEqual({ allowed: true });
    for (const anonymous of [undefined, null, '']) expect(guard.check(anonymous).allowed).toBe(true);
    expect(() => guard.assertAllowed(B)).not.toThrow();
    let thrown: unknown;
    try {
      guard.assertAllowed(A);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(KillSwitchTrippedError);
    const e = thrown as KillSwitchTrippedError;
    expect([e.status, e.code, e.agent_id, e.detail, e.trigger, e.blocked_at, e.kill_event_id]).toEqual([403, 'KILL_SWITCH_TRIPPED', A, A, 'deny_rate', '2026-11-23T09:00:49.000Z', ke.event_id]);
  });

  it('refuses a request whose delegation chain holds a blocked identity', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    writeFileSync(file, signedLine(key, { agentId: C }));
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    expect(guard.check(A, [B]).allowed).toBe(true);
    const r = guard.check(A, [B, C]);
    expect(r.allowed === false && r.status === 403 && r.body.agent_id).toBe(C);
    expect(guard.check(undefined, [C]).allowed).toBe(false);
  });

  it('ignores, counts and logs unsigned, forged, unknown-kid and malformed kill events', async () => {
    const key = testKey();
    const stranger = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    const signed = key.signer.sign(killEvent({ agentId: A }), false);
    const lines = [
      canonicalJson(killEvent({ agentId: A })), // unsigned
      canonicalJson({ ...signed, agent_id: B }), // signature of A's event, on B
      signedLine(stranger, { agentId: C }).trim(), // a key nobody trusts
      canonicalJson({ ...stranger.signer.sign(killEvent({ agentId: C }), true), issuer: { kid: key.key.kid, jwk: stranger.key.jwk } }), // claims our kid, carries its own key
      '{"type":"killswitch.kill-event/v1"', // not JSON
      canonicalJson({ agent_id: A, action: 'block' }), // not a kill event
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    const { guard, registry, log } = guardOn(file, key.jwks);
    await guard.ready;
    for (const id of [A, B, C]) expect(guard.check(id).allowed).toBe(true);
    expect(guard.blockedCount).toBe(0);
    const reasons = { unsigned: 1, bad_signature: 1, unknown_kid: 1, jwk_mismatch: 1, invalid_json: 1, schema_invalid: 1 };
    for (const [reason, n] of Object.entries(reasons)) expect(await metric(registry, 'killswitch_guard_ledger_rejected_total', { reason }), reason).toBe(n);
    expect(log.lines.filter((l) => l.msg.startsWith('ignored a kill event')).map((l) => l.fields.reason).sort()).toEqual(Object.keys(reasons).sort());
    // the genuine event, appended after the forgeries, is obeyed
    appendFileSync(file, signedLine(key, { agentId: A }));
    await until(() => !guard.check(A).allowed);
  });

  it('ignores a signed kill event whose text repeats a key or nests deeper than 64: readers would disagree on what was signed', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    const text = (agentId: string): string => signedLine(key, { agentId }).trim();
    // JSON.parse keeps the last "action" (the signed block, so the signature checks out); a parser that keeps the first reads an unblock
    const twoActions = text(A).replace('{"action":"block",', '{"action":"unblock","action":"block",');
    const escapedTwice = text(B).replace('{"action":"block",', '{"\\u0061ction":"unblock","action":"block",');
    const deep = `${text(C).slice(0, -1)},"x":${'['.repeat(100)}${']'.repeat(100)}}`;
    writeFileSync(file, `${[twoActions, escapedTwice, deep].join('\n')}\n`);
    const { guard, registry, log } = guardOn(file, key.jwks);
    await guard.ready;
    for (const id of [A, B, C]) expect(guard.check(id).allowed, id).toBe(true);
    expect(await metric(registry, 'killswitch_guard_ledger_rejected_total', { reason: 'duplicate_key' })).toBe(2);
    expect(await metric(registry, 'killswitch_guard_ledger_rejected_total', { reason: 'too_deep' })).toBe(1);
    expect(log.lines.filter((l) => l.msg.startsWith('ignored a kill event: duplicate key "action"'))).toHaveLength(2);
  });

  it('honours epochs: an unblock of an older epoch does not lift a newer block', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    // out of order on purpose: the block of epoch 2 before the unblock of epoch 1
    writeFileSync(file, signedLine(key, { agentId: A, epoch: 2 }) + signedLine(key, { agentId: A, epoch: 1 }) + signedLine(key, { agentId: A, epoch: 1, action: 'unblock' }));
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    const r = guard.check(A);
    expect(r.allowed === false && r.status === 403 && r.body.kill_event_id).toBe(killEvent({ agentId: A, epoch: 2 }).event_id);
    appendFileSync(file, signedLine(key, { agentId: A, epoch: 2, action: 'unblock' }));
    await until(() => guard.check(A).allowed);
    // a replayed block of the lifted epoch does not come back
    appendFileSync(file, signedLine(key, { agentId: A, epoch: 2 }) + signedLine(key, { agentId: B }));
    await until(() => !guard.check(B).allowed);
    expect(guard.check(A).allowed).toBe(true);
  });

  it('follows the file live: onBlock and onUnblock fire, a line appended in two writes counts once', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    writeFileSync(file, '');
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    const blocked: string[] = [];
    const unblocked: string[] = [];
    guard.onBlock((b) => blocked.push(`${b.agentId}#${b.epoch}:${b.refusal.status}`));
    guard.onUnblock((id) => unblocked.push(id));
    const line = signedLine(key, { agentId: A });
    appendFileSync(file, line.slice(0, 100));
    await new Promise((r) => setTimeout(r, 100));
    expect(guard.check(A).allowed).toBe(true); // half a line is not an event yet
    appendFileSync(file, line.slice(100));
    await until(() => blocked.length === 1);
    expect(blocked).toEqual([`${A}#1:403`]);
    expect(guard.check(A).allowed).toBe(false);
    appendFileSync(file, signedLine(key, { agentId: A, action: 'unblock' }));
    await until(() => unblocked.length === 1);
    expect(unblocked).toEqual([A]);
    expect(guard.check(A).allowed).toBe(true);
  });

  it('reads a replaced file again from its start', async () => {
    const key = testKey();
    const dir = tempDir();
    const file = join(dir, 'kills.ndjson');
    writeFileSync(file, signedLine(key, { agentId: A }) + signedLine(key, { agentId: C }));
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    writeFileSync(join(dir, 'next'), signedLine(key, { agentId: A, action: 'unblock' }));
    renameSync(join(dir, 'next'), file);
    await until(() => guard.check(A).allowed);
    expect(guard.check(C).allowed).toBe(false); // a block seen before stays: only an unblock lifts it
  });

  it('failure_mode closed: 503 KILL_SWITCH_UNAVAILABLE before the ledger is read and while it is stale, with a log line and a metric per change', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    const { guard, log, registry } = guardOn(file, key.jwks, { maxStalenessMs: 300 });
    // no file yet: not ready
    await new Promise((r) => setTimeout(r, 100));
    expect(guard.state).toBe('starting');
    const r = guard.check(B);
    expect(r.allowed === false && r.status).toBe(503);
    if (r.allowed) return;
    expect(r.body.error).toBe('KILL_SWITCH_UNAVAILABLE');
    expect(() => guard.assertAllowed(B)).toThrow(KillSwitchUnavailableError);
    expect(guard.check(undefined).allowed).toBe(true); // anonymous: never refused by the kill switch
    writeFileSync(file, signedLine(key, { agentId: A }));
    await guard.ready;
    expect(guard.check(B).allowed).toBe(true);
    // the ledger goes away: stale after max_staleness
    rmSync(file);
    await until(() => guard.state === 'stale', 3000);
    expect(guard.check(B).allowed === false && (guard.check(B) as { status: number }).status).toBe(503);
    expect((guard.check(A) as { status: number }).status).toBe(403); // a known block stays a 403
    writeFileSync(file, signedLine(key, { agentId: A }));
    await until(() => guard.state === 'ready', 5000);
    expect(guard.check(B).allowed).toBe(true);
    const changes = log.lines.filter((l) => l.fields.to !== undefined).map((l) => `${String(l.fields.from)}>${String(l.fields.to)}`);
    expect(changes).toEqual(['undefined>starting', 'starting>ready', 'ready>stale', 'stale>ready']);
    expect(await metric(registry, 'killswitch_guard_state_changes_total', { to: 'stale' })).toBe(1);
    expect(await metric(registry, 'killswitch_guard_state_changes_total', { to: 'ready' })).toBe(2);
    expect(await metric(registry, 'killswitch_guard_state', { state: 'ready' })).toBe(1);
    expect(log.lines.some((l) => l.msg === 'session guard cannot read the block ledger' && String(l.fields.problem).includes('does not exist'))).toBe(true);
  });

  it('failure_mode open: lets identities through while the ledger is missing, still refuses known blocks', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    writeFileSync(file, signedLine(key, { agentId: A }));
    const { guard } = guardOn(file, key.jwks, { maxStalenessMs: 300, failureMode: 'open' });
    await guard.ready;
    rmSync(file);
    await until(() => guard.state === 'stale', 3000);
    expect(guard.check(B).allowed).toBe(true);
    expect(guard.check(A).allowed).toBe(false);
  });

  it('bootstraps from a ledger of 100,000 signed entries', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    const parts: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      // every tenth identity was unblocked again
      parts.push(signedLine(key, { agentId: `spiffe://example.org/agent/${i}` }));
      if (i % 10 === 0) parts.push(signedLine(key, { agentId: `spiffe://example.org/agent/${i}`, action: 'unblock' }));
    }
    writeFileSync(file, parts.join(''));
    const { guard } = guardOn(file, key.jwks);
    await guard.ready;
    expect(guard.blockedCount).toBe(90_000);
    expect(guard.check('spiffe://example.org/agent/99999').allowed).toBe(false);
    expect(guard.check('spiffe://example.org/agent/50000').allowed).toBe(true);
    expect(guard.check('spiffe://example.org/agent/50001').allowed).toBe(false);
    expect(guard.check('spiffe://example.org/agent/100000').allowed).toBe(true);
  }, 180_000);

  it('a restarted file source reads the file again and reports when it has (regression: a restart left the guard starting forever)', async () => {
    const key = testKey();
    const file = join(tempDir(), 'kills.ndjson');
    writeFileSync(file, signedLine(key, { agentId: A }));
    const source = new FileLedgerSource(file, 20);
    const seen: string[] = [];
    const sink = {
      record: (v: string | Buffer) => seen.push(`record:${String(v).length > 0}`), rejected: () => undefined,
      caughtUp: () => seen.push('caughtUp'), alive: () => undefined, trouble: () => undefined,
    };
    await source.start(sink);
    await source.stop();
    await source.start(sink);
    await source.stop();
    expect(seen).toEqual(['record:true', 'caughtUp', 'record:true', 'caughtUp']);
  });

  it('refuses to start without a trusted key', () => {
    expect(() => createSessionGuard({ ledger: { file: '/nonexistent' }, jwks: { keys: [] }, logger: captureLogger() })).toThrow(/at least one trusted key/);
  });
});
