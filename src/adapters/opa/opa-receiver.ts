/**
 * The receiver of Open Policy Agent decision logs (`POST /v1/opa/logs`, docs/opa.md). OPA uploads a
 * gzip-compressed JSON array of events and sends the whole batch again until it gets a 2xx, so:
 *
 * - a batch is answered 2xx only after `service.ingest` has returned, which is the point where posted
 *   decisions are durable (embedded: appended to `data_dir/ingest.ndjson`, fsynced and evaluated;
 *   Kafka: produced to the decisions topic in one transaction). Anything thrown before is a non-2xx,
 *   and OPA retries the batch;
 * - a retried batch must not count twice. The evaluator forgets a re-delivered `decision_id` once its
 *   identity has had 8 more calls (docs/spec.md#23-de-duplication), and one batch can hold hundreds of
 *   one identity's decisions, so the receiver keeps its own bounded LRU of the OPA `decision_id`s it
 *   has handed over and skips them. Embedded mode seeds it at start from the tail of ingest.ndjson, so
 *   a crash between the fsync and the answer is covered too. In Kafka mode the ids are produced to the
 *   opa-ids topic with the decisions (`IngestOptions.opaIds`), every instance follows that topic into
 *   its memory (`SharedDecisionIds`), and a batch is mapped only once what the topic holds has been
 *   read: a retry to a restarted or another instance is covered as well (docs/opa.md, "Retries and
 *   de-duplication");
 * - batches are handled one at a time, so a retry that arrives while its first attempt is still being
 *   written waits for it and then finds its ids remembered.
 *
 * Events that give no decision are counted (`killswitch_opa_events_total{outcome}`) and kept in the
 * DLQ: they are handed to the service as a record that is not a decision (`{"opa_unmapped": {reason,
 * message}, "opa_event": <the event>}`), which the service refuses as `schema_invalid` and keeps with
 * its bytes like any bad posted record (docs/spec.md#8-bad-records-and-the-dlq).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { LRUCache } from 'lru-cache';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../ports/logger.js';
import type { IngestRecord, OperatorService, SharedDecisionIds } from '../../ports/operator-service.js';
import { KillSwitchError } from '../../core/errors.js';
import { Mutex } from '../../core/mutex.js';
import { ScanMapping, UNMAPPED_REASONS, type OpaMapping, type UnmappedReason } from './opa-mapping.js';
import { scanArray, type ScannedArray } from './opa-scan.js';

const gunzipAsync = promisify(gunzip);

/** Longest decision_id a decision may have (docs/spec.md, decision events). */
const MAX_ID_CHARS = 128;

/**
 * How the receiver remembers an OPA decision_id: as it is, or, when it is longer than any decision's
 * may be (such an event is refused anyway), by its SHA-256. So what is remembered, and produced to the
 * opa-ids topic in Kafka mode, stays small however long an id OPA sends.
 */
export function memoryKey(id: string): string {
  return id.length <= MAX_ID_CHARS ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}

export const DEFAULT_DEDUP_SIZE = 100_000;
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 16 << 20;
const MAX_REPORTED_ERRORS = 100;
const METRIC = 'killswitch_opa_events_total';

export class OpaBodyError extends Error {
  constructor(readonly kind: 'too_large' | 'bad_gzip', message: string) {
    super(message);
    this.name = 'OpaBodyError';
  }
}

/**
 * Output chunk of the inflater. With zlib's default (16 KiB) an OPA upload (32 KiB of gzip, ~500 KiB of
 * JSON) went back and forth between the thread pool and the event loop 30 times, which cost more than
 * inflating it (0.9 ms against 0.35 ms, per upload); with 256 KiB it still took two trips and a copy of
 * the pieces into one buffer. 1 MiB holds an upload of OPA's default size in one piece.
 */
const GUNZIP_CHUNK = 1 << 20;

