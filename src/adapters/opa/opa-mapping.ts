/**
 * One Open Policy Agent decision-log event -> one decision event (docs/spec.md#1-decision-events), as
 * the `opa` configuration section says (docs/opa.md, "Mapping"). Pure: no I/O, no clock.
 *
 * The decision keeps OPA's `decision_id` as its `decision_id`, so evidence and addenda name the id a
 * regulator finds in OPA's own logs; OPA's `timestamp` (RFC 3339 with nanoseconds) is its `occurred_at`
 * as it is (docs/spec.md#22-event-time-lateness-and-future-decisions truncates to the millisecond).
 */
import type { OpaConfig, OpaResultValue } from '../../config/config.js';
import { spiffeIdError } from '../../core/spiffe-id.js';
import { parseRfc3339 } from '../../core/time.js';
import { PointerSet, type ScannedArray } from './opa-scan.js';

/** Why an event gave no decision; the `outcome` label of `killswitch_opa_events_total` besides `mapped`, `duplicate`, `ignored_path`. */
export const UNMAPPED_REASONS = ['no_decision_id', 'no_identity', 'invalid_spiffe_id', 'unmappable_result', 'bad_timestamp', 'not_an_object'] as const;
export type UnmappedReason = (typeof UNMAPPED_REASONS)[number];

export interface OpaMapping {
  readonly paths: ReadonlySet<string> | null;
  readonly identity: readonly string[];
  readonly sessionId: readonly string[] | null;
  readonly toolName: readonly string[] | null;
  readonly resultField: string | null;
  /** result value -> decision */
  readonly results: ReadonlyMap<OpaResultValue, 'allow' | 'deny' | 'advisory_deny'>;
}

interface Preset {
  readonly identity: string;
  readonly toolName: string | null;
  readonly resultField: string | null;
}

/** docs/opa.md, "Presets". Both read `true` as allow and `false` as deny unless `opa.result` says otherwise. */
export const PRESETS: Readonly<Record<OpaConfig['preset'], Preset>> = {
  // OPA-Envoy's ext_authz input; its allow rule is a boolean or an object with `allowed`
  'opa-envoy': { identity: '/input/attributes/source/principal', toolName: '/input/attributes/request/http/path', resultField: 'allowed' },
  'boolean-allow': { identity: '/input/agent_id', toolName: null, resultField: null },
};

/** RFC 6901: `/a/b~1c` -> ['a', 'b/c']; '' is the whole document. The schema has checked the form. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function at(doc: unknown, path: readonly string[]): unknown {
  let v = doc;
  for (const token of path) {
    if (v === null || typeof v !== 'object') return undefined;
    if (Array.isArray(v)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      v = v[Number(token)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(v, token)) return undefined;
      v = (v as Record<string, unknown>)[token];
    }
  }
  return v;
}

/** The `opa` section with its preset applied. */
export function resolveMapping(cfg: OpaConfig | undefined): OpaMapping {
  const preset = PRESETS[cfg?.preset ?? 'opa-envoy'];
  const results = new Map<OpaResultValue, 'allow' | 'deny' | 'advisory_deny'>();
  for (const v of cfg?.result?.allow ?? [true]) results.set(v, 'allow');
  for (const v of cfg?.result?.deny ?? [false]) results.set(v, 'deny');
  for (const v of cfg?.result?.advisory_deny ?? []) results.set(v, 'advisory_deny');
  const toolName = cfg?.tool_name ?? preset.toolName;
  return {
    paths: cfg?.paths === undefined ? null : new Set(cfg.paths),
    identity: parsePointer(cfg?.identity ?? preset.identity),
    sessionId: cfg?.session_id === undefined ? null : parsePointer(cfg.session_id),
    toolName: toolName === null ? null : parsePointer(toolName),
    resultField: cfg?.result?.field ?? preset.resultField,
    results,
  };
}

export type MapOutcome =
  /** `text`: the decision's JSON, as JSON.stringify writes it, when the reader made it on the way */
  | { readonly kind: 'mapped'; readonly decisionId: string; readonly decision: Record<string, string>; readonly text?: string }
  | { readonly kind: 'ignored_path'; readonly decisionId: string | null }
  | { readonly kind: 'unmapped'; readonly decisionId: string | null; readonly reason: UnmappedReason; readonly message: string };

