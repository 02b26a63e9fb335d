/** The stream time a transaction commits with its input offset, read back at assignment. */
import { describe, expect, it } from 'vitest';
import { committedStreamTime } from '../../../src/adapters/kafka/transactional-committer.js';

describe('committedStreamTime', () => {
  it('reads the stream time kept in the offset metadata', () => {
    expect(committedStreamTime('{"stream_time_ms":1764000000123}')).toBe(1764000000123);
  });

  it('gives nothing for metadata it did not write, so the restore falls back to the last record', () => {
    for (const m of [null, undefined, '', 'consumer-x', '{"stream_time_ms":"1764000000123"}', '{"stream_time_ms":null}', '{broken', '{}']) {
      expect(committedStreamTime(m)).toBeUndefined();
    }
  });
});
