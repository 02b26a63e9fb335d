/**
 * guard.check() against the ledger fold it follows: for any set of signed blocks and unblocks of
 * identities and scopes, in any order, the guard refuses exactly whom LedgerFold says is blocked
 * (directly or by the first blocked scope above it, docs/spec.md#7-refusing-a-session), with the same
 * refusal; and anything asked about that is not a valid SPIFFE ID gets IDENTITY_INVALID instead.
 */
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/core/canonical-json.js';
import { buildKillEvent, type KillEvent } from '../../../src/core/documents.js';
import { LedgerFold } from '../../../src/core/ledger-fold.js';
import { spiffeIdError } from '../../../src/core/spiffe-id.js';
import { SessionGuard } from '../../../src/session/guard.js';
import type { LedgerSink, LedgerSource } from '../../../src/session/ledger-source.js';
import { ALLOWED, identityInvalid, trippedFor, type CheckResult } from '../../../src/session/refusal.js';
import { captureLogger } from '../../helpers/capture-logger.js';
import { KS, testKey } from '../../helpers/ledger.js';

const key = testKey();

/** a source that hands over what the test pushes */
class PushSource implements LedgerSource {
  readonly description = 'test';
  sink: LedgerSink | undefined;
  start(sink: LedgerSink): Promise<void> {
    this.sink = sink;
    sink.alive();
    sink.caughtUp();
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

interface Ev { agentId: string; scope: boolean; epoch: number; action: 'block' | 'unblock' }

const id = fc.tuple(fc.constantFrom('a.example', 'b.example'), fc.array(fc.constantFrom('ns', 'prod', 'sa', 'x', 'agent-1'), { maxLength: 4 }))
  .map(([td, path]) => `spiffe://${td}${path.map((p) => `/${p}`).join('')}`);
const ev = fc.record({ agentId: id, scope: fc.boolean(), epoch: fc.integer({ min: 1, max: 3 }), action: fc.constantFrom('block' as const, 'unblock' as const) });

const killEvent = (e: Ev): KillEvent => buildKillEvent({
  action: e.action, agentId: e.agentId, ...(e.scope ? { scope: 'subtree' as const } : {}), epoch: e.epoch, trigger: 'operator',
  at: `2026-11-23T09:00:0${e.epoch}.000Z`, reason: 'test', authorizedBy: 'tester@example.org', killSwitch: KS,
});

/** what check() answered before the BlockTable: a Map of refusals, then LedgerFold.blockingScope; invalid IDs first */
function reference(fold: LedgerFold, agentId: string): CheckResult {
  const invalid = spiffeIdError(agentId);
  if (invalid !== null) return identityInvalid(invalid);
  const own = fold.get(agentId);
  if (own?.blocked === true) return trippedFor(own);
  const scope = fold.blockingScope(agentId);
  return scope === undefined ? ALLOWED : trippedFor(scope, agentId);
}

describe('SessionGuard.check', () => {
  it('refuses exactly whom the ledger fold blocks, directly or by a scope, with the same refusal', () => {
    fc.assert(fc.property(fc.array(ev, { maxLength: 25 }), fc.array(id, { maxLength: 10 }), (events, asked) => {
      const source = new PushSource();
      const guard = new SessionGuard({ source, trusted: key.trusted, failureMode: 'closed', maxStalenessMs: 60_000, log: captureLogger(), registry: new Registry() });
      try {
        const fold = new LedgerFold();
        for (const e of events) {
          const k = killEvent(e);
          source.sink!.record(canonicalJson(key.signer.sign(k, false)));
          fold.apply(k);
        }
        const queries = new Set<string>(asked);
        for (const e of events) {
          queries.add(e.agentId);
          queries.add(`${e.agentId}/child`);
          // spelled as no SPIFFE ID is: the ledger key of a scope, other case, a trailing slash
          queries.add(`${e.agentId}/*`);
          queries.add(e.agentId.toUpperCase());
          queries.add(`${e.agentId}/`);
        }
        for (const q of queries) {
          const got = guard.check(`${q} `.slice(0, -1)); // a string object of its own, as read from a header
          const want = reference(fold, q);
          expect({ q, got: got.allowed ? 'allowed' : got.json }).toEqual({ q, got: want.allowed ? 'allowed' : want.json });
          // and as part of a delegation chain
          expect(guard.check(undefined, ['', q]).allowed).toBe(want.allowed);
        }
        expect(guard.blockedCount).toBe(fold.blocked);
      } finally {
        void guard.close();
      }
    }), { numRuns: 60 });
  });
});

describe('SessionGuard.check on identities that are not valid SPIFFE IDs', () => {
  const blocked = 'spiffe://a.example/ns/prod';

  function guardWith(failureMode: 'closed' | 'open'): { guard: SessionGuard; registry: Registry; log: ReturnType<typeof captureLogger> } {
    const source = new PushSource();
    const registry = new Registry();
    const log = captureLogger();
    const guard = new SessionGuard({ source, trusted: key.trusted, failureMode, maxStalenessMs: 60_000, log, registry });
    source.sink!.record(canonicalJson(key.signer.sign(killEvent({ agentId: blocked, scope: true, epoch: 1, action: 'block' }), false)));
    return { guard, registry, log };
  }

  const counted = async (registry: Registry): Promise<Record<string, number>> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'killswitch_guard_identity_invalid_total')!;
    return Object.fromEntries(m.values.map((v) => [String(v.labels.outcome), v.value]));
  };

  it('closed: any string that is not a SPIFFE ID is refused with 400 and the rule it breaks, even one no block covers; each is counted', async () => {
    const { guard, registry } = guardWith('closed');
    try {
      fc.assert(fc.property(fc.string({ maxLength: 80 }).filter((s) => s !== '' && spiffeIdError(s) !== null), (s) => {
        const r = guard.check(s);
        expect(r.allowed === false && [r.status, r.code, r.body.detail]).toEqual([400, 'IDENTITY_INVALID', spiffeIdError(s)]);
      }), { numRuns: 200 });
      expect((await counted(registry)).refused).toBe(200);
    } finally {
      void guard.close();
    }
  });

  it('a blocked identity anywhere in the request is refused 403 before an invalid one is 400', () => {
    const { guard } = guardWith('closed');
    try {
      expect(guard.check('SPIFFE://a.example/x', [`${blocked}/sa/agent`])).toMatchObject({ status: 403, code: 'KILL_SWITCH_TRIPPED' });
      expect(guard.check(`${blocked}/sa/agent`, ['SPIFFE://a.example/x'])).toMatchObject({ status: 403, code: 'KILL_SWITCH_TRIPPED' });
      expect(guard.check('spiffe://b.example/fine', ['SPIFFE://a.example/x'])).toMatchObject({ status: 400, code: 'IDENTITY_INVALID' });
    } finally {
      void guard.close();
    }
  });

  it('open: an invalid identity is never looked up, only let through, counted and logged (at most a line per 10 s)', async () => {
    const { guard, registry, log } = guardWith('open');
    try {
      expect(guard.check(blocked.toUpperCase()).allowed).toBe(true);
      expect(guard.check(`${blocked}/x/`).allowed).toBe(true);
      expect(() => guard.assertAllowed('spiffe://a.example/%6Es/prod/x')).not.toThrow();
      expect(guard.check(`${blocked}/x`).allowed).toBe(false); // valid and under the blocked scope
      expect(await counted(registry)).toEqual({ refused: 0, allowed: 3 });
      const lines = log.lines.filter((l) => l.msg.startsWith('let through an identity'));
      expect(lines.map((l) => l.fields)).toEqual([{ identity: blocked.toUpperCase(), reason: 'scheme is missing or invalid (must be "spiffe://")', failure_mode: 'open' }]);
    } finally {
      void guard.close();
    }
  });
});
