import { describe, expect, it } from 'vitest';
import { buildAddendum, buildKillEvent, type Evidence, GENESIS, type KillEvent,
  type KillSwitchSettings } from '../../src/core/documents.js';
import { formatErrors, loadSchema, type SchemaName, validator } from '../../src/schemas.js';

const AGENT = 'spiffe://example.org/agents/planner';
const SETTINGS: KillSwitchSettings = { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 };
const KID = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';
const X = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo';
const SIGNATURE = 'A'.repeat(86);

/** Validate and return the `path: message` lines ([] when valid). */
function problems(name: SchemaName, doc: unknown): string[] {
  const validate = validator(name);
  if (validate(doc)) return [];
  const lines = formatErrors(validate.errors);
  // an invalid document always yields at least one line
  return lines.length > 0 ? lines : ['(no message)'];
}

function fileEvidence(): Evidence {
  return {
    window_start: '2025-03-01T11:55:00.000Z',
    window_end: '2025-03-01T12:00:00.000Z',
    calls: 10,
    denies: 9,
    advisory_denies: 2,
    deny_rate: 0.9,
    tripping_decision_id: 'd-0010',
    source: { file: 'decisions.ndjson', line_from: 1, line_to: 10 },
  };
}

function automaticKill(evidence: Evidence = fileEvidence()): KillEvent {
  return buildKillEvent({
    action: 'block',
    agentId: AGENT,
    epoch: 1,
    trigger: 'deny_rate',
    at: '2025-03-01T12:00:00.000Z',
    reason: 'deny_rate_threshold',
    killSwitch: SETTINGS,
    evidence,
  });
}

describe('policy-decision.schema.json', () => {
  const minimal = (): Record<string, unknown> => ({
    decision_id: 'd-1',
    decision: 'deny',
    occurred_at: '2025-03-01T12:00:00Z',
  });

  const valid: [string, () => Record<string, unknown>][] = [
    ['minimal (anonymous, agent_id absent)', minimal],
    ['agent_id null', () => ({ ...minimal(), agent_id: null })],
    ['full', () => ({
      decision_id: 'x'.repeat(128),
      agent_id: AGENT,
      decision: 'advisory_deny',
      occurred_at: '2025-03-01T12:00:00.123+01:00',
      session_id: 's-1',
      tool_name: 'fs.read',
      policy_rule: 'no-secrets',
      tenant: 'acme',
      delegated_by: 'spiffe://example.org/agents/orchestrator',
    })],
    ['unknown extra fields', () => ({ ...minimal(), trace_id: 'abc', nested: { a: 1 } })],
    ...['allow', 'deny', 'advisory_deny', 'step_up', 'defer', 'redact', 'fault', 'n/a'].map(
      (d): [string, () => Record<string, unknown>] => [`decision ${d}`, () => ({ ...minimal(), decision: d })],
    ),
  ];
  it.each(valid)('accepts %s', (_name, make) => {
    expect(problems('decision', make())).toEqual([]);
  });

  const invalid: [string, () => Record<string, unknown>, string][] = [
    ['missing decision_id', () => { const d = minimal(); delete d.decision_id; return d; }, '/decision_id: is required'],
    ['empty decision_id', () => ({ ...minimal(), decision_id: '' }), '/decision_id: must NOT have fewer than 1 characters'],
    ['129-char decision_id', () => ({ ...minimal(), decision_id: 'x'.repeat(129) }),
      '/decision_id: must NOT have more than 128 characters'],
    ['boolean decision_id', () => ({ ...minimal(), decision_id: true }), '/decision_id: must be string'],
    ['bad SPIFFE id', () => ({ ...minimal(), agent_id: 'spiffe://Example.org/a' }), '/agent_id: must match format "spiffe-id"'],
    ['non-SPIFFE agent_id', () => ({ ...minimal(), agent_id: 'https://example.org/a' }),
      '/agent_id: must match format "spiffe-id"'],
    ['SPIFFE id with trailing slash', () => ({ ...minimal(), agent_id: 'spiffe://example.org/a/' }),
      '/agent_id: must match format "spiffe-id"'],
    ['bad delegated_by', () => ({ ...minimal(), delegated_by: 'spiffe://example.org/../a' }),
      '/delegated_by: must match format "spiffe-id"'],
    ['unknown decision', () => ({ ...minimal(), decision: 'block' }),
      '/decision: must be one of "allow", "deny", "advisory_deny", "step_up", "defer", "redact", "fault", "n/a"'],
    ['missing decision', () => { const d = minimal(); delete d.decision; return d; }, '/decision: is required'],
    ['bad occurred_at', () => ({ ...minimal(), occurred_at: 'yesterday' }), '/occurred_at: must match format "rfc3339"'],
    ['occurred_at without zone', () => ({ ...minimal(), occurred_at: '2025-03-01T12:00:00' }),
      '/occurred_at: must match format "rfc3339"'],
    ['numeric occurred_at', () => ({ ...minimal(), occurred_at: 1740830400000 }), '/occurred_at: must be string'],
    ['numeric session_id', () => ({ ...minimal(), session_id: 7 }), '/session_id: must be string'],
  ];
  it.each(invalid)('rejects %s', (_name, make, line) => {
    expect(problems('decision', make())).toContain(line);
  });

  it('rejects a value that is not an object', () => {
    expect(problems('decision', [])).toContain('/: must be object');
    expect(problems('decision', null)).toContain('/: must be object');
  });
});

