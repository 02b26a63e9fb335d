/**
 * Kill events (docs/spec.md#3-kill-events) and TRACE claim addenda (section 4): types and builders.
 * Builders return unsigned documents; signing adds `issuer` and `signature` outside the core.
 */
import { canonicalDigest } from './hash.js';
import type { KillAction } from './ledger-fold.js';

export const KILL_EVENT_TYPE = 'killswitch.kill-event/v1';
export const ADDENDUM_TYPE = 'killswitch.trace-addendum/v1';
export const SHADOW_EVENT_TYPE = 'killswitch.shadow-event/v1';
export const AUTOMATIC_REASON = 'deny_rate_threshold';
export const MAX_ADDENDUM_SESSIONS = 32;

export type Trigger = 'deny_rate' | 'operator';

/** The `kill_switch` settings in force, as recorded in documents. */
export interface KillSwitchSettings {
  readonly enabled: boolean;
  readonly window_seconds: number;
  readonly deny_rate_threshold: number;
  readonly min_calls: number;
}

export type EvidenceSource =
  | { readonly topic: string; readonly partition: number; readonly offset_from: number; readonly offset_to: number }
  | { readonly file: string; readonly line_from: number; readonly line_to: number };

export interface Evidence {
  readonly window_start: string;
  readonly window_end: string;
  readonly calls: number;
  readonly denies: number;
  readonly advisory_denies: number;
  readonly deny_rate: number;
  readonly tripping_decision_id: string;
  readonly source: EvidenceSource;
}

export interface Issuer {
  readonly kid: string;
  readonly jwk?: Readonly<Record<string, string>>;
}

export interface KillEvent {
  readonly type: typeof KILL_EVENT_TYPE;
  readonly event_id: string;
  readonly action: KillAction;
  readonly agent_id: string;
  /** an operator block of agent_id and everything below it */
  readonly scope?: 'subtree';
  readonly epoch: number;
  readonly trigger: Trigger;
  readonly at: string;
  readonly reason: string;
  readonly authorized_by?: string;
  readonly kill_switch: KillSwitchSettings;
  readonly evidence?: Evidence;
  readonly issuer?: Issuer;
  readonly signature?: string;
}

export interface ChainLink {
  readonly stream: string;
  readonly sequence_number: number;
  readonly prev_hash: string;
}

export interface TraceAddendum {
  readonly type: typeof ADDENDUM_TYPE;
  readonly agent_id: string;
  readonly session_ids: readonly string[];
  readonly gateway: {
    readonly kill_switch_triggered: boolean;
    readonly kill_switch: KillSwitchSettings & { readonly trigger: Trigger };
  };
  readonly kill_event_id: string;
  readonly evidence?: Evidence;
  readonly issued_at: string;
  readonly chain: ChainLink;
  readonly issuer?: Issuer;
  readonly signature?: string;
}

export const GENESIS = 'genesis';

/** Deterministic kill event id: `sha256:` + hex of canonical `{agent_id, epoch, action}`. */
export function killEventId(agentId: string, epoch: number, action: KillAction, scope?: 'subtree'): string {
  // a scope's events are told apart from the identity's own (same agent_id) by the scope in the digest
  return canonicalDigest(scope === undefined ? { agent_id: agentId, epoch, action } : { agent_id: agentId, epoch, action, scope });
}

export interface KillEventInput {
  readonly action: KillAction;
  readonly agentId: string;
  readonly scope?: 'subtree';
  readonly epoch: number;
  readonly trigger: Trigger;
  readonly at: string;
  readonly reason: string;
  readonly authorizedBy?: string;
  readonly killSwitch: KillSwitchSettings;
  readonly evidence?: Evidence;
}

export function buildKillEvent(input: KillEventInput): KillEvent {
  return {
    type: KILL_EVENT_TYPE,
    event_id: killEventId(input.agentId, input.epoch, input.action, input.scope),
    action: input.action,
    agent_id: input.agentId,
    ...(input.scope !== undefined ? { scope: input.scope } : {}),
    epoch: input.epoch,
    trigger: input.trigger,
    at: input.at,
    reason: input.reason,
    ...(input.authorizedBy !== undefined ? { authorized_by: input.authorizedBy } : {}),
    kill_switch: { ...input.killSwitch },
    ...(input.evidence !== undefined ? { evidence: input.evidence } : {}),
  };
}

