/**
 * What a session manager sends back (docs/spec.md#7-refusing-a-session): the 403 body of a blocked
 * identity, the 400 of an identity that is not a valid SPIFFE ID, and the 503 a guard with
 * `failure_mode: closed` gives while it cannot vouch for anyone.
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

export interface IdentityInvalidBody {
  readonly error: 'IDENTITY_INVALID';
  /** which rule of the SPIFFE ID grammar the identity breaks (docs/spec.md#1-decision-events) */
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

export interface IdentityInvalid {
  readonly allowed: false;
  readonly status: 400;
  readonly code: 'IDENTITY_INVALID';
  readonly body: IdentityInvalidBody;
  readonly json: string;
}

export interface Allowed {
  readonly allowed: true;
}

export type Refusal = Tripped | Unavailable | IdentityInvalid;
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

/**
 * One refusal per rule broken: spiffeIdError's reasons are a short fixed list, so this stays small, and
 * refusing an invalid identity builds no JSON (the body names no identity: it would echo the caller's
 * bytes into a response header).
 */
const invalidByReason = new Map<string, IdentityInvalid>();

export function identityInvalid(reason: string): IdentityInvalid {
  let r = invalidByReason.get(reason);
  if (r === undefined) {
    const body: IdentityInvalidBody = Object.freeze({ error: 'IDENTITY_INVALID', detail: reason });
    r = Object.freeze({ allowed: false, status: 400, code: 'IDENTITY_INVALID', body, json: JSON.stringify(body) });
    invalidByReason.set(reason, r);
  }
  return r;
}

/** Thrown by `guard.assertAllowed()` for a blocked identity: `status` 403, `code` KILL_SWITCH_TRIPPED, the fields of the 403 body. */
export class KillSwitchTrippedError extends KillSwitchError {
  readonly detail: string;
  readonly agent_id: string;
  readonly blocked_at: string;
  readonly trigger: string;
  readonly kill_event_id: string;
  /** the 403 response body (docs/spec.md#7-refusing-a-session) */
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

/**
 * Thrown by `guard.assertAllowed()` for an identity that is present but not a valid SPIFFE ID: `status`
 * 400, `code` IDENTITY_INVALID. `agent_id` is the value as given, for the caller's own logs.
 */
export class IdentityInvalidError extends KillSwitchError {
  readonly detail: string;
  readonly agent_id: string;
  readonly body: IdentityInvalidBody;

  constructor(refusal: IdentityInvalid, agentId: string) {
    super('IDENTITY_INVALID', `not a valid SPIFFE ID (${refusal.body.detail}): ${JSON.stringify(agentId.length > 256 ? `${agentId.slice(0, 256)}...` : agentId)}`);
    this.body = refusal.body;
    this.detail = refusal.body.detail;
    this.agent_id = agentId;
  }
}

/** The error for a refusal; `invalidId`: the identity an IDENTITY_INVALID refusal is about. */
export function refusalError(refusal: Refusal, invalidId = ''): KillSwitchTrippedError | KillSwitchUnavailableError | IdentityInvalidError {
  switch (refusal.code) {
    case 'KILL_SWITCH_TRIPPED': return new KillSwitchTrippedError(refusal);
    case 'KILL_SWITCH_UNAVAILABLE': return new KillSwitchUnavailableError(refusal);
    case 'IDENTITY_INVALID': return new IdentityInvalidError(refusal, invalidId);
  }
}
