import { describe, expect, it } from 'vitest';
import { formatRfc3339, parseRfc3339 } from '../../src/core/time.js';

// RFC 3339 section 5.6 date-time, parsed to epoch ms; fractions truncated to the millisecond.

const JAN_1_2024 = Date.UTC(2024, 0, 1, 0, 0, 0, 0); // 1704067200000

describe('parseRfc3339: valid date-times that Date.parse reads the same way', () => {
  it.each<[string, number]>([
    ['2024-01-01T00:00:00Z', JAN_1_2024],
    ['2024-01-01T00:00:00z', JAN_1_2024],
    ['2024-01-01t00:00:00Z', JAN_1_2024],
    ['2024-01-01t00:00:00z', JAN_1_2024],
    ['2024-01-01T00:00:00+00:00', JAN_1_2024],
    ['2024-01-01T00:00:00-00:00', JAN_1_2024],
    ['2024-01-01T01:00:00+01:00', JAN_1_2024],
    ['2024-01-01T05:30:00+05:30', JAN_1_2024],
    ['2023-12-31T16:00:00-08:00', JAN_1_2024],
    ['2023-12-31T10:15:00-13:45', JAN_1_2024],
    ['2024-01-01T23:59:00+23:59', JAN_1_2024],
    ['2023-12-31T00:01:00-23:59', JAN_1_2024],
    ['2024-01-01T00:00:00.1Z', JAN_1_2024 + 100],
    ['2024-01-01T00:00:00.12Z', JAN_1_2024 + 120],
    ['2024-01-01T00:00:00.123Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.000Z', JAN_1_2024],
    ['2024-01-01T00:00:00.001Z', JAN_1_2024 + 1],
    ['2024-01-01T00:00:00.999Z', JAN_1_2024 + 999],
    ['2024-01-01T00:00:00.1234Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.12345Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.123456Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.1234567Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.12345678Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.123456789Z', JAN_1_2024 + 123],
    ['2024-01-01T00:00:00.123456789+05:30', JAN_1_2024 - 5.5 * 3_600_000 + 123],
    ['2024-02-29T12:00:00Z', Date.UTC(2024, 1, 29, 12)],
    ['2024-02-29T12:00:00-08:00', Date.UTC(2024, 1, 29, 20)],
    ['2000-02-29T00:00:00Z', Date.UTC(2000, 1, 29)],
    ['2024-12-31T23:59:59.999Z', Date.UTC(2024, 11, 31, 23, 59, 59, 999)],
    ['1970-01-01T00:00:00Z', 0],
    ['1969-12-31T23:59:59.999Z', -1],
    ['2038-01-19T03:14:08Z', 2 ** 31 * 1000],
    ['9999-12-31T23:59:59.999Z', Date.UTC(9999, 11, 31, 23, 59, 59, 999)],
    ['0100-01-01T00:00:00Z', Date.UTC(100, 0, 1)],
  ])('%s', (input, ms) => {
    expect(parseRfc3339(input)).toBe(ms);
    expect(Date.parse(input)).toBe(ms);
  });
});

describe('parseRfc3339: fractions are truncated to the millisecond, never rounded', () => {
  it.each<[string, number]>([
    ['.9999', 999],
    ['.99999', 999],
    ['.999999', 999],
    ['.9999999', 999],
    ['.99999999', 999],
    ['.999999999', 999],
    ['.0009', 0],
    ['.0019', 1],
    ['.5', 500],
    ['.05', 50],
    ['.005', 5],
    ['.0005', 0],
    ['.1239', 123],
    ['.000000001', 0],
  ])('%s -> %i ms', (fraction, ms) => {
    const input = `2024-01-01T00:00:00${fraction}Z`;
    expect(parseRfc3339(input)).toBe(JAN_1_2024 + ms);
  });

  it('truncates in the last second of a year without rolling over', () => {
    expect(parseRfc3339('2023-12-31T23:59:59.9999999Z')).toBe(JAN_1_2024 - 1);
  });

  it('truncates fractions longer than 9 digits without rolling into the next second', () => {
    // RFC 3339 puts no bound on the number of fraction digits.
    expect(parseRfc3339('2024-01-01T00:00:00.99999999999999999999Z')).toBe(JAN_1_2024 + 999);
    expect(parseRfc3339('2024-01-01T00:00:00.1239999999999999999999Z')).toBe(JAN_1_2024 + 123);
  });

  it('keeps distinct milliseconds in order', () => {
    const a = parseRfc3339('2024-01-01T00:00:00.0019999Z');
    const b = parseRfc3339('2024-01-01T00:00:00.002Z');
    expect(a).toBe(JAN_1_2024 + 1);
    expect(b).toBe(JAN_1_2024 + 2);
    expect(a).toBeLessThan(b);
  });
});

