/**
 * Configuration: one YAML or JSON file, `${VAR:default}` substituted first, validated once against
 * `schemas/config.schema.json` (defaults filled, unknown keys rejected), checked for rules a schema
 * cannot say, then frozen. Every problem becomes one `path: message` line.
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { KillSwitchError } from '../core/errors.js';
import { spiffeIdError } from '../core/spiffe-id.js';
import type { DecisionValue } from '../core/decision-class.js';
import { formatErrors, validator } from '../schemas.js';

export interface KillSwitchConfig {
  readonly enabled: boolean;
  readonly window_seconds: number;
  readonly deny_rate_threshold: number;
  readonly min_calls: number;
  readonly resolution_ms: number;
  readonly allowed_lateness_seconds: number;
  readonly max_future_skew_seconds: number;
  readonly call_decisions: readonly DecisionValue[];
  readonly deny_decisions: readonly DecisionValue[];
}

export interface HttpToken {
  readonly name: string;
  readonly sha256: string;
  readonly roles: readonly ('viewer' | 'operator' | 'ingest' | 'opa')[];
}

/** A value of OPA's `result` that `opa.result` lists. */
export type OpaResultValue = string | number | boolean;

/** `opa`: how OPA decision-log events become decisions (docs/opa.md); presets are applied by src/adapters/opa/opa-mapping.ts. */
export interface OpaConfig {
  readonly preset: 'opa-envoy' | 'boolean-allow';
  readonly paths?: readonly string[];
  readonly identity?: string;
  readonly session_id?: string;
  readonly tool_name?: string;
  readonly result?: {
    readonly field?: string;
    readonly allow?: readonly OpaResultValue[];
    readonly deny?: readonly OpaResultValue[];
    readonly advisory_deny?: readonly OpaResultValue[];
  };
  readonly dedup_size: number;
  readonly max_decompressed_bytes: number;
}

export interface OverrideConfig {
  readonly match: string;
  readonly mode: 'enforce' | 'shadow';
  readonly window_seconds?: number;
  readonly deny_rate_threshold?: number;
  readonly min_calls?: number;
}

export interface Config {
  readonly kill_switch: KillSwitchConfig;
  readonly data_dir: string;
  readonly limits: { readonly max_tracked_identities: number };
  readonly overrides: readonly OverrideConfig[];
  readonly governor: { readonly enabled: boolean; readonly max_blocks_per_minute: number; readonly max_blocked_share: number; readonly share_floor: number };
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  readonly kafka?: {
    readonly brokers: readonly string[];
    readonly client_id: string;
    readonly group_id: string;
    readonly partitions: number;
    readonly replication_factor: number;
    readonly transaction_timeout_ms: number;
    readonly session_timeout_ms: number;
    readonly max_partition_fetch_bytes: number;
    readonly fetch_max_bytes: number;
    readonly topics: {
      readonly decisions: string; readonly kills: string; readonly addenda: string; readonly dlq: string; readonly shadow: string; readonly operator_addenda: string;
      /** filled in by parseConfig: `<decisions>.repartition` when not configured */
      readonly repartition: string;
      /** filled in by parseConfig: `<decisions>.opa-ids` when not configured */
      readonly opa_ids: string;
    };
  };
  readonly schema_registry?: { readonly url: string; readonly basic_auth?: { readonly username: string; readonly password: string } };
  readonly signing?: { readonly private_key_file?: string; readonly jwks_file?: string; readonly allow_unsigned: boolean };
  readonly http?: {
    readonly listen: string;
    readonly tokens?: readonly HttpToken[];
    readonly tokens_file?: string;
    readonly max_body_bytes: number;
    readonly dual_control?: { readonly block: boolean; readonly unblock: boolean; readonly window_seconds: number };
    readonly rate_limit?: { readonly per_minute: number; readonly burst: number };
  };
  readonly authz?: {
    readonly listen: string;
    readonly identity_header: string;
    readonly chain_header?: string;
    readonly failure_mode: 'closed' | 'open';
    readonly max_staleness_seconds: number;
    readonly metrics_listen?: string;
  };
  readonly opa?: OpaConfig;
}

