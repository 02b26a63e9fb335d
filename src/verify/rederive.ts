/**
 * Re-derive automatic trips from the decisions (killswitch verify --decisions): replay the decisions
 * under the kill_switch settings an addendum records and compare the first trip of each identity with
 * the addendum's evidence (docs/spec.md#4-trace-addenda). Settings an addendum does not record
 * (resolution_ms, lateness, decision sets) take their contract defaults. When no addendum records any
 * settings (an empty or absent addenda file, or operator actions only) the decisions are replayed under
 * the default kill_switch settings: a file that leaves out every trip must not look like one that
 * has nothing to record.
 */
import { createClassifier } from '../core/decision-class.js';
import type { Evidence, KillSwitchSettings, TraceAddendum } from '../core/documents.js';
import { DEFAULT_MAX_FUTURE_SKEW_MS, Evaluator, type Trip } from '../core/evaluator.js';
import { futureTimestampError } from '../core/time.js';
import { DecisionDecoder } from '../adapters/serde/decision-decoder.js';
import { readNdjson } from '../adapters/file/ndjson-reader.js';
import { loadSchema } from '../schemas.js';

export const DEFAULT_LATENESS_MS = 5000;

export interface RederiveFailure {
  readonly index: number | undefined;
  readonly code: 'rederive_mismatch' | 'rederive_no_trip' | 'missing_addendum';
  readonly message: string;
  readonly agent_id: string;
}

/** Lines of the decisions file that are not decisions: the live run skipped them too, but a dump that is all of them (a registry-framed topic dumped as it is) re-derives nothing. */
export interface SkippedDecisions {
  readonly count: number;
  /** how many of them start with Schema Registry framing (byte 0x00 and a schema id) */
  readonly framed: number;
  readonly by_reason: Record<string, number>;
  /** the first few, by line number */
  readonly first: readonly { readonly line: number; readonly reason: string; readonly message: string }[];
}

export interface RederiveResult {
  readonly skipped: SkippedDecisions;
  readonly checked: number;
  readonly matched: number;
  /** later epochs: they follow an operator unblock whose place in the decision stream is not recorded */
  readonly not_rederivable: number;
  readonly failures: RederiveFailure[];
}

/** The kill_switch defaults of the configuration schema, the settings of a deployment that set none. */
export function defaultKillSwitchSettings(): KillSwitchSettings {
  const props = ((loadSchema('config').properties as Record<string, { properties: Record<string, { default: unknown }> }>).kill_switch!).properties;
  return {
    enabled: true,
    window_seconds: props.window_seconds!.default as number,
    deny_rate_threshold: props.deny_rate_threshold!.default as number,
    min_calls: props.min_calls!.default as number,
  };
}

const settingsKey = (s: KillSwitchSettings): string => JSON.stringify([s.window_seconds, s.deny_rate_threshold, s.min_calls]);

async function firstTrips(decisionsFile: string, s: KillSwitchSettings): Promise<{ trips: Map<string, Trip>; skipped: SkippedDecisions }> {
  const windowMs = s.window_seconds * 1000;
  const evaluator = new Evaluator({
    enabled: true,
    windowMs,
    resolutionMs: Math.ceil(windowMs / 60),
    latenessMs: DEFAULT_LATENESS_MS,
    minCalls: s.min_calls,
    threshold: s.deny_rate_threshold,
    classifier: createClassifier(),
    maxTrackedIdentities: Number.MAX_SAFE_INTEGER,
    settings: s,
  });
  const decoder = new DecisionDecoder(evaluator.config.classifier);
  const clock = evaluator.openStream(decisionsFile, { file: decisionsFile });
  const trips = new Map<string, Trip>();
  const skipped = { count: 0, framed: 0, by_reason: {} as Record<string, number>, first: [] as { line: number; reason: string; message: string }[] };
  const skip = (line: number, reason: string, message: string, framed = false): void => {
    skipped.count++;
    if (framed) skipped.framed++;
    skipped.by_reason[reason] = (skipped.by_reason[reason] ?? 0) + 1;
    if (skipped.first.length < 5) skipped.first.push({ line, reason, message });
  };
  await readNdjson(decisionsFile, {
    line: (bytes, key, lineNo) => {
      const r = decoder.decodeBytes(bytes, key ?? null);
      if (!r.ok) {
        const framed = bytes.length >= 5 && bytes[0] === 0;
        skip(lineNo, r.reason, framed ? 'a Schema Registry framed value (byte 0x00 and a schema id): unframe the dump first (docs/regulators.md)' : r.message, framed);
        return undefined;
      }
      // the same refusal as a live run's (docs/spec.md#22-event-time-lateness-and-future-decisions): a
      // file carries no arrival, so the reader's clock stands in for it
      const future = futureTimestampError(r.decision.timeMs, Date.now(), DEFAULT_MAX_FUTURE_SKEW_MS);
      if (future !== null) {
        skip(lineNo, 'future_timestamp', future);
        return undefined;
      }
      const trip = evaluator.accept(clock, r.decision, lineNo);
      if (trip !== null && !trips.has(trip.agentId)) trips.set(trip.agentId, trip);
      return undefined;
    },
    tooLong: (lineNo) => skip(lineNo, 'too_large', 'longer than the line limit'),
  });
  return { trips, skipped };
}

