/**
 * Records for the dead-letter topic (docs/spec.md#8-bad-records-and-the-dlq): the bad record's key,
 * value bytes and headers as they were, and headers saying why and where it was produced.
 */
import type { InputRecord, OutputRecord, RecordHeaders } from '../../ports/partition-records.js';

export const DLQ_HEADERS = {
  reason: 'killswitch.reason',
  message: 'killswitch.message',
  topic: 'killswitch.source.topic',
  partition: 'killswitch.source.partition',
  offset: 'killswitch.source.offset',
} as const;

/** A bad record for the DLQ, its headers saying where it was produced (`at.offset` by default the record's own). */
export function dlqRecord(m: InputRecord, at: { readonly topic: string; readonly partition: number; readonly offset?: string }, reason: string, message: string): OutputRecord {
  const headers: RecordHeaders = {
    ...(m.headers ?? {}),
    [DLQ_HEADERS.reason]: reason,
    [DLQ_HEADERS.message]: message.slice(0, 1000),
    [DLQ_HEADERS.topic]: at.topic,
    [DLQ_HEADERS.partition]: String(at.partition),
    [DLQ_HEADERS.offset]: at.offset ?? m.offset,
  };
  return { key: m.key, value: m.value, headers };
}

/** The reason of a record made by dlqRecord. */
export function dlqReason(m: OutputRecord): string {
  return String(m.headers?.[DLQ_HEADERS.reason]);
}
