/**
 * A port of the cMCP kill switch's evaluator, for the in-process comparison (benchmarks/peers): per
 * identity a deque of (timestamp, decision) for every call; on each call the entries older than the
 * window are dropped from the front and the window is counted again, entry by entry. The trip rule is
 * the one docs/spec.md#2-the-trip-rule took from it: calls >= min_calls and denies / calls >= threshold, both
 * inclusive; an entry exactly at now - window still counts; a trip latches the identity until an
 * unblock, which empties its deque.
 *
 * What is ours, not cMCP's: time is the decision's event time (cMCP reads the gateway's clock when the
 * call happens), so like cMCP this expects time never to go backwards, and it has no lateness rule; the
 * decision is stored as its class (a small integer) where cMCP keeps the string, which counts the same.
 * Decisions that are neither a call nor a deny are not stored, anonymous ones are never evaluated
 * (section 2). Identities stay in the map once seen, as in cMCP.
 */
import { DecisionClass } from '../../src/core/decision-class.js';

export interface CmcpConfig {
  readonly windowMs: number;
  readonly minCalls: number;
  readonly threshold: number;
}

interface Call {
  readonly t: number;
  readonly cls: DecisionClass;
}

/** A double-ended queue as cMCP uses one (Python's collections.deque): append on the right, pop on the left. */
class Deque {
  private items: (Call | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(c: Call): void {
    this.items.push(c);
  }

  peekLeft(): Call | undefined {
    return this.items[this.head];
  }

  popLeft(): void {
    this.items[this.head++] = undefined;
    // Compact once the dead front is as long as the live part: amortised O(1) per pop.
    if (this.head >= 16 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }

  /** Denies among the live entries, counted one by one (an index loop: the cheapest walk in JS). */
  countDenies(): number {
    let denies = 0;
    const items = this.items;
    for (let i = this.head; i < items.length; i++) if (items[i]!.cls !== DecisionClass.Call) denies++;
    return denies;
  }
}

export interface CmcpTrip {
  readonly agentId: string;
  readonly atMs: number;
  readonly calls: number;
  readonly denies: number;
}

export class CmcpEvaluator {
  private readonly windows = new Map<string, Deque>();
  private readonly blocked = new Set<string>();
  trips = 0;

  constructor(private readonly config: CmcpConfig) {}

  get trackedIdentities(): number {
    return this.windows.size;
  }

  isBlocked(agentId: string): boolean {
    return this.blocked.has(agentId);
  }

  /** One decision of `agentId` at time `t` (ms). Returns the trip it causes, or null. */
  record(agentId: string | null, cls: DecisionClass, t: number): CmcpTrip | null {
    if (agentId === null || cls === DecisionClass.Ignored) return null;
    if (this.blocked.has(agentId)) return null;
    let q = this.windows.get(agentId);
    if (q === undefined) {
      q = new Deque();
      this.windows.set(agentId, q);
    }
    q.push({ t, cls });
    const cutoff = t - this.config.windowMs;
    for (let first = q.peekLeft(); first !== undefined && first.t < cutoff; first = q.peekLeft()) q.popLeft();
    // Counted again on every call, as cMCP does.
    const calls = q.length;
    const denies = q.countDenies();
    if (calls < this.config.minCalls || denies / calls < this.config.threshold) return null;
    this.blocked.add(agentId);
    this.trips++;
    return { agentId, atMs: t, calls, denies };
  }

  /** An operator's unblock: the latch is lifted and the window starts empty. */
  unblock(agentId: string): void {
    if (!this.blocked.delete(agentId)) return;
    this.windows.get(agentId)?.clear();
  }
}