/** gunzip, refusing more than `max` bytes of output (a zip bomb stops at `max`, it is never inflated whole). */
export async function gunzipBounded(body: Buffer, max: number): Promise<Buffer> {
  try {
    return await gunzipAsync(body, { maxOutputLength: max, chunkSize: GUNZIP_CHUNK });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new OpaBodyError('too_large', `the batch is larger than opa.max_decompressed_bytes (${max}) once decompressed`);
    }
    throw new OpaBodyError('bad_gzip', `the body is not valid gzip: ${(err as Error).message}`);
  }
}

export interface OpaError {
  /** the event's index in the batch */
  readonly index: number;
  readonly decision_id: string | null;
  readonly reason: string;
  readonly message: string;
}

export interface OpaAnswer {
  /** events in the batch */
  readonly events: number;
  /** decisions the service accepted */
  readonly accepted: number;
  /** events kept in the DLQ: unmapped ones and decisions the service refused */
  readonly invalid: number;
  /** events skipped: their decision_id was handed over before (a retried batch) */
  readonly duplicates: number;
  /** events of a path not in opa.paths */
  readonly ignored: number;
  /** new blocks (embedded mode); null in Kafka mode */
  readonly trips: number | null;
  readonly errors: readonly OpaError[];
}

export interface OpaReceiverOptions {
  readonly service: OperatorService;
  readonly mapping: OpaMapping;
  readonly registry: Registry;
  readonly log: Logger;
  readonly dedupSize?: number;
  readonly maxDecompressedBytes?: number;
  /** decision ids already handed over (oldest first), e.g. recentDecisionIds(ingest.ndjson) */
  readonly seed?: Iterable<string>;
  /** Kafka mode: the ids every instance took, read before each batch is mapped */
  readonly shared?: SharedDecisionIds;
}

const OUTCOMES = ['mapped', 'duplicate', 'ignored_path', ...UNMAPPED_REASONS] as const;
type Outcome = (typeof OUTCOMES)[number];

export class OpaReceiver {
  readonly maxDecompressedBytes: number;
  private readonly seen: LRUCache<string, true>;
  private readonly mutex = new Mutex();
  private readonly events: Counter<'outcome'>;
  private readonly scan: ScanMapping;

  constructor(private readonly o: OpaReceiverOptions) {
    this.scan = new ScanMapping(o.mapping);
    this.maxDecompressedBytes = o.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES;
    this.seen = new LRUCache({ max: o.dedupSize ?? DEFAULT_DEDUP_SIZE });
    for (const id of o.seed ?? []) this.seen.set(id, true);
    o.shared?.onIds((ids) => {
      for (const id of ids) this.seen.set(id, true);
    });
    // one registry may serve more than one API server (tests): the counter is shared, not registered twice
    this.events = (o.registry.getSingleMetric(METRIC) as Counter<'outcome'> | undefined)
      ?? new Counter({ name: METRIC, help: 'OPA decision-log events received, by outcome (mapped, duplicate, ignored_path, or why no decision was made)', labelNames: ['outcome'] as const, registers: [o.registry] });
    // every outcome from the start, at 0: an alert on the rate of an unmapped outcome needs the series to exist
    for (const outcome of OUTCOMES) this.events.inc({ outcome }, 0);
  }

  /** decision ids remembered */
  get remembered(): number {
    return this.seen.size;
  }

  /**
   * An upload's decompressed body (valid UTF-8), checked as a strict JSON document and read where the
   * mapping reads (opa-scan.ts); null when it is not an array. Throws StrictJsonError when it is not strict JSON.
   */
  read(body: Buffer): ScannedArray | null {
    return scanArray(body, this.scan.pointers);
  }

  /** Map, de-duplicate and hand over one batch (`read`); resolves once the service has taken it (durably). */
  accept(batch: ScannedArray): Promise<OpaAnswer> {
    return this.mutex.run(() => this.acceptNow(batch));
  }

