/**
 * Embedded mode's /metrics from the evaluator's counts: the same series Kafka mode exports
 * (killswitch_decisions_total{class}, _late_total, _duplicates_total, _tracked_identities), which the
 * dashboard, the alerts and the README's health check read in both modes. The evaluator counts in plain
 * numbers on its hot path; they are carried into the registry as deltas, at most once a second and at
 * every scrape-worthy moment (a trip, the end of an input).
 */
import type { Evaluator } from '../core/evaluator.js';
import type { KafkaMetrics } from '../adapters/metrics/metrics.js';

type Counted = Record<'calls' | 'denies' | 'advisoryDenies' | 'ignored' | 'late' | 'duplicates', number>;

export class EmbeddedMetrics {
  private seen: Counted = { calls: 0, denies: 0, advisoryDenies: 0, ignored: 0, late: 0, duplicates: 0 };
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly metrics: KafkaMetrics, private readonly evaluator: Evaluator) {
    this.timer = setInterval(() => this.sync(), 1000);
    this.timer.unref();
  }

  /** What was counted so far (windows rebuilt on a restart) is not new: count from here on. */
  baseline(): void {
    const s = this.evaluator.stats;
    this.seen = { calls: s.calls, denies: s.denies, advisoryDenies: s.advisoryDenies, ignored: s.ignored, late: s.late, duplicates: s.duplicates };
    this.sync();
  }

  sync(): void {
    const s = this.evaluator.stats;
    const m = this.metrics;
    const add = (key: keyof Counted, inc: (n: number) => void): void => {
      const n = s[key] - this.seen[key];
      if (n > 0) inc(n);
      this.seen[key] = s[key];
    };
    add('calls', (n) => m.decisions.inc({ class: 'call' }, n));
    add('denies', (n) => m.decisions.inc({ class: 'deny' }, n));
    add('advisoryDenies', (n) => m.decisions.inc({ class: 'advisory_deny' }, n));
    add('ignored', (n) => m.decisions.inc({ class: 'ignored' }, n));
    add('late', (n) => m.late.inc(n));
    add('duplicates', (n) => m.duplicates.inc(n));
    m.tracked.set(this.evaluator.trackedIdentities);
    m.blocked.set(this.evaluator.ledger.blocked);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sync();
  }
}
