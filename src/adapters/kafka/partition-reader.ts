/**
 * Reads chosen partitions of a topic from chosen offsets (read_committed). kafkajs has no manual
 * partition assignment, so this is a consumer in a group of its own that seeks on join. "Caught up" is
 * the start-time high watermark reached, or a quiet second with nothing more to read. Batches that hold
 * only transaction markers or aborted records never reach `eachBatch`; kafkajs reports them in its
 * END_BATCH_PROCESS event, which moves the read position here too. A transaction's marker follows its
 * records, so on a transactional topic every data record is behind the high watermark by at least one
 * offset: reaching high - 1 has read them all (never stop short of the last record: a chain tip read
 * one record early forks the chain).
 */
import { retrying } from './retry.js';
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka, KafkaMessage } from 'kafkajs';

export interface ReadFrom {
  readonly partition: number;
  readonly offset: number;
}

export interface PartitionReaderOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly groupPrefix: string;
  /** where to start, per partition; partitions not listed are not read */
  readonly from: readonly ReadFrom[];
  readonly onMessage: (partition: number, message: KafkaMessage) => void;
  /** keep following after catching up (the ledger follower) or stop (a one-off read) */
  readonly follow: boolean;
  /** a partition is done after its first batch (reading one record at a known offset, not the rest) */
  readonly firstBatchOnly?: boolean;
  /** called after every fetch from the broker, empty ones included: the reader is in touch */
  readonly onFetch?: () => void;
  /**
   * Caught up only by reaching the high watermark, never by a quiet second (a slow broker must not
   * make a chain tip look older than it is): for reads whose result must be complete.
   */
  readonly strict?: boolean;
  /** a following reader's consumer stopped for good (kafkajs gave up restarting it): this reader reads no more */
  readonly onStopped?: (err: Error) => void;
}

const QUIET_MS = 1000;
const MARKER_SLACK = 1;
const TAIL_TIMEOUT_MS = 30_000;
const ONE_OFF_MAX_WAIT_MS = 100;

export class PartitionReader {
  private consumer: Consumer | undefined;
  private caughtUpResolve: (() => void) | undefined;
  private readonly lastSeen = new Map<number, number>();
  private admin: Promise<Admin> | undefined;
  private stopped = false;
  readonly caughtUp: Promise<void>;

  constructor(private readonly o: PartitionReaderOptions) {
    this.caughtUp = new Promise((resolve) => {
      this.caughtUpResolve = resolve;
    });
  }