describe('kill-event.schema.json', () => {
  it('accepts a realistic automatic kill event (file-source evidence)', () => {
    expect(problems('killEvent', automaticKill())).toEqual([]);
  });

  it('accepts Kafka-source evidence', () => {
    const ev: Evidence = { ...fileEvidence(), source: { topic: 'policy.decisions', partition: 3, offset_from: 100, offset_to: 187 } };
    expect(problems('killEvent', automaticKill(ev))).toEqual([]);
  });

  it('accepts an operator block and unblock with authorized_by', () => {
    for (const action of ['block', 'unblock'] as const) {
      const ev = buildKillEvent({
        action, agentId: AGENT, epoch: 2, trigger: 'operator', at: '2025-03-01T12:30:00Z', reason: 'manual review',
        authorizedBy: 'alice', killSwitch: SETTINGS,
      });
      expect(problems('killEvent', ev)).toEqual([]);
    }
  });

  it('accepts a signed kill event with its issuer', () => {
    expect(problems('killEvent', { ...automaticKill(), issuer: { kid: KID }, signature: SIGNATURE })).toEqual([]);
  });

  const invalid: [string, () => unknown, string][] = [
    ['operator kill without authorized_by',
      () => buildKillEvent({ action: 'block', agentId: AGENT, epoch: 1, trigger: 'operator', at: '2025-03-01T12:00:00Z',
        reason: 'manual', killSwitch: SETTINGS }),
      '/authorized_by: is required'],
    ['automatic kill without evidence', () => { const doc: Record<string, unknown> = { ...automaticKill() }; delete doc.evidence; return doc; },
      '/evidence: is required'],
    ['signature without issuer', () => ({ ...automaticKill(), signature: SIGNATURE }), '/issuer: is required'],
    ['short signature', () => ({ ...automaticKill(), issuer: { kid: KID }, signature: 'AAAA' }),
      '/signature: must be 86 base64url characters (a 64-byte Ed25519 signature)'],
    ['bad kid', () => ({ ...automaticKill(), issuer: { kid: 'nope' } }), '/issuer/kid: must be 43 base64url characters (32 bytes)'],
    ['wrong type', () => ({ ...automaticKill(), type: 'killswitch.kill-event/v2' }), '/type: must be equal to constant'],
    ['bad event_id', () => ({ ...automaticKill(), event_id: 'sha256:XYZ' }),
      '/event_id: must be "sha256:" and 64 lowercase hex digits'],
    ['epoch 0', () => ({ ...automaticKill(), epoch: 0 }), '/epoch: must be >= 1'],
    ['fractional epoch', () => ({ ...automaticKill(), epoch: 1.5 }), '/epoch: must be integer'],
    ['empty reason', () => ({ ...automaticKill(), reason: '' }), '/reason: must NOT have fewer than 1 characters'],
    ['unknown top-level key', () => ({ ...automaticKill(), note: 'x' }), '/note: unknown key'],
    ['unknown kill_switch key', () => ({ ...automaticKill(), kill_switch: { ...SETTINGS, resolution_ms: 5000 } }),
      '/kill_switch/resolution_ms: unknown key'],
    ['threshold 0', () => ({ ...automaticKill(), kill_switch: { ...SETTINGS, deny_rate_threshold: 0 } }),
      '/kill_switch/deny_rate_threshold: must be > 0'],
    ['evidence deny_rate > 1', () => automaticKill({ ...fileEvidence(), deny_rate: 1.1 }), '/evidence/deny_rate: must be <= 1'],
    ['evidence line_from 0', () => automaticKill({ ...fileEvidence(), source: { file: 'a', line_from: 0, line_to: 1 } }),
      '/evidence/source/line_from: must be >= 1'],
    ['evidence source mixing both shapes',
      () => ({ ...automaticKill(), evidence: { ...fileEvidence(), source: { file: 'a', line_from: 1, line_to: 1, partition: 0 } } }),
      '/evidence/source/partition: unknown key'],
  ];
  it.each(invalid)('rejects %s', (_name, make, line) => {
    expect(problems('killEvent', make())).toContain(line);
  });
});