  private async acceptNow(batch: ScannedArray): Promise<OpaAnswer> {
    if (this.o.shared !== undefined) {
      try {
        await this.o.shared.catchUp();
      } catch (err) {
        this.o.log.error({ err: (err as Error).message }, 'opa: the decision ids the instances took could not be read; the batch is refused, OPA sends it again');
        throw new KillSwitchError('INGEST_UNAVAILABLE', 'the OPA decision ids already taken could not be read (Kafka mode); nothing was taken, send the batch again', { cause: err });
      }
    }
    const records: IngestRecord[] = [];
    /** per record: its event's index, id and, for an unmapped event, why */
    const meta: { index: number; id: string | null; unmapped?: { reason: UnmappedReason; message: string } }[] = [];
    const ids = new Set<string>();
    const counts = new Map<Outcome, number>();
    const count = (o: Outcome): void => {
      counts.set(o, (counts.get(o) ?? 0) + 1);
    };
    let duplicates = 0;
    let ignored = 0;
    for (let index = 0; index < batch.length; index++) {
      const r = this.scan.map(batch, index);
      const key = r.decisionId === null ? null : memoryKey(r.decisionId);
      if (key !== null && (this.seen.has(key) || ids.has(key))) {
        duplicates++;
        count('duplicate');
        continue;
      }
      if (r.kind === 'ignored_path') {
        ignored++;
        count('ignored_path');
        continue;
      }
      if (key !== null) ids.add(key);
      if (r.kind === 'mapped') {
        // the service decodes the decision itself and keeps its text: nothing is parsed twice
        records.push({ text: r.text ?? JSON.stringify(r.decision), value: r.decision });
        meta.push({ index, id: r.decisionId });
        count('mapped');
      } else {
        // not a decision (no decision_id, decision or occurred_at at the top): refused as schema_invalid,
        // kept in the DLQ with the event as OPA sent it
        const unmapped = { reason: r.reason, message: r.message };
        records.push({ text: `{"opa_unmapped":${JSON.stringify(unmapped)},"opa_event":${batch.text(index)}}` });
        meta.push({ index, id: r.decisionId, unmapped });
        count(r.reason);
      }
    }
    const result = records.length === 0 ? { accepted: 0, invalid: 0, trips: 0, errors: [] } : await this.o.service.ingest(records, { opaIds: [...ids] });
    // durable from here on: a retry of this batch is a duplicate
    for (const id of ids) this.seen.set(id, true);
    for (const [outcome, n] of counts) this.events.inc({ outcome }, n);
    const errors = result.errors.slice(0, MAX_REPORTED_ERRORS).map((e): OpaError => {
      const m = meta[e.index]!;
      return { index: m.index, decision_id: m.id, reason: m.unmapped?.reason ?? e.reason, message: m.unmapped?.message ?? e.message };
    });
    const unmapped = meta.filter((m) => m.unmapped !== undefined).length;
    if (unmapped > 0) this.o.log.warn({ events: batch.length, unmapped }, 'opa: decision-log events that give no decision were kept in the DLQ');
    return { events: batch.length, accepted: result.accepted, invalid: result.invalid, duplicates, ignored, trips: result.trips, errors };
  }
}

/**
 * The decision ids of the last lines of an NDJSON file (a decision's `decision_id`, or an unmapped
 * event's `opa_event.decision_id`), oldest first: what a restarted embedded receiver has already
 * handed over. Reads at most `maxBytes` from the end; a missing file has none.
 */
export function recentDecisionIds(file: string, maxBytes: number): string[] {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return [];
  }
  const length = Math.min(size, maxBytes);
  const buf = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const lines = buf.toString('utf8').split('\n');
  // the first line may be cut in the middle when the file is longer than maxBytes
  if (length < size) lines.shift();
  const ids: string[] = [];
  for (const line of lines) {
    if (!line.includes('decision_id')) continue;
    try {
      const v = JSON.parse(line) as { decision_id?: unknown; opa_event?: { decision_id?: unknown } };
      const id = v.decision_id ?? v.opa_event?.decision_id;
      if (typeof id === 'string' && id !== '') ids.push(memoryKey(id));
    } catch {
      // a bad line is in the DLQ already; it names no id we handed over
    }
  }
  return ids;
}
