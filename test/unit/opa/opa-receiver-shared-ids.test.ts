/**
 * The OPA receiver with a memory shared by the instances (Kafka mode, docs/opa.md "Retries and
 * de-duplication"): ids another instance took are skipped, a batch is mapped only once the shared ids are
 * read to their end (refused with 503 INGEST_UNAVAILABLE, nothing taken, when they cannot be), and the
 * ids a batch hands over go with its decisions. The topic behind it is tested against the broker in
 * test/integration/opa.test.ts; here a stand-in of the port.
 */
import { randomUUID } from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { resolveMapping } from '../../../src/adapters/opa/opa-mapping.js';
import { OpaReceiver } from '../../../src/adapters/opa/opa-receiver.js';
import { KillSwitchError } from '../../../src/core/errors.js';
import type { IngestOptions, IngestRecord, IngestResult, OperatorService, SharedDecisionIds } from '../../../src/ports/operator-service.js';
import { captureLogger } from '../../helpers/capture-logger.js';

const AGENT = 'spiffe://example.org/ns/prod/sa/agent';

function event(id: string, allowed: boolean): Record<string, unknown> {
  return { decision_id: id, path: 'envoy/authz/allow', input: { attributes: { source: { principal: AGENT } } }, result: allowed, timestamp: new Date().toISOString() };
}

/** The ids "on the topic"; `fail` makes every reader's catchUp throw, as an unreachable broker would. */
interface Topic {
  ids: string[];
  fail: boolean;
}

/** One instance's reader of the topic: catchUp delivers what it has not delivered yet. */
class SharedIds implements SharedDecisionIds {
  private delivered = 0;
  private listener: (ids: readonly string[]) => void = () => undefined;
  constructor(private readonly topic: Topic) {}
  onIds(listener: (ids: readonly string[]) => void): void {
    this.listener = listener;
  }
  catchUp(): Promise<void> {
    if (this.topic.fail) return Promise.reject(new Error('broker unreachable'));
    this.listener(this.topic.ids.slice(this.delivered));
    this.delivered = this.topic.ids.length;
    return Promise.resolve();
  }
}

/** Takes what it is given, as Kafka mode would: decisions and the opa ids together. */
function service(topic: Topic): OperatorService & { taken: string[] } {
  const taken: string[] = [];
  const refuse = (): never => {
    throw new Error('not used');
  };
  return {
    taken,
    ingest(records: readonly IngestRecord[], options?: IngestOptions): Promise<IngestResult> {
      for (const r of records) taken.push((JSON.parse(r.text) as { decision_id: string }).decision_id);
      topic.ids.push(...(options?.opaIds ?? []));
      return Promise.resolve({ accepted: records.length, invalid: 0, trips: null, errors: [] });
    },
    block: refuse, unblock: refuse, isBlocked: refuse, identity: refuse, blocks: refuse,
  };
}

function instance(topic: Topic, svc: OperatorService): OpaReceiver {
  return new OpaReceiver({ service: svc, mapping: resolveMapping(undefined), registry: new Registry(), log: captureLogger(), shared: new SharedIds(topic) });
}

const body = (events: unknown[]): Buffer => Buffer.from(JSON.stringify(events));

describe('the OPA receiver with ids shared by the instances', () => {
  it('skips the ids another instance took, hands over the ids of what it takes, and takes nothing while the shared ids cannot be read', async () => {
    const topic: Topic = { ids: [], fail: false };
    const svc = service(topic);
    const [a, b] = [instance(topic, svc), instance(topic, svc)];
    const batch = Array.from({ length: 5 }, (_, i) => event(randomUUID(), i % 2 === 0));
    expect(await a.accept(a.read(body(batch))!)).toMatchObject({ events: 5, accepted: 5, duplicates: 0 });
    expect(topic.ids).toEqual(batch.map((e) => e.decision_id));
    // the retry reaches the other instance, which had never seen these ids itself
    expect(await b.accept(b.read(body(batch))!)).toMatchObject({ events: 5, accepted: 0, duplicates: 5 });
    expect(svc.taken).toHaveLength(5);

    topic.fail = true;
    const next = [event(randomUUID(), false)];
    const refused = b.accept(b.read(body(next))!);
    await expect(refused).rejects.toBeInstanceOf(KillSwitchError);
    await expect(refused).rejects.toMatchObject({ code: 'INGEST_UNAVAILABLE' });
    expect(svc.taken).toHaveLength(5);
    // once it can be read again, OPA's retry is taken, once
    topic.fail = false;
    expect(await b.accept(b.read(body(next))!)).toMatchObject({ accepted: 1 });
    expect(await a.accept(a.read(body(next))!)).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(svc.taken).toHaveLength(6);
  });

  it('hands over an id longer than any decision may have by its digest, and knows it again by that', async () => {
    const topic: Topic = { ids: [], fail: false };
    const svc = service(topic);
    const [a, b] = [instance(topic, svc), instance(topic, svc)];
    const long = `${randomUUID()}${'x'.repeat(1 << 20)}`;
    const batch = [event(long, false)];
    expect(await a.accept(a.read(body(batch))!)).toMatchObject({ events: 1, duplicates: 0 });
    expect(topic.ids).toEqual([expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as unknown]);
    expect(await b.accept(b.read(body(batch))!)).toMatchObject({ events: 1, duplicates: 1 });
  });
});