describe('trace-addendum.schema.json', () => {
  const addendum = (): Record<string, unknown> => ({
    ...buildAddendum(automaticKill(), ['s-1', 's-2'], { stream: 'decisions.ndjson', sequence_number: 1, prev_hash: GENESIS }),
  });
  const signed = (): Record<string, unknown> => ({
    ...addendum(),
    issuer: { kid: KID, jwk: { kty: 'OKP', crv: 'Ed25519', x: X, kid: KID, alg: 'EdDSA', use: 'sig' } },
    signature: SIGNATURE,
  });

  it('accepts an addendum built with buildAddendum', () => {
    expect(problems('addendum', addendum())).toEqual([]);
  });

  it('accepts a signed addendum and a chained one', () => {
    expect(problems('addendum', signed())).toEqual([]);
    const next = { ...signed(), chain: { stream: 'decisions.ndjson', sequence_number: 2, prev_hash: 'sha256:' + 'ab'.repeat(32) } };
    expect(problems('addendum', next)).toEqual([]);
  });

  it('accepts the addendum of an operator unblock (no evidence)', () => {
    const kill = buildKillEvent({ action: 'unblock', agentId: AGENT, epoch: 1, trigger: 'operator', at: '2025-03-01T13:00:00Z',
      reason: 'false positive', authorizedBy: 'alice', killSwitch: SETTINGS });
    const doc = buildAddendum(kill, [], { stream: 'operator', sequence_number: 3, prev_hash: 'sha256:' + '0'.repeat(64) });
    expect(doc.gateway.kill_switch_triggered).toBe(false);
    expect(problems('addendum', doc)).toEqual([]);
  });

  const invalid: [string, () => unknown, string][] = [
    ['33 session ids', () => ({ ...addendum(), session_ids: Array.from({ length: 33 }, (_, i) => `s-${i}`) }),
      '/session_ids: must NOT have more than 32 items'],
    ['signature without issuer', () => ({ ...addendum(), signature: SIGNATURE }), '/issuer: is required'],
    ['issuer without jwk', () => ({ ...signed(), issuer: { kid: KID } }), '/issuer/jwk: is required'],
    ['jwk of another key type', () => ({ ...signed(), issuer: { kid: KID, jwk: { kty: 'EC', crv: 'Ed25519', x: X } } }),
      '/issuer/jwk/kty: must be equal to constant'],
    ['bad prev_hash', () => ({ ...addendum(), chain: { stream: 's', sequence_number: 1, prev_hash: 'origin' } }),
      '/chain/prev_hash: must be "sha256:" and 64 lowercase hex digits'],
    ['sequence_number 0', () => ({ ...addendum(), chain: { stream: 's', sequence_number: 0, prev_hash: GENESIS } }),
      '/chain/sequence_number: must be >= 1'],
    ['gateway without trigger', () => {
      const doc = addendum();
      return { ...doc, gateway: { kill_switch_triggered: true, kill_switch: SETTINGS } };
    }, '/gateway/kill_switch/trigger: is required'],
    ['unknown key', () => ({ ...addendum(), extra: 1 }), '/extra: unknown key'],
    ['bad issued_at', () => ({ ...addendum(), issued_at: '2025-03-01 12:00:00Z' }), '/issued_at: must match format "rfc3339"'],
  ];
  it.each(invalid)('rejects %s', (_name, make, line) => {
    expect(problems('addendum', make())).toContain(line);
  });
});

