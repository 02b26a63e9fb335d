/**
 * The ledger fold: kill events -> who is blocked, at which epoch (docs/spec.md#3-kill-events).
 *
 * The state of an identity is the greatest (epoch, action) seen, with unblock > block at equal epochs:
 * an unblock lifts exactly the block of its epoch, a stale unblock never lifts a newer block, and a
 * replayed block of an already lifted epoch does not come back. The order events arrive in therefore
 * does not matter, which is what lets every instance and every session guard agree.
 */

export type KillAction = 'block' | 'unblock';

export interface LedgerEntry {
  readonly agent_id: string;
  /** `subtree`: the entry is about agent_id and every ID below it, folded apart from agent_id's own */
  readonly scope?: 'subtree';
  readonly epoch: number;
  readonly action: KillAction;
  readonly at?: string;
  readonly trigger?: string;
  readonly event_id?: string;
}

export interface IdentityState {
  /** the identity, or for a scope its pattern (`spiffe://td/ns/prod/*`) */
  readonly agentId: string;
  readonly epoch: number;
  readonly blocked: boolean;
  /** the kill event that set this state */
  readonly entry: LedgerEntry;
}

export type FoldChange = 'blocked' | 'unblocked' | 'unchanged';

/** A block latched into the fold ahead of its kill event's commit, and the state it replaced (LedgerFold.retract). */
export interface LedgerLatch {
  readonly entry: LedgerEntry;
  readonly previous: IdentityState | undefined;
}

const rank = (a: KillAction): number => (a === 'unblock' ? 1 : 0);

export class LedgerFold {
  private readonly states = new Map<string, IdentityState>();
  private blockedCount = 0;
  private automaticCount = 0;
  private scopeCount = 0;
  /** entries of blocks latched here whose kill events the ledger has not brought yet */
  private readonly unconfirmed = new WeakSet<LedgerEntry>();

  /** Apply one kill event; returns how the identity's blocked state changed. */
  apply(entry: LedgerEntry): FoldChange {
    const key = ledgerKey(entry);
    const cur = this.states.get(key);
    if (cur !== undefined) {
      const newer = entry.epoch > cur.epoch || (entry.epoch === cur.epoch && rank(entry.action) > rank(cur.entry.action));
      if (!newer) {
        // the ledger's copy of a block latched here: it is written now
        if (entry.epoch === cur.epoch && entry.action === cur.entry.action) this.unconfirmed.delete(cur.entry);
        return 'unchanged';
      }
    }
    return this.set(key, cur, { agentId: key, epoch: entry.epoch, blocked: entry.action === 'block', entry });
  }

  /**
   * Apply a block decided here (a trip) ahead of its kill event being written: unconfirmed until the
   * ledger brings an equal event. The latch can be retracted while it is unconfirmed.
   */
  latch(entry: LedgerEntry): LedgerLatch {
    const latch = { entry, previous: this.states.get(ledgerKey(entry)) };
    this.apply(entry);
    this.unconfirmed.add(entry);
    return latch;
  }

  /**
   * Undo a latch whose kill event was never committed (its transaction was fenced or aborted): the
   * identity's state goes back to the one before it. Only while the latch is the state and unconfirmed:
   * once the ledger confirmed it (an equal event) or moved past it, the ledger's word stands. Returns
   * how the blocked state changed.
   */
  retract(latch: LedgerLatch): FoldChange {
    const key = ledgerKey(latch.entry);
    const cur = this.states.get(key);
    if (cur === undefined || cur.entry !== latch.entry || !this.unconfirmed.delete(latch.entry)) return 'unchanged';
    return this.set(key, cur, latch.previous);
  }

  private set(key: string, cur: IdentityState | undefined, next: IdentityState | undefined): FoldChange {
    if (next === undefined) this.states.delete(key);
    else this.states.set(key, next);
    const scope = (next ?? cur)?.entry.scope !== undefined;
    const blocked = (s: IdentityState | undefined): number => (s?.blocked === true ? 1 : 0);
    const automatic = (s: IdentityState | undefined): number => (s?.blocked === true && s.entry.trigger === 'deny_rate' ? 1 : 0);
    if (scope) this.scopeCount += blocked(next) - blocked(cur);
    this.automaticCount += automatic(next) - automatic(cur);
    const was = blocked(cur);
    const is = blocked(next);
    if (was === is) return 'unchanged';
    this.blockedCount += is - was;
    return is === 1 ? 'blocked' : 'unblocked';
  }

  get(agentId: string): IdentityState | undefined {
    return this.states.get(agentId);
  }

  isBlocked(agentId: string): boolean {
    return this.states.get(agentId)?.blocked === true;
  }

  /** The epoch the next block of this identity gets. */
  nextEpoch(agentId: string): number {
    return (this.states.get(agentId)?.epoch ?? 0) + 1;
  }

  get blocked(): number {
    return this.blockedCount;
  }

  /** scopes blocked now */
  get blockedScopes(): number {
    return this.scopeCount;
  }

  /**
   * The blocked scope covering an identity, if any: `spiffe://td/*`, `spiffe://td/a/*`, ... up to the
   * identity's own path, one lookup per path segment.
   */
  blockingScope(agentId: string): IdentityState | undefined {
    if (this.scopeCount === 0) return undefined;
    const root = agentId.indexOf('/', 'spiffe://'.length);
    for (let i = root === -1 ? agentId.length : root; i !== -1; i = agentId.indexOf('/', i + 1)) {
      const s = this.states.get(`${agentId.slice(0, i)}/*`);
      if (s?.blocked === true) return s;
      if (i === agentId.length) break;
    }
    const own = this.states.get(`${agentId}/*`);
    return own?.blocked === true ? own : undefined;
  }

  /** identities blocked by an automatic trip (trigger deny_rate), not by an operator */
  get automaticallyBlocked(): number {
    return this.automaticCount;
  }

  /**
   * Identities blocked now by an automatic trip whose event time `at` is at or after `sinceMs` (the
   * governor's recent blocks). A walk over the states: asked only when a trip is about to be admitted.
   */
  automaticallyBlockedSince(sinceMs: number): number {
    let n = 0;
    for (const s of this.states.values()) {
      if (s.blocked && s.entry.trigger === 'deny_rate' && s.entry.scope === undefined && s.entry.at !== undefined && Date.parse(s.entry.at) >= sinceMs) n++;
    }
    return n;
  }

  /** Identities (not scopes) whose latest kill event is an unblock. */
  *unblockedIdentities(): IterableIterator<IdentityState> {
    for (const s of this.states.values()) if (!s.blocked && s.entry.action === 'unblock' && s.entry.scope === undefined) yield s;
  }

  *blockedIdentities(): IterableIterator<IdentityState> {
    for (const s of this.states.values()) if (s.blocked) yield s;
  }
}

/** Where an entry is folded: the identity, or `<agent_id>/*` for a scope. */
export function ledgerKey(entry: { readonly agent_id: string; readonly scope?: 'subtree' }): string {
  return entry.scope === 'subtree' ? `${entry.agent_id}/*` : entry.agent_id;
}
