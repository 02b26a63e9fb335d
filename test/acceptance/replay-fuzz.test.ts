/**
 * `killswitch replay` as an outsider drives it: random NDJSON files with timestamps going back and
 * forth, clocks gone wrong (year 9999, hours ahead), re-delivered decisions and lines of bad bytes,
 * held against a brute-force reading of docs/spec.md#2-the-trip-rule written here from the spec, not
 * from the code: keep every decision, recount the window on every call.
 */
import { isUtf8 } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { configFile, type KillEventLine, parseLines, runCli, tempDir } from '../helpers/cli.js';

const W = 300_000; // window_seconds 300
const G = Math.ceil(W / 60); // resolution_ms default
const L = 5_000; // allowed_lateness_seconds 5
const SKEW = 300_000; // max_future_skew_seconds 300
const MIN_CALLS = 3;
const THRESHOLD = 0.6;
const RING = 8; // decision ids remembered per identity

type Line =
  | { kind: 'decision'; id: string; agent: number; verdict: 'allow' | 'deny' | 'advisory_deny' | 'step_up'; t: number }
  | { kind: 'again'; back: number }
  | { kind: 'bad'; how: 'latin1' | 'truncated' | 'dup-key' };

interface Trip { agent: string; calls: number; denies: number; tripping: string }

const agentId = (i: number): string => `spiffe://fuzz.example/agent/${i}`;

/** The decisions of a file as written, in order (re-deliveries resolved), and its bytes. */
function materialize(lines: readonly Line[]): { bytes: Buffer; decisions: ({ id: string; agent: string; verdict: string; t: number } | null)[] } {
  const valid: { id: string; agent: string; verdict: string; t: number }[] = [];
  const decisions: ({ id: string; agent: string; verdict: string; t: number } | null)[] = [];
  const parts: Buffer[] = [];
  for (const l of lines) {
    if (l.kind === 'bad') {
      const text = JSON.stringify({ decision_id: 'bad', agent_id: agentId(0), decision: 'deny', occurred_at: new Date(0).toISOString() });
      parts.push(l.how === 'latin1' ? Buffer.concat([Buffer.from(text.slice(0, -1) + ',"tool_name":"caf'), Buffer.from([0xe9]), Buffer.from('"}')])
        : l.how === 'truncated' ? Buffer.from(text.slice(0, 25)) : Buffer.from(text.replace('{', `{"agent_id":"${agentId(1)}",`)));
      decisions.push(null);
    } else {
      const d = l.kind === 'again' ? valid[valid.length - l.back] : { id: l.id, agent: agentId(l.agent), verdict: l.verdict, t: l.t };
      if (d === undefined) continue;
      if (l.kind === 'decision') valid.push(d);
      parts.push(Buffer.from(JSON.stringify({ decision_id: d.id, agent_id: d.agent, decision: d.verdict, occurred_at: new Date(d.t).toISOString() })));
      decisions.push(d);
    }
    parts.push(Buffer.from('\n'));
  }
  return { bytes: Buffer.concat(parts), decisions };
}

/** docs/spec.md section 2, literally. */
function reference(decisions: readonly ({ id: string; agent: string; verdict: string; t: number } | null)[], now: number): Trip[] {
  let S = -Infinity;
  const events = new Map<string, { t: number; deny: boolean }[]>();
  const recent = new Map<string, string[]>();
  const blocked = new Set<string>();
  const trips: Trip[] = [];
  for (const d of decisions) {
    if (d === null) continue; // a bad record: reported, moves nothing
    if (d.t > now + SKEW) continue; // future_timestamp
    if (d.t < S - L) continue; // late
    S = Math.max(S, d.t);
    if (d.verdict === 'step_up') continue; // ignored: moves stream time only
    if (blocked.has(d.agent)) continue;
    const cutoff = Math.floor((S - W) / G);
    if (Math.floor(d.t / G) >= cutoff) {
      const ids = recent.get(d.agent) ?? [];
      recent.set(d.agent, ids);
      if (ids.includes(d.id)) continue; // a duplicate
      ids.push(d.id);
      if (ids.length > RING) ids.shift();
    }
    const list = events.get(d.agent) ?? [];
    events.set(d.agent, list);
    list.push({ t: d.t, deny: d.verdict !== 'allow' });
    const inWindow = list.filter((e) => Math.floor(e.t / G) >= cutoff);
    const denies = inWindow.filter((e) => e.deny).length;
    if (inWindow.length >= MIN_CALLS && denies / inWindow.length >= THRESHOLD) {
      blocked.add(d.agent);
      trips.push({ agent: d.agent, calls: inWindow.length, denies, tripping: d.id });
    }
  }
  return trips;
}