describe('shared definitions', () => {
  // The addendum schema duplicates these (each schema compiles on its own, so a cross-file $ref would
  // not resolve); this keeps the copies from drifting.
  const defs = (name: SchemaName): Record<string, unknown> => loadSchema(name).$defs as Record<string, unknown>;

  it('evidence is the same object in the kill event and the addendum', () => {
    expect(defs('addendum').evidence).toBeDefined();
    expect(defs('addendum').evidence).toEqual(defs('killEvent').evidence);
  });

  it('jwk is the same object in the kill event and the addendum', () => {
    expect(defs('addendum').jwk).toBeDefined();
    expect(defs('addendum').jwk).toEqual(defs('killEvent').jwk);
  });

  it('gateway.kill_switch is the kill event kill_switch plus trigger', () => {
    const ks = defs('killEvent').killSwitchSettings as { properties: Record<string, unknown>; required: string[] };
    const gateway = (loadSchema('addendum').properties as Record<string, { properties: Record<string, unknown> }>).gateway;
    const gks = gateway?.properties.kill_switch as { properties: Record<string, unknown>; required: string[] };
    const { trigger, ...rest } = gks.properties;
    expect(trigger).toBeDefined();
    expect(rest).toEqual(ks.properties);
    expect(gks.required).toEqual([...ks.required, 'trigger']);
  });
});

