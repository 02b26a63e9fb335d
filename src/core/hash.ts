// Hashing is pure computation; node:crypto is the only node: module src/core may use.
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** `sha256:` + hex of the canonical JSON of a value: event ids and addendum chain links. */
export function canonicalDigest(value: unknown): string {
  return 'sha256:' + sha256Hex(canonicalJson(value));
}
