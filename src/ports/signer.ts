import type { Issuer } from '../core/documents.js';

/** Signs a document (docs/spec.md#5-canonical-json-and-signatures): adds `issuer`, then `signature` over the rest. */
export interface Signer {
  readonly kid: string;
  /** `withJwk`: addenda carry the public key as a JWK, kill events only the kid */
  sign<T extends object>(doc: T, withJwk: boolean): T & { issuer: Issuer; signature: string };
}
