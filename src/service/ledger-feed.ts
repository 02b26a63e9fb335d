/**
 * The block ledger as a numbered feed: every kill event in ledger order gets a sequence number (its
 * 1-based line in kills.ndjson), so `GET /v1/blocks/changes?since=N` and the SSE stream's
 * `Last-Event-ID` resume exactly where a follower stopped.
 */
import type { KillEvent } from '../core/documents.js';
import { ledgerKey } from '../core/ledger-fold.js';

export interface FeedEntry {
  readonly seq: number;
  readonly event: KillEvent;
}

export class LedgerFeed {
  private readonly events: KillEvent[] = [];
  private readonly listeners = new Set<(e: FeedEntry) => void>();
  /** the latest kill event per identity (or scope, `<agent_id>/*`) */
  private readonly latest = new Map<string, KillEvent>();

  append(event: KillEvent): FeedEntry {
    this.events.push(event);
    this.latest.set(ledgerKey(event), event);
    const entry = { seq: this.events.length, event };
    for (const l of this.listeners) l(entry);
    return entry;
  }

  get lastSeq(): number {
    return this.events.length;
  }

  latestOf(agentId: string): KillEvent | undefined {
    return this.latest.get(agentId);
  }

  /** entries with seq > since, at most `limit` */
  since(since: number, limit: number): FeedEntry[] {
    const from = Math.max(0, Math.floor(since));
    return this.events.slice(from, from + limit).map((event, i) => ({ seq: from + i + 1, event }));
  }

  subscribe(listener: (e: FeedEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
