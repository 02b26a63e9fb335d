/**
 * The records of the repartition topic (docs/spec.md#11-kafka-mode): what one batch forwards is packed
 * per owner, and the owner unpacks exactly the decisions that were decoded at the source, with where they
 * were read; records it did not forward are not its to evaluate. And the committer's size groups count
 * every byte a record takes, so no send can exceed the broker's message size.
 */
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { KafkaRouting, ownerPartition } from '../../../src/adapters/kafka/repartition.js';
import { ReusableDecision } from '../../../src/adapters/serde/fast-decision.js';
import { bySize, produceRequests, recordBytes } from '../../../src/adapters/kafka/transactional-committer.js';
import { DecisionClass } from '../../../src/core/decision-class.js';
import type { Decision } from '../../../src/core/decision.js';
import { spiffeIdError } from '../../../src/core/spiffe-id.js';
import type { InputRecord, OutputRecord } from '../../../src/ports/partition-records.js';
import type { Message } from 'kafkajs';
import { v1Entries } from '../../helpers/forwarded-v1.js';
import { seededRandom } from '../../helpers/random.js';

const routing = new KafkaRouting({ decisionsTopic: 'decisions', repartitionTopic: 'decisions.repartition', partitions: 6, groupId: 'g' });

/** A decision read on a partition for another owner, and the record it was read from. */
interface Forwarded {
  readonly record: InputRecord;
  readonly decision: Decision;
  readonly owner: number;
  readonly offset: number;
  readonly streamTime: number;
}

/** What the source's packer makes of `list`, read on decisions partition `partition`. */
function pack(partition: number, list: readonly Forwarded[]): OutputRecord[] {
  const packer = routing.packer(partition);
  for (const f of list) packer.add(f.owner, f.decision, f.offset, Number(f.record.timestamp), f.streamTime);
  expect(packer.count).toBe(list.length);
  return packer.take();
}

/** An entry as its owner reads it: the decision's fields (or the record), and where it was read. */
interface Entry {
  readonly decision?: ReturnType<typeof fields> & { readonly identity: number | undefined };
  readonly record?: InputRecord;
  readonly from: { readonly partition: number; readonly offset: number; readonly streamTime: number };
}

type Read = { readonly kind: 'entries'; readonly entries: Entry[] } | { readonly kind: 'foreign' } | { readonly kind: 'invalid'; readonly message: string };

/** What an owner's unpacker reads from one record. */
function unpack(m: InputRecord, by: KafkaRouting = routing): Read {
  const unpacker = by.unpacker();
  const u = unpacker.unpack(m);
  if (u.kind !== 'entries') {
    expect(unpacker.count).toBe(0);
    return u;
  }
  return { kind: 'entries', entries: entriesOf(unpacker) };
}

function entriesOf(unpacker: ReturnType<KafkaRouting['unpacker']>, from = 0): Entry[] {
  return Array.from({ length: unpacker.count - from }, (_, j) => {
    const i = from + j;
    const d = unpacker.decision(i);
    const where = { partition: unpacker.partition(i), offset: unpacker.offset(i), streamTime: unpacker.streamTime(i) };
    return d === undefined ? { record: unpacker.record(i)!, from: where } : { decision: { ...fields(d), identity: d.identity }, from: where };
  });
}

/** The entries of a record its owner can read (fails the test otherwise). */
function entries(u: Read): Entry[] {
  if (u.kind !== 'entries') throw new Error(`expected entries, got ${JSON.stringify(u)}`);
  return u.entries;
}

function read(o: OutputRecord, offset: number): InputRecord {
  return { key: o.key as Buffer | null, value: o.value as Buffer, timestamp: o.timestamp!, offset: String(offset), headers: o.headers! };
}

/** What a decision is to its evaluator. */
const fields = (d: Decision): Pick<Decision, 'decisionId' | 'agentId' | 'cls' | 'timeMs' | 'sessionId'> => ({ decisionId: d.decisionId, agentId: d.agentId, cls: d.cls, timeMs: d.timeMs, sessionId: d.sessionId });

const CLASSES = [DecisionClass.Ignored, DecisionClass.Call, DecisionClass.Deny, DecisionClass.AdvisoryDeny];

