/**
 * Kafka-mode metrics on the real broker (test/setup/kafka-global.ts), scraped from /metrics on
 * `http.listen` as Prometheus would: consumer lag per partition and restore duration carry values an
 * operator can act on, follow partitions when they move to another instance, and no label value ever
 * carries a SPIFFE ID.
 */
import { describe, expect, inject, it } from 'vitest';
import { decision, tempDir } from '../helpers/cli.js';
import { freePort } from '../helpers/http-request.js';
import { drainedOn, freshTopics, kafkaClient, kafkaConfig, produce, readTopic, startProcessor, type TestTopics } from '../helpers/kafka.js';

const brokers = inject('kafkaBrokers');

interface Sample { readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly value: number }

/** The Prometheus text format, one sample per line (prom-client writes no timestamps). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Scrapes /metrics and checks, on every scrape, that no label value is (or contains) a SPIFFE ID. */
async function scrape(port: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  const samples = parseMetrics(await res.text());
  const labelValues = samples.flatMap((s) => Object.values(s.labels));
  expect(labelValues.filter((v) => /spiffe:/i.test(v))).toEqual([]);
  return samples;
}

const lagOf = (samples: readonly Sample[]): Map<number, number> =>
  new Map(samples.filter((s) => s.name === 'killswitch_consumer_lag').map((s) => [Number(s.labels.partition), s.value]));

const restoreOf = (samples: readonly Sample[]): { count: number; sum: number } => ({
  count: samples.find((s) => s.name === 'killswitch_restore_duration_seconds_count')?.value ?? 0,
  sum: samples.find((s) => s.name === 'killswitch_restore_duration_seconds_sum')?.value ?? 0,
});

const total = (samples: readonly Sample[], name: string): number => samples.filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);

/** Polls until `check` returns a value (not undefined), failing with `what` after `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Per partition: records on the decisions topic not yet committed by the group (high watermark - committed offset). */
async function backlog(topics: TestTopics, group: string): Promise<Map<number, number>> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    const high = await admin.fetchTopicOffsets(topics.decisions);
    const committed = (await admin.fetchOffsets({ groupId: group, topics: [topics.decisions] }))[0]?.partitions ?? [];
    return new Map(high.map((h) => [h.partition, Number(h.high) - Math.max(0, Number(committed.find((c) => c.partition === h.partition)?.offset ?? 0))]));
  } finally {
    await admin.disconnect();
  }
}

/** `n` decisions over `identities` identities, of which the first `hot` only deny (each trips once it has 10). */
function decisions(n: number, identities: number, hot: number, from: number): { key: string; value: string }[] {
  return Array.from({ length: n }, (_, i) => {
    const who = i % identities;
    const agent = `spiffe://example.org/metrics/agent-${who}`;
    return { key: agent, value: decision(agent, who < hot || i % 7 === 0 ? 'deny' : 'allow', from + i / 100) };
  });
}

