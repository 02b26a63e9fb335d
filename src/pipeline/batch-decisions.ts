/**
 * The decisions of one fetched batch of a partition, held for Evaluator.acceptAll without making an object
 * per record: the fast decoder writes each record into a ReusableDecision of this pool (kept from batch
 * to batch), and only records it declines bring a decision object of their own. A batch is decoded whole,
 * then accepted, then released before the next one starts.
 */
import type { Decision } from '../core/decision.js';
import { ReusableDecision } from '../adapters/serde/fast-decision.js';

export class BatchDecisions {
  private readonly pool: ReusableDecision[] = [];
  private readonly timeOnly: ReusableDecision[] = [];
  private timeOnlyCount = 0;
  /** the batch's decisions in offset order: pool entries, or the full decoder's objects */
  readonly decisions: Decision[] = [];
  /** the offset of each of `decisions` */
  positions = new Float64Array(1024);
  /** how many of `decisions` belong to this batch */
  count = 0;

  /** The pool entry for the next decision (decode into it, then `add` it, or `add` another decision). */
  next(): ReusableDecision {
    let d = this.pool[this.count];
    if (d === undefined) {
      d = new ReusableDecision();
      this.pool.push(d);
    }
    return d;
  }

  /**
   * Adds a decision that only moves the stream's time to `timeMs` (ReusableDecision.setTimeOnly), from a
   * pool of its own, kept from batch to batch like the decoded ones: what a partition keeps of a decision
   * it forwards, and the stream time a forwarded decision carries to its owner (docs/spec.md#11-kafka-mode).
   * It is of the ignored class, so the evaluator checks its lateness, moves the stream time and notes its
   * position, and nothing else (docs/spec.md#2-the-trip-rule, steps 3 to 5).
   */
  addTimeOnly(timeMs: number, position: number): void {
    let d = this.timeOnly[this.timeOnlyCount];
    if (d === undefined) {
      d = new ReusableDecision();
      this.timeOnly.push(d);
    }
    this.timeOnlyCount++;
    d.setTimeOnly(timeMs);
    this.add(d, position);
  }

  add(decision: Decision, position: number): void {
    const i = this.count++;
    if (i === this.positions.length) {
      const grown = new Float64Array(this.positions.length * 2);
      grown.set(this.positions);
      this.positions = grown;
    }
    this.decisions[i] = decision;
    this.positions[i] = position;
  }

  /** After the batch is accepted: the pool lets go of the fetch's bytes, and the next batch starts empty. */
  release(): void {
    const n = Math.min(this.count, this.pool.length);
    for (let i = 0; i < n; i++) this.pool[i]!.release();
    this.count = 0;
    this.timeOnlyCount = 0;
  }
}
