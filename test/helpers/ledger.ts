/** Kill events for session-guard tests: signed with a throwaway key, written as a ledger would hold them. */
import { buildKillEvent, type KillEvent } from '../../src/core/documents.js';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { Ed25519Signer } from '../../src/adapters/signing/ed25519-signer.js';
import { generateSigningKey, jwksDocument, parseJwks, type SigningKey, type TrustedKey } from '../../src/adapters/signing/keys.js';

export const KS = { enabled: true, window_seconds: 300, deny_rate_threshold: 0.5, min_calls: 10 };

export interface TestKey {
  readonly key: SigningKey;
  readonly signer: Ed25519Signer;
  readonly jwks: { keys: object[] };
  readonly trusted: Map<string, TrustedKey>;
}

export function testKey(): TestKey {
  const key = generateSigningKey();
  const jwks = jwksDocument([key.jwk]);
  return { key, signer: new Ed25519Signer(key), jwks, trusted: parseJwks(JSON.stringify(jwks), 'test') };
}

export function killEvent(o: { agentId: string; epoch?: number; action?: 'block' | 'unblock'; trigger?: 'deny_rate' | 'operator'; at?: string }): KillEvent {
  const trigger = o.trigger ?? (o.action === 'unblock' ? 'operator' : 'deny_rate');
  return buildKillEvent({
    action: o.action ?? 'block', agentId: o.agentId, epoch: o.epoch ?? 1, trigger, at: o.at ?? '2026-11-23T09:00:00.000Z',
    reason: trigger === 'operator' ? 'test' : 'deny_rate_threshold', ...(trigger === 'operator' ? { authorizedBy: 'tester@example.org' } : {}),
    killSwitch: KS,
    ...(trigger === 'deny_rate' ? {
      evidence: {
        window_start: '2026-11-23T08:55:00.000Z', window_end: o.at ?? '2026-11-23T09:00:00.000Z', calls: 10, denies: 6, advisory_denies: 0,
        deny_rate: 0.6, tripping_decision_id: 'dec-10', source: { file: 'decisions.ndjson', line_from: 1, line_to: 10 },
      },
    } : {}),
  });
}

/** One ledger line: the kill event signed by `key`. */
export function signedLine(key: TestKey, o: Parameters<typeof killEvent>[0]): string {
  return `${canonicalJson(key.signer.sign(killEvent(o), false))}\n`;
}