describe('parseRfc3339: leap seconds', () => {
  it.each<[string, number]>([
    ['2016-12-31T23:59:60Z', Date.UTC(2016, 11, 31, 23, 59, 59, 999)],
    ['2016-12-31T23:59:60.5Z', Date.UTC(2016, 11, 31, 23, 59, 59, 999)],
    ['2016-12-31T23:59:60.000Z', Date.UTC(2016, 11, 31, 23, 59, 59, 999)],
    ['2015-06-30T23:59:60Z', Date.UTC(2015, 5, 30, 23, 59, 59, 999)],
    // The same leap second seen from a -08:00 offset.
    ['2016-12-31T15:59:60-08:00', Date.UTC(2016, 11, 31, 23, 59, 59, 999)],
  ])('%s folds onto :59.999', (input, ms) => {
    expect(parseRfc3339(input)).toBe(ms);
    // Date.parse rejects :60, so it cannot serve as the oracle here.
    expect(Date.parse(input)).toBeNaN();
  });

  it('sorts the leap second after :59 and before the next minute', () => {
    const before = parseRfc3339('2016-12-31T23:59:59.998Z');
    const leap = parseRfc3339('2016-12-31T23:59:60Z');
    const after = parseRfc3339('2017-01-01T00:00:00Z');
    expect(before).toBeLessThan(leap);
    expect(leap).toBeLessThan(after);
    expect(after - leap).toBe(1);
  });
});

describe('parseRfc3339: years below 100 (Date.UTC maps 0..99 to 1900..1999)', () => {
  it.each<[string, number]>([
    // Known values: new Date('0001-01-01T00:00:00Z').getTime() etc.
    ['0001-01-01T00:00:00Z', -62135596800000],
    ['0099-12-31T23:59:59.999Z', -59011459200001],
    ['0000-01-01T00:00:00Z', -62167219200000],
    ['0004-02-29T00:00:00Z', -62035891200000],
    ['0050-06-15T12:30:45.678+01:00', -60574998554322],
  ])('%s', (input, ms) => {
    expect(Date.parse(input)).toBe(ms);
    expect(parseRfc3339(input)).toBe(ms);
    expect(Date.UTC(1, 0, 1)).not.toBe(-62135596800000); // the trap the parser has to avoid
  });

  it('orders year 0099 before year 0100 and 0001 before 0099', () => {
    const y1 = parseRfc3339('0001-01-01T00:00:00Z');
    const y99 = parseRfc3339('0099-12-31T23:59:59.999Z');
    const y100 = parseRfc3339('0100-01-01T00:00:00Z');
    expect(y1).toBeLessThan(y99);
    expect(y99).toBeLessThan(y100);
    expect(y100 - y99).toBe(1);
  });
});

