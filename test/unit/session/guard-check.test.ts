/**
 * guard.check() against the ledger fold it follows: for any set of signed blocks and unblocks of
 * identities and scopes, in any order, the guard refuses exactly whom LedgerFold says is blocked
 * (directly or by the first blocked scope above it, CONTRACTS.md section 6), with the same refusal.
 */
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/core/canonical-json.js';
import { buildKillEvent, type KillEvent } from '../../../src/core/documents.js';
import { LedgerFold } from '../../../src/core/ledger-fold.js';
import { SessionGuard } from '../../../src/session/guard.js';
import type { LedgerSink, LedgerSource } from '../../../src/session/ledger-source.js';
import { ALLOWED, trippedFor, type CheckResult } from '../../../src/session/refusal.js';
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

/** what check() answered before the BlockTable: a Map of refusals, then LedgerFold.blockingScope */
function reference(fold: LedgerFold, agentId: string): CheckResult {
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
          queries.add(`${e.agentId}/*`);
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
