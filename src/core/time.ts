/**
 * RFC 3339 date-time parsing to epoch milliseconds, strict and allocation-free. Fractions beyond the
 * millisecond are truncated (floor), so ordering by the result never reorders two distinct millis.
 */

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): no Date object. */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

// The schema's format check and the decoder parse the same string back to back: remember the last one.
let lastText = '';
let lastValue = NaN;

/** Returns epoch ms, or NaN when the text is not an RFC 3339 date-time. */
export function parseRfc3339(s: string): number {
  if (s === lastText) return lastValue;
  const v = parse(s);
  lastText = s;
  lastValue = v;
  return v;
}

function parse(s: string): number {
  if (s.length < 20) return NaN;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59) return NaN;
  if (second < 0 || second > 60) return NaN;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return NaN;
  const t = s.charCodeAt(10);
  if (t !== 84 && t !== 116) return NaN; // 'T' or 't'
  const dim = month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day > dim) return NaN;

  let i = 19;
  let ms = 0;
  if (s.charCodeAt(i) === 46) { // '.'
    i++;
    const start = i;
    while (i < s.length) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      if (i - start < 3) ms = ms * 10 + c; // digits past the millisecond are truncated
      i++;
    }
    for (let k = i - start; k < 3; k++) ms *= 10;
    if (i === start) return NaN;
  }
  let offsetMin = 0;
  const z = s.charCodeAt(i);
  if (z === 90 || z === 122) { // 'Z' or 'z'
    i++;
  } else if (z === 43 || z === 45) { // '+' or '-'
    const oh = digits(s, i + 1, 2);
    const om = digits(s, i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || s.charCodeAt(i + 3) !== 58) return NaN;
    offsetMin = (oh * 60 + om) * (z === 43 ? 1 : -1);
    i += 6;
  } else {
    return NaN;
  }
  if (i !== s.length) return NaN;
  // A leap second (:60) is folded onto the last millisecond of its minute so event order is kept.
  const sec = second === 60 ? 59 : second;
  const extra = second === 60 ? 999 : ms;
  return daysFromCivil(year, month, day) * 86_400_000 + ((hour * 60 + minute - offsetMin) * 60 + sec) * 1000 + extra;
}

/**
 * Why a decision with event time `timeMs` that arrived at `arrivalMs` is not accepted, or null when it
 * may be (docs/spec.md#22-event-time-lateness-and-future-decisions). Stream time is the largest event
 * time seen, so one decision stamped far ahead would make every later decision of its stream late:
 * a decision more than `maxSkewMs` ahead of its arrival is refused before it can move any clock.
 */
export function futureTimestampError(timeMs: number, arrivalMs: number, maxSkewMs: number): string | null {
  if (!(timeMs > arrivalMs + maxSkewMs)) return null;
  return `/occurred_at: ${formatRfc3339(timeMs)} is more than ${maxSkewMs / 1000} s ahead of its arrival at ${formatRfc3339(arrivalMs)} (kill_switch.max_future_skew_seconds)`;
}

export function formatRfc3339(ms: number): string {
  return new Date(ms).toISOString();
}