/**
 * Canonical JSON and Python print fractions below 1e-4 differently, so a smaller threshold (and the
 * deny rates it admits) could not be signed reproducibly (docs/spec.md#5-canonical-json-and-signatures).
 */
export const MIN_THRESHOLD = 0.0001;

const VAR = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g;

/** Stands in for an unset variable until the parsed config says which key it was under. */
const UNSET = (name: string): string => `__killswitch_unset_${name}__`;
const UNSET_IN = /__killswitch_unset_([A-Za-z_][A-Za-z0-9_]*)__/;

/**
 * `${VAR}` / `${VAR:default}` substitution; `$${` is a literal `${`. An unset variable without a default
 * is an error, reported with the key it is under once the text is parsed (`unset`: the names, in order).
 */
export function substituteEnv(text: string, env: NodeJS.ProcessEnv, unset: string[]): string {
  return text.replace(VAR, (match, name: string | undefined, def: string | undefined) => {
    if (match === '$${') return '${';
    const value = env[name!];
    if (value !== undefined) return value;
    if (def !== undefined) return def;
    unset.push(name!);
    return UNSET(name!);
  });
}

/** `path: ${VAR} ...` for every value that holds an unset variable's stand-in. */
function unsetProblems(value: unknown, path: string, out: string[]): void {
  if (typeof value === 'string') {
    const m = UNSET_IN.exec(value);
    if (m !== null) out.push(`${path === '' ? '/' : path}: \${${m[1]}}: environment variable is not set and has no default`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => unsetProblems(v, `${path}/${i}`, out));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) unsetProblems(v, `${path}/${k}`, out);
  }
}

/**
 * Ports of the host:port values: 1 to 65535 (the schema checks their form). Run beside the schema, on a
 * value that may not have passed it, so every problem is listed at once.
 */
function portProblems(raw: unknown, out: string[]): void {
  const section = (key: string): Record<string, unknown> => {
    const v = (raw as Record<string, unknown> | null)?.[key];
    return v !== null && typeof v === 'object' ? v as Record<string, unknown> : {};
  };
  // a listen address may ask for any free port (0); a broker is at a real one
  const check = (path: string, v: unknown, lowest: number): void => {
    const m = typeof v === 'string' ? /^(.*):([0-9]{1,5})$/.exec(v) : null;
    if (m === null) return;
    if (!(Number(m[2]) >= lowest && Number(m[2]) <= 65535)) out.push(`${path}: port ${m[2]} is not between ${lowest} and 65535`);
    // a host of digits and dots is an IPv4 address or nothing (999.999.999.999 fails only at listen time)
    if (/^[0-9.]+$/.test(m[1]!) && isIP(m[1]!) !== 4) out.push(`${path}: ${m[1]} is not an IPv4 address`);
  };
  const brokers = section('kafka').brokers;
  if (Array.isArray(brokers)) brokers.forEach((b, i) => check(`/kafka/brokers/${i}`, b, 1));
  check('/http/listen', section('http').listen, 0);
  check('/authz/listen', section('authz').listen, 0);
  check('/authz/metrics_listen', section('authz').metrics_listen, 0);
}

/** `opa.result`: one value cannot mean two decisions (docs/opa.md, "Mapping"). */
function opaProblems(opa: OpaConfig | undefined, out: string[]): void {
  const r = opa?.result;
  if (r === undefined) return;
  const seen = new Map<OpaResultValue, string>();
  for (const key of ['allow', 'deny', 'advisory_deny'] as const) {
    for (const v of r[key] ?? []) {
      const first = seen.get(v);
      if (first !== undefined) out.push(`/opa/result/${key}: ${JSON.stringify(v)} is also in /opa/result/${first}; a result value maps to one decision`);
      else seen.set(v, key);
    }
  }
}

function configError(file: string, lines: readonly string[]): KillSwitchError {
  return new KillSwitchError('CONFIG_INVALID', `${file}: configuration is invalid`, { details: lines });
}

