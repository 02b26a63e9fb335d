/**
 * The ledger fold: kill events -> who is blocked, at which epoch (CONTRACTS.md section 3).
 *
 * The state of an identity is the greatest (epoch, action) seen, with unblock > block at equal epochs:
 * an unblock lifts exactly the block of its epoch, a stale unblock never lifts a newer block, and a
 * replayed block of an already lifted epoch does not come back. The order events arrive in therefore
 * does not matter, which is what lets every instance and every session guard agree.
 */

export type KillAction = 'block' | 'unblock';

export interface LedgerEntry {
  readonly agent_id: string;
  readonly epoch: number;
  readonly action: KillAction;
  readonly at?: string;
  readonly trigger?: string;
  readonly event_id?: string;
}

export interface IdentityState {
  readonly agentId: string;
  readonly epoch: number;
  readonly blocked: boolean;
  /** the kill event that set this state */
  readonly entry: LedgerEntry;
}

export type FoldChange = 'blocked' | 'unblocked' | 'unchanged';

const rank = (a: KillAction): number => (a === 'unblock' ? 1 : 0);

export class LedgerFold {
  private readonly states = new Map<string, IdentityState>();
  private blockedCount = 0;
  private automaticCount = 0;

  /** Apply one kill event; returns how the identity's blocked state changed. */
  apply(entry: LedgerEntry): FoldChange {
    const cur = this.states.get(entry.agent_id);
    if (cur !== undefined) {
      const newer = entry.epoch > cur.epoch || (entry.epoch === cur.epoch && rank(entry.action) > rank(cur.entry.action));
      if (!newer) return 'unchanged';
    }
    const blocked = entry.action === 'block';
    this.states.set(entry.agent_id, { agentId: entry.agent_id, epoch: entry.epoch, blocked, entry });
    const automatic = (s: { blocked: boolean; entry: LedgerEntry } | undefined): number => (s?.blocked === true && s.entry.trigger === 'deny_rate' ? 1 : 0);
    this.automaticCount += automatic({ blocked, entry }) - automatic(cur);
    const was = cur?.blocked ?? false;
    if (was === blocked) return 'unchanged';
    this.blockedCount += blocked ? 1 : -1;
    return blocked ? 'blocked' : 'unblocked';
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

  /** identities blocked by an automatic trip (trigger deny_rate), not by an operator */
  get automaticallyBlocked(): number {
    return this.automaticCount;
  }

  *blockedIdentities(): IterableIterator<IdentityState> {
    for (const s of this.states.values()) if (s.blocked) yield s;
  }
}
