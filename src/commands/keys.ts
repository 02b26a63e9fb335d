/**
 * `killswitch keys generate --out DIR`: a new Ed25519 signing key as DIR/signing-key.pem (PKCS#8, mode
 * 0600) and its public key added to DIR/jwks.json. Rotation: an existing signing-key.pem is kept as
 * DIR/<kid>.pem and its public key stays in jwks.json, so documents it signed still verify.
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateSigningKey, jwksDocument, loadSigningKey, parseJwks } from '../adapters/signing/keys.js';
import { ensureOutDir, writeFailed } from './out-dir.js';

export const SIGNING_KEY_FILE = 'signing-key.pem';
export const JWKS_FILE = 'jwks.json';

export interface GeneratedKey {
  readonly kid: string;
  readonly privateKeyFile: string;
  readonly jwksFile: string;
  readonly trustedKeys: number;
  readonly retired?: string;
}

export function generateKeys(dir: string): GeneratedKey {
  ensureOutDir(dir, 'keys generate');
  const keyFile = join(dir, SIGNING_KEY_FILE);
  const jwksFile = join(dir, JWKS_FILE);
  const trusted = existsSync(jwksFile) ? [...parseJwks(readFileSync(jwksFile, 'utf8'), jwksFile).values()].map((k) => k.jwk) : [];
  let retired: string | undefined;
  if (existsSync(keyFile)) {
    const old = loadSigningKey(keyFile);
    retired = join(dir, `${old.kid}.pem`);
    try {
      renameSync(keyFile, retired);
    } catch (err) {
      throw writeFailed('keys generate', retired, err);
    }
    if (!trusted.some((k) => k.x === old.jwk.x)) trusted.push(old.jwk);
  }
  const key = generateSigningKey();
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  trusted.push(key.jwk);
  try {
    writeFileSync(keyFile, pem, { mode: 0o600, flag: 'wx' });
    chmodSync(keyFile, 0o600); // the umask may have widened nothing, but be explicit
  } catch (err) {
    throw writeFailed('keys generate', keyFile, err);
  }
  try {
    writeFileSync(jwksFile, JSON.stringify(jwksDocument(trusted), null, 2) + '\n', { mode: 0o644 });
  } catch (err) {
    throw writeFailed('keys generate', jwksFile, err);
  }
  return { kid: key.kid, privateKeyFile: keyFile, jwksFile, trustedKeys: trusted.length, ...(retired === undefined ? {} : { retired }) };
}
