/**
 * Other spellings of a SPIFFE ID that are not valid SPIFFE IDs (docs/spec.md#1-decision-events). A
 * URL parser, a case-insensitive comparison or a path clean-up would read each one as the ID itself,
 * so a guard that looked them up as given, or that normalised them, let a blocked identity through.
 */
import { spiffeIdError } from '../../src/core/spiffe-id.js';

export interface Misspelling {
  /** what was changed, for test names and failure messages */
  readonly what: string;
  readonly id: string;
  /** why it is not a SPIFFE ID: the `detail` of the IDENTITY_INVALID refusal */
  readonly reason: string;
}

/** `id` must have a path of at least two segments: `spiffe://td/a/b...`. */
export function misspellings(id: string): Misspelling[] {
  const m = /^spiffe:\/\/([^/]+)\/([^/]+)\/(.+)$/.exec(id);
  if (m === null) throw new Error(`misspellings: ${id} needs a path of two segments or more`);
  const [, td, first, rest] = m as unknown as [string, string, string, string];
  const last = rest.slice(rest.lastIndexOf('/') + 1);
  const lastStart = id.length - last.length;
  const hex = (c: string): string => `%${c.charCodeAt(0).toString(16)}`;
  const variants: [string, string][] = [
    ['uppercase scheme', `SPIFFE://${td}/${first}/${rest}`],
    ['mixed-case scheme', `Spiffe://${td}/${first}/${rest}`],
    ['uppercase trust domain', `spiffe://${td[0]!.toUpperCase()}${td.slice(1)}/${first}/${rest}`],
    ['all-uppercase trust domain', `spiffe://${td.toUpperCase()}/${first}/${rest}`],
    ['trailing slash', `${id}/`],
    ['empty segment (//)', `spiffe://${td}/${first}//${rest}`],
    ['dot segment (/./)', `spiffe://${td}/${first}/./${rest}`],
    ['dot-dot segment (/../)', `spiffe://${td}/${first}/x/../${rest}`],
    ['percent-encoded path character', `${id.slice(0, lastStart)}${hex(last[0]!)}${last.slice(1)}`],
    ['percent-encoded trust domain character', `spiffe://${hex(td[0]!)}${td.slice(1)}/${first}/${rest}`],
    ['query', `${id}?x`],
    ['fragment', `${id}#x`],
    ['port', `spiffe://${td}:443/${first}/${rest}`],
    ['user info', `spiffe://user@${td}/${first}/${rest}`],
  ];
  return variants.map(([what, spelled]) => {
    const reason = spiffeIdError(spelled);
    if (reason === null) throw new Error(`misspellings: ${spelled} (${what}) is a valid SPIFFE ID`);
    return { what, id: spelled, reason };
  });
}
