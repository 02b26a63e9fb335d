/**
 * The session guard: follows the block ledger, trusts only kill events signed by a trusted key, and
 * answers `check(agentId)` from memory (one lookup in a BlockTable; no I/O, no allocation when allowed).
 *
 * States: `starting` until the ledger has been read to its end once, then `ready`; `stale` when the
 * source has not been in touch for `maxStalenessMs`, and `ready` again once it is. While not `ready`,
 * `failureMode: 'closed'` (the default) refuses every non-anonymous request with 503
 * KILL_SWITCH_UNAVAILABLE and `'open'` lets it through; blocks already known are refused in both.
 * Every change of state is logged and counted.
 *
 * An identity that is given but is not a valid SPIFFE ID is never looked up, so never taken for
 * another spelling of a valid one, and never taken for anonymous (docs/spec.md#7-refusing-a-session):
 * `closed` refuses it with 400 IDENTITY_INVALID, `open` lets it through and logs it; both count it.
 */
import type { Registry } from 'prom-client';
import { Counter, Gauge } from 'prom-client';
import { LedgerFold, ledgerKey, type IdentityState } from '../core/ledger-fold.js';
import type { KillEvent } from '../core/documents.js';
import { KillSwitchError } from '../core/errors.js';
import { spiffeIdError } from '../core/spiffe-id.js';
import { KILL_EVENT_REJECT_REASONS, KillEventReader, type KillEventRejectReason } from '../adapters/serde/kill-event-reader.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import type { Logger } from '../ports/logger.js';
import { BlockTable } from './block-table.js';
import type { LedgerSink, LedgerSource } from './ledger-source.js';
import { ALLOWED, identityInvalid, refusalError, trippedFor, unavailable, type CheckResult, type Refusal, type Tripped, type Unavailable } from './refusal.js';

export type GuardState = 'starting' | 'ready' | 'stale';
export type FailureMode = 'closed' | 'open';

export interface SessionGuardSettings {
  readonly source: LedgerSource;
  readonly trusted: ReadonlyMap<string, TrustedKey>;
  readonly failureMode: FailureMode;
  readonly maxStalenessMs: number;
  readonly log: Logger;
  readonly registry: Registry;
}

export interface BlockInfo {
  readonly agentId: string;
  readonly epoch: number;
  /** the kill event as read from the ledger (signature checked) */
  readonly event: KillEvent;
  /** the refusal this identity now gets (docs/spec.md#7-refusing-a-session) */
  readonly refusal: Tripped;
}

/** why a kill event was ignored: the ledger readers' reasons (docs/spec.md#reading-kill-events) */
export type RejectReason = KillEventRejectReason;

/** scopes are the path prefixes ending before a '/' found from here on (after `spiffe://`), as in LedgerFold.blockingScope */
const SCOPE_FROM = 'spiffe://'.length;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 10_000;
/** failure mode open: at most one log line per this long about invalid identities let through (each one is counted) */
const INVALID_LOG_EVERY_MS = 10_000;
/** how much of an invalid identity such a line quotes */
const INVALID_LOG_CHARS = 256;

export class SessionGuard {
  private readonly fold = new LedgerFold();
  /** the refusal of every blocked ledger key (identities, and scopes as `<agent_id>/*`) */
  private readonly tripped = new BlockTable<Tripped>();
  /** the checks every ledger reader makes; with the keys a guard always has, only signed events pass */
  private readonly reader: KillEventReader;
  private readonly blockListeners: ((b: BlockInfo) => void)[] = [];
  private readonly unblockListeners: ((agentId: string, event: KillEvent) => void)[] = [];
  private currentState: GuardState = 'starting';
  /** the refusal for everyone non-anonymous while closed and not ready; undefined when not refusing */
  private refuseAll: Unavailable | undefined;
  private lastAlive = 0;
  private sourceStartedAt = 0;
  private sourceCaughtUp = false;
  private lastTrouble = '';
  private invalidLoggedAt = -Infinity;
  private invalidNotLogged = 0;
  private closed = false;
  private generation = 0;
  private restartDelay = RESTART_MIN_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly staleTimer: NodeJS.Timeout;
  private readyResolve: (() => void) | undefined;
  private readonly metrics;
  private readonly invalidCount: { readonly refused: { inc(by?: number): void }; readonly allowed: { inc(by?: number): void } };
  /** resolves once the ledger has been read to its end for the first time */
  readonly ready: Promise<void>;
  readonly registry: Registry;

