/**
 * `killswitch verify`: every addendum checked offline against schema, signature, trusted kid and chain
 * continuity; optionally every automatic trip re-derived from the decisions. Every failure of every
 * document is reported, not only the first. Reads files only: no network anywhere on this path.
 * Each line is parsed strictly (docs/spec.md#6-strict-documents): a duplicate key would let the
 * signature vouch for one value while another reader takes the other.
 */
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { CanonicalJsonError } from '../core/canonical-json.js';
import type { TraceAddendum } from '../core/documents.js';
import { KillSwitchError } from '../core/errors.js';
import { parseJsonStrict, StrictJsonError } from '../core/strict-json.js';
import { checkSignature } from '../adapters/signing/ed25519-signer.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import { formatErrors, validator } from '../schemas.js';
import { checkChains, type StreamSummary } from './chain-check.js';
import { rederive, type RederiveResult } from './rederive.js';

export interface VerifyFailure {
  /** 1-based line of the addendum in the file (absent for findings about the decisions, such as a missing addendum) */
  readonly line?: number;
  readonly code: string;
  readonly message: string;
  readonly agent_id?: string;
  readonly stream?: string;
  readonly sequence_number?: number;
}

export interface VerifyReport {
  readonly valid: boolean;
  readonly file: string;
  /** present (true) when the ADDENDA file does not exist and --decisions was given: it is read as holding no addendum */
  readonly file_missing?: true;
  readonly addenda: number;
  readonly valid_addenda: number;
  readonly streams: Record<string, StreamSummary>;
  readonly failures: VerifyFailure[];
  readonly rederived?: Omit<RederiveResult, 'failures'>;
  readonly cannot_detect: readonly string[];
}

export const CANNOT_DETECT = [
  'a truncated tail: addenda removed from the end of a stream leave a valid, shorter chain (ask for the chain tips, or verify with --decisions, which reports trips without an addendum)',
  'a stream removed whole',
  're-derivation of a block after an unblock (epoch >= 2): where the unblock fell in the decision stream is not recorded',
];

export async function verifyAddenda(file: string, trusted: ReadonlyMap<string, TrustedKey>, decisionsFile?: string): Promise<VerifyReport> {
  let bytes: Buffer;
  let fileMissing = false;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // With the decisions in hand, no addenda is an answer (every trip in them is missing), not a usage error.
    if (code !== 'ENOENT' || decisionsFile === undefined) {
      throw new KillSwitchError('INPUT_UNREADABLE', `${file}: cannot read addenda (${code ?? 'error'})`);
    }
    bytes = Buffer.alloc(0);
    fileMissing = true;
  }
  const validate = validator('addendum');
  const failures: VerifyFailure[] = [];
  const bad = new Set<number>();
  const docs: { index: number; addendum: TraceAddendum }[] = [];
  // Lines as bytes first: a byte that is not UTF-8 must not become U+FFFD and then verify
  const lines: Buffer[] = [];
  for (let start = 0; start <= bytes.length;) {
    const nl = bytes.indexOf(0x0a, start);
    const end = nl === -1 ? bytes.length : nl;
    lines.push(bytes.subarray(start, end));
    start = end + 1;
  }
  let count = 0;
  const where = new Map<number, { agent_id?: string; stream?: string; sequence_number?: number }>();
  lines.forEach((rawBytes, i) => {
    const line = i + 1;
    if (!isUtf8(rawBytes)) {
      count++;
      failures.push({ line, code: 'invalid_utf8', message: 'the line is not valid UTF-8' });
      bad.add(line);
      return;
    }
    const raw = rawBytes.toString('utf8');
    if (raw.trim().length === 0) return;
    count++;
    let doc: unknown;
    try {
      doc = parseJsonStrict(raw);
    } catch (err) {
      if (!(err instanceof StrictJsonError)) throw err;
      failures.push(err.reason === 'invalid_json'
        ? { line, code: 'invalid_json', message: 'not valid JSON' }
        : { line, code: err.reason, message: `${err.message}: a strict document has one value per key and bounded nesting` });
      bad.add(line);
      return;
    }
    if (!validate(doc)) {
      for (const m of formatErrors(validate.errors)) failures.push({ line, code: 'schema_invalid', message: m });
      bad.add(line);
      return;
    }
    const a = doc as TraceAddendum;
    where.set(line, { agent_id: a.agent_id, stream: a.chain.stream, sequence_number: a.chain.sequence_number });
    let sig: ReturnType<typeof checkSignature>;
    try {
      sig = checkSignature(doc as Record<string, unknown>, trusted);
    } catch (err) {
      // a value with no canonical form (a number JSON can carry but this project never writes) has no signed bytes
      if (!(err instanceof CanonicalJsonError)) throw err;
      failures.push({ line, code: 'schema_invalid', message: `no canonical form: ${err.message}` });
      bad.add(line);
      return;
    }
    if (!sig.ok) {
      failures.push({ line, code: sig.code, message: sig.message, ...where.get(line) });
      bad.add(line);
    }
    docs.push({ index: line, addendum: a });
  });

  const chains = checkChains(docs);
  for (const f of chains.failures) {
    failures.push({ line: f.index, code: f.code, message: f.message, ...where.get(f.index) });
    bad.add(f.index);
  }
  let rederived: RederiveResult | undefined;
  if (decisionsFile !== undefined) {
    rederived = await rederive(decisionsFile, docs);
    for (const f of rederived.failures) {
      failures.push({ ...(f.index === undefined ? {} : { line: f.index, ...where.get(f.index) }), code: f.code, message: f.message, agent_id: f.agent_id });
      if (f.index !== undefined) bad.add(f.index);
    }
  }
  failures.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  return {
    valid: failures.length === 0,
    file,
    ...(fileMissing ? { file_missing: true as const } : {}),
    addenda: count,
    valid_addenda: count - bad.size,
    streams: chains.streams,
    failures,
    ...(rederived === undefined ? {} : { rederived: { checked: rederived.checked, matched: rederived.matched, not_rederivable: rederived.not_rederivable, skipped: rederived.skipped } }),
    cannot_detect: CANNOT_DETECT,
  };
}
