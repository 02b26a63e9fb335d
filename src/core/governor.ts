/**
 * The blast-radius governor's state (README "Blast-radius governor"), kept apart from the evaluator so
 * that several evaluators (one per input partition in Kafka mode) can share one limit.
 *
 * Minutes are minutes of stream time and only move forward: a trip from a stream that lags behind
 * counts against the latest minute seen, never reopens an older one.
 */
import type { GovernorConfig, HeldReason } from './evaluator.js';
import type { LedgerFold } from './ledger-fold.js';

export class Governor {
  private minute = -Infinity;
  private admitted = 0;
  /** how many trips of each identity were admitted in the current minute (withdraw) */
  private readonly admittedThisMinute = new Map<string, number>();
  /** identities whose trip was held in the current minute: reported once per minute */
  private readonly heldThisMinute = new Set<string>();

  /**
   * The share compares two quantities of the same window, both of which a restart keeps: identities
   * automatically blocked by a trip in the last `windowMs` of event time (from the ledger, which a
   * restart reads back) and identities with a window (rebuilt on restart from the input). Counting every
   * automatic block ever against the identities of the current window held genuine trips after a
   * restart: the blocks of last week were all there, the identities of last week were not.
   *
   * @param ledger who is blocked (its recent automatic blocks are the numerator of the share)
   * @param activeIdentities identities with a window: the denominator of the share
   * @param windowMs the trip rule's window
   */
  constructor(
    readonly config: GovernorConfig, private readonly ledger: LedgerFold, private readonly activeIdentities: () => number, private readonly windowMs: number,
  ) {}

  private enter(minute: number): void {
    if (minute <= this.minute) return;
    this.minute = minute;
    this.admitted = 0;
    this.admittedThisMinute.clear();
    this.heldThisMinute.clear();
  }

  /** undefined: admit the trip (counted); a reason: hold it; null: already held this minute, say nothing. */
  decide(timeMs: number, agentId: string): HeldReason | undefined | null {
    const g = this.config;
    this.enter(Math.floor(timeMs / 60_000));
    let held: HeldReason | undefined;
    if (this.admitted >= g.maxPerMinute) held = 'governor_rate';
    else if (this.ledger.automaticallyBlockedSince(timeMs - this.windowMs) + 1 > Math.max(g.shareFloor, Math.floor(g.maxShare * this.activeIdentities()))) held = 'governor_share';
    if (held === undefined) {
      this.admitted++;
      this.admittedThisMinute.set(agentId, (this.admittedThisMinute.get(agentId) ?? 0) + 1);
      this.heldThisMinute.delete(agentId);
      return undefined;
    }
    if (this.heldThisMinute.has(agentId)) return null;
    this.heldThisMinute.add(agentId);
    return held;
  }

  /**
   * A trip of `agentId` admitted here whose block was withdrawn before its kill event was written (its
   * transaction was fenced or aborted: LedgerFold.retract): it no longer counts against the current
   * minute, so the block that does get written (this instance's again, or another instance's, seen on
   * the ledger) counts once. One admitted in an earlier minute counts nowhere now anyway.
   */
  withdraw(agentId: string): void {
    const n = this.admittedThisMinute.get(agentId);
    if (n === undefined) return;
    if (n === 1) this.admittedThisMinute.delete(agentId);
    else this.admittedThisMinute.set(agentId, n - 1);
    this.admitted--;
  }

  /**
   * An automatic block admitted elsewhere (another instance, seen on the ledger), at `atMs` of event
   * time: it counts against the limit of its minute when that is the current one or a later one.
   */
  noteExternal(atMs: number): void {
    const minute = Math.floor(atMs / 60_000);
    if (minute < this.minute) return;
    this.enter(minute);
    this.admitted++;
  }
}