function forwarded(n: number, padBytes = 200): Forwarded[] {
  return Array.from({ length: n }, (_, i) => {
    const agent = `spiffe://example.org/agent-${i % 40}`;
    const owner = ownerPartition(agent, 6);
    const decision: Decision = {
      decisionId: `dec-${i}-${'x'.repeat(i % 90)}`, agentId: agent, cls: CLASSES[i % 4]!, timeMs: 1_789_999_999_000 + i * 7,
      // a session id sometimes, sometimes not ASCII, sometimes long
      sessionId: i % 3 === 0 ? undefined : i % 3 === 1 ? `sess-${i % 5}-é☃` : 's'.repeat(padBytes),
    };
    return {
      record: { key: i % 7 === 0 ? null : Buffer.from(agent), value: Buffer.from(JSON.stringify({ agent_id: agent, pad: 'x'.repeat(padBytes) })), timestamp: String(1_790_000_000_000 + i), offset: String(100 + i) },
      decision, owner, offset: 100 + i, streamTime: 1_790_000_000_000 + i - (i % 3),
    };
  });
}


describe('repartition records', () => {
  it('the owner unpacks every forwarded decision as its source decoded it, with its source partition, offset and stream time, in order', () => {
    const input = forwarded(500);
    const records = pack(2, input);
    expect(records.length).toBe(new Set(input.map((f) => f.owner)).size); // one record per owner here
    const got = records.flatMap((r, i) => {
      expect(r.headers!['killswitch.forwarded']).toBe('v3');
      const inner = entries(unpack(read(r, i)));
      for (const f of inner) expect(ownerPartition(f.decision!.agentId!, 6)).toBe(r.partition);
      // a restore finds records by timestamp: the record is stamped no later than anything it carries
      for (const f of inner) expect(Number(r.timestamp)).toBeLessThanOrEqual(Number(input.find((x) => x.offset === f.from.offset)!.record.timestamp));
      return inner;
    });
    expect(got).toHaveLength(input.length);
    for (const f of got) {
      const src = input.find((x) => x.offset === f.from.offset)!;
      expect(f.record).toBeUndefined();
      expect({ ...f.decision, identity: undefined }).toEqual({ ...fields(src.decision), identity: undefined });
      expect(f.from).toEqual({ partition: 2, offset: src.offset, streamTime: src.streamTime });
    }
    // each owner's records keep the order they were read in
    for (const r of records) {
      const offsets = entries(unpack(read(r, 0))).map((f) => f.from.offset);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
  });

  it('splits what goes to one owner into records of at most 256 KiB of entries, and one entry too large alone still travels', () => {
    const one = forwarded(2000, 1000).map((f) => ({ ...f, owner: 3 }));
    const records = pack(0, one);
    expect(records.length).toBeGreaterThan(2);
    for (const r of records) expect(brotliDecompressSync(r.value as Buffer).length).toBeLessThanOrEqual(256 * 1024);
    expect(records.flatMap((r) => entries(unpack(read(r, 0)))).length).toBe(2000);
    const huge = forwarded(3, 400 * 1024).slice(2);
    const [big] = pack(0, huge);
    expect(entries(unpack(read(big!, 0)))[0]!.decision!.sessionId).toBe(huge[0]!.decision.sessionId);
  });

  it('forwards a fraction of the bytes of the records it read', () => {
    const input = forwarded(500, 150).map((f) => ({ ...f, owner: 1, decision: { ...f.decision, sessionId: undefined } }));
    const raw = input.reduce((n, f) => n + (f.record.key?.length ?? 0) + f.record.value!.length, 0);
    const sent = pack(0, input).reduce((n, r) => n + (r.value as Buffer).length, 0);
    expect(sent).toBeLessThan(raw / 3);
  });

  it('reads the layouts of the version before (v2 compressed, v1 plain): the records as read at their source, to decode again', () => {
    const input = forwarded(50);
    const [r] = pack(4, input.map((f) => ({ ...f, owner: 0 })));
    for (const [format, value] of [['v2', brotliCompressSync(v1Entries(input))], ['v1', v1Entries(input)]] as const) {
      const got = entries(unpack({ ...read(r!, 0), value, headers: { ...r!.headers, 'killswitch.forwarded': format } }));
      expect(got.map((f) => f.from)).toEqual(input.map((f) => ({ partition: 4, offset: f.offset, streamTime: f.streamTime })));
      expect(got.map((f) => f.record!.value!.toString())).toEqual(input.map((f) => f.record.value!.toString()));
      expect(got.map((f) => f.record!.key?.toString() ?? null)).toEqual(input.map((f) => f.record.key?.toString() ?? null));
    }
  });

  it('is not the owner\'s to evaluate when another consumer group forwarded it or it has none of the headers; is a bad record when this group forwarded it and it cannot be read', () => {
    const [r] = pack(1, forwarded(3));
    const rec = read(r!, 0);
    expect(unpack(rec, new KafkaRouting({ decisionsTopic: 'decisions', repartitionTopic: 'decisions.repartition', partitions: 6, groupId: 'other' }))).toEqual({ kind: 'foreign' });
    expect(unpack({ ...rec, headers: {} })).toEqual({ kind: 'foreign' });
    const plain = brotliDecompressSync(rec.value!);
    const unreadable: [string, InputRecord, RegExp][] = [
      ['another format', { ...rec, headers: { ...rec.headers, 'killswitch.forwarded': 'v4' } }, /unknown format "v4"/],
      ['a source partition the topic does not have', { ...rec, headers: { ...rec.headers, 'killswitch.source.partition': '6' } }, /source partition header "6"/],
      ['a value cut short', { ...rec, value: rec.value!.subarray(0, rec.value!.length - 1) }, /not Brotli/],
      ['a value that is not Brotli', { ...rec, value: Buffer.from('{"agent_id":"spiffe://example.org/a"}') }, /not Brotli/],
      // a value that would inflate past 8 MiB is not inflated whole
      ['a value inflating past 8 MiB', { ...rec, value: brotliCompressSync(Buffer.alloc(9 << 20)) }, /inflates to more than/],
      ['entries cut short', { ...rec, value: brotliCompressSync(plain.subarray(0, plain.length - 1)) }, /entries are not whole/],
      ['v3 entries read as v1', { ...rec, value: plain, headers: { ...rec.headers, 'killswitch.forwarded': 'v1' } }, /entries are not whole/],
      ['no value', { ...rec, value: null }, /no value/],
    ];
    for (const [what, record, message] of unreadable) {
      const u = unpack(record);
      expect(u.kind, what).toBe('invalid');
      expect(u.kind === 'invalid' ? u.message : '', what).toMatch(message);
    }
    // its DLQ record names the repartition partition and offset it was read at
    const dead = routing.deadLetter({ ...rec, offset: '42' }, { partition: 3, offset: '42', forwarded: true }, 'invalid_forwarded', 'not a readable forwarded record');
    expect(dead.headers).toMatchObject({ 'killswitch.reason': 'invalid_forwarded', 'killswitch.source.topic': 'decisions.repartition', 'killswitch.source.partition': '3', 'killswitch.source.offset': '42' });
  });

  it('takes no decision its source could not have forwarded: an invalid or non-canonical SPIFFE ID, an unknown class, an empty or too long id', () => {
    const bad: [string, Partial<Decision>][] = [
      ['not a SPIFFE ID', { agentId: 'agent-7' }],
      ['an upper-case trust domain', { agentId: 'spiffe://Example.org/agent' }],
      ['an empty decision id', { decisionId: '' }],
      ['a decision id of 129 characters', { decisionId: 'd'.repeat(129) }],
      ['class 4', { cls: 4 as DecisionClass }],
      ['an event time that is not a number', { timeMs: NaN }],
    ];
    // 128 characters as the schema counts them, each two UTF-16 units: a decision id the source takes
    const [astral] = forwarded(1);
    const [ok] = pack(1, [{ ...astral!, decision: { ...astral!.decision, decisionId: '\u{1F600}'.repeat(128) } }]);
    expect(entries(unpack(read(ok!, 0)))[0]!.decision!.decisionId).toBe('\u{1F600}'.repeat(128));
    bad.push(['129 astral characters', { decisionId: '\u{1F600}'.repeat(129) }]);
    for (const [what, change] of bad) {
      const [f] = forwarded(1);
      const [r] = pack(1, [{ ...f!, decision: { ...f!.decision, ...change } }]);
      expect(unpack(read(r!, 0)).kind, what).toBe('invalid');
    }
  });
});

describe('packing as read, unpacking without a string per decision', () => {
  const agent = 'spiffe://example.org/agent-reuse';
  const owner = ownerPartition(agent, 6);
  const at = (i: number, sessionId: string | undefined, decision: Decision = { decisionId: `r-${i}`, agentId: agent, cls: DecisionClass.Deny, timeMs: 1_790_000_000_000 + i, sessionId }): Forwarded => ({
    record: { key: null, value: null, timestamp: String(1_790_000_000_000 + i), offset: String(i) }, decision, owner, offset: i, streamTime: 1_790_000_000_000 + i,
  });

  it('forwards a decision the fast decoder made (its id still in the record\'s bytes) with that id, and the decision may be reused at once', () => {
    const value = Buffer.from('{"decision_id":"fast-01","agent_id":"x"}');
    const d = new ReusableDecision();
    Object.assign(d, { agentId: agent, cls: DecisionClass.Call, timeMs: 1_790_000_000_000, sessionId: 's' });
    d.setDecisionId(value, 16, 23);
    const packer = routing.packer(0);
    packer.add(owner, d, 5, 1_790_000_000_000, 1_790_000_000_000);
    // the pool entry is reused for the next record before the batch is packed
    d.setDecisionId(Buffer.from('{"decision_id":"fast-02"}'), 16, 23);
    packer.add(owner, d, 6, 1_790_000_000_001, 1_790_000_000_000);
    const [r] = packer.take();
    expect(entries(unpack(read(r!, 0))).map((e) => e.decision!.decisionId)).toEqual(['fast-01', 'fast-02']);
    // the packer starts empty again
    expect(packer.count).toBe(0);
    expect(packer.take()).toEqual([]);
  });

  it('gives every decision of an identity the same ID and identity handle, and each the session id it was sent with', () => {
    const sessions = ['s-1', 's-1', undefined, 'é', 'Ã©', 's-1', 'x'.repeat(200), 'x'.repeat(200), 's-2', 's-1'];
    const other = 'spiffe://example.org/agent-other';
    const list = [...sessions.map((s, i) => at(i, s)), at(99, 's-1', { decisionId: 'o', agentId: other, cls: DecisionClass.Call, timeMs: 1_790_000_000_000, sessionId: 's-1' })];
    const got = pack(3, list.map((f) => ({ ...f, owner }))).flatMap((r) => entries(unpack(read(r, 0))));
    expect(got.map((e) => e.decision!.sessionId)).toEqual([...sessions, 's-1']);
    const handles = new Set(got.slice(0, sessions.length).map((e) => e.decision!.identity));
    expect(handles.size).toBe(1);
    expect([...handles][0]).toBeGreaterThan(0);
    expect(got[sessions.length]!.decision!.identity).not.toBe([...handles][0]);
    expect(got.map((e) => e.decision!.agentId)).toEqual([...sessions.map(() => agent), other]);
  });

  it('keeps none of an unreadable record\'s entries, and the entries of the records before and after it', () => {
    const [first] = pack(1, [at(1, 's'), at(2, 's')]);
    const [second] = pack(1, [at(3, 's'), at(4, 's')]);
    const plain = brotliDecompressSync(second!.value as Buffer);
    // a whole first entry, then one cut short
    const cut = { ...read(second!, 1), value: brotliCompressSync(plain.subarray(0, plain.length - 3)) };
    const unpacker = routing.unpacker();
    expect(unpacker.unpack(read(first!, 0)).kind).toBe('entries');
    expect(unpacker.unpack(cut).kind).toBe('invalid');
    expect(unpacker.unpack(read(second!, 2)).kind).toBe('entries');
    expect(entriesOf(unpacker).map((e) => e.from.offset)).toEqual([1, 2, 3, 4]);
    unpacker.release();
    expect(unpacker.count).toBe(0);
  });
});

/**
 * Format `v3` as docs/spec.md section 11 describes it, read the plain way (a string per field, every
 * check on the strings): null when the value is not whole entries or holds one no source forwards.
 */
function referenceV3(v: Buffer, partition: number): Entry[] | null {
  const out: Entry[] = [];
  let at = 0;
  while (at < v.length) {
    if (at + 33 > v.length) return null;
    const [offset, timestamp, streamTime, timeMs] = [0, 8, 16, 24].map((k) => v.readDoubleLE(at + k)) as [number, number, number, number];
    const cls = v[at + 32]!;
    at += 33;
    const texts: (string | undefined)[] = [];
    for (let k = 0; k < 3; k++) {
      if (at + 4 > v.length) return null;
      const n = v.readUInt32LE(at);
      at += 4;
      if (n === 0xffffffff) {
        if (k < 2) return null; // only the session id may be absent
        texts.push(undefined);
        continue;
      }
      if (at + n > v.length) return null;
      texts.push(v.toString('utf8', at, at + n));
      at += n;
    }
    const [decisionId, agentId, sessionId] = texts as [string, string, string | undefined];
    const characters = [...decisionId].length;
    if (!Number.isSafeInteger(offset) || offset < 0 || ![timestamp, streamTime, timeMs].every(Number.isFinite)) return null;
    if (cls > 3 || characters < 1 || characters > 128 || spiffeIdError(agentId) !== null) return null;
    out.push({ decision: { decisionId, agentId, cls: cls as DecisionClass, timeMs, sessionId, identity: undefined }, from: { partition, offset, streamTime } });
  }
  return out;
}

describe('damaged v3 records against the format read the plain way', () => {
  it('unpacks exactly what the reference reads, and refuses exactly what it refuses, whatever bytes are changed', () => {
    const rnd = seededRandom(22);
    const identities = ['spiffe://example.org/a', 'spiffe://example.org/ns/prod/sa/b', 'spiffe://example.org/c'];
    const input: Forwarded[] = Array.from({ length: 40 }, (_, i) => {
      const agent = identities[i % identities.length]!;
      return {
        record: { key: null, value: null, timestamp: String(1_790_000_000_000 + i), offset: String(i) },
        decision: { decisionId: i % 5 === 0 ? `déjà-${i}` : `id-${i}`, agentId: agent, cls: CLASSES[i % 4]!, timeMs: 1_790_000_000_000 + i, sessionId: i % 4 === 0 ? undefined : `s-${i % 3}` },
        owner: 2, offset: 1000 + i, streamTime: 1_790_000_000_000 + i,
      };
    });
    const [r] = pack(5, input);
    const plain = brotliDecompressSync(r!.value as Buffer);
    const outcomes = { entries: 0, invalid: 0 };
    for (let round = 0; round < 3000; round++) {
      const v = Buffer.from(plain);
      const changes = 1 + Math.floor(rnd() * 3);
      for (let c = 0; c < changes; c++) {
        const at = Math.floor(rnd() * v.length);
        const how = rnd();
        // a byte anywhere, a printable byte (a changed character of an id), or a length field's worth of bytes
        if (how < 0.4) v[at] = Math.floor(rnd() * 256);
        else if (how < 0.8) v[at] = 0x20 + Math.floor(rnd() * 0x5f);
        else v.writeUInt32LE(Math.floor(rnd() * 300), Math.min(at, v.length - 4));
      }
      const cut = rnd() < 0.1 ? v.subarray(0, Math.floor(rnd() * v.length)) : v;
      const got = unpack({ ...read(r!, round), value: brotliCompressSync(cut) });
      const expected = referenceV3(cut, 5);
      if (expected === null) {
        expect(got.kind, `round ${round}`).toBe('invalid');
        outcomes.invalid++;
        continue;
      }
      const entries = got.kind === 'entries' ? got.entries : [];
      expect(got.kind, `round ${round}`).toBe('entries');
      expect(entries.map((e) => ({ ...e, decision: { ...e.decision!, identity: undefined } })), `round ${round}`).toEqual(expected);
      // one identity handle per identity
      const handles = new Map<string, number | undefined>();
      for (const e of entries) {
        expect(e.decision!.identity).toBeGreaterThan(0);
        expect(handles.get(e.decision!.agentId!) ?? e.decision!.identity).toBe(e.decision!.identity);
        handles.set(e.decision!.agentId!, e.decision!.identity);
      }
      expect(new Set(handles.values()).size).toBe(handles.size);
      outcomes.entries++;
    }
    // both kinds of outcome were exercised, not only refusals
    expect(outcomes.entries).toBeGreaterThan(300);
    expect(outcomes.invalid).toBeGreaterThan(300);
  });
});

describe('records forwarded by the previous version (one decision per record, its source in six headers)', () => {
  it('are evaluated after an upgrade, not skipped', () => {
    const value = Buffer.from('{"agent_id":"spiffe://example.org/a"}');
    const old: InputRecord = {
      key: Buffer.from('spiffe://example.org/a'), value, timestamp: '1790000000000', offset: '7',
      headers: {
        'killswitch.source.topic': 'decisions', 'killswitch.source.partition': '4', 'killswitch.source.offset': '1234',
        'killswitch.source.timestamp': '1790000000000', 'killswitch.source.stream_time_ms': '1790000000500', 'killswitch.source.group': 'g',
      },
    };
    const [f, ...rest] = entries(unpack(old));
    expect(rest).toEqual([]);
    expect(f!.record!.value).toBe(value);
    expect(f!.record!.offset).toBe('1234');
    expect(f!.from).toEqual({ partition: 4, offset: 1234, streamTime: 1_790_000_000_500 });
    expect(unpack({ ...old, headers: { ...old.headers, 'killswitch.source.group': 'other' } }).kind).toBe('foreign');
    expect(unpack({ ...old, headers: { ...old.headers, 'killswitch.source.stream_time_ms': 'x' } }).kind).toBe('invalid');
  });
});

describe('bySize', () => {
  it('counts keys and headers, not only values: a group of records with large headers stays under the limit', () => {
    const headers = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`killswitch.source.h${i}`, 'y'.repeat(100)]));
    const messages = Array.from({ length: 5000 }, (_, i) => ({ key: `spiffe://example.org/agent-${i}`, value: 'v'.repeat(100), headers }));
    const groups = bySize(messages, 512 * 1024);
    expect(groups.flat()).toHaveLength(5000);
    for (const g of groups) {
      const bytes = g.reduce((n, m) => n + String(m.key).length + String(m.value).length + Object.entries(m.headers ?? {}).reduce((h, [k, v]) => h + k.length + String(v).length, 0), 0);
      expect(bytes).toBeLessThanOrEqual(512 * 1024);
    }
  });
});