const MAX_QUOTED = 200;
const quote = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}...` : s;
};

/** What the mapping reads of one event: the values at its pointers, undefined where there is none. */
interface EventFields {
  readonly decisionId: unknown;
  readonly path: unknown;
  /** at opa.identity */
  readonly identity: unknown;
  /** `result`, or its member opa.result.field when it is an object */
  readonly result: unknown;
  readonly timestamp: unknown;
  /** at opa.session_id, opa.tool_name */
  readonly sessionId: unknown;
  readonly toolName: unknown;
}

const NOT_AN_OBJECT: MapOutcome = { kind: 'unmapped', decisionId: null, reason: 'not_an_object', message: 'the event is not a JSON object' };

/** What one decision-log event, parsed whole, gives. */
export function mapEvent(m: OpaMapping, event: unknown): MapOutcome {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return NOT_AN_OBJECT;
  let result = at(event, ['result']);
  if (m.resultField !== null && result !== null && typeof result === 'object' && !Array.isArray(result)) result = at(result, [m.resultField]);
  return mapFields(m, {
    decisionId: at(event, ['decision_id']), path: at(event, ['path']), identity: at(event, m.identity), result, timestamp: at(event, ['timestamp']),
    sessionId: m.sessionId === null ? undefined : at(event, m.sessionId), toolName: m.toolName === null ? undefined : at(event, m.toolName),
  });
}

/** The pointers ScanMapping reads, by index in its PointerSet */
const P_DECISION_ID = 0;
const P_PATH = 1;
const P_TIMESTAMP = 2;
const P_RESULT = 3;
const P_RESULT_FIELD = 4;
const P_IDENTITY = 5;
const P_SESSION_ID = 6;
const P_TOOL_NAME = 7;

/**
 * The pointers the mapping reads, for `scanArray` (opa-scan.ts), which finds their values in each event
 * of an upload without parsing the rest; `map` then gives what `mapEvent` gives for the parsed event.
 */
export class ScanMapping {
  readonly pointers: PointerSet;
  private readonly hasField: boolean;

  constructor(private readonly m: OpaMapping) {
    this.pointers = new PointerSet([
      ['decision_id'], ['path'], ['timestamp'], ['result'], m.resultField === null ? null : ['result', m.resultField], m.identity, m.sessionId, m.toolName,
    ]);
    this.hasField = m.resultField !== null;
  }

  /** What event i of `upload` gives; a decision with its JSON. */
  map(upload: ScannedArray, i: number): MapOutcome {
    if (!upload.isObject(i)) return NOT_AN_OBJECT;
    return mapFields(this.m, {
      decisionId: upload.value(i, P_DECISION_ID), path: upload.value(i, P_PATH), identity: upload.value(i, P_IDENTITY),
      result: this.hasField && upload.isObjectAt(i, P_RESULT) ? upload.value(i, P_RESULT_FIELD) : upload.value(i, P_RESULT),
      timestamp: upload.value(i, P_TIMESTAMP),
      sessionId: upload.value(i, P_SESSION_ID), toolName: upload.value(i, P_TOOL_NAME),
    }, (d) => decisionJson(d, upload, i));
  }
}

/**
 * JSON.stringify(d) for a decision mapFields made of event i, the same text written without it:
 * JSON.stringify looks at every character of every value for one to escape (about 0.2 ms of an upload
 * of 469 events), while the upload already says which values need it: one written there without an
 * escape is its own JSON between quotes. The members in mapFields' order.
 */
function decisionJson(d: Record<string, string>, upload: ScannedArray, i: number): string {
  const json = (p: number, v: string): string => (upload.escaped(i, p) ? JSON.stringify(v) : `"${v}"`);
  let out = `{"decision_id":${json(P_DECISION_ID, d.decision_id!)},"agent_id":${json(P_IDENTITY, d.agent_id!)},"decision":"${d.decision!}","occurred_at":${json(P_TIMESTAMP, d.occurred_at!)}`;
  if (d.policy_rule !== undefined) out += `,"policy_rule":${json(P_PATH, d.policy_rule)}`;
  if (d.session_id !== undefined) out += `,"session_id":${json(P_SESSION_ID, d.session_id)}`;
  if (d.tool_name !== undefined) out += `,"tool_name":${json(P_TOOL_NAME, d.tool_name)}`;
  return `${out}}`;
}

/** The mapping proper, for either reading of the event; `json` writes a decision's JSON, when the reader can. */
function mapFields(m: OpaMapping, e: EventFields, json?: (decision: Record<string, string>) => string): MapOutcome {
  const decisionId = typeof e.decisionId === 'string' && e.decisionId !== '' ? e.decisionId : null;
  const unmapped = (reason: UnmappedReason, message: string): MapOutcome => ({ kind: 'unmapped', decisionId, reason, message });
  if (m.paths !== null && !(typeof e.path === 'string' && m.paths.has(e.path))) return { kind: 'ignored_path', decisionId };
  if (decisionId === null) return unmapped('no_decision_id', 'decision_id: missing or not a non-empty string (is decision logging on in OPA?)');
  const who = e.identity;
  if (who === undefined || who === null || who === '') return unmapped('no_identity', `no identity at ${pointerText(m.identity)}`);
  if (typeof who !== 'string') return unmapped('invalid_spiffe_id', `${pointerText(m.identity)}: not a string`);
  const idErr = spiffeIdError(who);
  if (idErr !== null) return unmapped('invalid_spiffe_id', `${pointerText(m.identity)}: not a SPIFFE ID: ${idErr}`);
  const value = e.result;
  const decision = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? m.results.get(value) : undefined;
  if (decision === undefined) {
    return unmapped('unmappable_result', value === undefined ? 'no result (undefined decision, or an evaluation error)' : `result ${quote(value)} is in none of opa.result.allow, deny, advisory_deny`);
  }
  const ts = e.timestamp;
  if (typeof ts !== 'string' || Number.isNaN(parseRfc3339(ts))) return unmapped('bad_timestamp', `timestamp ${quote(ts)} is not an RFC 3339 date-time`);
  const out: Record<string, string> = { decision_id: decisionId, agent_id: who, decision, occurred_at: ts };
  if (typeof e.path === 'string') out.policy_rule = e.path;
  if (typeof e.sessionId === 'string') out.session_id = e.sessionId;
  if (typeof e.toolName === 'string') out.tool_name = e.toolName;
  return json === undefined ? { kind: 'mapped', decisionId, decision: out } : { kind: 'mapped', decisionId, decision: out, text: json(out) };
}

function pointerText(path: readonly string[]): string {
  return path.length === 0 ? 'the event' : path.join('.');
}
