/** Signs and verifies documents (docs/spec.md#5-canonical-json-and-signatures): Ed25519 over the canonical JSON without `signature`. */
import { sign, verify } from 'node:crypto';
import { canonicalJson } from '../../core/canonical-json.js';
import type { Issuer } from '../../core/documents.js';
import type { Signer } from '../../ports/signer.js';
import type { SigningKey, TrustedKey } from './keys.js';

export class Ed25519Signer implements Signer {
  readonly kid: string;

  constructor(private readonly key: SigningKey) {
    this.kid = key.kid;
  }

  sign<T extends object>(doc: T, withJwk: boolean): T & { issuer: Issuer; signature: string } {
    const { signature: _old, ...rest } = doc as T & { signature?: unknown };
    const issuer: Issuer = withJwk ? { kid: this.kid, jwk: { ...this.key.jwk } } : { kid: this.kid };
    const unsigned = { ...rest, issuer };
    const signature = sign(null, Buffer.from(canonicalJson(unsigned), 'utf8'), this.key.privateKey).toString('base64url');
    return { ...unsigned, signature } as T & { issuer: Issuer; signature: string };
  }
}

export type SignatureCheck =
  | { readonly ok: true; readonly kid: string }
  | { readonly ok: false; readonly code: 'unsigned' | 'unknown_kid' | 'bad_signature' | 'jwk_mismatch'; readonly message: string };

/** Check a document's signature against trusted keys. The key comes from the JWKS by kid, never from the document. */
export function checkSignature(doc: Record<string, unknown>, trusted: ReadonlyMap<string, TrustedKey>): SignatureCheck {
  const signature = doc.signature;
  const issuer = doc.issuer as { kid?: unknown; jwk?: { x?: unknown } } | undefined;
  if (typeof signature !== 'string' || issuer === undefined || typeof issuer.kid !== 'string') {
    return { ok: false, code: 'unsigned', message: 'the document has no signature or no issuer.kid' };
  }
  const key = trusted.get(issuer.kid);
  if (key === undefined) return { ok: false, code: 'unknown_kid', message: `kid ${issuer.kid} is not in the trusted JWKS` };
  if (issuer.jwk !== undefined && issuer.jwk.x !== key.jwk.x) {
    return { ok: false, code: 'jwk_mismatch', message: `issuer.jwk is not the trusted key of kid ${issuer.kid}` };
  }
  const { signature: _s, ...unsigned } = doc;
  const sig = Buffer.from(signature, 'base64url');
  const valid = sig.length === 64 && sig.toString('base64url') === signature &&
    verify(null, Buffer.from(canonicalJson(unsigned), 'utf8'), key.publicKey, sig);
  return valid ? { ok: true, kid: issuer.kid } : { ok: false, code: 'bad_signature', message: 'the signature does not match the document' };
}
