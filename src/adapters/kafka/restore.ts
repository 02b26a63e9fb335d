/**
 * Assignment and restore (docs/spec.md#11-kafka-mode, "Restore on assignment"): when an instance is
 * given partition p, where it takes up each of p's two inputs (decisions p, repartition p) and how far
 * back it re-reads them to rebuild the windows open at its committed offsets, and the tip of p's
 * addenda chain, which its next addendum links to. Read only after the previous owner is fenced, when
 * the committed offsets and the chain tips are final.
 */
import type { Admin, Kafka } from 'kafkajs';
import type { TraceAddendum } from '../../core/documents.js';
import { PartitionReader, readTail } from './partition-reader.js';
import { retrying } from './retry.js';
import { committedStreamTime } from './transactional-committer.js';

/** Where one input of an assigned partition is taken up. */
export interface InputPlan {
  /** the committed offset (undefined: nothing committed yet) */
  readonly committed: number | undefined;
  /** the partition's log start offset and high watermark now */
  readonly low: number;
  readonly high: number;
  /** offsets from here on are live (processed and committed); below it, re-read to restore windows */
  readonly liveFrom: number;
  /** where the re-reading starts (= liveFrom: nothing to restore) */
  readonly restoreFrom: number;
}

export interface RestorePlan {
  readonly decisions: InputPlan;
  readonly repartition: InputPlan;
}

/** The trip rule's times that decide how far back a restore reaches. */
export interface RestoreReach {
  readonly windowMs: number;
  readonly latenessMs: number;
  readonly resolutionMs: number;
  readonly maxFutureSkewMs: number;
}

export interface PlanRestoreOptions {
  readonly kafka: Kafka;
  readonly admin: Admin;
  readonly groupId: string;
  readonly decisions: string;
  readonly repartition: string;
  readonly addenda: string;
  readonly partitions: readonly number[];
  readonly reach: RestoreReach;
}

type Committed = { partition: number; offset: string; metadata: string | null };

/**
 * The restore plan of each of `partitions`, and the last committed addendum of each (its chain's tip).
 * Reads of different topics, each a consumer group of its own (whose join can wait for the broker's
 * group.initial.rebalance.delay.ms), run side by side.
 */
export async function planRestore(o: PlanRestoreOptions): Promise<{ plans: Map<number, RestorePlan>; tips: TraceAddendum[] }> {
  const { admin, groupId, decisions, repartition, partitions } = o;
  const committed = await retrying(() => admin.fetchOffsets({ groupId, topics: [decisions, repartition] }));
  const committedOf = (topic: string): Committed[] => committed.find((c) => c.topic === topic)?.partitions ?? [];
  // Where both inputs' restores reach back from: the least stream time of the partition's streams. A
  // window is shared by both inputs' decisions, so each input must be re-read as far back as any
  // stream's open windows reach.
  const streamTimeOf = new Map(committedOf(decisions).map((x) => [x.partition, committedStreamTime(x.metadata)]));
  for (const x of committedOf(repartition)) {
    const t = committedStreamTime(x.metadata);
    const own = streamTimeOf.get(x.partition);
    if (t !== undefined) streamTimeOf.set(x.partition, own === undefined ? t : Math.min(own, t));
  }
  const boundsOf = async (topic: string): Promise<Map<number, { low: number; high: number }>> =>
    new Map((await retrying(() => admin.fetchTopicOffsets(topic))).map((b) => [b.partition, { low: Number(b.low), high: Number(b.high) }]));
  const inputs = await Promise.all([decisions, repartition].map(async (topic) => {
    const offsets = new Map(committedOf(topic).map((x) => [x.partition, Number(x.offset)]));
    const bounds = await boundsOf(topic);
    const liveFrom = new Map(partitions.map((p) => [p, Math.max(offsets.get(p) ?? -1, bounds.get(p)?.low ?? 0, 0)]));
    return { topic, offsets, bounds, liveFrom };
  }));
  const tips = new Map<number, TraceAddendum>();
  const [restoreFrom, forwardedRestoreFrom] = await Promise.all([
    restoreStarts(o, inputs[0]!.topic, inputs[0]!.liveFrom, streamTimeOf),
    restoreStarts(o, inputs[1]!.topic, inputs[1]!.liveFrom, streamTimeOf),
    readTail(o.kafka, o.addenda, partitions, `${groupId}.tips`, (p, m) => {
      if (m.value !== null) tips.set(p, JSON.parse(m.value.toString('utf8')) as TraceAddendum);
    }),
  ]);
  const plan = (i: (typeof inputs)[number], starts: Map<number, number>, p: number): InputPlan => {
    const c = i.offsets.get(p);
    const b = i.bounds.get(p);
    return { committed: c !== undefined && c >= 0 ? c : undefined, low: b?.low ?? 0, high: b?.high ?? 0, liveFrom: i.liveFrom.get(p)!, restoreFrom: starts.get(p)! };
  };
  const plans = new Map(partitions.map((p) => [p, { decisions: plan(inputs[0]!, restoreFrom, p), repartition: plan(inputs[1]!, forwardedRestoreFrom, p) }]));
  return { plans, tips: [...tips.values()] };
}

/**
 * Where to start re-reading each partition of `topic` so every window open at its committed offset is
 * rebuilt: the first offset whose record timestamp is at or after (S - window - lateness - g - skew), S
 * being the partition's stream time committed with the offset (the least of its streams'). A decision
 * still in a window occurred at or after S - window - lateness (less up to a bucket, g, as buckets
 * count whole), and a record's timestamp is at most max_future_skew (at least 60 s, for producers'
 * clocks) before its decision's event time, or the decision was refused as future_timestamp; so no
 * such record is left out, however late producers sent their records. A repartition record is stamped
 * with the earliest timestamp of the records it carries. Not the wall clock: this stays right after any downtime.
 *
 * An offset committed without a stream time (by a version before it was kept) falls back to the
 * timestamp of the last record before it in place of S: right when records are stamped within 60 s of
 * their event time.
 */
async function restoreStarts(
  o: PlanRestoreOptions, topic: string, liveFrom: ReadonlyMap<number, number>, streamTimes: ReadonlyMap<number, number | undefined>,
): Promise<Map<number, number>> {
  const lastTs = new Map<number, number>();
  for (const [p, t] of streamTimes) if (t !== undefined && liveFrom.has(p)) lastTs.set(p, t);
  const from = [...liveFrom].filter(([p, off]) => off > 0 && !lastTs.has(p)).map(([partition, off]) => ({ partition, offset: off - 1 }));
  if (from.length > 0) {
    const reader = new PartitionReader({
      kafka: o.kafka, topic, groupPrefix: `${o.groupId}.restore`, follow: false, firstBatchOnly: true, from,
      onMessage: (p, m) => {
        if (!lastTs.has(p)) lastTs.set(p, Number(m.timestamp));
      },
    });
    await reader.start();
    await reader.caughtUp;
    await reader.stop();
  }
  const r = o.reach;
  const starts = await Promise.all([...liveFrom].map(async ([p, live]): Promise<[number, number]> => {
    if (live <= 0) return [p, live];
    const slack = r.resolutionMs + Math.max(60_000, r.maxFutureSkewMs);
    const ts = Math.min(lastTs.get(p) ?? Date.now(), Date.now()) - r.windowMs - r.latenessMs - slack;
    const offsets = await retrying(() => o.admin.fetchTopicOffsetsByTimestamp(topic, ts));
    const at = Number(offsets.find((x) => x.partition === p)?.offset ?? 0);
    return [p, at < 0 ? live : Math.min(at, live)];
  }));
  return new Map(starts);
}