  constructor(private readonly o: SessionGuardSettings) {
    if (o.trusted.size === 0) throw new KillSwitchError('KEY_INVALID', 'a session guard needs at least one trusted key (a JWKS): unsigned kill events are never obeyed');
    this.reader = new KillEventReader({ trusted: o.trusted });
    this.registry = o.registry;
    const r = { registers: [o.registry] };
    this.metrics = {
      state: new Gauge({ name: 'killswitch_guard_state', help: 'Session guard state: 1 for the current one of starting, ready, stale', labelNames: ['state'] as const, ...r }),
      changes: new Counter({ name: 'killswitch_guard_state_changes_total', help: 'Session guard state changes, by the state entered', labelNames: ['to'] as const, ...r }),
      rejected: new Counter({ name: 'killswitch_guard_ledger_rejected_total', help: 'Kill events ignored by the session guard (unsigned, forged, unknown kid, invalid), by reason', labelNames: ['reason'] as const, ...r }),
      applied: new Counter({ name: 'killswitch_guard_ledger_events_total', help: 'Verified kill events read by the session guard', ...r }),
      blocked: new Gauge({ name: 'killswitch_guard_blocked_identities', help: 'Identities the session guard refuses', ...r }),
    };
    const invalid = new Counter({ name: 'killswitch_guard_identity_invalid_total', help: 'Identities asked about that are not valid SPIFFE IDs, by outcome (refused: failure mode closed; allowed: open)', labelNames: ['outcome'] as const, ...r });
    // bound once: counting on the check() path then costs no label lookup; both series exist from the start, for rate()
    this.invalidCount = { refused: invalid.labels('refused'), allowed: invalid.labels('allowed') };
    this.invalidCount.refused.inc(0);
    this.invalidCount.allowed.inc(0);
    // every reason's series from the start: increase() over a series that appears at 1 is 0, and the alert would miss it
    for (const reason of KILL_EVENT_REJECT_REASONS) this.metrics.rejected.inc({ reason }, 0);
    const sinceContact = (): number => (Date.now() - Math.max(this.lastAlive, this.sourceStartedAt)) / 1000;
    new Gauge({
      name: 'killswitch_guard_ledger_age_seconds', help: 'Seconds since the session guard last heard from its block ledger source', ...r,
      collect() {
        this.set(sinceContact());
      },
    });
    this.setState('starting', 'following the block ledger');
    this.ready = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
    this.staleTimer = setInterval(() => this.checkStaleness(), Math.max(50, Math.min(1000, Math.floor(o.maxStalenessMs / 4))));
    this.staleTimer.unref();
    this.startSource();
  }

  get state(): GuardState {
    return this.currentState;
  }

  /** identities refused right now */
  get blockedCount(): number {
    return this.tripped.size;
  }

  /**
   * May a new session start? Synchronous and in memory. `agentId` undefined, null or '' is anonymous
   * and never refused. `chain`: the delegation chain of the request; refused if any identity in it is
   * blocked. Any other string that is not a valid SPIFFE ID is refused with 400 IDENTITY_INVALID
   * (failure mode `closed`), whether or not some spelling of it is blocked. Precedence: 403 for a
   * blocked identity anywhere in the request, then 400, then 503.
   */
  check(agentId: string | null | undefined, chain?: readonly string[]): CheckResult {
    let named = false;
    let invalidId: string | undefined;
    if (agentId !== undefined && agentId !== null && agentId !== '') {
      const t = this.lookup(agentId);
      if (t !== undefined) {
        if (t !== null) return t;
        invalidId = agentId;
      }
      named = true;
    }
    if (chain !== undefined) {
      for (const id of chain) {
        if (id === '') continue;
        const t = this.lookup(id);
        if (t !== undefined) {
          if (t !== null) return t;
          invalidId ??= id;
        }
        named = true;
      }
    }
    if (invalidId !== undefined) {
      const r = this.invalidIdentity(invalidId);
      if (r !== undefined) return r;
    }
    return named && this.refuseAll !== undefined ? this.refuseAll : ALLOWED;
  }

