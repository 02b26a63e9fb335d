/**
 * The block ledger as a numbered feed: every kill event in ledger order gets a sequence number, so
 * `GET /v1/blocks/changes?since=N` and the SSE stream's `Last-Event-ID` resume exactly where a
 * follower stopped. Embedded mode numbers events by their 1-based line in kills.ndjson; Kafka mode by
 * their offset in the kills topic + 1, which stays the same across restarts and instances (compaction
 * only leaves gaps). Numbers only grow.
 */
import type { KillEvent } from './documents.js';
import { ledgerKey, type LedgerFold } from './ledger-fold.js';

export interface FeedEntry {
  readonly seq: number;
  readonly event: KillEvent;
}

export interface BlocksPage {
  readonly items: KillEvent[];
  readonly next_cursor: string | null;
  readonly total: number;
}

export class LedgerFeed {
  private readonly entries: FeedEntry[] = [];
  private readonly listeners = new Set<(e: FeedEntry) => void>();
  /** the latest kill event per identity (or scope, `<agent_id>/*`) */
  private readonly latest = new Map<string, KillEvent>();

  /** Appends with the next number, or with `seq` when given (it must be larger than the last one). */
  append(event: KillEvent, seq?: number): FeedEntry {
    const n = seq ?? this.lastSeq + 1;
    if (n <= this.lastSeq) throw new Error(`ledger feed: seq ${n} after ${this.lastSeq}`);
    const entry = { seq: n, event };
    this.entries.push(entry);
    this.latest.set(ledgerKey(event), event);
    for (const l of this.listeners) l(entry);
    return entry;
  }

  get lastSeq(): number {
    return this.entries.length === 0 ? 0 : this.entries[this.entries.length - 1]!.seq;
  }

  latestOf(agentId: string): KillEvent | undefined {
    return this.latest.get(agentId);
  }

  /** entries with seq > since, at most `limit` */
  since(since: number, limit: number): FeedEntry[] {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid]!.seq <= since) lo = mid + 1;
      else hi = mid;
    }
    return this.entries.slice(lo, lo + limit);
  }

  subscribe(listener: (e: FeedEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Blocked identities and scopes of `fold` ordered by key, `limit` after the cursor (the last key of the previous page). */
  blocksPage(fold: LedgerFold, limit: number, after: string | undefined): BlocksPage {
    const ids: string[] = [];
    for (const s of fold.blockedIdentities()) ids.push(s.agentId);
    ids.sort();
    let start = 0;
    if (after !== undefined) {
      while (start < ids.length && ids[start]! <= after) start++;
    }
    const page = ids.slice(start, start + limit);
    return {
      items: page.map((id) => this.latestOf(id)).filter((e) => e !== undefined),
      next_cursor: start + limit < ids.length ? page[page.length - 1]! : null,
      total: ids.length,
    };
  }
}
