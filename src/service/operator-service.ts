/** The views of an identity the operator API shows (src/ports/operator-service.ts), as both services build them. */
import type { Evaluator, StreamClock } from '../core/evaluator.js';
import type { LedgerFeed } from '../core/ledger-feed.js';
import type { LedgerFold } from '../core/ledger-fold.js';
import { formatRfc3339 } from '../core/time.js';
import type { IdentityView, WindowView } from '../ports/operator-service.js';

/** An identity's window in `evaluator` read at stream time `time` (-Infinity: nothing read yet). */
export function windowView(evaluator: Evaluator, agentId: string, time: number): WindowView {
  const w = evaluator.windowOf(agentId, { time } as StreamClock);
  return {
    calls: w.calls, denies: w.denies, advisory_denies: w.advisoryDenies,
    deny_rate: w.calls === 0 ? null : w.denies / w.calls,
    at: time === -Infinity ? null : formatRfc3339(time),
  };
}

/** The ledger side of an identity's view. */
export function identityView(agentId: string, fold: LedgerFold, feed: LedgerFeed, window: WindowView | null): IdentityView {
  const state = fold.get(agentId);
  return {
    agent_id: agentId,
    state: state?.blocked === true ? 'blocked' : 'active',
    epoch: state?.epoch ?? 0,
    blocked_by_scope: fold.blockingScope(agentId)?.agentId ?? null,
    window,
    last_kill_event: feed.latestOf(agentId) ?? null,
  };
}
