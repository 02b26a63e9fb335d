/**
 * Prometheus metrics (prom-client) in a registry of our own. No SPIFFE ID in any label: identities are
 * unbounded; counts by outcome, a gauge for tracked and blocked identities, histograms for latency.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  // prom-client's names already start with process_ or nodejs_: killswitch_process_cpu_seconds_total, ...
  collectDefaultMetrics({ register: registry, prefix: 'killswitch_' });
  const r = { registers: [registry] };
  return {
    registry,
    decisions: new Counter({ name: 'killswitch_decisions_total', help: 'Decisions accepted, by class (call, deny, advisory_deny, ignored)', labelNames: ['class'] as const, ...r }),
    trips: new Counter({ name: 'killswitch_trips_total', help: 'Automatic blocks emitted', ...r }),
    governorHeld: new Counter({ name: 'killswitch_governor_held_total', help: 'Trips the blast-radius governor held (written as shadow events, nothing blocked), by reason', labelNames: ['reason'] as const, ...r }),
    unblocks: new Counter({ name: 'killswitch_unblocks_total', help: 'Unblocks seen on the ledger', ...r }),
    dlq: new Counter({ name: 'killswitch_dlq_total', help: 'Bad records sent to the dead-letter topic, by reason', labelNames: ['reason'] as const, ...r }),
    expired: new Counter({ name: 'killswitch_decisions_expired_total', help: 'Decisions the broker deleted (retention) before this processor read them: lost, never evaluated; per input partition', labelNames: ['partition'] as const, ...r }),
    duplicates: new Counter({ name: 'killswitch_duplicates_total', help: 'Decisions whose decision_id their identity\'s last calls already had (re-deliveries): neither a call nor a deny', ...r }),
    late: new Counter({ name: 'killswitch_late_total', help: 'Decisions dropped as late (older than stream time - allowed lateness)', ...r }),
    ledgerRejected: new Counter({ name: 'killswitch_ledger_rejected_total', help: 'Kill events on the ledger ignored (unsigned, forged, unknown kid), by reason', labelNames: ['reason'] as const, ...r }),
    liveEvictions: new Counter({ name: 'killswitch_live_evictions_total', help: 'Identities with a non-empty window evicted at the tracked-identity cap', ...r }),
    tracked: new Gauge({ name: 'killswitch_tracked_identities', help: 'Identities with a window in memory', ...r }),
    blocked: new Gauge({ name: 'killswitch_blocked_identities', help: 'Identities blocked on the ledger', ...r }),
    lag: new Gauge({ name: 'killswitch_consumer_lag', help: 'Records behind the high watermark, per input partition this instance owns (from its assignment on)', labelNames: ['partition'] as const, ...r }),
    forwarded: new Counter({ name: 'killswitch_forwarded_total', help: 'Decisions read on a partition other than their identity\'s owner partition and forwarded to it through the repartition topic', ...r }),
    repartitionLag: new Gauge({ name: 'killswitch_repartition_consumer_lag', help: 'Records behind the high watermark, per repartition partition this instance owns (decisions forwarded to it, not yet evaluated)', labelNames: ['partition'] as const, ...r }),
    transactions: new Counter({ name: 'killswitch_transactions_total', help: 'Kafka transactions committed by the partition pipelines (each takes every batch of its partition evaluated while the one before ran)', ...r }),
    batchSeconds: new Histogram({ name: 'killswitch_batch_duration_seconds', help: 'Time from a fetched batch handed over to its transaction committed', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], ...r }),
    restoreSeconds: new Histogram({ name: 'killswitch_restore_duration_seconds', help: 'Time from the assignment of a partition to its live processing: fencing the previous owner, finding offsets, re-reading the window', buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120], ...r }),
  };
}

export type KafkaMetrics = ReturnType<typeof createMetrics>;