describe('produceRequests', () => {
  const records = (n: number, bytes: number, tag: string): Message[] => Array.from({ length: n }, (_, i) => ({ key: `${tag}-${i}`, value: 'v'.repeat(bytes) }));

  it('sends a transaction that fits in one request as one: kill events, addenda and forwarded decisions together', () => {
    const kills = records(1, 500, 'kill');
    const addenda = records(1, 900, 'addendum');
    const forwarded = records(200, 250, 'fwd');
    const requests = produceRequests({
      outputs: [{ topic: 'kills', messages: kills }, { topic: 'addenda', messages: addenda }, { topic: 'shadow', messages: [] }],
      sized: [{ topic: 'dlq', messages: [] }, { topic: 'repartition', messages: forwarded }],
    });
    expect(requests).toEqual([[{ topic: 'kills', messages: kills }, { topic: 'addenda', messages: addenda }, { topic: 'repartition', messages: forwarded }]]);
  });

  it('splits large outputs into requests under the size limit, each topic in order, the small outputs in the first', () => {
    const kills = records(2, 500, 'kill');
    const dlq = records(3, 1000, 'dlq');
    const forwarded = records(6000, 250, 'fwd');
    const requests = produceRequests({
      outputs: [{ topic: 'kills', messages: kills }],
      sized: [{ topic: 'dlq', messages: dlq }, { topic: 'repartition', messages: forwarded }],
    });
    expect(requests.length).toBeGreaterThan(2);
    expect(requests[0]!.map((t) => t.topic)).toEqual(['kills', 'dlq', 'repartition']);
    for (const r of requests.slice(1)) expect(r.map((t) => t.topic)).toEqual(['repartition']);
    const sent = (topic: string): Message[] => requests.flatMap((r) => r.filter((t) => t.topic === topic).flatMap((t) => t.messages));
    expect(sent('kills')).toEqual(kills);
    expect(sent('dlq')).toEqual(dlq);
    expect(sent('repartition')).toEqual(forwarded);
    for (const r of requests) {
      for (const t of r.filter((x) => x.topic === 'repartition')) expect(t.messages.reduce((n, m) => n + recordBytes(m), 0)).toBeLessThanOrEqual(512 * 1024);
    }
  });

  it('sends nothing for a transaction with no records (an offset alone)', () => {
    expect(produceRequests({ outputs: [{ topic: 'kills', messages: [] }], sized: [{ topic: 'dlq', messages: [] }] })).toEqual([]);
  });
});