describe('Kafka-mode metrics on /metrics', () => {
  it('consumer lag per partition shows the backlog and goes to 0 once it is consumed; restore duration is observed for every assigned partition', async () => {
    const dir = tempDir('kafka-metrics-');
    const topics = freshTopics('metrics');
    const group = `g-${topics.decisions}`;
    const port = await freePort();
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 3, http: `127.0.0.1:${port}` });

    let proc = await startProcessor(cfg);
    try {
      // Nothing to re-read on a new topic: each partition is live as soon as it is set up, and says so.
      const first = await until('a restore observation per partition', async () => {
        const s = await scrape(port);
        return restoreOf(s).count === 3 ? s : undefined;
      });
      expect(restoreOf(first).sum).toBeGreaterThan(0);
      expect(restoreOf(first).sum).toBeLessThan(60 * 3);
      expect(lagOf(first)).toEqual(new Map([[0, 0], [1, 0], [2, 0]]));

      // 3000 decisions of 300 identities, 10 of which trip; two bad records whose SPIFFE IDs must not
      // become labels either (the DLQ counts them by reason).
      await produce(brokers, topics.decisions, [
        ...decisions(3000, 300, 10, 0),
        { key: 'spiffe://example.org/metrics/other', value: decision('spiffe://example.org/metrics/agent-1', 'deny', 31) },
        { key: 'spiffe://Example.org/metrics/BAD', value: decision('spiffe://Example.org/metrics/BAD', 'deny', 31) },
      ]);
      const consumed = await until('lag 0 on every partition after the input is consumed', async () => {
        const s = await scrape(port);
        const pending = [...(await backlog(topics, group)).values()].some((b) => b > 0);
        return !pending && [...lagOf(s).values()].every((v) => v === 0) && lagOf(s).size === 3 ? s : undefined;
      });
      expect(total(consumed, 'killswitch_decisions_total')).toBe(3000);
      expect(total(consumed, 'killswitch_trips_total')).toBe(10);
      expect(consumed.filter((s) => s.name === 'killswitch_dlq_total').map((s) => [s.labels.reason, s.value]).sort())
        .toEqual([['invalid_spiffe_id', 1], ['key_mismatch', 1]]);
      expect(restoreOf(consumed).count).toBe(3); // observed once per assignment, not per batch
    } finally {
      expect(await proc.stop()).toBe(0);
    }

    // A backlog written while no instance runs: a restarted instance re-reads the committed history
    // (restore) and reports the backlog as lag until it has worked through it.
    await produce(brokers, topics.decisions, decisions(60_000, 3000, 0, 40));
    const before = await backlog(topics, group);
    expect([...before.values()].reduce((a, b) => a + b, 0)).toBe(60_000);
    const started = Date.now();
    proc = await startProcessor(cfg);
    try {
      const maxLag = new Map<number, number>();
      const done = await until('the backlog consumed after the restart', async () => {
        const s = await scrape(port);
        for (const [p, v] of lagOf(s)) maxLag.set(p, Math.max(maxLag.get(p) ?? 0, v));
        const pending = [...(await backlog(topics, group)).values()].some((b) => b > 0);
        return !pending && lagOf(s).size === 3 && [...lagOf(s).values()].every((v) => v === 0) ? s : undefined;
      }, 120_000);
      for (const [p, b] of before) {
        expect(maxLag.get(p), `partition ${p}`).toBeGreaterThan(0);
        expect(maxLag.get(p), `partition ${p}`).toBeLessThanOrEqual(b);
      }
      // every partition had history to re-read; each was observed once, within the time the instance ran
      const restore = restoreOf(done);
      expect(restore.count).toBe(3);
      expect(restore.sum).toBeGreaterThan(0);
      expect(restore.sum / 3).toBeLessThan((Date.now() - started) / 1000);
      expect(total(done, 'killswitch_decisions_total')).toBe(60_000);
      // every batch with live records was committed, in transactions of one or more batches
      const transactions = total(done, 'killswitch_transactions_total');
      expect(transactions).toBeGreaterThan(0);
      expect(transactions).toBeLessThanOrEqual(total(done, 'killswitch_batch_duration_seconds_count'));
    } finally {
      expect(await proc.stop()).toBe(0);
    }
  }, 240_000);

  it('lag series follow the partitions: one that moved to another instance leaves the first instance\'s metrics', async () => {
    const dir = tempDir('kafka-metrics-move-');
    const topics = freshTopics('metrics-move');
    const group = `g-${topics.decisions}`;
    const [portA, portB] = [await freePort(), await freePort()];
    const a = await startProcessor(kafkaConfig(dir, brokers, topics, { partitions: 4, http: `127.0.0.1:${portA}` }));
    let b: Awaited<ReturnType<typeof startProcessor>> | undefined;
    try {
      await until('instance A reporting lag for all 4 partitions', async () => (lagOf(await scrape(portA)).size === 4 ? true : undefined));
      await produce(brokers, topics.decisions, decisions(2000, 200, 0, 0));
      b = await startProcessor(kafkaConfig(dir, brokers, topics, { partitions: 4, http: `127.0.0.1:${portB}` }));
      const [ownA, ownB] = await until('the partitions split between A and B, each reporting only its own', async () => {
        const la = [...lagOf(await scrape(portA)).keys()].sort();
        const lb = [...lagOf(await scrape(portB)).keys()].sort();
        return la.length > 0 && lb.length > 0 && la.length + lb.length === 4 ? [la, lb] as const : undefined;
      });
      expect([...ownA, ...ownB].sort()).toEqual([0, 1, 2, 3]);
      // B re-reads the history of what it took over (its lag series is there from the assignment on);
      // once live, one restore observation per partition it owns
      await until('B live on the partitions it took over', async () => (restoreOf(await scrape(portB)).count === ownB.length ? true : undefined));
      await new Promise((r) => setTimeout(r, 500));
      expect(restoreOf(await scrape(portB)).count).toBe(ownB.length);

      await produce(brokers, topics.decisions, decisions(2000, 200, 0, 100));
      await until('both instances at lag 0 after the input is consumed', async () => {
        const pending = [...(await backlog(topics, group)).values()].some((x) => x > 0);
        const lags = [...lagOf(await scrape(portA)).values(), ...lagOf(await scrape(portB)).values()];
        return !pending && lags.length === 4 && lags.every((v) => v === 0) ? true : undefined;
      });
      expect(total(await scrape(portA), 'killswitch_decisions_total') + total(await scrape(portB), 'killswitch_decisions_total')).toBe(4000);
    } finally {
      const codes = await Promise.all([a.stop(), b?.stop()]);
      expect(codes).toEqual([0, b === undefined ? undefined : 0]);
    }
  }, 240_000);

  it('decisions the broker deleted before they were read are logged and counted, at restart and while running, and the stream goes on', async () => {
    const dir = tempDir('kafka-expired-');
    const topics = freshTopics('expired');
    const group = `g-${topics.decisions}`;
    const port = await freePort();
    const cfg = kafkaConfig(dir, brokers, topics, { partitions: 1, http: `127.0.0.1:${port}` });
    const agent = (name: string): string => `spiffe://example.org/expired/${name}`;
    const calls = (who: string, verdict: string, n: number, from: number): { key: string; value: string }[] =>
      Array.from({ length: n }, (_, i) => ({ key: agent(who), value: decision(agent(who), verdict, from + i) }));
    const expired = (samples: readonly Sample[]): number => total(samples, 'killswitch_decisions_expired_total');
    const admin = kafkaClient(brokers).admin();
    await admin.connect();
    // What retention does to a partition: its log start offset moves past records (kafka-delete-records).
    const expire = async (upTo: number): Promise<void> => {
      await admin.fetchTopicMetadata({ topics: [topics.decisions] });
      await admin.deleteTopicRecords({ topic: topics.decisions, partitions: [{ partition: 0, offset: String(upTo) }] });
    };
    try {
      // Down while retention removes records it never read: offsets 10..39, among them all 12 denies of x.
      let proc = await startProcessor(cfg);
      await produce(brokers, topics.decisions, calls('a', 'allow', 10, 0));
      await drainedOn(brokers, topics, group);
      expect(await proc.stop()).toBe(0);
      await produce(brokers, topics.decisions, [...calls('x', 'deny', 12, 20), ...calls('b', 'allow', 18, 40)]);
      await expire(40);
      await produce(brokers, topics.decisions, calls('y', 'deny', 12, 60));
      proc = await startProcessor(cfg);
      try {
        await drainedOn(brokers, topics, group);
        const s = await until('the restart\'s expired records on /metrics', async () => {
          const now = await scrape(port);
          return expired(now) > 0 ? now : undefined;
        });
        expect(s.filter((x) => x.name === 'killswitch_decisions_expired_total').map((x) => [x.labels.partition, x.value])).toEqual([['0', 30]]);
        expect(proc.log()).toMatch(/"lost":30,"from_offset":10,"to_offset":40.*decisions deleted by the broker before they were processed/);
        // y, after the gap, trips; x's denies were deleted unread, so x does not
        const kills = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 1 })).map((r) => JSON.parse(r.value!.toString('utf8')) as { agent_id: string });
        expect(kills.map((k) => k.agent_id)).toEqual([agent('y')]);

        // Running, but stopped (SIGSTOP) for less than the session timeout while retention removes
        // the 20 records it has not read yet: the client jumps to the log start; the gap is counted.
        proc.child.kill('SIGSTOP');
        await new Promise((r) => setTimeout(r, 1000)); // its fetch in flight comes back empty meanwhile
        await produce(brokers, topics.decisions, calls('z', 'deny', 20, 80));
        await expire(72); // offsets 52..71: z's denies
        proc.child.kill('SIGCONT');
        await produce(brokers, topics.decisions, calls('w', 'deny', 12, 100));
        await drainedOn(brokers, topics, group);
        const after = await until('the live gap counted', async () => {
          const now = await scrape(port);
          return expired(now) >= 50 ? now : undefined;
        });
        expect(expired(after)).toBe(50);
        expect(proc.log()).toMatch(/"lost":20,"from_offset":52,"to_offset":72.*decisions deleted by the broker before they were processed/);
        const all = (await readTopic(brokers, topics.kills, { until: (r) => r.length >= 2 })).map((r) => JSON.parse(r.value!.toString('utf8')) as { agent_id: string });
        expect(all.map((k) => k.agent_id)).toEqual([agent('y'), agent('w')]);
      } catch (err) {
        process.stderr.write(`processor log:\n${proc.log().slice(-5000)}\n`);
        throw err;
      } finally {
        proc.child.kill('SIGCONT');
        await proc.stop();
      }
    } finally {
      await admin.disconnect();
    }
  });
});
