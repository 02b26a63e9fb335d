/**
 * Ledger records every reader of the block ledger must refuse, each with the reason it must give
 * (docs/spec.md#reading-kill-events). One line each (no LF inside), as a ledger file would hold them.
 * Shared by the reader's unit test and the test that its consumers agree.
 */
import { canonicalJson } from '../../src/core/canonical-json.js';
import type { KillEventRejectReason } from '../../src/adapters/serde/kill-event-reader.js';
import { MAX_KILL_EVENT_BYTES } from '../../src/adapters/serde/kill-event-reader.js';
import { killEvent, type TestKey } from './ledger.js';

export interface HostileRecord {
  readonly name: string;
  readonly value: Buffer;
  readonly reason: KillEventRejectReason;
}

const A = 'spiffe://example.org/ns/prod/sa/scraper';

/** `key`: the trusted key; `stranger`: a key nobody trusts. */
export function hostileCorpus(key: TestKey, stranger: TestKey): HostileRecord[] {
  const signed = (agentId: string): string => canonicalJson(key.signer.sign(killEvent({ agentId }), false));
  const good = signed(A);
  const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
  // inside the value of "reason": still JSON, still a kill event
  const at = good.indexOf('"reason":"') + '"reason":"'.length;
  // the signature's first character changed: still 86 base64url characters (the schema's form), no longer the signature
  const sigAt = good.indexOf('"signature":"') + '"signature":"'.length;
  const flipped = `${good.slice(0, sigAt)}${good[sigAt] === 'A' ? 'B' : 'A'}${good.slice(sigAt + 1)}`;
  return [
    // a signed event padded with JSON whitespace: parses to the genuine event, but is one byte over the bound
    { name: 'over 64 KiB', value: bytes(good + ' '.repeat(MAX_KILL_EVENT_BYTES - good.length + 1)), reason: 'too_large' },
    // read as text, 0xff becomes U+FFFD: a reader without keys would obey an event nobody wrote
    { name: 'not UTF-8', value: Buffer.concat([bytes(good.slice(0, at)), Buffer.from([0xff]), bytes(good.slice(at))]), reason: 'invalid_utf8' },
    { name: 'not JSON', value: bytes('{"type":"killswitch.kill-event/v1"'), reason: 'invalid_json' },
    // JSON.parse keeps the last "action", the signed block; a parser keeping the first reads an unblock
    { name: 'duplicate key', value: bytes(good.replace('{"action":"block",', '{"action":"unblock","action":"block",')), reason: 'duplicate_key' },
    { name: 'duplicate key, escaped', value: bytes(good.replace('{"action":"block",', '{"\\u0061ction":"unblock","action":"block",')), reason: 'duplicate_key' },
    { name: 'nested deeper than 64', value: bytes(`${good.slice(0, -1)},"x":${'['.repeat(65)}${']'.repeat(65)}}`), reason: 'too_deep' },
    { name: 'not an object', value: bytes('["block"]'), reason: 'schema_invalid' },
    { name: 'a string', value: bytes('"block"'), reason: 'schema_invalid' },
    { name: 'null', value: bytes('null'), reason: 'schema_invalid' },
    { name: 'a field too many', value: bytes(canonicalJson({ ...killEvent({ agentId: A }), extra: 1 })), reason: 'schema_invalid' },
    { name: 'agent_id not a SPIFFE ID', value: bytes(canonicalJson(key.signer.sign({ ...killEvent({ agentId: A }), agent_id: 'SPIFFE://example.org/a' }, false))), reason: 'schema_invalid' },
    { name: 'unsigned', value: bytes(canonicalJson(killEvent({ agentId: A }))), reason: 'unsigned' },
    { name: 'signed by a key nobody trusts', value: bytes(canonicalJson(stranger.signer.sign(killEvent({ agentId: A }), false))), reason: 'unknown_kid' },
    {
      name: 'claims the trusted kid, carries its own key',
      value: bytes(canonicalJson({ ...stranger.signer.sign(killEvent({ agentId: A }), true), issuer: { kid: key.key.kid, jwk: stranger.key.jwk } })),
      reason: 'jwk_mismatch',
    },
    { name: 'signature of another event', value: bytes(canonicalJson({ ...(JSON.parse(good) as object), agent_id: 'spiffe://example.org/ns/prod/sa/other' })), reason: 'bad_signature' },
    { name: 'signature changed', value: bytes(flipped), reason: 'bad_signature' },
  ];
}