/** The addendum that accompanies a (signed or unsigned) kill event, linked into its stream's chain. */
export function buildAddendum(killEvent: KillEvent, sessionIds: readonly string[], link: ChainLink): TraceAddendum {
  return {
    type: ADDENDUM_TYPE,
    agent_id: killEvent.agent_id,
    session_ids: sessionIds.slice(0, MAX_ADDENDUM_SESSIONS),
    gateway: {
      kill_switch_triggered: killEvent.action === 'block',
      kill_switch: { ...killEvent.kill_switch, trigger: killEvent.trigger },
    },
    kill_event_id: killEvent.event_id,
    ...(killEvent.evidence !== undefined ? { evidence: killEvent.evidence } : {}),
    issued_at: killEvent.at,
    chain: link,
  };
}

/**
 * One hash chain per stream. `link` gives the next addendum's chain field; `append` records a finished
 * (signed) addendum as the new tip. Tips can be restored from the last addendum of each stream.
 */
export class AddendumChains {
  private readonly tips = new Map<string, { sequence: number; hash: string }>();

  link(stream: string): ChainLink {
    const tip = this.tips.get(stream);
    return { stream, sequence_number: (tip?.sequence ?? 0) + 1, prev_hash: tip?.hash ?? GENESIS };
  }

  append(addendum: TraceAddendum): void {
    const expected = this.link(addendum.chain.stream);
    if (addendum.chain.sequence_number !== expected.sequence_number || addendum.chain.prev_hash !== expected.prev_hash) {
      throw new RangeError(
        `addendum for stream ${addendum.chain.stream} does not continue its chain ` +
          `(sequence ${addendum.chain.sequence_number}, expected ${expected.sequence_number})`,
      );
    }
    this.tips.set(addendum.chain.stream, { sequence: addendum.chain.sequence_number, hash: canonicalDigest(addendum) });
  }

  /** Take a stored addendum as its stream's tip (restart), without checking what came before it. */
  restoreTip(addendum: TraceAddendum): void {
    const tip = this.tips.get(addendum.chain.stream);
    if (tip !== undefined && tip.sequence >= addendum.chain.sequence_number) return;
    this.tips.set(addendum.chain.stream, { sequence: addendum.chain.sequence_number, hash: canonicalDigest(addendum) });
  }

  streams(): string[] {
    return [...this.tips.keys()];
  }
}

/** A trip the governor held (schemas/shadow-event.schema.json): what would have been blocked, with its evidence. */
export interface ShadowEvent {
  readonly type: typeof SHADOW_EVENT_TYPE;
  readonly event_id: string;
  readonly action: 'would_block';
  readonly agent_id: string;
  readonly epoch: number;
  readonly trigger: 'deny_rate';
  readonly at: string;
  readonly reason: 'governor_rate' | 'governor_share' | 'shadow_rule';
  /** the override pattern whose rule tripped (shadow rules, and held trips of an overridden identity) */
  readonly rule?: string;
  readonly kill_switch: KillSwitchSettings;
  readonly evidence: Evidence;
  readonly issuer?: Issuer;
  readonly signature?: string;
}

export function buildShadowEvent(input: { agentId: string; epoch: number; at: string; reason: ShadowEvent['reason']; rule?: string; killSwitch: KillSwitchSettings; evidence: Evidence }): ShadowEvent {
  return {
    type: SHADOW_EVENT_TYPE,
    event_id: canonicalDigest({ agent_id: input.agentId, epoch: input.epoch, action: 'would_block', at: input.at }),
    action: 'would_block',
    agent_id: input.agentId,
    epoch: input.epoch,
    trigger: 'deny_rate',
    at: input.at,
    reason: input.reason,
    ...(input.rule === undefined ? {} : { rule: input.rule }),
    kill_switch: { ...input.killSwitch },
    evidence: input.evidence,
  };
}