function compare(recorded: Evidence, derived: Evidence): string[] {
  const fields = ['tripping_decision_id', 'calls', 'denies', 'advisory_denies', 'deny_rate', 'window_start', 'window_end'] as const;
  return fields.filter((f) => recorded[f] !== derived[f]).map((f) => `${f}: recorded ${JSON.stringify(recorded[f])}, derived ${JSON.stringify(derived[f])}`);
}

export async function rederive(decisionsFile: string, docs: readonly { index: number; addendum: TraceAddendum }[]): Promise<RederiveResult> {
  const automatic = docs.filter((d) => d.addendum.gateway.kill_switch_triggered && d.addendum.gateway.kill_switch.trigger === 'deny_rate' && d.addendum.evidence !== undefined);
  const groups = new Map<string, { settings: KillSwitchSettings; docs: typeof automatic }>();
  for (const d of automatic) {
    const { trigger: _t, ...settings } = d.addendum.gateway.kill_switch;
    const key = settingsKey(settings);
    const g = groups.get(key) ?? { settings, docs: [] };
    g.docs.push(d);
    groups.set(key, g);
  }
  if (groups.size === 0) {
    const settings = defaultKillSwitchSettings();
    groups.set(settingsKey(settings), { settings, docs: [] });
  }
  // A trip is missing only when its identity has no block addendum at all: with overrides, an identity
  // recorded under its own rule also trips under the main rule's replay, and that is not a second trip.
  const blocked = new Set(docs.filter((d) => d.addendum.gateway.kill_switch_triggered).map((d) => d.addendum.agent_id));
  const missing = new Map<string, Trip>();
  const failures: RederiveFailure[] = [];
  let checked = 0;
  let matched = 0;
  let notRederivable = 0;
  let skipped: SkippedDecisions | undefined;
  for (const { settings, docs: group } of groups.values()) {
    const read = await firstTrips(decisionsFile, settings);
    const trips = read.trips;
    skipped ??= read.skipped;
    const firstOf = new Map<string, (typeof group)[number]>();
    for (const d of group) {
      const prior = firstOf.get(d.addendum.agent_id);
      if (prior === undefined) firstOf.set(d.addendum.agent_id, d);
      else notRederivable++;
    }
    for (const [agent, d] of firstOf) {
      checked++;
      const trip = trips.get(agent);
      if (trip === undefined) {
        failures.push({ index: d.index, code: 'rederive_no_trip', agent_id: agent, message: `the decisions never trip ${agent} under these settings` });
        continue;
      }
      const diff = compare(d.addendum.evidence!, trip.evidence);
      if (diff.length === 0) matched++;
      else failures.push({ index: d.index, code: 'rederive_mismatch', agent_id: agent, message: `evidence differs from the decisions: ${diff.join('; ')}` });
    }
    for (const [agent, trip] of trips) {
      if (!blocked.has(agent) && !missing.has(agent)) missing.set(agent, trip);
    }
  }
  for (const [agent, trip] of missing) {
    failures.push({
      index: undefined, code: 'missing_addendum', agent_id: agent,
      message: `the decisions trip ${agent} at decision ${trip.evidence.tripping_decision_id} (${trip.evidence.window_end}), but no addendum records a block of it`,
    });
  }
  return { skipped: skipped!, checked, matched, not_rederivable: notRederivable, failures };
}