  async start(): Promise<void> {
    const { kafka, topic } = this.o;
    const admin = kafka.admin();
    await admin.connect();
    let offsets: Awaited<ReturnType<Admin['fetchTopicOffsets']>>;
    try {
      offsets = await retrying(() => admin.fetchTopicOffsets(topic));
    } finally {
      await admin.disconnect();
    }
    const wanted = new Map(this.o.from.map((f) => [f.partition, f.offset]));
    const remaining = new Map<number, number>(); // partition -> high watermark at start
    for (const o of offsets) {
      const start = wanted.get(o.partition);
      if (start !== undefined && Number(o.high) > Math.max(start, Number(o.low))) remaining.set(o.partition, Number(o.high));
    }
    if (remaining.size === 0) {
      this.caughtUpResolve!();
      // A one-off read of nothing (empty partitions, or starting at their end) needs no consumer: its
      // group join alone can take the broker's group.initial.rebalance.delay.ms (3 s by default).
      if (!this.o.follow) return;
    }

    const consumer = kafka.consumer({
      groupId: `${this.o.groupPrefix}.${randomUUID()}`, readUncommitted: false, allowAutoTopicCreation: false,
      // A one-off reader is stopped once it has read its records, and stopping waits for the fetch in
      // flight: a long poll of kafkajs's default 5 s would hold whoever waits for the read that long.
      ...(this.o.follow ? {} : { maxWaitTimeInMs: ONE_OFF_MAX_WAIT_MS }),
    });
    this.consumer = consumer;
    let quiet: NodeJS.Timeout | undefined;
    const armQuiet = (): void => {
      if (quiet !== undefined) clearTimeout(quiet);
      if (remaining.size === 0 || this.o.strict === true) return;
      quiet = setTimeout(() => {
        remaining.clear();
        this.caughtUpResolve!();
      }, QUIET_MS);
      quiet.unref();
    };
    const onFetch = this.o.onFetch;
    if (onFetch !== undefined) consumer.on(consumer.events.FETCH, () => onFetch());
    const onStopped = this.o.onStopped;
    if (onStopped !== undefined) {
      consumer.on(consumer.events.CRASH, (e) => {
        const { error, restart } = e.payload as { error: Error; restart: boolean };
        if (!restart && this.consumer === consumer) onStopped(error);
      });
    }
    const advance = (p: number, lastOffset: number): void => {
      if (lastOffset > (this.lastSeen.get(p) ?? -1)) this.lastSeen.set(p, lastOffset);
      const high = remaining.get(p);
      if (high !== undefined && (this.o.firstBatchOnly === true || lastOffset + 1 >= high - MARKER_SLACK)) {
        remaining.delete(p);
        if (remaining.size === 0) this.caughtUpResolve!();
      }
      armQuiet();
      // not from inside eachBatch: disconnect waits for the running batch
      if (!this.o.follow && remaining.size === 0) setImmediate(() => void this.stop());
    };
    // markers-only and aborted-only batches: resolved by kafkajs without eachBatch
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const { topic: t, partition, lastOffset } = e.payload as { topic: string; partition: number; lastOffset: string | null };
      if (t === topic && wanted.has(partition) && lastOffset !== null && this.consumer !== undefined) advance(partition, Number(lastOffset));
    });
    consumer.on(consumer.events.GROUP_JOIN, () => {
      for (const [partition, offset] of wanted) consumer.seek({ topic, partition, offset: String(offset) });
      armQuiet();
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const skip = [...new Set(offsets.map((o) => o.partition))].filter((p) => !wanted.has(p));
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async (payload) => {
        const { batch } = payload;
        if (payload.isStale()) return;
        const p = batch.partition;
        if (!wanted.has(p)) return;
        for (const m of batch.messages) this.o.onMessage(p, m);
        // without this the next fetch starts at the same offset again (auto-resolve is off)
        payload.resolveOffset(batch.lastOffset());
        advance(p, Number(batch.lastOffset()));
        return Promise.resolve();
      },
    });
    if (skip.length > 0) consumer.pause([{ topic, partitions: skip }]);
    armQuiet();
  }

  /**
   * Wait until what the topic holds now has been read (or a quiet second passed): after fencing a
   * partition's previous owner, its last committed outputs are then known.
   */
  async catchUpNow(o: { strict?: boolean } = {}): Promise<void> {
    if (this.stopped) throw new Error(`the reader of ${this.o.topic} is stopped`);
    // One admin client for the reader's life (a new connection per call took about 15 ms of the 2-core
    // machine's time); kafkajs reconnects it when a request finds its connection gone.
    const admin = await (this.admin ??= this.connectAdmin());
    const offsets = await retrying(() => admin.fetchTopicOffsets(this.o.topic));
    const deadline = Date.now() + QUIET_MS * 5;
    for (;;) {
      const behind = offsets.some((o) => {
        const high = Number(o.high);
        const seen = this.lastSeen.get(o.partition) ?? -1;
        return this.o.from.some((f) => f.partition === o.partition) && high > Number(o.low) && seen + 1 < high - MARKER_SLACK;
      });
      if (!behind) return;
      if (Date.now() > deadline) {
        if (o.strict === true) throw new Error(`${this.o.topic} was not read to its end within ${(QUIET_MS * 5) / 1000} s`);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const c = this.consumer;
    this.consumer = undefined;
    const a = this.admin;
    this.admin = undefined;
    await a?.then((admin) => admin.disconnect()).catch(() => undefined);
    if (c !== undefined) await c.disconnect();
  }

  private connectAdmin(): Promise<Admin> {
    const admin = this.o.kafka.admin();
    const connected = admin.connect().then(() => admin);
    // a failed connection is tried again by the next call, unless a newer one has taken its place
    connected.catch(() => {
      if (this.admin === connected) this.admin = undefined;
    });
    return connected;
  }
}

/**
 * The last committed records of some partitions of `topic`: a chain's tip. Reads the last `depth`
 * offsets of each partition; a partition whose last `depth` offsets hold no committed record (markers
 * and aborted transactions only, say after a crash loop aborted big batches) is read again from 8
 * times as far back, and so on, until a committed record or the partition's start is reached: a tip
 * missed would fork the chain. `onMessage` sees each partition's records in offset order.
 */
export async function readTail(
  kafka: Kafka, topic: string, partitions: readonly number[], groupPrefix: string, onMessage: (partition: number, message: KafkaMessage) => void, depth = 64,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  let offsets: Awaited<ReturnType<typeof admin.fetchTopicOffsets>>;
  try {
    offsets = await retrying(() => admin.fetchTopicOffsets(topic));
  } finally {
    await admin.disconnect();
  }
  const bounds = new Map(offsets.map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]));
  let pending = [...partitions];
  for (let back = depth; pending.length > 0; back *= 8) {
    const from = pending.map((p) => {
      const b = bounds.get(p) ?? { low: 0, high: 0 };
      return { partition: p, offset: Math.max(b.low, b.high - back) };
    });
    const found = new Set<number>();
    await readOnce(kafka, topic, groupPrefix, from, (p, m) => {
      found.add(p);
      onMessage(p, m);
    });
    // nothing committed in the last `back` offsets, and more before them: further back
    pending = from.filter((f) => !found.has(f.partition) && f.offset > (bounds.get(f.partition)?.low ?? 0)).map((f) => f.partition);
  }
}

/** Reads the partitions from the given offsets up to the high watermark of now, then stops. */
async function readOnce(kafka: Kafka, topic: string, groupPrefix: string, from: readonly ReadFrom[], onMessage: (partition: number, message: KafkaMessage) => void): Promise<void> {
  const reader = new PartitionReader({ kafka, topic, groupPrefix, follow: false, from, onMessage, strict: true });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the tail of ${topic} was not read within ${TAIL_TIMEOUT_MS / 1000} s`)), TAIL_TIMEOUT_MS);
  });
  try {
    await reader.start();
    await Promise.race([reader.caughtUp, timeout]);
  } finally {
    clearTimeout(timer);
    await reader.stop();
  }
}
