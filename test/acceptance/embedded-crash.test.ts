/**
 * Embedded mode killed at any moment (docs/spec.md#12-embedded-mode-files): SIGKILL between a kill
 * event and its addendum, in the middle of a line, during the repair at start or the restore of the
 * windows. After each restart the evidence is whole: every kill event has its addendum, nothing is
 * written twice, and the ledger is byte for byte what `killswitch replay` writes for the same input.
 */
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { seededRandom as random } from '../helpers/random.js';
import { decision, type KillEventLine, parseLines, runCli, startCli, tempDir } from '../helpers/cli.js';

const N = 2500; // identities that trip, each once

interface Storm {
  readonly input: string;
  readonly badLines: number;
}

/**
 * N identities denied ten times each, overlapping in time, among well-behaved traffic, with a few
 * re-delivered decisions, late decisions, lines that are not JSON and lines that are not UTF-8.
 */
function stormInput(dir: string): Storm {
  const rnd = random(7);
  const events: { t: number; line: Buffer }[] = [];
  const push = (t: number, line: string): void => {
    events.push({ t, line: Buffer.from(line) });
  };
  for (let k = 0; k < N; k++) {
    const id = `spiffe://crash.example/agent/${k}`;
    const start = k * 1.2;
    for (let j = 0; j < 10; j++) {
      const line = decision(id, j === 4 ? 'advisory_deny' : 'deny', start + j * 3, { session_id: `s-${k}` });
      push(start + j * 3, line);
      if (k % 97 === 0 && j === 2) push(start + j * 3 + 0.5, line); // a re-delivery: counted once
    }
  }
  for (let m = 0; m < 3 * N; m++) {
    const t = m * 1.0 + rnd();
    push(t, decision(`spiffe://crash.example/good/${m % 300}`, 'allow', t, { session_id: `g-${m % 300}` }));
  }
  events.sort((a, b) => a.t - b.t);
  const lines: Buffer[] = [];
  let bad = 0;
  events.forEach((e, i) => {
    lines.push(e.line);
    if (i % 997 === 500) {
      lines.push(Buffer.from(`not json ${i}`));
      bad++;
    }
    if (i % 1499 === 700) {
      lines.push(Buffer.concat([Buffer.from(`{"decision_id":"u-${i}","note":"`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]));
      bad++;
    }
    if (i % 1201 === 900) lines.push(Buffer.from(decision('spiffe://crash.example/late/1', 'deny', e.t - 30))); // late: dropped
  });
  const input = join(dir, 'storm.ndjson');
  writeFileSync(input, Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  return { input, badLines: bad };
}

function setup(prefix: string, level = 'error'): { dir: string; cfg: string; key: string; jwks: string; data: string } {
  const dir = tempDir(prefix);
  const keys = join(dir, 'keys');
  expect(runCli(['keys', 'generate', '--out', keys]).status).toBe(0);
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({
    kill_switch: { enabled: true, window_seconds: 300, deny_rate_threshold: 0.9, min_calls: 10 },
    // thousands of trips in minutes of event time: the governor would hold most of them
    governor: { enabled: false },
    data_dir: join(dir, 'data'), log: { level },
    signing: { private_key_file: join(keys, 'signing-key.pem'), jwks_file: join(keys, 'jwks.json') },
  }));
  return { dir, cfg, key: join(keys, 'signing-key.pem'), jwks: join(keys, 'jwks.json'), data: join(dir, 'data') };
}

/** What `killswitch replay` writes for the input: kill events and addenda, signed with the same key. */
function replayOf(s: { dir: string; cfg: string; key: string }, input: string): { kills: string; addenda: string } {
  const addenda = join(s.dir, `replay-addenda-${Math.random().toString(36).slice(2)}.ndjson`);
  const r = runCli(['replay', '--config', s.cfg, '--key', s.key, '--addenda', addenda, input]);
  expect(r.status).toBe(0);
  return { kills: r.stdout, addenda: readFileSync(addenda, 'utf8') };
}

function expectWholeEvidence(s: { data: string; jwks: string }, input: string, replay: { kills: string; addenda: string }): void {
  const kills = readFileSync(join(s.data, 'kills.ndjson'), 'utf8');
  const addenda = readFileSync(join(s.data, 'addenda.ndjson'), 'utf8');
  const ids = parseLines<KillEventLine>(kills).map((k) => k.event_id);
  expect(new Set(ids).size).toBe(ids.length); // nothing written twice
  const paired = parseLines<{ kill_event_id: string }>(addenda).map((a) => a.kill_event_id);
  expect(paired).toEqual(ids); // every kill event has its addendum, in the same order
  expect(kills).toBe(replay.kills);
  expect(addenda).toBe(replay.addenda);
  const v = runCli(['verify', '--jwks', s.jwks, '--decisions', input, join(s.data, 'addenda.ndjson')]);
  expect(v.status).toBe(0);
  expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, rederived: { checked: ids.length, matched: ids.length } });
}