/** Parse and validate configuration text. Throws KillSwitchError(CONFIG_INVALID) listing every problem. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const unset: string[] = [];
  const substituted = substituteEnv(text, env, unset);
  let raw: unknown;
  try {
    raw = parseYaml(substituted, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    // prettyErrors adds the position (and a code frame, after the first line)
    const msg = (err instanceof Error ? err.message.split('\n')[0] ?? String(err) : String(err)).replace(/ at line \d+, column \d+:?$/, '');
    const at = (err as { linePos?: readonly { line: number; col: number }[] }).linePos?.[0];
    throw configError(file, [`/: not valid YAML or JSON${at === undefined ? '' : ` (line ${at.line}, column ${at.col})`}: ${msg}`]);
  }
  if (unset.length > 0) {
    unsetProblems(raw, '', problems);
    // a stand-in the parsed value does not hold (a variable in a key, a comment): by name only
    if (problems.length === 0) problems.push(...unset.map((name) => `\${${name}}: environment variable is not set and has no default`));
    throw configError(file, problems);
  }
  if (raw === null || raw === undefined) raw = {};
  const validate = validator('config');
  if (!validate(raw)) {
    const lines = formatErrors(validate.errors);
    portProblems(raw, lines);
    throw configError(file, lines);
  }
  const cfg = raw as { kill_switch: Record<string, unknown> };
  const ks = cfg.kill_switch as { window_seconds: number; resolution_ms?: number; deny_rate_threshold: number;
    call_decisions: string[]; deny_decisions: string[] };
  ks.resolution_ms ??= Math.ceil((ks.window_seconds * 1000) / 60);
  if (ks.resolution_ms > ks.window_seconds * 1000) {
    problems.push(`/kill_switch/resolution_ms: must be <= the window (${ks.window_seconds * 1000} ms)`);
  }
  if (ks.deny_rate_threshold < MIN_THRESHOLD) {
    problems.push(`/kill_switch/deny_rate_threshold: must be >= ${MIN_THRESHOLD} (smaller rates have no canonical JSON form shared with Python)`);
  }
  for (const d of ks.deny_decisions) {
    if (!ks.call_decisions.includes(d)) {
      problems.push(`/kill_switch/deny_decisions: "${d}" is not in call_decisions (every deny is also a call)`);
    }
  }
  ((raw as { overrides: OverrideConfig[] }).overrides).forEach((o, i) => {
    const base = o.match.endsWith('/*') ? o.match.slice(0, -2) : o.match;
    const err = spiffeIdError(base);
    if (err !== null) problems.push(`/overrides/${i}/match: not a SPIFFE ID or a SPIFFE ID followed by /*: ${err}`);
    if (o.window_seconds !== undefined && o.window_seconds > ks.window_seconds) {
      problems.push(`/overrides/${i}/window_seconds: must be <= kill_switch.window_seconds (${ks.window_seconds}): the windows keep no more`);
    }
    if (o.deny_rate_threshold !== undefined && o.deny_rate_threshold < MIN_THRESHOLD) problems.push(`/overrides/${i}/deny_rate_threshold: must be >= ${MIN_THRESHOLD}`);
  });
  const topics = (raw as Config).kafka?.topics;
  if (topics !== undefined) {
    // docs/spec.md#11-kafka-mode: the repartition topic is named after the decisions topic unless configured
    (topics as { repartition?: string }).repartition ??= `${topics.decisions}.repartition`;
    // docs/opa.md: so is the topic of the OPA decision ids the instances have taken
    (topics as { opa_ids?: string }).opa_ids ??= `${topics.decisions}.opa-ids`;
    const seen = new Map<string, string>();
    // in the order of the schema, so the later of two keys is the one reported
    for (const key of ['decisions', 'kills', 'addenda', 'dlq', 'shadow', 'operator_addenda', 'repartition', 'opa_ids'] as const) {
      const name = topics[key];
      const first = seen.get(name);
      if (first !== undefined) problems.push(`/kafka/topics/${key}: "${name}" is also /kafka/topics/${first}; every topic needs its own name`);
      else seen.set(name, key);
    }
  }
  opaProblems((raw as Config).opa, problems);
  portProblems(raw, problems);
  if (problems.length > 0) throw configError(file, problems);
  return deepFreeze(raw as Config);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw configError(file, [`/: cannot read ${file}${code === undefined ? '' : ` (${code})`}`]);
  }
  return parseConfig(text, file, env);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