  /**
   * The refusal of a valid identity that is blocked or under a blocked scope; null when `id` is not a
   * SPIFFE ID. The ledger holds valid IDs only, so looking up `SPIFFE://`, `%61` or `/./` spellings of a
   * blocked identity would find nothing and let them pass. The grammar check is one pass, allocating nothing.
   */
  private lookup(id: string): Tripped | null | undefined {
    if (spiffeIdError(id) !== null) return null;
    return this.tripped.get(id) ?? this.scopeRefusal(id);
  }

  /** Failure mode closed: the 400 refusal; open: undefined, and the identity let through is counted and logged. */
  private invalidIdentity(id: string): Refusal | undefined {
    const reason = spiffeIdError(id)!;
    if (this.o.failureMode === 'closed') {
      this.invalidCount.refused.inc();
      return identityInvalid(reason);
    }
    this.invalidCount.allowed.inc();
    const now = Date.now();
    if (now - this.invalidLoggedAt < INVALID_LOG_EVERY_MS) {
      this.invalidNotLogged++;
      return undefined;
    }
    const quoted = id.length > INVALID_LOG_CHARS ? `${id.slice(0, INVALID_LOG_CHARS)}...` : id;
    this.o.log.warn({ identity: quoted, reason, failure_mode: 'open', ...(this.invalidNotLogged > 0 ? { not_logged_since_last: this.invalidNotLogged } : {}) },
      'let through an identity that is not a valid SPIFFE ID (failure mode open)');
    this.invalidLoggedAt = now;
    this.invalidNotLogged = 0;
    return undefined;
  }

  /**
   * The refusal of an identity under a blocked scope (none blocked: one counter read). The same scopes,
   * in the same order, as LedgerFold.blockingScope, found in `tripped` without building their strings.
   */
  private scopeRefusal(agentId: string): Tripped | undefined {
    if (this.fold.blockedScopes === 0) return undefined;
    const key = this.tripped.firstStarPrefix(agentId, SCOPE_FROM);
    return key === undefined ? undefined : trippedFor(this.fold.get(key)!, agentId);
  }

  /**
   * Throws `KillSwitchTrippedError` (403), `IdentityInvalidError` (400) or `KillSwitchUnavailableError`
   * (503) when `check` refuses.
   */
  assertAllowed(agentId: string | null | undefined, chain?: readonly string[]): void {
    const r = this.check(agentId, chain);
    if (r.allowed) return;
    const invalidId = r.code === 'IDENTITY_INVALID' ? [agentId, ...(chain ?? [])].find((id) => typeof id === 'string' && id !== '' && spiffeIdError(id) !== null) : undefined;
    throw refusalError(r, invalidId ?? '');
  }

  /** Called for every identity that becomes blocked, those found while reading the ledger at start included. */
  onBlock(callback: (block: BlockInfo) => void): () => void {
    this.blockListeners.push(callback);
    return () => {
      const i = this.blockListeners.indexOf(callback);
      if (i >= 0) this.blockListeners.splice(i, 1);
    };
  }

  /** Called when a block is lifted. */
  onUnblock(callback: (agentId: string, event: KillEvent) => void): () => void {
    this.unblockListeners.push(callback);
    return () => {
      const i = this.unblockListeners.indexOf(callback);
      if (i >= 0) this.unblockListeners.splice(i, 1);
    };
  }

  /** The ledger state of one identity (blocked or not, epoch, the kill event that set it). */
  stateOf(agentId: string): IdentityState | undefined {
    return this.fold.get(agentId);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.generation++;
    clearInterval(this.staleTimer);
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    await this.o.source.stop();
  }

  private startSource(): void {
    const gen = ++this.generation;
    const live = (): boolean => gen === this.generation && !this.closed;
    this.sourceStartedAt = Date.now();
    this.sourceCaughtUp = false;
    const sink: LedgerSink = {
      record: (value) => {
        if (live()) this.onRecord(value);
      },
      rejected: (reason, message) => {
        if (live()) this.reject(reason, message);
      },
      caughtUp: () => {
        if (!live()) return;
        this.lastAlive = Date.now();
        this.sourceCaughtUp = true;
        this.restartDelay = RESTART_MIN_MS;
        if (this.currentState !== 'ready') this.setState('ready', `block ledger read to its end (${this.tripped.size} blocked)`);
        this.readyResolve?.();
      },
      alive: () => {
        if (!live()) return;
        this.lastAlive = Date.now();
        if (this.lastTrouble !== '') {
          this.o.log.info({ source: this.o.source.description }, 'session guard reaches the block ledger again');
          this.lastTrouble = '';
        }
        // after a restart of the source, only once it has read what it missed
        if (this.currentState === 'stale' && this.sourceCaughtUp) this.setState('ready', 'the block ledger source is back');
      },
      trouble: (message) => {
        if (!live()) return;
        if (message !== this.lastTrouble) this.o.log.warn({ source: this.o.source.description, problem: message }, 'session guard cannot read the block ledger');
        this.lastTrouble = message;
      },
    };
    this.o.source.start(sink).catch((err: unknown) => {
      if (!live()) return;
      sink.trouble((err as Error).message);
      this.scheduleRestart();
    });
  }

