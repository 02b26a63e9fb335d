/**
 * Ed25519 keys (docs/spec.md#5-canonical-json-and-signatures): private keys from PKCS#8 PEM or JWK
 * files, public keys as RFC 8037 OKP JWKs, `kid` = RFC 7638 thumbprint, trusted keys from a JWKS file.
 * Key files are parsed strictly (docs/spec.md#6-strict-documents): a JWKS whose `x` appears twice is
 * one key to us and another to a verifier that keeps the first value.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KillSwitchError } from '../../core/errors.js';
import { parseJsonStrict, StrictJsonError } from '../../core/strict-json.js';

export interface OkpJwk {
  readonly kty: 'OKP';
  readonly crv: 'Ed25519';
  readonly x: string;
  readonly kid?: string;
  readonly alg?: 'EdDSA';
  readonly use?: 'sig';
}

const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;

/** RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace; base64url. */
export function jwkThumbprint(jwk: Pick<OkpJwk, 'crv' | 'kty' | 'x'>): string {
  const members = `{"crv":${JSON.stringify(jwk.crv)},"kty":${JSON.stringify(jwk.kty)},"x":${JSON.stringify(jwk.x)}}`;
  return createHash('sha256').update(members, 'utf8').digest('base64url');
}

export function publicJwk(key: KeyObject): OkpJwk {
  const jwk = createPublicKey(key).export({ format: 'jwk' }) as { kty?: string; crv?: string; x?: string };
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || jwk.x === undefined) {
    throw new KillSwitchError('KEY_INVALID', 'the key is not an Ed25519 key');
  }
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
}

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly jwk: OkpJwk;
}

function keyError(file: string, why: string): KillSwitchError {
  return new KillSwitchError('KEY_INVALID', `${file}: ${why}`);
}

/** Duplicate keys and deep nesting are named (they say nothing secret); a syntax error is not quoted. */
function parseKeyJson(text: string, file: string): unknown {
  try {
    return parseJsonStrict(text);
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    throw keyError(file, err.reason === 'invalid_json' ? 'not valid JSON' : `${err.message}; a key file must be a strict JSON document`);
  }
}

/** A private signing key from a PKCS#8 PEM file or a JWK file (with `d`). Never logs key material. */
export function loadSigningKey(file: string): SigningKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw keyError(file, `cannot read the key file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const jwkDoc = text.trimStart().startsWith('{') ? parseKeyJson(text, file) as JsonWebKey : undefined;
  let privateKey: KeyObject;
  try {
    privateKey = jwkDoc !== undefined
      ? createPrivateKey({ key: jwkDoc, format: 'jwk' })
      : createPrivateKey({ key: text, format: 'pem' });
  } catch {
    // the parser's message may quote the key; say only what kind of file was expected
    throw keyError(file, 'not an Ed25519 private key (expected PKCS#8 PEM or a JWK with "d")');
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw keyError(file, `the key is ${privateKey.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`);
  const jwk = publicJwk(privateKey);
  return { kid: jwkThumbprint(jwk), privateKey, jwk };
}

export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = publicJwk(privateKey);
  return { kid: jwkThumbprint(jwk), privateKey, jwk };
}

export interface TrustedKey {
  readonly kid: string;
  readonly jwk: OkpJwk;
  readonly publicKey: KeyObject;
}

/** Parse a JWKS document: every key must be an Ed25519 OKP key whose `kid` (if given) is its thumbprint. */
export function parseJwks(text: string, file: string): Map<string, TrustedKey> {
  const doc = parseKeyJson(text, file);
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw keyError(file, 'not a JWKS (no "keys" array)');
  const trusted = new Map<string, TrustedKey>();
  keys.forEach((k: unknown, i) => {
    const jwk = k as Partial<OkpJwk> & { d?: unknown };
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || !B64URL_32.test(jwk.x)) {
      throw keyError(file, `keys[${i}] is not an Ed25519 public key (kty OKP, crv Ed25519, x of 32 bytes)`);
    }
    if (jwk.d !== undefined) throw keyError(file, `keys[${i}] holds a private key; a JWKS of trusted keys must not`);
    const kid = jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x });
    if (jwk.kid !== undefined && jwk.kid !== kid) throw keyError(file, `keys[${i}] has kid ${jwk.kid}, but its RFC 7638 thumbprint is ${kid}`);
    const clean: OkpJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
    trusted.set(kid, { kid, jwk: clean, publicKey: createPublicKey({ key: { ...clean }, format: 'jwk' }) });
  });
  return trusted;
}

export function loadJwks(file: string): Map<string, TrustedKey> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw keyError(file, `cannot read the JWKS file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseJwks(text, file);
}

/** A JWKS document listing the given public keys, each with its kid. */
export function jwksDocument(keys: readonly OkpJwk[]): { keys: OkpJwk[] } {
  return { keys: keys.map((k) => ({ kty: 'OKP', crv: 'Ed25519', x: k.x, kid: jwkThumbprint(k), alg: 'EdDSA', use: 'sig' })) };
}