describe('parseRfc3339: invalid forms give NaN', () => {
  it.each<[string, string]>([
    ['empty', ''],
    ['date only', '2024-01-01'],
    ['short, no seconds', '2024-01-01T00:00Z'],
    ['19 chars, no offset', '2024-01-01T00:00:00'],
    ['space instead of T', '2024-01-01 00:00:00Z'],
    ['underscore instead of T', '2024-01-01_00:00:00Z'],
    ['missing offset with fraction', '2024-01-01T00:00:00.123'],
    ['offset without colon', '2024-01-01T00:00:00+0100'],
    ['offset hours only', '2024-01-01T00:00:00+01'],
    ['offset truncated', '2024-01-01T00:00:00+01:0'],
    ['offset sign only', '2024-01-01T00:00:00+'],
    ['offset colon only', '2024-01-01T00:00:00+01:'],
    ['offset hour 24', '2024-01-01T00:00:00+24:00'],
    ['offset minute 60', '2024-01-01T00:00:00+01:60'],
    ['offset with seconds', '2024-01-01T00:00:00+01:00:00'],
    ['named zone', '2024-01-01T00:00:00UTC'],
    ['GMT', '2024-01-01T00:00:00GMT'],
    ['month 13', '2024-13-01T00:00:00Z'],
    ['month 00', '2024-00-01T00:00:00Z'],
    ['day 32', '2024-01-32T00:00:00Z'],
    ['day 00', '2024-01-00T00:00:00Z'],
    ['April 31', '2024-04-31T00:00:00Z'],
    ['2023-02-29 (not a leap year)', '2023-02-29T00:00:00Z'],
    ['1900-02-29 (century, not a leap year)', '1900-02-29T00:00:00Z'],
    ['2024-02-30', '2024-02-30T00:00:00Z'],
    ['hour 24', '2024-01-01T24:00:00Z'],
    ['minute 60', '2024-01-01T00:60:00Z'],
    ['second 61', '2024-01-01T00:00:61Z'],
    ['empty fraction', '2024-01-01T12:00:00.Z'],
    ['fraction without digits or offset', '2024-01-01T12:00:00.'],
    ['comma fraction', '2024-01-01T12:00:00,5Z'],
    ['trailing garbage', '2024-01-01T00:00:00Zx'],
    ['trailing space', '2024-01-01T00:00:00Z '],
    ['leading space', ' 2024-01-01T00:00:00Z'],
    ['trailing newline', '2024-01-01T00:00:00Z\n'],
    ['double Z', '2024-01-01T00:00:00ZZ'],
    ['Z then offset', '2024-01-01T00:00:00Z+01:00'],
    ['offset then garbage', '2024-01-01T00:00:00+01:00x'],
    ['letter in fraction', '2024-01-01T00:00:00.12a3Z'],
    ['one-digit month', '2024-1-01T00:00:00Z'],
    ['one-digit hour', '2024-01-01T0:00:00Z '],
    ['five-digit year', '12024-01-01T00:00:00Z'],
    ['signed year', '+2024-01-01T00:00:00Z'],
    ['negative year', '-0001-01-01T00:00:00Z'],
    ['slashes', '2024/01/01T00:00:00Z'],
    ['dots in time', '2024-01-01T00.00.00Z'],
    ['basic format', '20240101T000000Z'],
    ['no seconds but padded', '2024-01-01T00:00Z    '],
    ['sign in month', '2024-+1-01T00:00:00Z'],
    ['letters', 'xxxx-xx-xxTxx:xx:xxZ'],
    ['epoch number', '1704067200000'],
    ['lowercase other letter', '2024-01-01x00:00:00Z'],
  ])('%s: %j', (_name, input) => {
    expect(parseRfc3339(input)).toBeNaN();
  });
});

describe('formatRfc3339', () => {
  it.each<[number, string]>([
    [0, '1970-01-01T00:00:00.000Z'],
    [JAN_1_2024, '2024-01-01T00:00:00.000Z'],
    [JAN_1_2024 + 123, '2024-01-01T00:00:00.123Z'],
    [-1, '1969-12-31T23:59:59.999Z'],
    [Date.UTC(2024, 1, 29, 12), '2024-02-29T12:00:00.000Z'],
  ])('%i -> %s', (ms, text) => {
    expect(formatRfc3339(ms)).toBe(text);
    expect(parseRfc3339(text)).toBe(ms);
  });

  it('round-trips through parseRfc3339', () => {
    for (let ms = -2e12; ms <= 4e12; ms += 123_456_789_017) {
      expect(parseRfc3339(formatRfc3339(ms))).toBe(ms);
    }
  });
});
