/**
 * The block ledger as the Kafka kills topic (compacted, keyed by identity): read from the beginning of
 * every partition, read_committed, then followed live. The reader's group is its own (no offsets are
 * committed), so every guard sees the whole ledger.
 */
import type { Kafka } from 'kafkajs';
import { PartitionReader } from '../../adapters/kafka/partition-reader.js';
import { retrying } from '../../adapters/kafka/retry.js';
import type { LedgerSink, LedgerSource } from '../ledger-source.js';

export class KafkaLedgerSource implements LedgerSource {
  readonly description: string;
  private reader: PartitionReader | undefined;

  constructor(private readonly kafka: Kafka, private readonly topic: string, private readonly groupPrefix = 'killswitch.guard') {
    this.description = `kafka topic ${topic}`;
  }

  async start(sink: LedgerSink): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    let partitions: number[];
    try {
      partitions = (await retrying(() => admin.fetchTopicOffsets(this.topic))).map((o) => o.partition);
    } finally {
      await admin.disconnect();
    }
    const reader = new PartitionReader({
      kafka: this.kafka, topic: this.topic, groupPrefix: this.groupPrefix, follow: true,
      from: partitions.map((partition) => ({ partition, offset: 0 })),
      onMessage: (_p, m) => {
        if (m.value !== null) sink.record(m.value);
      },
      onFetch: () => sink.alive(),
    });
    this.reader = reader;
    await reader.start();
    void reader.caughtUp.then(() => {
      if (this.reader === reader) sink.caughtUp();
    });
  }

  async stop(): Promise<void> {
    const r = this.reader;
    this.reader = undefined;
    await r?.stop();
  }
}
