/**
 * The signed test vectors in test/vectors/: built here deterministically from the committed test key
 * (Ed25519 signatures are deterministic), so the files can be checked and regenerated
 * (`UPDATE_VECTORS=1 npx vitest run test/integration/independent-check.test.ts`).
 */
import { join } from 'node:path';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { AddendumChains, buildAddendum, buildKillEvent, type KillEvent, type TraceAddendum } from '../../src/core/documents.js';
import { Ed25519Signer } from '../../src/adapters/signing/ed25519-signer.js';
import { loadSigningKey } from '../../src/adapters/signing/keys.js';
import { ROOT } from './cli.js';

export const VECTORS = join(ROOT, 'test/vectors');
export const TEST_KEY = join(VECTORS, 'test-only-signing-key.pem');

export function buildVectors(): { documents: (KillEvent | TraceAddendum)[]; canonical: string[] } {
  const signer = new Ed25519Signer(loadSigningKey(TEST_KEY));
  const chains = new AddendumChains();
  const docs: (KillEvent | TraceAddendum)[] = [];
  const ks = { enabled: true, window_seconds: 300, deny_rate_threshold: 0.6, min_calls: 3 };
  const emit = (ke: KillEvent, sessions: string[], stream: string): void => {
    const signedKe = signer.sign(ke, false);
    const ad = signer.sign(buildAddendum(signedKe, sessions, chains.link(stream)), true);
    chains.append(ad);
    docs.push(signedKe, ad);
  };
  // An automatic trip at a fractional rate (2/3), sessions with non-ASCII and astral characters.
  emit(buildKillEvent({
    action: 'block', agentId: 'spiffe://example.org/ns/prod/sa/scraper', epoch: 1, trigger: 'deny_rate', at: '2026-11-23T09:00:49.000Z',
    reason: 'deny_rate_threshold', killSwitch: ks,
    evidence: {
      window_start: '2026-11-23T08:55:49.000Z', window_end: '2026-11-23T09:00:49.000Z', calls: 3, denies: 2, advisory_denies: 1,
      deny_rate: 2 / 3, tripping_decision_id: 'dec-\u00e9\u{1F600}', source: { file: 'decisions/2026-11-23.ndjson', line_from: 1, line_to: 21 },
    },
  }), ['sess-\u00fc', 'sess-\u{1F600}', 'sess-\u4e2d\u6587'], 'decisions/2026-11-23.ndjson');
  // An operator block with a reason full of escapes, at the largest safe epoch.
  emit(buildKillEvent({
    action: 'block', agentId: 'spiffe://example.org/ns/prod/sa/scraper', epoch: Number.MAX_SAFE_INTEGER, trigger: 'operator',
    at: '2026-11-23T10:15:00.000Z', reason: 'Zo\u00eb blocked it \u2014 \u{1F6AB} "runaway" agent\\n\t\u0007\u007f\u2028',
    authorizedBy: 'zo\u00eb@example.org', killSwitch: ks,
  }), [], 'decisions/2026-11-23.ndjson');
  emit(buildKillEvent({
    action: 'unblock', agentId: 'spiffe://example.org/ns/prod/sa/scraper', epoch: Number.MAX_SAFE_INTEGER, trigger: 'operator',
    at: '2026-11-23T11:00:00.000Z', reason: 'false positive: ticket \u00a7 42', authorizedBy: 'oncall', killSwitch: ks,
  }), [], 'decisions/2026-11-23.ndjson');
  // A Kafka-sourced trip at 19/20 with offsets near 2^53.
  emit(buildKillEvent({
    action: 'block', agentId: 'spiffe://example.org/ns/prod/sa/crawler', epoch: 3, trigger: 'deny_rate', at: '2026-11-23T12:00:00.123Z',
    reason: 'deny_rate_threshold', killSwitch: { ...ks, deny_rate_threshold: 0.95, min_calls: 20 },
    evidence: {
      window_start: '2026-11-23T11:55:00.123Z', window_end: '2026-11-23T12:00:00.123Z', calls: 20, denies: 19, advisory_denies: 0,
      deny_rate: 19 / 20, tripping_decision_id: 'k-9007199254740991',
      source: { topic: 'policy.decisions', partition: 3, offset_from: 9007199254740000, offset_to: Number.MAX_SAFE_INTEGER },
    },
  }), ['s'], 'policy.decisions/3');
  return { documents: docs, canonical: docs.map((d) => canonicalJson({ ...d, signature: undefined })) };
}
