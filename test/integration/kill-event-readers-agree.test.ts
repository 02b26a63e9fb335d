/**
 * Every consumer of the block ledger applies the same checks (docs/spec.md#reading-kill-events): the
 * same hostile records are refused by a session guard following a ledger file (it ignores and counts
 * them) and by embedded mode reading data_dir/kills.ndjson at start (it refuses to start), with the
 * same reason and the same words; and both obey the genuine event. (The Kafka evaluator's reading of
 * the kills topic is not wired to the reader yet.)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { KillSwitchError } from '../../src/core/errors.js';
import { ledgerPaths, openLedger } from '../../src/adapters/file/ledger-files.js';
import { createSessionGuard, type SessionGuard } from '../../src/session/index.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { tempDir } from '../helpers/cli.js';
import { hostileCorpus } from '../helpers/hostile-kill-events.js';
import { signedLine, testKey } from '../helpers/ledger.js';

const A = 'spiffe://example.org/ns/prod/sa/scraper';
const key = testKey();
const corpus = hostileCorpus(key, testKey());
const guards: SessionGuard[] = [];
afterAll(async () => {
  await Promise.all(guards.map((g) => g.close()));
});

/** embedded mode's start over a data_dir whose kills.ndjson holds `line`: the error it stops with, or what it read */
function embeddedStart(line: Buffer): { error: KillSwitchError } | { blocked: string[] } {
  const paths = ledgerPaths(join(tempDir('readers-agree-'), 'data'));
  mkdirSync(paths.dir);
  writeFileSync(paths.kills, Buffer.concat([line, Buffer.from('\n')]));
  try {
    const ledger = openLedger(paths, { trusted: key.trusted });
    ledger.journal.close();
    return { blocked: ledger.killEvents.map((e) => e.agent_id) };
  } catch (err) {
    if (!(err instanceof KillSwitchError)) throw err;
    return { error: err };
  }
}

describe('the ledger readers agree', () => {
  it('a guard and embedded mode refuse each hostile record with the same reason and message, and both obey the genuine event', async () => {
    const file = join(tempDir('readers-agree-'), 'kills.ndjson');
    writeFileSync(file, Buffer.concat(corpus.flatMap((c) => [c.value, Buffer.from('\n')])));
    const log = captureLogger();
    const registry = new Registry();
    const guard = createSessionGuard({ ledger: { file, pollMs: 20 }, jwks: key.jwks, logger: log, registry });
    guards.push(guard);
    await guard.ready;
    expect(guard.blockedCount).toBe(0);

    const guardSaid = log.lines.filter((l) => l.msg.startsWith('ignored a kill event: ')).map((l) => ({ reason: l.fields.reason, message: l.msg.slice('ignored a kill event: '.length) }));
    expect(guardSaid.map((g) => g.reason)).toEqual(corpus.map((c) => c.reason));
    const counted = (await registry.getSingleMetric('killswitch_guard_ledger_rejected_total')!.get()).values;
    for (const c of corpus) {
      expect(counted.find((v) => v.labels.reason === c.reason)?.value, c.reason).toBe(corpus.filter((x) => x.reason === c.reason).length);
    }

    corpus.forEach((c, i) => {
      const started = embeddedStart(c.value);
      expect('error' in started, `${c.name}: embedded mode started`).toBe(true);
      if (!('error' in started)) return;
      expect(started.error.code).toBe('LEDGER_CORRUPT');
      const { message } = guardSaid[i]!;
      // the signature's reasons are named in the refusal; every reason's message is the guard's, word for word
      if (['unsigned', 'unknown_kid', 'jwk_mismatch', 'bad_signature'].includes(c.reason)) {
        expect(started.error.message, c.name).toMatch(new RegExp(`kills\\.ndjson: kill event #1 is not trusted \\(${c.reason}: `));
      }
      expect(started.error.message.endsWith(`${message}`) || started.error.message.endsWith(`${message})`), `${c.name}: ${started.error.message} / ${message}`).toBe(true);
    });

    const genuine = Buffer.from(signedLine(key, { agentId: A }).trim());
    expect(embeddedStart(genuine)).toEqual({ blocked: [A] });
    writeFileSync(file, Buffer.concat([genuine, Buffer.from('\n')]), { flag: 'a' });
    await expect.poll(() => guard.check(A).allowed, { timeout: 5000 }).toBe(false);
  });
});