function fileArb(base: number): fc.Arbitrary<Line[]> {
  let n = 0;
  let cursor = base;
  const step = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0, max: 20_000 }) },
    { weight: 2, arbitrary: fc.integer({ min: -8_000, max: 0 }) }, // back: some within the lateness, some late
    { weight: 1, arbitrary: fc.constant(W + 100_000) }, // a quiet spell longer than the window
  );
  const time = fc.oneof(
    { weight: 30, arbitrary: step.map((s) => (cursor = Math.max(base, cursor + s))) },
    { weight: 1, arbitrary: fc.constantFrom(Date.UTC(9999, 11, 31), base + 4 * 3_600_000) }, // a clock gone wrong
  );
  const decision = fc.record({
    kind: fc.constant('decision' as const), agent: fc.integer({ min: 0, max: 3 }),
    verdict: fc.constantFrom('allow' as const, 'deny' as const, 'deny' as const, 'advisory_deny' as const, 'step_up' as const), t: time,
  }).map((d) => ({ ...d, id: `d-${++n}` }));
  const again = fc.record({ kind: fc.constant('again' as const), back: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 4, max: 15 })) });
  const bad = fc.record({ kind: fc.constant('bad' as const), how: fc.constantFrom('latin1' as const, 'truncated' as const, 'dup-key' as const) });
  return fc.array(fc.oneof({ weight: 12, arbitrary: decision }, { weight: 3, arbitrary: again }, { weight: 1, arbitrary: bad }), { minLength: 60, maxLength: 150 });
}

describe('killswitch replay against a brute-force reading of the trip rule', () => {
  it('trips the same identities, with the same counts and tripping decision, over random files with hostile times, re-deliveries and bad bytes', () => {
    const dir = tempDir('replay-fuzz-');
    const cfg = configFile(dir, { min_calls: MIN_CALLS, deny_rate_threshold: THRESHOLD });
    const base = Date.now() - 2 * 3_600_000; // two hours ago: nothing generated is within the skew of now by accident
    let run = 0;
    fc.assert(fc.property(fc.constant(null).chain(() => fileArb(base)), (lines) => {
      const { bytes, decisions } = materialize(lines);
      const input = join(dir, `in-${++run}.ndjson`);
      writeFileSync(input, bytes);
      const now = Date.now();
      const r = runCli(['replay', '--config', cfg, input]);
      expect(r.status, r.stderr).toBe(0);
      const got = parseLines<KillEventLine>(r.stdout).map((k) => ({ agent: k.agent_id, calls: k.evidence.calls, denies: k.evidence.denies, tripping: k.evidence.tripping_decision_id }));
      expect(got).toEqual(reference(decisions, now));
      // every bad line is reported, by its number, and no other
      const badLines = decisions.flatMap((d, i) => (d === null ? [i + 1] : []));
      const reported = [...r.stderr.matchAll(/:(\d+): (invalid_utf8|invalid_json)/g)].map((m) => Number(m[1]));
      expect(reported).toEqual(badLines);
      expect(bytes.length === 0 || isUtf8(bytes) || badLines.length > 0).toBe(true);
    }), { numRuns: 40 });
  }, 240_000);
});
