/**
 * `killswitch block | unblock | status | blocks`: the operator API from a terminal. The token comes
 * from KILLSWITCH_TOKEN or --token-file, never from the command line (argv is visible to every user).
 */
import { readFileSync } from 'node:fs';
import { ERROR_CODES, KillSwitchError, type ErrorCode } from '../core/errors.js';

export interface OperatorOptions {
  readonly url: string;
  readonly token: string;
  readonly json: boolean;
  readonly out: NodeJS.WritableStream;
}

export function operatorToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string {
  if (tokenFile !== undefined) {
    try {
      return readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new KillSwitchError('USAGE', `--token-file ${tokenFile}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const t = env.KILLSWITCH_TOKEN;
  if (t === undefined || t === '') throw new KillSwitchError('USAGE', 'set KILLSWITCH_TOKEN (or pass --token-file FILE) to a token for the operator API');
  return t;
}

async function call(o: OperatorOptions, method: string, path: string, body?: object): Promise<Record<string, unknown>> {
  const url = new URL(path, o.url);
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${o.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    const c = (err as { cause?: { code?: string; message?: string } }).cause;
    const cause = c?.code ?? c?.message ?? (err as Error).message;
    throw new KillSwitchError('SERVICE_UNREACHABLE', `cannot reach the service at ${o.url} (${cause})`);
  }
  const text = await res.text();
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new KillSwitchError('SERVICE_UNREACHABLE', `${url.href} answered ${res.status} with something that is not JSON`);
  }
  if (res.status >= 400) {
    const code = typeof doc.error === 'string' && doc.error in ERROR_CODES ? doc.error as ErrorCode : 'INTERNAL';
    throw new KillSwitchError(code, `${code}: ${typeof doc.detail === 'string' ? doc.detail : res.statusText}`);
  }
  return doc;
}

const idPath = (agentId: string): string => `/v1/identities/${encodeURIComponent(agentId)}`;

export async function operatorAction(o: OperatorOptions, action: 'block' | 'unblock', agentId: string, reason: string, by: string): Promise<number> {
  const doc = await call(o, 'POST', action === 'block' ? '/v1/blocks' : '/v1/blocks/unblock', { agent_id: agentId, reason, authorized_by: by });
  if (o.json) {
    o.out.write(`${JSON.stringify(doc)}\n`);
  } else if (doc.status === 'pending_approval') {
    o.out.write(`${action} of ${agentId} is waiting for a second approval (dual control) until ${String(doc.expires_at)}\n`);
  } else {
    o.out.write(`${action === 'block' ? 'BLOCKED' : 'UNBLOCKED'} ${agentId} (epoch ${String(doc.epoch)})\n  reason: ${reason}\n  authorized by: ${String(doc.authorized_by)}\n  kill event ${String(doc.event_id)}\n`);
  }
  return 0;
}

export async function operatorStatus(o: OperatorOptions, agentId: string): Promise<number> {
  const doc = await call(o, 'GET', idPath(agentId));
  if (o.json) {
    o.out.write(`${JSON.stringify(doc)}\n`);
    return 0;
  }
  const w = doc.window as { calls: number; denies: number; advisory_denies: number; deny_rate: number | null; at: string | null } | null;
  const part = doc.partition as { number: number; owned: boolean } | undefined;
  const ev = doc.last_kill_event as { action: string; epoch: number; trigger: string; at: string; reason: string; authorized_by?: string } | null;
  const scope = typeof doc.blocked_by_scope === 'string' ? `  refused by session guards: the scope ${doc.blocked_by_scope} is blocked\n` : '';
  const window = w === null
    // Kafka mode: the window is kept by the instance that owns the identity's decisions partition
    ? `  window: on the instance that owns decisions partition ${part?.number ?? '?'} (ask that one)\n`
    : `  window: ${w.calls} calls, ${w.denies} denies (${w.advisory_denies} advisory)` +
      `${w.deny_rate === null ? '' : `, deny rate ${Math.round(w.deny_rate * 1000) / 10}%`}${w.at === null ? '' : ` at ${w.at}`}\n`;
  o.out.write(`${agentId}: ${String(doc.state).toUpperCase()} (epoch ${String(doc.epoch)})\n` + scope + window +
    (ev === null ? '  no kill event\n' : `  last kill event: ${ev.action} epoch ${ev.epoch}, ${ev.trigger}, ${ev.at}, "${ev.reason}"${ev.authorized_by === undefined ? '' : ` by ${ev.authorized_by}`}\n`));
  return 0;
}

export async function operatorBlocks(o: OperatorOptions): Promise<number> {
  const all: Record<string, unknown>[] = [];
  let cursor = '';
  for (;;) {
    const page = await call(o, 'GET', `/v1/blocks?limit=1000${cursor === '' ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
    all.push(...(page.items as Record<string, unknown>[]));
    if (typeof page.next_cursor !== 'string') break;
    cursor = page.next_cursor;
  }
  if (o.json) {
    // the API's page shape, as one page holding every block
    o.out.write(`${JSON.stringify({ items: all, next_cursor: null, total: all.length })}\n`);
    return 0;
  }
  o.out.write(all.length === 0 ? 'no identity is blocked\n' : `blocked identities (${all.length}):\n`);
  for (const e of all) {
    o.out.write(`  ${String(e.agent_id)}  epoch ${String(e.epoch)}, ${String(e.trigger)}, since ${String(e.at)}${typeof e.authorized_by === 'string' ? `, by ${e.authorized_by}` : ''}\n`);
  }
  return 0;
}