describe('embedded mode: SIGKILL at any moment, then a restart', () => {
  it('after 20+ SIGKILLs during a run with thousands of trips, the ledger equals replay\'s and verifies, each bad line kept once', async () => {
    const s = setup('crash-loop-');
    const storm = stormInput(s.dir);
    const replay = replayOf(s, storm.input);
    expect(parseLines(replay.kills)).toHaveLength(N);

    const rnd = random(42);
    let killedWhileReading = 0;
    let finished = false;
    for (let round = 0; round < 60 && !finished; round++) {
      const child = startCli(['run', '--config', s.cfg, storm.input]);
      let out = '';
      child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      let err = '';
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
      if (round % 4 === 3) {
        // anywhere: the lock, the repair from the journal, the restore of the windows
        await new Promise((r) => setTimeout(r, rnd() * 400));
      } else {
        // while reading and tripping: between a kill event and its addendum, in the middle of a line
        const deadline = Date.now() + 30_000;
        while (!out.includes('\nreading ') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        // within 100 ms: on a quiet machine the whole input is read in about 12 rounds of 250 ms, too few
        // to be killed 20 times while reading
        await new Promise((r) => setTimeout(r, rnd() * 100));
      }
      if (child.exitCode === null) {
        const reading = out.includes('\nreading ') && !out.includes('\ndone: ');
        child.kill('SIGKILL');
        const [code, signal] = await exited;
        if (signal === 'SIGKILL' && reading) killedWhileReading++;
        if (code === 0) finished = true;
        if (code !== null && code !== 0) throw new Error(`run failed after a restart: ${err}`);
      } else {
        const [code] = await exited;
        if (code !== 0) throw new Error(`run failed after a restart: ${err}`);
        finished = true;
      }
      if (killedWhileReading >= 24) break;
    }
    expect(killedWhileReading).toBeGreaterThanOrEqual(20);

    const last = runCli(['run', '--config', s.cfg, storm.input]);
    expect(last.stderr).toBe('');
    expect(last.status).toBe(0);
    expectWholeEvidence(s, storm.input, replay);
    const dlq = parseLines<{ file: string; line: number; reason: string }>(readFileSync(join(s.data, 'dlq.ndjson'), 'utf8'));
    expect(dlq).toHaveLength(storm.badLines);
    expect(new Set(dlq.map((d) => d.line)).size).toBe(storm.badLines);
  }, 240_000);

  it('a kill event whose addendum is missing or torn gets it at the next start; a trip whose journal record was torn is derived again', () => {
    const s = setup('crash-planted-', 'warn');
    const lines: string[] = [];
    for (let k = 0; k < 6; k++) for (let j = 0; j < 10; j++) lines.push(decision(`spiffe://crash.example/agent/${k}`, 'deny', k * 40 + j, { session_id: `s-${k}` }));
    const input = join(s.dir, 'in.ndjson');
    writeFileSync(input, lines.join('\n') + '\n');
    const replay = replayOf(s, input);
    const killsFile = join(s.data, 'kills.ndjson');
    const addendaFile = join(s.data, 'addenda.ndjson');
    const journalFile = join(s.data, 'journal.ndjson');
    const linesOf = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
    const freshRun = (): void => {
      rmSync(s.data, { recursive: true, force: true });
      expect(runCli(['run', '--config', s.cfg, input]).status).toBe(0);
    };

    // A crash after the kill event of the last trip, in the middle of its addendum.
    freshRun();
    let addenda = linesOf(addendaFile);
    writeFileSync(addendaFile, addenda.slice(0, -1).map((l) => `${l}\n`).join('') + addenda[addenda.length - 1]!.slice(0, 100));
    let r = runCli(['run', '--config', s.cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/torn last line/);
    expect(r.stderr).toMatch(/the journal committed but the ledger files lacked/);
    expect(r.stdout).toContain('0 new blocks');
    expectWholeEvidence(s, input, replay);

    // A crash after the kill event, before its addendum was written at all.
    freshRun();
    addenda = linesOf(addendaFile);
    writeFileSync(addendaFile, addenda.slice(0, -1).map((l) => `${l}\n`).join(''));
    r = runCli(['run', '--config', s.cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('0 new blocks');
    expectWholeEvidence(s, input, replay);

    // A crash in the middle of the journal record of the last trip: its kill event torn, no addendum.
    // The input position before that trip is the last one recorded, so the trip is derived again.
    freshRun();
    const journal = linesOf(journalFile);
    const tripRecords = journal.filter((l) => l.startsWith('{"kill_event"'));
    expect(tripRecords).toHaveLength(6);
    const lastTrip = journal.indexOf(tripRecords[5]!);
    writeFileSync(journalFile, journal.slice(0, lastTrip).map((l) => `${l}\n`).join('') + journal[lastTrip]!.slice(0, 300));
    const kills = linesOf(killsFile);
    writeFileSync(killsFile, kills.slice(0, -1).map((l) => `${l}\n`).join('') + kills[kills.length - 1]!.slice(0, 50));
    addenda = linesOf(addendaFile);
    writeFileSync(addendaFile, addenda.slice(0, -1).map((l) => `${l}\n`).join(''));
    r = runCli(['run', '--config', s.cfg, input]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('BLOCKED spiffe://crash.example/agent/5 (epoch 1)');
    expect(r.stdout).toContain('1 new block');
    expectWholeEvidence(s, input, replay);
  }, 60_000);
});
