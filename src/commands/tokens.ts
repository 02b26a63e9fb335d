/**
 * Operator API tokens. `killswitch tokens generate --out DIR --name NAME --roles R,...` writes a new
 * random bearer token to DIR/NAME.token (mode 0600) and its SHA-256 with the roles to DIR/tokens.json,
 * the file `http.tokens_file` names. The token itself is never printed and never in a config.
 */
import { parseJsonStrict } from '../core/strict-json.js';
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HttpToken } from '../config/config.js';
import { KillSwitchError } from '../core/errors.js';
import { ensureOutDir, writeFailed } from './out-dir.js';

export const TOKENS_FILE = 'tokens.json';
const ROLES = new Set(['viewer', 'operator', 'ingest', 'opa']);
const NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** Read and check a tokens file: a JSON array of `{name, sha256, roles}`, as `http.tokens` holds them. */
export function loadTokensFile(file: string): HttpToken[] {
  const bad = (why: string): KillSwitchError => new KillSwitchError('CONFIG_INVALID', `http.tokens_file ${file}: ${why}`);
  let doc: unknown;
  try {
    // strict: a token with two sha256 keys would grant what one reader of the file sees and not another
    doc = parseJsonStrict(readFileSync(file, 'utf8'));
  } catch (err) {
    throw bad((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `not readable JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(doc)) throw bad('must be a JSON array of {name, sha256, roles}');
  return doc.map((t: unknown, i) => {
    const x = t as Partial<HttpToken> & Record<string, unknown>;
    if (typeof x.name !== 'string' || !NAME.test(x.name)) throw bad(`[${i}].name: 1 to 64 letters, digits, ".", "_" or "-"`);
    if (typeof x.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(x.sha256)) throw bad(`[${i}].sha256: lowercase hex of the token's SHA-256`);
    if (!Array.isArray(x.roles) || x.roles.length === 0 || !x.roles.every((r) => typeof r === 'string' && ROLES.has(r))) throw bad(`[${i}].roles: a non-empty list of viewer, operator, ingest, opa`);
    const extra = Object.keys(x).find((k) => !['name', 'sha256', 'roles'].includes(k));
    if (extra !== undefined) throw bad(`[${i}].${extra}: unknown key`);
    return { name: x.name, sha256: x.sha256, roles: x.roles };
  });
}

export function generateToken(dir: string, name: string, roles: readonly string[], ifMissing: boolean): { tokenFile: string; tokensFile: string; created: boolean } {
  if (!NAME.test(name)) throw new KillSwitchError('USAGE', `tokens generate: --name must be 1 to 64 letters, digits, ".", "_" or "-"`);
  const unknown = roles.find((r) => !ROLES.has(r));
  if (roles.length === 0 || unknown !== undefined) throw new KillSwitchError('USAGE', `tokens generate: --roles takes a comma-separated list of viewer, operator, ingest, opa${unknown === undefined ? '' : ` (not "${unknown}")`}`);
  ensureOutDir(dir, 'tokens generate');
  const tokenFile = join(dir, `${name}.token`);
  const tokensFile = join(dir, TOKENS_FILE);
  if (ifMissing && existsSync(tokenFile) && existsSync(tokensFile)) return { tokenFile, tokensFile, created: false };
  const token = randomBytes(32).toString('base64url');
  try {
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    chmodSync(tokenFile, 0o600);
  } catch (err) {
    throw writeFailed('tokens generate', tokenFile, err);
  }
  const others = existsSync(tokensFile) ? loadTokensFile(tokensFile).filter((t) => t.name !== name) : [];
  const entry: HttpToken = { name, sha256: createHash('sha256').update(token).digest('hex'), roles: roles as HttpToken['roles'] };
  try {
    writeFileSync(tokensFile, `${JSON.stringify([...others, entry], null, 2)}\n`, { mode: 0o644 });
  } catch (err) {
    throw writeFailed('tokens generate', tokensFile, err);
  }
  return { tokenFile, tokensFile, created: true };
}