  /** A source that stays silent past max_staleness is started again: re-reading is harmless (the fold is idempotent). */
  private scheduleRestart(): void {
    if (this.closed || this.restartTimer !== undefined) return;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(this.restartDelay * 2, RESTART_MAX_MS);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.closed) return;
      this.generation++;
      void this.o.source.stop().catch(() => undefined).then(() => {
        if (!this.closed) this.startSource();
      });
    }, delay);
    this.restartTimer.unref();
  }

  private checkStaleness(): void {
    if (this.closed) return;
    const silentFor = Date.now() - this.lastAlive;
    if (this.currentState === 'ready' && silentFor > this.o.maxStalenessMs) {
      this.setState('stale', `no contact with the block ledger for ${Math.round(silentFor / 1000)} s (max_staleness ${this.o.maxStalenessMs / 1000} s)${this.lastTrouble === '' ? '' : `: ${this.lastTrouble}`}`);
    }
    // Start the source again when it went silent after being in touch, or when it is still starting and
    // has reported a problem. A source that is merely slow to start (a consumer group joining) is left alone.
    const silent = Date.now() - Math.max(this.lastAlive, this.sourceStartedAt) > this.o.maxStalenessMs;
    if (silent && (this.currentState === 'stale' || (this.currentState === 'starting' && this.lastTrouble !== ''))) this.scheduleRestart();
  }

  private setState(state: GuardState, why: string): void {
    const from = this.currentState;
    this.currentState = state;
    this.refuseAll = state !== 'ready' && this.o.failureMode === 'closed'
      ? unavailable(state === 'starting' ? 'the kill switch has not read the block ledger yet' : 'the kill switch block ledger is stale')
      : undefined;
    for (const s of ['starting', 'ready', 'stale'] as const) this.metrics.state.set({ state: s }, s === state ? 1 : 0);
    this.metrics.changes.inc({ to: state });
    const fields = { ...(from === state ? {} : { from }), to: state, failure_mode: this.o.failureMode, source: this.o.source.description, blocked: this.tripped.size };
    if (state === 'ready') this.o.log.info(fields, `session guard ready: ${why}`);
    else this.o.log.warn(fields, `session guard ${state}: ${why}; ${this.o.failureMode === 'closed' ? 'refusing' : 'allowing'} identities not known to be blocked`);
  }

  private reject(reason: RejectReason, message: string, agentId?: string): void {
    this.metrics.rejected.inc({ reason });
    this.o.log.warn({ reason, ...(agentId === undefined ? {} : { agent_id: agentId }), source: this.o.source.description }, `ignored a kill event: ${message}`);
  }

  private onRecord(value: string | Buffer): void {
    const read = this.reader.read(value);
    if (!read.ok) return this.reject(read.reason, read.message, read.agentId);
    const ev = read.event;
    this.metrics.applied.inc();
    const change = this.fold.apply(ev);
    const key = ledgerKey(ev);
    const state = this.fold.get(key)!;
    if (state.entry !== ev) return; // older than what we know
    if (state.blocked) {
      const refusal = trippedFor(state);
      this.tripped.set(key, refusal);
      this.metrics.blocked.set(this.tripped.size);
      if (change === 'blocked') for (const l of this.blockListeners) this.notify(() => l({ agentId: key, epoch: ev.epoch, event: ev, refusal }));
    } else if (change === 'unblocked') {
      this.tripped.delete(key);
      this.metrics.blocked.set(this.tripped.size);
      for (const l of this.unblockListeners) this.notify(() => l(key, ev));
    }
  }

  private notify(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, 'a session guard listener threw');
    }
  }
}
