/**
 * The ledger follower of Kafka mode: every instance reads the whole kills topic (one partition, compacted)
 * from its start and keeps following it, so each knows who is blocked before it evaluates a decision
 * (a restart never lifts a block) and sees the blocks and unblocks other instances and operators write.
 * Each record is read by the one kill-event reader every ledger consumer uses
 * (docs/spec.md#reading-kill-events); one that fails its checks is reported, never obeyed.
 */
import type { Kafka, KafkaMessage } from 'kafkajs';
import type { KillEvent } from '../../core/documents.js';
import { KillEventReader, type KillEventRejectReason } from '../serde/kill-event-reader.js';
import type { TrustedKey } from '../signing/keys.js';
import { PartitionReader } from './partition-reader.js';

export interface LedgerFollowerOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  /** the follower's own consumer groups are named from this */
  readonly groupPrefix: string;
  /** kill events must be signed by one of these (none: signatures are not checked) */
  readonly trusted: ReadonlyMap<string, TrustedKey>;
  /** a kill event that passed the checks, numbered by its offset + 1 (docs/spec.md, the changes feed) */
  readonly onEvent: (event: KillEvent, seq: number) => void;
  /** a record that is not a kill event to obey: the reason is a metric label */
  readonly onRejected: (r: { readonly reason: KillEventRejectReason; readonly message: string; readonly offset: string; readonly agentId?: string }) => void;
}

export class LedgerFollower {
  private readonly reader: PartitionReader;
  private readonly killEvents: KillEventReader;

  constructor(private readonly o: LedgerFollowerOptions) {
    this.killEvents = new KillEventReader({ trusted: o.trusted });
    this.reader = new PartitionReader({
      kafka: o.kafka, topic: o.topic, groupPrefix: o.groupPrefix, follow: true,
      from: [{ partition: 0, offset: 0 }],
      onMessage: (_p, m) => this.onRecord(m),
    });
  }

  /** Start following; resolves once what the topic held at the start is read. */
  async start(): Promise<void> {
    await this.reader.start();
    await this.reader.caughtUp;
  }

  /** Read what the topic holds now (strict: to its high watermark, or throw within a few seconds). */
  catchUpNow(o: { strict?: boolean } = {}): Promise<void> {
    return this.reader.catchUpNow(o);
  }

  stop(): Promise<void> {
    return this.reader.stop();
  }

  private onRecord(m: KafkaMessage): void {
    if (m.value === null) return; // a tombstone: nothing to apply
    const read = this.killEvents.read(m.value);
    if (!read.ok) {
      this.o.onRejected({ reason: read.reason, message: read.message, offset: m.offset, ...(read.agentId === undefined ? {} : { agentId: read.agentId }) });
      return;
    }
    const ev = read.event;
    this.o.onEvent(ev, Number(m.offset) + 1);
  }
}
