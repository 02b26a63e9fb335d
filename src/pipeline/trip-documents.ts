import { type AddendumChains, AUTOMATIC_REASON, buildAddendum, buildKillEvent, buildShadowEvent, type KillEvent, type KillSwitchSettings,
  type ShadowEvent, type TraceAddendum } from '../core/documents.js';
import type { Trip } from '../core/evaluator.js';
import { formatRfc3339 } from '../core/time.js';
import type { Signer } from '../ports/signer.js';

/** The kill event and addendum of an automatic trip, signed when a signer is given, chained per stream. */
export function tripDocuments(
  trip: Trip,
  settings: KillSwitchSettings,
  chains: AddendumChains,
  signer: Signer | undefined,
): { killEvent: KillEvent; addendum: TraceAddendum } {
  let killEvent = buildKillEvent({
    action: 'block',
    agentId: trip.agentId,
    epoch: trip.epoch,
    trigger: 'deny_rate',
    at: formatRfc3339(trip.atMs),
    reason: AUTOMATIC_REASON,
    // an override's rule is recorded as the one in force, so the trip re-derives with it
    killSwitch: trip.rule?.settings ?? settings,
    evidence: trip.evidence,
  });
  if (signer !== undefined) killEvent = signer.sign(killEvent, false);
  let addendum = buildAddendum(killEvent, trip.sessionIds, chains.link(trip.stream));
  if (signer !== undefined) addendum = signer.sign(addendum, true);
  chains.append(addendum);
  return { killEvent, addendum };
}

/** The addendum chain of operator actions (automatic trips chain per input stream). */
export const OPERATOR_STREAM = 'operator';

export interface OperatorDocumentsInput {
  readonly action: 'block' | 'unblock';
  readonly agentId: string;
  readonly scope?: 'subtree';
  readonly epoch: number;
  readonly atMs: number;
  readonly reason: string;
  readonly authorizedBy: string;
  readonly settings: KillSwitchSettings;
}

/**
 * The kill event (trigger operator) and addendum of a manual block or an unblock, signed when a signer
 * is given, linked into the operator chain of `chains`. The chain is advanced only by `chains.append`
 * once the documents are durably written.
 */
export function operatorDocuments(o: OperatorDocumentsInput, chains: AddendumChains, signer: Signer | undefined): { killEvent: KillEvent; addendum: TraceAddendum } {
  let killEvent = buildKillEvent({
    action: o.action, agentId: o.agentId, ...(o.scope === undefined ? {} : { scope: o.scope }), epoch: o.epoch, trigger: 'operator',
    at: formatRfc3339(o.atMs), reason: o.reason, authorizedBy: o.authorizedBy, killSwitch: o.settings,
  });
  if (signer !== undefined) killEvent = signer.sign(killEvent, false);
  let addendum = buildAddendum(killEvent, [], chains.link(OPERATOR_STREAM));
  if (signer !== undefined) addendum = signer.sign(addendum, true);
  return { killEvent, addendum };
}

/** The shadow event of a trip the governor held, signed when a signer is given. */
export function shadowDocument(trip: Trip & { held: ShadowEvent['reason'] }, settings: KillSwitchSettings, signer: Signer | undefined): ShadowEvent {
  const ev = buildShadowEvent({
    agentId: trip.agentId, epoch: trip.epoch, at: formatRfc3339(trip.atMs), reason: trip.held,
    ...(trip.rule === undefined ? {} : { rule: trip.rule.match }), killSwitch: trip.rule?.settings ?? settings, evidence: trip.evidence,
  });
  return signer === undefined ? ev : signer.sign(ev, false);
}

/** What a trip writes: a kill event and its addendum, or, when the governor or a shadow rule held it, a shadow event. */
export type TripOutput =
  | { readonly held: false; readonly killEvent: KillEvent; readonly addendum: TraceAddendum }
  | { readonly held: true; readonly shadow: ShadowEvent };

/** The documents of a trip, in both modes (docs/spec.md: kill events, addenda, shadow events). */
export function tripOutput(trip: Trip, settings: KillSwitchSettings, chains: AddendumChains, signer: Signer | undefined): TripOutput {
  if (trip.held !== undefined) return { held: true, shadow: shadowDocument({ ...trip, held: trip.held }, settings, signer) };
  return { held: false, ...tripDocuments(trip, settings, chains, signer) };
}