describe('config.schema.json', () => {
  it('fills every default into {}', () => {
    const cfg: Record<string, unknown> = {};
    expect(problems('config', cfg)).toEqual([]);
    expect(cfg).toEqual({
      kill_switch: {
        enabled: false,
        window_seconds: 300,
        deny_rate_threshold: 0.9,
        min_calls: 10,
        allowed_lateness_seconds: 5,
        max_future_skew_seconds: 300,
        call_decisions: ['allow', 'deny', 'advisory_deny'],
        deny_decisions: ['deny', 'advisory_deny'],
      },
      data_dir: './data',
      limits: { max_tracked_identities: 1_000_000 },
      governor: { enabled: true, max_blocks_per_minute: 100, max_blocked_share: 0.25, share_floor: 10 },
      overrides: [],
      log: { level: 'info' },
    });
    // resolution_ms has no schema default: the loader computes ceil(window_ms / 60)
    expect((cfg.kill_switch as Record<string, unknown>).resolution_ms).toBeUndefined();
  });

  it('fills section defaults when a section is present', () => {
    const cfg: Record<string, unknown> = {
      kafka: { brokers: ['127.0.0.1:9092', '[::1]:9093'] },
      schema_registry: { url: 'http://127.0.0.1:8081' },
      signing: { private_key_file: 'key.pem', jwks_file: 'jwks.json' },
      http: {},
      authz: {},
    };
    expect(problems('config', cfg)).toEqual([]);
    expect(cfg.kafka).toEqual({
      brokers: ['127.0.0.1:9092', '[::1]:9093'],
      client_id: 'killswitch',
      group_id: 'killswitch',
      partitions: 6,
      replication_factor: -1,
      transaction_timeout_ms: 60_000,
      session_timeout_ms: 30_000,
      max_partition_fetch_bytes: 4_194_304,
      fetch_max_bytes: 25_165_824,
      topics: {
        decisions: 'policy.decisions', kills: 'killswitch.kills', addenda: 'killswitch.addenda', dlq: 'policy.decisions.dlq',
        shadow: 'killswitch.shadow', operator_addenda: 'killswitch.addenda.operator',
      },
    });
    expect(cfg.signing).toEqual({ private_key_file: 'key.pem', jwks_file: 'jwks.json', allow_unsigned: false });
    expect(cfg.http).toEqual({ listen: '127.0.0.1:8080', max_body_bytes: 1_048_576 });
    expect(cfg.authz).toEqual({ listen: '127.0.0.1:8181', identity_header: 'x-spiffe-id', failure_mode: 'closed', max_staleness_seconds: 30 });
  });

  it('accepts the docs/spec.md#10-configuration example', () => {
    const cfg = {
      kill_switch: { enabled: true, window_seconds: 60, deny_rate_threshold: 1, min_calls: 1, resolution_ms: 1,
        allowed_lateness_seconds: 0 },
      data_dir: './data',
      kafka: {
        brokers: ['127.0.0.1:9092'],
        group_id: 'killswitch',
        topics: { decisions: 'policy.decisions', kills: 'killswitch.kills', addenda: 'killswitch.addenda', dlq: 'policy.decisions.dlq' },
      },
      schema_registry: { url: 'http://127.0.0.1:8081', basic_auth: { username: 'u', password: 'p' } },
      signing: { private_key_file: 'key.pem', jwks_file: 'jwks.json' },
      http: { listen: '127.0.0.1:8080', tokens: [{ name: 'alice', sha256: 'a'.repeat(64), roles: ['viewer', 'operator', 'ingest'] }] },
      authz: { listen: '127.0.0.1:8181', identity_header: 'x-spiffe-id' },
    };
    expect(problems('config', cfg)).toEqual([]);
  });

  const invalid: [string, () => unknown, string][] = [
    ['boolean threshold', () => ({ kill_switch: { deny_rate_threshold: true } }), '/kill_switch/deny_rate_threshold: must be number'],
    ['unknown kill_switch key', () => ({ kill_switch: { foo: 1 } }), '/kill_switch/foo: unknown key'],
    ['threshold 1.5', () => ({ kill_switch: { deny_rate_threshold: 1.5 } }), '/kill_switch/deny_rate_threshold: must be <= 1'],
    ['threshold 0', () => ({ kill_switch: { deny_rate_threshold: 0 } }), '/kill_switch/deny_rate_threshold: must be > 0'],
    ['window 0', () => ({ kill_switch: { window_seconds: 0 } }), '/kill_switch/window_seconds: must be >= 1'],
    ['fractional min_calls', () => ({ kill_switch: { min_calls: 2.5 } }), '/kill_switch/min_calls: must be integer'],
    ['string enabled', () => ({ kill_switch: { enabled: 'yes' } }), '/kill_switch/enabled: must be boolean'],
    ['negative lateness', () => ({ kill_switch: { allowed_lateness_seconds: -1 } }),
      '/kill_switch/allowed_lateness_seconds: must be >= 0'],
    ['empty call_decisions', () => ({ kill_switch: { call_decisions: [] } }),
      '/kill_switch/call_decisions: must NOT have fewer than 1 items'],
    ['unknown deny decision', () => ({ kill_switch: { deny_decisions: ['nope'] } }),
      '/kill_switch/deny_decisions/0: must be one of "allow", "deny", "advisory_deny", "step_up", "defer", "redact", "fault", "n/a"'],
    ['duplicate call decision', () => ({ kill_switch: { call_decisions: ['allow', 'allow'] } }),
      '/kill_switch/call_decisions: must NOT have duplicate items (items ## 0 and 1 are identical)'],
    ['unknown top-level key', () => ({ kilswitch: {} }), '/kilswitch: unknown key'],
    ['empty data_dir', () => ({ data_dir: '' }), '/data_dir: must NOT have fewer than 1 characters'],
    ['bad log level', () => ({ log: { level: 'verbose' } }),
      '/log/level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"'],
    ['kafka without brokers', () => ({ kafka: {} }), '/kafka/brokers: is required'],
    ['broker without port', () => ({ kafka: { brokers: ['localhost'] } }), '/kafka/brokers/0: must be host:port (or [IPv6-address]:port), e.g. 127.0.0.1:9092'],
    ['bad topic name', () => ({ kafka: { brokers: ['k:9092'], topics: { kills: 'kills/v1' } } }),
      '/kafka/topics/kills: must be a Kafka topic name: 1 to 249 letters, digits, ".", "_" or "-"'],
    ['schema_registry without url', () => ({ schema_registry: {} }), '/schema_registry/url: is required'],
    ['schema_registry bad url', () => ({ schema_registry: { url: 'not a url' } }), '/schema_registry/url: must match format "uri"'],
    ['token without roles', () => ({ http: { tokens: [{ name: 'a', sha256: 'a'.repeat(64) }] } }), '/http/tokens/0/roles: is required'],
    ['token with unknown role', () => ({ http: { tokens: [{ name: 'a', sha256: 'a'.repeat(64), roles: ['admin'] }] } }),
      '/http/tokens/0/roles/0: must be one of "viewer", "operator", "ingest", "opa"'],
    ['token sha256 uppercase', () => ({ http: { tokens: [{ name: 'a', sha256: 'A'.repeat(64), roles: ['viewer'] }] } }),
      '/http/tokens/0/sha256: must be 64 lowercase hex digits (a SHA-256)'],
    ['http listen without port', () => ({ http: { listen: '127.0.0.1' } }),
      '/http/listen: must be host:port (or [IPv6-address]:port), e.g. 127.0.0.1:9092'],
    ['uppercase identity header', () => ({ authz: { identity_header: 'X-Spiffe-Id' } }),
      '/authz/identity_header: must be lowercase letters, digits and "-"'],
    ['not an object', () => [], '/: must be object'],
  ];
  it.each(invalid)('rejects %s', (_name, make, line) => {
    expect(problems('config', make())).toContain(line);
  });
});
