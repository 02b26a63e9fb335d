/** The numbered ledger feed behind `/v1/blocks/changes` and the SSE stream. */
import { describe, expect, it } from 'vitest';
import { LedgerFold } from '../../src/core/ledger-fold.js';
import { LedgerFeed } from '../../src/core/ledger-feed.js';
import { killEvent } from '../helpers/ledger.js';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';

describe('ledger feed', () => {
  it('numbers events 1, 2, 3 by default (embedded: the line in kills.ndjson)', () => {
    const feed = new LedgerFeed();
    feed.append(killEvent({ agentId: A }));
    feed.append(killEvent({ agentId: B }));
    expect(feed.since(0, 10).map((e) => e.seq)).toEqual([1, 2]);
    expect(feed.since(1, 10).map((e) => e.event.agent_id)).toEqual([B]);
    expect(feed.lastSeq).toBe(2);
  });

  it('keeps given numbers with gaps (Kafka: offset + 1 after compaction) and resumes after any number', () => {
    const feed = new LedgerFeed();
    for (const seq of [3, 4, 9, 20]) feed.append(killEvent({ agentId: `${A}/${seq}` }), seq);
    expect(feed.since(0, 10).map((e) => e.seq)).toEqual([3, 4, 9, 20]);
    expect(feed.since(4, 10).map((e) => e.seq)).toEqual([9, 20]);
    expect(feed.since(5, 10).map((e) => e.seq)).toEqual([9, 20]); // a number in a gap
    expect(feed.since(9, 1).map((e) => e.seq)).toEqual([20]);
    expect(feed.since(20, 10)).toEqual([]);
    expect(() => feed.append(killEvent({ agentId: A }), 20)).toThrow(/seq 20 after 20/);
  });

  it('pages blocked identities and scopes in key order with the kill event that blocked each', () => {
    const feed = new LedgerFeed();
    const fold = new LedgerFold();
    for (const id of [B, A, `${A}/x`]) {
      const ev = killEvent({ agentId: id });
      feed.append(ev);
      fold.apply(ev);
    }
    const unblock = killEvent({ agentId: `${A}/x`, action: 'unblock' });
    feed.append(unblock);
    fold.apply(unblock);
    const first = feed.blocksPage(fold, 1, undefined);
    expect([first.items.map((e) => e.agent_id), first.next_cursor, first.total]).toEqual([[A], A, 2]);
    const second = feed.blocksPage(fold, 1, first.next_cursor!);
    expect([second.items.map((e) => e.agent_id), second.next_cursor]).toEqual([[B], null]);
  });
});
