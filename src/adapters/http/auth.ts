/**
 * Bearer tokens for the operator API (docs/spec.md#10-configuration): the config holds only each token's
 * SHA-256, compared in constant time against every configured token (no early exit, so timing says
 * nothing about which token nearly matched). `operator` includes `viewer`; `ingest` and `opa` (OPA's
 * decision-log uploads, POST /v1/opa/logs) are separate.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpToken } from '../../config/config.js';

export type Role = 'viewer' | 'operator' | 'ingest' | 'opa';

export interface Principal {
  readonly name: string;
  readonly roles: ReadonlySet<Role>;
}

export class Authenticator {
  private readonly tokens: { digest: Buffer; principal: Principal }[];

  constructor(tokens: readonly HttpToken[]) {
    this.tokens = tokens.map((t) => ({ digest: Buffer.from(t.sha256, 'hex'), principal: { name: t.name, roles: new Set(t.roles) } }));
  }

  get configured(): number {
    return this.tokens.length;
  }

  /** The principal of an `Authorization` header, or undefined when it names no configured token. */
  authenticate(header: string | undefined): Principal | undefined {
    if (header === undefined) return undefined;
    const m = /^Bearer[ ]+([\x21-\x7e]{1,4096})[ ]*$/i.exec(header);
    if (m === null) return undefined;
    const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
    let found: Principal | undefined;
    for (const t of this.tokens) {
      if (timingSafeEqual(digest, t.digest) && found === undefined) found = t.principal;
    }
    return found;
  }
}

export function hasRole(p: Principal, role: Role): boolean {
  return p.roles.has(role) || (role === 'viewer' && p.roles.has('operator'));
}

/** Token buckets per principal: `burst` at once, refilled at `perMinute`. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly perMinute: number, private readonly burst: number, private readonly now: () => number = Date.now) {}

  /** 0 when allowed (and counted), else the seconds to wait. */
  take(key: string): number {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: t };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 60_000) * this.perMinute);
    b.at = t;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.perMinute) * 60);
  }
}

export interface PendingApproval {
  readonly principal: string;
  readonly authorizedBy: string;
  readonly reason: string;
  readonly expiresAt: number;
}

/**
 * The two-person rule: the first approval of (action, identity) is held; a second approval by a
 * different token within the window completes it. A same-token second approval is refused.
 */
export class DualControl {
  private readonly pending = new Map<string, PendingApproval>();

  constructor(private readonly windowMs: number, private readonly now: () => number = Date.now) {}

  /** 'first' (held, waiting), 'same' (the same token approved twice), or the first approval when this one completes it. */
  approve(action: string, agentId: string, principal: string, authorizedBy: string, reason: string): { kind: 'first'; expiresAt: number } | { kind: 'same' } | { kind: 'complete'; first: PendingApproval } {
    const t = this.now();
    for (const [k, p] of this.pending) if (p.expiresAt <= t) this.pending.delete(k);
    const key = `${action}\n${agentId}`;
    const first = this.pending.get(key);
    if (first === undefined) {
      const expiresAt = t + this.windowMs;
      this.pending.set(key, { principal, authorizedBy, reason, expiresAt });
      return { kind: 'first', expiresAt };
    }
    if (first.principal === principal) return { kind: 'same' };
    this.pending.delete(key);
    return { kind: 'complete', first };
  }
}
