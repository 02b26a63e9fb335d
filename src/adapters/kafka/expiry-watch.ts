/**
 * Decisions the broker deleted before this processor read them: retention (`retention.ms`,
 * `retention.bytes`) or `kafka-delete-records` moved a partition's log start offset past records that
 * were never processed. The consumer cannot read them any more; the client moves on from the log start.
 * For a kill switch that is lost evidence, so it is never silent: each loss is logged with its count and
 * counted in `killswitch_decisions_expired_total`.
 *
 * Two ways to notice it:
 * - at assignment, the committed offset is below the log start offset (the processor was down, or
 *   behind, for longer than the topic keeps records): `atAssignment`;
 * - while live, a batch starts past the offset after the previous one. Offsets have gaps for other
 *   reasons too (transaction markers, aborted records), so a gap is only a question: the partition's
 *   log start offset answers it. Gaps are gathered and checked together, at most one admin request per
 *   `minIntervalMs`, so a stream of transactional records costs a request a second, not one a batch.
 */
export interface ExpiryReport {
  readonly partition: number;
  /** records deleted before they were read */
  readonly lost: number;
  /** the first offset that was lost, and the log start offset that ends the loss */
  readonly from: number;
  readonly to: number;
}

export interface ExpiryWatchOptions {
  /** the decisions topic's log start offset per partition */
  readonly logStartOffsets: () => Promise<ReadonlyMap<number, number>>;
  readonly report: (r: ExpiryReport) => void;
  /** a failed check (broker unreachable) is reported here, never thrown into the consumer */
  readonly onCheckFailed: (err: unknown) => void;
  readonly minIntervalMs?: number;
}

interface Gap {
  readonly partition: number;
  readonly from: number;
  readonly to: number;
}

/** The records lost when a partition's committed offset is below its log start offset (0 when it is not). */
export function expiredAtAssignment(committed: number | undefined, logStart: number): number {
  return committed === undefined || committed < 0 ? 0 : Math.max(0, logStart - committed);
}

export class ExpiryWatch {
  private gaps: Gap[] = [];
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> = Promise.resolve();
  private lastCheck = -Infinity;
  private stopped = false;

  constructor(private readonly o: ExpiryWatchOptions) {}

  /** Assignment: `committed` is the group's committed offset (undefined or < 0: none). */
  atAssignment(partition: number, committed: number | undefined, logStart: number): void {
    const lost = expiredAtAssignment(committed, logStart);
    if (lost > 0) this.o.report({ partition, lost, from: committed!, to: logStart });
  }

  /** Offsets [from, to) of `partition` were not delivered between two batches. */
  noteGap(partition: number, from: number, to: number): void {
    if (this.stopped || to <= from) return;
    this.gaps.push({ partition, from, to });
    if (this.timer !== undefined) return;
    const wait = Math.max(0, this.lastCheck + (this.o.minIntervalMs ?? 1000) - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.checking = this.check();
    }, wait);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    this.lastCheck = performance.now();
    const gaps = this.gaps;
    this.gaps = [];
    let starts: ReadonlyMap<number, number>;
    try {
      starts = await this.o.logStartOffsets();
    } catch (err) {
      this.o.onCheckFailed(err);
      return;
    }
    // A gap below the log start offset was deleted before it was read; a gap above it is markers or
    // aborted records, skipped by design. Several gaps of one partition make one report.
    const lost = new Map<number, { lost: number; from: number; to: number }>();
    for (const g of gaps) {
      const start = starts.get(g.partition) ?? 0;
      const n = Math.min(g.to, start) - g.from;
      if (n <= 0) continue;
      const r = lost.get(g.partition);
      if (r === undefined) lost.set(g.partition, { lost: n, from: g.from, to: Math.min(g.to, start) });
      else lost.set(g.partition, { lost: r.lost + n, from: Math.min(r.from, g.from), to: Math.max(r.to, Math.min(g.to, start)) });
    }
    for (const [partition, r] of lost) this.o.report({ partition, ...r });
  }

  /** No further checks; waits for one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.checking;
  }
}
