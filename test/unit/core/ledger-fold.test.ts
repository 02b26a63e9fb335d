/**
 * The ledger fold (docs/spec.md#3-kill-events): epochs order kill events, so every reader that sees the
 * same set of events agrees on who is blocked, whatever order the events arrived in.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type KillAction, LedgerFold, type LedgerEntry } from '../../../src/core/ledger-fold.js';

const X = 'spiffe://ledger.example/agent/x';
const Y = 'spiffe://ledger.example/agent/y';

const ev = (agent_id: string, epoch: number, action: KillAction): LedgerEntry => ({
  agent_id, epoch, action, at: `2026-01-01T00:00:0${epoch % 10}Z`, trigger: 'deny_rate', event_id: `${agent_id}#${epoch}#${action}`,
});

describe('LedgerFold: epoch ordering', () => {
  it('blocks, and an unblock lifts exactly the block of its epoch', () => {
    const f = new LedgerFold();
    expect(f.isBlocked(X)).toBe(false);
    expect(f.get(X)).toBeUndefined();
    expect(f.apply(ev(X, 1, 'block'))).toBe('blocked');
    expect(f.isBlocked(X)).toBe(true);
    expect(f.apply(ev(X, 1, 'unblock'))).toBe('unblocked');
    expect(f.isBlocked(X)).toBe(false);
    expect(f.apply(ev(X, 2, 'block'))).toBe('blocked');
    expect(f.get(X)).toEqual({ agentId: X, epoch: 2, blocked: true, entry: ev(X, 2, 'block') });
  });

  it('does not let a stale unblock (epoch 1) lift a newer block (epoch 2)', () => {
    const f = new LedgerFold();
    f.apply(ev(X, 2, 'block'));
    expect(f.apply(ev(X, 1, 'unblock'))).toBe('unchanged');
    expect(f.isBlocked(X)).toBe(true);
    expect(f.get(X)?.epoch).toBe(2);
    expect(f.apply(ev(X, 2, 'unblock'))).toBe('unblocked');
    expect(f.isBlocked(X)).toBe(false);
  });

  it('does not bring back a block replayed after its unblock, in either arrival order', () => {
    const f = new LedgerFold();
    f.apply(ev(X, 2, 'block'));
    f.apply(ev(X, 2, 'unblock'));
    expect(f.apply(ev(X, 2, 'block'))).toBe('unchanged');
    expect(f.apply(ev(X, 1, 'block'))).toBe('unchanged');
    expect(f.isBlocked(X)).toBe(false);

    // The unblock arrives before its block (compacted topic read out of order): the block stays lifted.
    const g = new LedgerFold();
    expect(g.apply(ev(Y, 2, 'unblock'))).toBe('unchanged');
    expect(g.apply(ev(Y, 2, 'block'))).toBe('unchanged');
    expect(g.isBlocked(Y)).toBe(false);
    expect(g.blocked).toBe(0);
  });

  it('reports duplicates as unchanged and keeps the first event as the cause', () => {
    const f = new LedgerFold();
    const first = ev(X, 1, 'block');
    expect(f.apply(first)).toBe('blocked');
    expect(f.apply({ ...first })).toBe('unchanged');
    expect(f.apply({ ...first, at: '2030-01-01T00:00:00Z' })).toBe('unchanged');
    expect(f.get(X)?.entry).toBe(first);
    expect(f.blocked).toBe(1);
    f.apply(ev(X, 1, 'unblock'));
    expect(f.apply(ev(X, 1, 'unblock'))).toBe('unchanged');
    expect(f.blocked).toBe(0);
  });

  it('moves to a newer epoch of the same action without reporting a change', () => {
    const f = new LedgerFold();
    f.apply(ev(X, 1, 'block'));
    expect(f.apply(ev(X, 3, 'block'))).toBe('unchanged'); // still blocked, now at epoch 3
    expect(f.get(X)?.epoch).toBe(3);
    expect(f.apply(ev(X, 2, 'unblock'))).toBe('unchanged');
    expect(f.isBlocked(X)).toBe(true);
    expect(f.apply(ev(X, 3, 'unblock'))).toBe('unblocked');
    expect(f.blocked).toBe(0);
  });
});

describe('LedgerFold: counts and listing', () => {
  it('tracks the blocked count and lists exactly the blocked identities', () => {
    const f = new LedgerFold();
    const ids = ['a', 'b', 'c', 'd'].map((s) => `spiffe://ledger.example/agent/${s}`);
    for (const id of ids) f.apply(ev(id, 1, 'block'));
    expect(f.blocked).toBe(4);
    f.apply(ev(ids[1]!, 1, 'unblock'));
    f.apply(ev(ids[3]!, 1, 'unblock'));
    f.apply(ev(ids[3]!, 1, 'unblock'));
    f.apply(ev(ids[0]!, 1, 'block'));
    expect(f.blocked).toBe(2);
    const listed = [...f.blockedIdentities()];
    expect(listed.map((s) => s.agentId).sort()).toEqual([ids[0], ids[2]]);
    expect(listed.every((s) => s.blocked && s.epoch === 1 && s.entry.action === 'block')).toBe(true);
    f.apply(ev(ids[3]!, 2, 'block'));
    expect(f.blocked).toBe(3);
    expect([...f.blockedIdentities()].map((s) => s.agentId).sort()).toEqual([ids[0], ids[2], ids[3]]);
  });

  it('gives the next epoch after the latest one seen, block or unblock', () => {
    const f = new LedgerFold();
    expect(f.nextEpoch(X)).toBe(1);
    f.apply(ev(X, 1, 'block'));
    expect(f.nextEpoch(X)).toBe(2);
    f.apply(ev(X, 1, 'unblock'));
    expect(f.nextEpoch(X)).toBe(2);
    f.apply(ev(X, 5, 'unblock')); // an operator unblock far ahead
    expect(f.nextEpoch(X)).toBe(6);
    f.apply(ev(X, 3, 'block')); // stale
    expect(f.nextEpoch(X)).toBe(6);
    expect(f.nextEpoch(Y)).toBe(1);
  });
});

describe('LedgerFold: arrival order does not matter', () => {
  const agents = ['a', 'b', 'c'].map((s) => `spiffe://ledger.example/agent/${s}`);
  const eventArb = fc.record({
    agent: fc.constantFrom(...agents),
    epoch: fc.integer({ min: 1, max: 4 }),
    action: fc.constantFrom<KillAction>('block', 'unblock'),
  }).map((e) => ev(e.agent, e.epoch, e.action));
  // Events repeat (duplicates are normal on an at-least-once topic); ev() gives equal duplicates.
  const eventsArb = fc.array(eventArb, { minLength: 0, maxLength: 25 });

  interface Final { states: Record<string, unknown>; blocked: number; listed: string[]; next: number[]; net: number }
  function fold(events: readonly LedgerEntry[]): Final {
    const f = new LedgerFold();
    let net = 0;
    for (const e of events) {
      const change = f.apply(e);
      if (change === 'blocked') net++;
      else if (change === 'unblocked') net--;
    }
    const states: Record<string, unknown> = {};
    for (const a of agents) states[a] = f.get(a);
    return {
      states, blocked: f.blocked, listed: [...f.blockedIdentities()].map((s) => s.agentId).sort(),
      next: agents.map((a) => f.nextEpoch(a)), net,
    };
  }

  /** Section 3, literally: the state is the greatest (epoch, action) with unblock above block. */
  function reference(events: readonly LedgerEntry[]): { blocked: string[]; epochs: (number | undefined)[] } {
    const best = new Map<string, LedgerEntry>();
    for (const e of events) {
      const cur = best.get(e.agent_id);
      const key = (x: LedgerEntry): number => x.epoch * 2 + (x.action === 'unblock' ? 1 : 0);
      if (cur === undefined || key(e) > key(cur)) best.set(e.agent_id, e);
    }
    return {
      blocked: agents.filter((a) => best.get(a)?.action === 'block'),
      epochs: agents.map((a) => best.get(a)?.epoch),
    };
  }

  it('ends in the same state for every permutation of the same events, and that state is the reference', () => {
    fc.assert(
      fc.property(
        eventsArb.chain((events) => fc.tuple(fc.constant(events), fc.shuffledSubarray(events, { minLength: events.length }))),
        ([events, shuffled]) => {
          const a = fold(events);
          const b = fold(shuffled);
          expect(b).toEqual(a);
          expect(a.net).toBe(a.blocked);
          expect(a.listed.length).toBe(a.blocked);
          const ref = reference(events);
          expect(a.listed).toEqual(ref.blocked);
          expect(agents.map((id) => (a.states[id] as { epoch: number } | undefined)?.epoch)).toEqual(ref.epochs);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('LedgerFold: scopes', () => {
  const scopeEvent = (agent_id: string, epoch: number, action: 'block' | 'unblock') => ({ agent_id, scope: 'subtree' as const, epoch, action, trigger: 'operator' });

  it('a blocked scope covers its own ID and every ID below it, and nothing beside it', () => {
    const f = new LedgerFold();
    f.apply(scopeEvent('spiffe://s.example/ns/prod', 1, 'block'));
    expect(f.blockingScope('spiffe://s.example/ns/prod/sa/a')?.agentId).toBe('spiffe://s.example/ns/prod/*');
    expect(f.blockingScope('spiffe://s.example/ns/prod')?.agentId).toBe('spiffe://s.example/ns/prod/*');
    expect(f.blockingScope('spiffe://s.example/ns/production/sa/a')).toBeUndefined();
    expect(f.blockingScope('spiffe://s.example/ns/dev/sa/a')).toBeUndefined();
    // the identity with the scope's own ID is not blocked as an identity
    expect(f.isBlocked('spiffe://s.example/ns/prod')).toBe(false);
    expect(f.blockedScopes).toBe(1);
  });

  it('a trust-domain scope covers the whole trust domain; scope and identity blocks are lifted separately', () => {
    const f = new LedgerFold();
    f.apply(scopeEvent('spiffe://s.example', 1, 'block'));
    f.apply({ agent_id: 'spiffe://s.example/a', epoch: 1, action: 'block', trigger: 'operator' });
    expect(f.blockingScope('spiffe://s.example/x/y')?.agentId).toBe('spiffe://s.example/*');
    expect(f.blockingScope('spiffe://other.example/x')).toBeUndefined();
    f.apply(scopeEvent('spiffe://s.example', 1, 'unblock'));
    expect(f.blockingScope('spiffe://s.example/x/y')).toBeUndefined();
    expect(f.isBlocked('spiffe://s.example/a')).toBe(true);
    expect(f.blockedScopes).toBe(0);
  });
});

describe('LedgerFold: latches ahead of the ledger (docs/spec.md#11-kafka-mode)', () => {
  it('a retracted latch leaves the state as it was before it, counts included', () => {
    const f = new LedgerFold();
    f.apply(ev(X, 1, 'block'));
    f.apply(ev(X, 1, 'unblock'));
    const before = f.get(X);
    const latch = f.latch(ev(X, 2, 'block'));
    expect(f.isBlocked(X)).toBe(true);
    expect(f.automaticallyBlocked).toBe(1);
    expect(f.retract(latch)).toBe('unblocked');
    expect(f.get(X)).toBe(before);
    expect(f.blocked).toBe(0);
    expect(f.automaticallyBlocked).toBe(0);
    expect(f.nextEpoch(X)).toBe(2);
    // a first block of an identity never seen goes back to nothing
    const y = f.latch(ev(Y, 1, 'block'));
    expect(f.retract(y)).toBe('unblocked');
    expect(f.get(Y)).toBeUndefined();
    expect(f.retract(y)).toBe('unchanged');
  });

  it('a latch the ledger confirmed, or moved past, is not retracted', () => {
    const f = new LedgerFold();
    const confirmed = f.latch(ev(X, 1, 'block'));
    // its kill event read back from the ledger (another copy of an equal event)
    expect(f.apply(ev(X, 1, 'block'))).toBe('unchanged');
    expect(f.retract(confirmed)).toBe('unchanged');
    expect(f.isBlocked(X)).toBe(true);

    const superseded = f.latch(ev(Y, 1, 'block'));
    f.apply(ev(Y, 1, 'unblock'));
    f.apply(ev(Y, 2, 'block'));
    expect(f.retract(superseded)).toBe('unchanged');
    expect(f.get(Y)?.epoch).toBe(2);
    expect(f.blocked).toBe(2);
  });
});
