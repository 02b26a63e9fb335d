import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseJsonStrictFast } from '../../../src/adapters/opa/fast-strict-json.js';
import { parseJsonStrict, StrictJsonError } from '../../../src/core/strict-json.js';

type Verdict = { ok: true; value: unknown } | { ok: false; reason: string; message: string };

const verdict = (parse: () => unknown): Verdict => {
  try {
    return { ok: true, value: parse() };
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    return { ok: false, reason: err.reason, message: err.message };
  }
};

const expectSameVerdict = (text: string, maxDepth?: number): Verdict => {
  const fast = verdict(() => parseJsonStrictFast(text, maxDepth));
  expect(fast).toEqual(verdict(() => parseJsonStrict(text, maxDepth === undefined ? {} : { maxDepth })));
  return fast;
};

/** Keys that collide often, some only once unescaped (`a` and `\u0061`), some with escapes that hide a quote. */
const key = fc.constantFrom('a', 'b', 'c', 'decision_id', 'x"y', 'x\\y', '\u00e9', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9', 'k10');

/** JSON texts, some with a repeated key (in small and large objects), some keys written with \u escapes. */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)),
    fc.array(tie('value'), { maxLength: 5 }).map((items) => `[${items.join(',')}]`),
    fc.array(fc.tuple(key, fc.boolean(), tie('value')), { maxLength: 14 }).map((members) => `{${members
      .map(([k, escape, v]) => `${escape ? `"${[...k].map((ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(k)}:${v}`)
      .join(',')}}`),
  ),
})).value;

/** A text with a few of its characters replaced, deleted or inserted: most are no longer JSON. */
const mutated = fc.tuple(jsonText, fc.array(fc.tuple(fc.nat(), fc.constantFrom('{', '}', '[', ']', '"', '\\', ',', ':', 'a', ' ', ''), fc.boolean()), { minLength: 1, maxLength: 3 }))
  .map(([text, edits]) => edits.reduce((t, [at, ch, insert]) => {
    const i = t.length === 0 ? 0 : at % t.length;
    return t.slice(0, i) + ch + t.slice(insert ? i : i + 1);
  }, text));

describe('parseJsonStrictFast gives parseJsonStrict\'s verdict', () => {
  it('on generated JSON texts, with repeated and escaped keys', () => {
    fc.assert(fc.property(jsonText, (text) => {
      expectSameVerdict(text);
    }), { numRuns: 3000 });
  });

  it('on mutated texts (mostly not JSON: unterminated strings, stray backslashes, unbalanced brackets)', () => {
    fc.assert(fc.property(mutated, (text) => {
      expectSameVerdict(text);
    }), { numRuns: 3000 });
  });

  it('on any JSON value, with a small depth bound', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), fc.integer({ min: 1, max: 8 }), (v, maxDepth) => {
      expectSameVerdict(JSON.stringify(v, null, maxDepth % 2 === 0 ? 1 : undefined), maxDepth);
    }), { numRuns: 1000 });
  });

  it('refuses what the spec refuses, wherever it is', () => {
    const reason = (text: string): string | null => {
      const v = expectSameVerdict(text);
      return v.ok ? null : v.reason;
    };
    expect(reason('{"agent_id":"forged","agent_id":"real"}')).toBe('duplicate_key');
    expect(reason('{"a":1,"\\u0061":2}')).toBe('duplicate_key');
    // past the in-place comparison: the tenth key repeats the first
    expect(reason(`{${Array.from({ length: 9 }, (_, i) => `"k${i}":${i}`).join(',')},"k0":9}`)).toBe('duplicate_key');
    expect(reason(`[{"a":1},${'{"b":"\\"","b2":[1,{"c":2}],"a":1},'.repeat(100)}{"a":1,"a":2}]`)).toBe('duplicate_key');
    expect(reason('{"e":{"a":1},"f":{"a":1}}')).toBeNull();
    expect(reason('{"a":"\\"a\\"","b":["a","a"]}')).toBeNull();
    expect(reason('['.repeat(200_000) + ']'.repeat(200_000))).toBe('too_deep');
    expect(reason('{"a":'.repeat(64) + '1' + '}'.repeat(64))).toBeNull();
    expect(reason('{"a":'.repeat(65) + '1' + '}'.repeat(65))).toBe('too_deep');
    expect(reason('{"a')).toBe('invalid_json');
    // the walk runs before JSON.parse, as parseJsonStrict's does; a backslash outside any string does
    // not make the next key an escaped one (unescaping this one, with a raw control character, would throw)
    expect(reason('\\ {"a":1,"a":2}')).toBe('duplicate_key');
    expect(reason('\\ {"a\u0001":1,"a\u0001":2}')).toBe('duplicate_key');
    expect(reason('')).toBe('invalid_json');
  });
});
