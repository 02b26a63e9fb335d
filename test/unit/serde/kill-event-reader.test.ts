/**
 * KillEventReader (docs/spec.md#reading-kill-events): every hostile record is refused with its reason,
 * the checks run in the documented order, a genuine event is read as itself, and signatures are
 * checked exactly when trusted keys are configured.
 */
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/core/canonical-json.js';
import { KILL_EVENT_REJECT_REASONS, KillEventReader, MAX_KILL_EVENT_BYTES, type KillEventReadResult } from '../../../src/adapters/serde/kill-event-reader.js';
import { hostileCorpus } from '../../helpers/hostile-kill-events.js';
import { killEvent, testKey } from '../../helpers/ledger.js';

const A = 'spiffe://example.org/ns/prod/sa/scraper';
const key = testKey();
const stranger = testKey();
const withKeys = new KillEventReader({ trusted: key.trusted });
const withoutKeys = new KillEventReader({ trusted: new Map() });
const signedEvent = key.signer.sign(killEvent({ agentId: A }), false);
const signed = canonicalJson(signedEvent);

const reason = (r: KillEventReadResult): string => (r.ok ? 'ok' : r.reason);

describe('KillEventReader', () => {
  it('reads a genuine signed event, as text or bytes, as the event that was signed', () => {
    for (const value of [signed, Buffer.from(signed)]) {
      const r = withKeys.read(value);
      expect(r).toEqual({ ok: true, event: signedEvent });
    }
    expect(withKeys.checksSignatures).toBe(true);
  });

  const corpus = hostileCorpus(key, stranger);
  it.each(corpus.map((c) => [c.name, c] as const))('refuses %s with its reason, as bytes and as text', (_name, c) => {
    expect(reason(withKeys.read(c.value))).toBe(c.reason);
    // as text only where the bytes are UTF-8 (text cannot hold the others)
    if (c.reason !== 'invalid_utf8') expect(reason(withKeys.read(c.value.toString('utf8')))).toBe(c.reason);
  });

  it('the corpus gives every reason of the fixed list, and nothing else', () => {
    expect(new Set(corpus.map((c) => c.reason))).toEqual(new Set(KILL_EVENT_REJECT_REASONS));
  });

  it('never quotes the text in a message, and names the agent_id of a parsed event for the log', () => {
    const secret = 'sk-do-not-log';
    const r = withKeys.read(`{"type":"killswitch.kill-event/v1","reason":"${secret}"`);
    expect(r.ok === false && r.message).toBe('not valid JSON');
    const unsigned = withKeys.read(canonicalJson(killEvent({ agentId: A })));
    expect(unsigned.ok === false && unsigned.agentId).toBe(A);
    const notAnEvent = withKeys.read('{"agent_id":7}');
    expect(notAnEvent.ok === false && 'agentId' in notAnEvent).toBe(false);
    const schema = withKeys.read(canonicalJson({ ...killEvent({ agentId: A }), extra: 1 }));
    expect(schema.ok === false && schema.message).toBe('not a kill event (schemas/kill-event.schema.json): /extra: unknown key');
  });

  it('bounds the UTF-8 size, not the length of the text: 64 KiB exactly is read, one byte more is too_large', () => {
    const padTo = (n: number): string => signed + ' '.repeat(n - signed.length);
    expect(reason(withKeys.read(padTo(MAX_KILL_EVENT_BYTES)))).toBe('ok');
    expect(reason(withKeys.read(Buffer.from(padTo(MAX_KILL_EVENT_BYTES))))).toBe('ok');
    // fewer characters than the bound, more bytes: 'é' is two bytes in UTF-8 (JSON.stringify keeps it raw)
    const wide = JSON.stringify({ ...killEvent({ agentId: A }), reason: 'é'.repeat(40_000) });
    expect(wide.length).toBeLessThan(MAX_KILL_EVENT_BYTES);
    expect(reason(withKeys.read(wide))).toBe('too_large');
    expect(reason(withKeys.read(Buffer.from(wide)))).toBe('too_large');
  });

  it('refuses text holding a lone surrogate as invalid_utf8: it has no UTF-8 form any writer could have stored', () => {
    const lone = signed.replace('"deny_rate_threshold"', '"deny_rate_threshold\ud800"');
    expect(reason(withKeys.read(lone))).toBe('invalid_utf8');
    expect(reason(withoutKeys.read(lone))).toBe('invalid_utf8');
  });

  it('runs the checks in order: size, UTF-8, strict JSON, schema, signature; the first failing one is the reason', () => {
    const notUtf8NotJson = Buffer.from([0x7b, 0xff]);
    expect(reason(withKeys.read(Buffer.concat([notUtf8NotJson, Buffer.alloc(MAX_KILL_EVENT_BYTES, 0x20)])))).toBe('too_large');
    expect(reason(withKeys.read(notUtf8NotJson))).toBe('invalid_utf8');
    // a duplicate key in a document the schema refuses anyway, unsigned
    expect(reason(withKeys.read('{"a":1,"a":2}'))).toBe('duplicate_key');
    expect(reason(withKeys.read(`${'['.repeat(65)}{"a":1,"a":2}${']'.repeat(65)}`))).toBe('too_deep');
    // unsigned and not a kill event: the schema speaks first
    expect(reason(withKeys.read('{"action":"block"}'))).toBe('schema_invalid');
    // a signature without an issuer is a malformed event, not merely an unsigned one
    const { issuer: _i, ...noIssuer } = signedEvent;
    expect(reason(withKeys.read(canonicalJson(noIssuer)))).toBe('schema_invalid');
  });

  it('without trusted keys, signatures are not checked: unsigned and foreign-signed events are read, every other check still applies', () => {
    expect(withoutKeys.checksSignatures).toBe(false);
    const unsigned = killEvent({ agentId: A });
    expect(withoutKeys.read(canonicalJson(unsigned))).toEqual({ ok: true, event: unsigned });
    const foreign = stranger.signer.sign(killEvent({ agentId: A }), false);
    expect(withoutKeys.read(canonicalJson(foreign))).toEqual({ ok: true, event: foreign });
    for (const c of corpus) {
      const expected = (['unsigned', 'unknown_kid', 'jwk_mismatch', 'bad_signature'] as string[]).includes(c.reason) ? 'ok' : c.reason;
      expect(reason(withoutKeys.read(c.value)), c.name).toBe(expected);
    }
  });
});
