/**
 * Hash-chain continuity of addenda per stream (docs/spec.md#4-trace-addenda): sequence numbers from 1 with no
 * gaps, in order, no duplicates, no forks, and every prev_hash equal to the digest of its predecessor.
 * Pure: takes documents with their positions, returns every failure found.
 */
import { canonicalDigest } from '../core/hash.js';
import { GENESIS, type TraceAddendum } from '../core/documents.js';

export type ChainFailureCode =
  | 'chain_head_missing' | 'chain_gap' | 'chain_reordered' | 'chain_duplicate' | 'chain_fork' | 'chain_prev_hash_mismatch';

export interface ChainFailure {
  readonly index: number;
  readonly code: ChainFailureCode;
  readonly message: string;
}

export interface StreamSummary {
  readonly addenda: number;
  readonly first_sequence: number;
  readonly last_sequence: number;
}

export function checkChains(docs: readonly { index: number; addendum: TraceAddendum }[]): {
  failures: ChainFailure[];
  streams: Record<string, StreamSummary>;
} {
  const failures: ChainFailure[] = [];
  const byStream = new Map<string, { next: number; seen: Map<number, { hash: string; index: number; prev: string }>; count: number; first: number; last: number }>();
  for (const { index, addendum } of docs) {
    const { stream, sequence_number: seq, prev_hash: prev } = addendum.chain;
    const hash = canonicalDigest(addendum);
    let st = byStream.get(stream);
    if (st === undefined) {
      st = { next: 1, seen: new Map(), count: 0, first: seq, last: seq };
      byStream.set(stream, st);
      if (seq !== 1) {
        failures.push({ index, code: 'chain_head_missing', message: `stream ${stream} starts at sequence ${seq}: addenda 1..${seq - 1} are missing` });
        st.next = seq;
      }
    }
    st.count++;
    st.first = Math.min(st.first, seq);
    st.last = Math.max(st.last, seq);
    const earlier = st.seen.get(seq);
    if (earlier !== undefined) {
      failures.push(earlier.hash === hash
        ? { index, code: 'chain_duplicate', message: `sequence ${seq} of stream ${stream} appears again (same document as #${earlier.index})` }
        : { index, code: 'chain_fork', message: `sequence ${seq} of stream ${stream} appears twice with different content (#${earlier.index}): the chain forks` });
      continue;
    }
    st.seen.set(seq, { hash, index, prev });
    if (seq < st.next) {
      failures.push({ index, code: 'chain_reordered', message: `sequence ${seq} of stream ${stream} comes after sequence ${st.next - 1}` });
    } else {
      if (seq > st.next) {
        failures.push({ index, code: 'chain_gap', message: `stream ${stream} jumps from sequence ${st.next - 1} to ${seq}: ${seq - st.next} addend${seq - st.next === 1 ? 'um is' : 'a are'} missing` });
      }
      st.next = seq + 1;
    }
  }
  // Links are checked once every document is known, so a swap is reported as a reorder, not as broken links.
  for (const [stream, st] of byStream) {
    for (const [seq, doc] of st.seen) {
      if (seq === 1) {
        if (doc.prev !== GENESIS) failures.push({ index: doc.index, code: 'chain_prev_hash_mismatch', message: `sequence 1 of stream ${stream} must have prev_hash "genesis"` });
        continue;
      }
      const before = st.seen.get(seq - 1);
      if (before !== undefined && before.hash !== doc.prev) {
        failures.push({ index: doc.index, code: 'chain_prev_hash_mismatch', message: `prev_hash of sequence ${seq} of stream ${stream} is not the digest of sequence ${seq - 1} (#${before.index})` });
      }
    }
  }
  failures.sort((a, b) => a.index - b.index);
  const streams: Record<string, StreamSummary> = {};
  for (const [name, st] of byStream) streams[name] = { addenda: st.count, first_sequence: st.first, last_sequence: st.last };
  return { failures, streams };
}
