/**
 * BatchDecisions (src/pipeline/batch-decisions.ts): the Kafka processor's per-partition holder of
 * a batch's decisions, reused from batch to batch. A batch larger than any before it keeps every
 * decision and offset; after release the next batch starts empty and the pool's decisions no longer
 * hold the last batch's bytes.
 */
import { describe, expect, it } from 'vitest';
import { createClassifier } from '../../../src/core/decision-class.js';
import type { Decision } from '../../../src/core/decision.js';
import { FastDecisionDecoder } from '../../../src/adapters/serde/fast-decision.js';
import { BatchDecisions } from '../../../src/pipeline/batch-decisions.js';

const decoder = new FastDecisionDecoder(createClassifier());
const record = (i: number): Buffer =>
  Buffer.from(JSON.stringify({ decision_id: `d-${i}`, agent_id: `spiffe://example.org/a${i % 7}`, decision: i % 3 === 0 ? 'deny' : 'allow', occurred_at: '2026-11-24T10:00:00Z' }));

/** Decodes `n` records into `batch` as the processor does; every fifth one is a decision of the full decoder's. */
function fill(batch: BatchDecisions, n: number, first: number): void {
  for (let i = first; i < first + n; i++) {
    const into = batch.next();
    if (i % 5 === 0) {
      const own: Decision = { decisionId: `own-${i}`, agentId: null, cls: 0, timeMs: 0, sessionId: undefined };
      batch.add(own, 1000 + i);
      continue;
    }
    expect(decoder.decodeInto(record(i), null, into)).toBe(true);
    batch.add(into, 1000 + i);
  }
}

describe('BatchDecisions', () => {
  it('holds every decision and offset of a batch larger than its arrays, in order, and starts the next batch empty', () => {
    const batch = new BatchDecisions();
    fill(batch, 3000, 0);
    expect(batch.count).toBe(3000);
    for (let i = 0; i < 3000; i++) {
      expect(batch.positions[i]).toBe(1000 + i);
      expect(batch.decisions[i]!.decisionId).toBe(i % 5 === 0 ? `own-${i}` : `d-${i}`);
    }
    const pooled = batch.decisions[1]!;
    batch.release();
    expect(batch.count).toBe(0);
    // a released pool decision has let go of the record's bytes
    expect(() => pooled.decisionId).toThrow(/released/);

    // the next, smaller batch reuses the pool and sees only its own decisions
    fill(batch, 10, 5000);
    expect(batch.count).toBe(10);
    expect(Array.from(batch.positions.subarray(0, 10))).toEqual(Array.from({ length: 10 }, (_, i) => 6000 + i));
    expect(batch.decisions.slice(0, 10).map((d) => d.decisionId)).toEqual(Array.from({ length: 10 }, (_, i) => (i % 5 === 0 ? `own-${5000 + i}` : `d-${5000 + i}`)));
    expect(batch.decisions[1]).toBe(pooled);
  });
});
