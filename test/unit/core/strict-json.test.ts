import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseJsonStrict, StrictJsonError } from '../../../src/core/strict-json.js';

const reasonOf = (text: string, maxDepth?: number): string | null => {
  try {
    parseJsonStrict(text, maxDepth === undefined ? {} : { maxDepth });
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(StrictJsonError);
    return (err as StrictJsonError).reason;
  }
};

describe('parseJsonStrict', () => {
  it('gives what JSON.parse gives for any JSON without duplicate keys', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
      const text = JSON.stringify(v);
      expect(parseJsonStrict(text)).toEqual(JSON.parse(text));
    }), { numRuns: 500 });
  });

  it('refuses a duplicated key at any depth, also when one spelling is escaped', () => {
    expect(reasonOf('{"agent_id":"forged","agent_id":"real"}')).toBe('duplicate_key');
    expect(reasonOf('{"a":1,"\\u0061":2}')).toBe('duplicate_key');
    expect(reasonOf('{"x":[{"k":1},{"k":2,"k":3}]}')).toBe('duplicate_key');
    expect(reasonOf('{"e":{"a":1},"f":{"a":1}}')).toBeNull(); // the same key in two objects is fine
    expect(reasonOf('{"a":"\\"a\\"","b":["a","a"]}')).toBeNull(); // strings as values are not keys
  });

  it('refuses nesting deeper than the bound without overflowing the stack', () => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    expect(reasonOf(deep)).toBe('too_deep');
    expect(reasonOf('{"a":'.repeat(65) + '1' + '}'.repeat(65))).toBe('too_deep');
    expect(reasonOf('[[[1]]]', 3)).toBeNull();
    expect(reasonOf('[[[[1]]]]', 3)).toBe('too_deep');
  });

  it('reports text that is not JSON as invalid_json', () => {
    expect(reasonOf('{"a":')).toBe('invalid_json');
    expect(reasonOf('{"a')).toBe('invalid_json');
    expect(reasonOf('')).toBe('invalid_json');
  });
});
