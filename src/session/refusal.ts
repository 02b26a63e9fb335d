/**
 * What a session manager sends back (CONTRACTS.md section 6): the 403 body of a blocked identity, and
 * the 503 a guard with `failure_mode: closed` gives while it cannot vouch for anyone.
 */
import { KillSwitchError } from '../core/errors.js';
import type { IdentityState } from '../core/ledger-fold.js';

export interface TrippedBody {
  readonly error: 'KILL_SWITCH_TRIPPED';
  /** the cMCP wire shape: the blocked identity */
  readonly detail: string;
  readonly agent_id: string;
  readonly blocked_at: string;
  readonly trigger: string;
  readonly kill_event_id: string;
  /** when the block is of a scope covering the identity: its pattern (`spiffe://td/ns/prod/*`) */
  readonly scope?: string;
}

export interface UnavailableBody {
  readonly error: 'KILL_SWITCH_UNAVAILABLE';
  readonly detail: string;
}

export interface Tripped {
  readonly allowed: false;
  readonly status: 403;
  readonly code: 'KILL_SWITCH_TRIPPED';
  readonly body: TrippedBody;
  /** `body` as JSON, made once per block so refusing allocates nothing */
  readonly json: string;
}

export interface Unavailable {
  readonly allowed: false;
  readonly status: 503;
  readonly code: 'KILL_SWITCH_UNAVAILABLE';
  readonly body: UnavailableBody;
  readonly json: string;
}

export interface Allowed {
  readonly allowed: true;
}

export type Refusal = Tripped | Unavailable;
export type CheckResult = Allowed | Refusal;

export const ALLOWED: Allowed = Object.freeze({ allowed: true });

/** The refusal for a blocked identity, or (with `requester`) for an identity under a blocked scope. */
export function trippedFor(state: IdentityState, requester?: string): Tripped {
  const e = state.entry;
  const who = requester ?? state.agentId;
  const body: TrippedBody = Object.freeze({
    error: 'KILL_SWITCH_TRIPPED', detail: who, agent_id: who,
    blocked_at: e.at ?? '', trigger: e.trigger ?? '', kill_event_id: e.event_id ?? '',
    ...(e.scope === undefined ? {} : { scope: state.agentId }),
  });
  return Object.freeze({ allowed: false, status: 403, code: 'KILL_SWITCH_TRIPPED', body, json: JSON.stringify(body) });
}

export function unavailable(detail: string): Unavailable {
  const body: UnavailableBody = Object.freeze({ error: 'KILL_SWITCH_UNAVAILABLE', detail });
  return Object.freeze({ allowed: false, status: 503, code: 'KILL_SWITCH_UNAVAILABLE', body, json: JSON.stringify(body) });
}

/** Thrown by `guard.assertAllowed()` for a blocked identity: `status` 403, `code` KILL_SWITCH_TRIPPED, the section 6 fields. */
export class KillSwitchTrippedError extends KillSwitchError {
  readonly detail: string;
  readonly agent_id: string;
  readonly blocked_at: string;
  readonly trigger: string;
  readonly kill_event_id: string;
  /** the section 6 response body */
  readonly body: TrippedBody;

  constructor(refusal: Tripped) {
    super('KILL_SWITCH_TRIPPED', `${refusal.body.agent_id} is blocked by the kill switch (${refusal.body.trigger}, since ${refusal.body.blocked_at})`);
    this.body = refusal.body;
    this.detail = refusal.body.detail;
    this.agent_id = refusal.body.agent_id;
    this.blocked_at = refusal.body.blocked_at;
    this.trigger = refusal.body.trigger;
    this.kill_event_id = refusal.body.kill_event_id;
  }
}

/** Thrown by `guard.assertAllowed()` when a guard with `failure_mode: closed` cannot vouch for anyone: `status` 503. */
export class KillSwitchUnavailableError extends KillSwitchError {
  readonly detail: string;
  readonly body: UnavailableBody;

  constructor(refusal: Unavailable) {
    super('KILL_SWITCH_UNAVAILABLE', refusal.body.detail);
    this.body = refusal.body;
    this.detail = refusal.body.detail;
  }
}

export function refusalError(refusal: Refusal): KillSwitchTrippedError | KillSwitchUnavailableError {
  return refusal.status === 403 ? new KillSwitchTrippedError(refusal) : new KillSwitchUnavailableError(refusal);
}
