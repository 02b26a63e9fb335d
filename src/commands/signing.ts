/** The signer and trusted keys a command runs with, from the config's `signing` section. */
import type { Config } from '../config/config.js';
import { KillSwitchError } from '../core/errors.js';
import { Ed25519Signer } from '../adapters/signing/ed25519-signer.js';
import { loadJwks, loadSigningKey, type SigningKey, type TrustedKey } from '../adapters/signing/keys.js';
import { createPublicKey } from 'node:crypto';

export interface SigningSetup {
  readonly signer: Ed25519Signer | undefined;
  /** keys whose signatures are accepted when reading: the JWKS plus the signing key's own public key */
  readonly trusted: ReadonlyMap<string, TrustedKey>;
}

export function trustedWith(key: SigningKey | undefined, jwks: ReadonlyMap<string, TrustedKey>): Map<string, TrustedKey> {
  const trusted = new Map(jwks);
  if (key !== undefined && !trusted.has(key.kid)) {
    trusted.set(key.kid, { kid: key.kid, jwk: key.jwk, publicKey: createPublicKey(key.privateKey) });
  }
  return trusted;
}

/**
 * `run` needs a signing key when the kill switch is enabled, unless `signing.allow_unsigned: true`, and
 * always when it trusts keys (`signing.jwks_file`): what it writes must pass its own readers' checks.
 * `keyFileOverride`: replay's `--key`.
 */
export function signingSetup(config: Config, options: { requireKey: boolean; keyFileOverride?: string }): SigningSetup {
  const keyFile = options.keyFileOverride ?? config.signing?.private_key_file;
  const key = keyFile === undefined ? undefined : loadSigningKey(keyFile);
  const jwks = config.signing?.jwks_file === undefined ? new Map<string, TrustedKey>() : loadJwks(config.signing.jwks_file);
  if (key === undefined && options.requireKey && config.kill_switch.enabled && config.signing?.allow_unsigned !== true) {
    throw new KillSwitchError('SIGNING_REQUIRED',
      'kill_switch.enabled is true but no signing key is configured: set signing.private_key_file (killswitch keys generate --out DIR), or signing.allow_unsigned: true');
  }
  if (key === undefined && options.requireKey && jwks.size > 0) {
    // It would write unsigned kill events that every reader trusting these keys refuses: itself on
    // restart (embedded mode stops at its own ledger), the other instances, every session guard.
    throw new KillSwitchError('SIGNING_REQUIRED',
      'signing.jwks_file is set but no signing key is: the kill events this service writes would be unsigned, and every reader trusting signing.jwks_file (this service after a restart, the other instances, session guards) would refuse them; set signing.private_key_file');
  }
  return { signer: key === undefined ? undefined : new Ed25519Signer(key), trusted: trustedWith(key, jwks) };
}
