/**
 * The long-running embedded service behind the operator API: decisions posted over HTTP, operator
 * blocks and unblocks, and the views operators read. Every change goes through one mutex, so the
 * ledger files, the addendum chains and the windows see one order.
 *
 * Posted decisions are appended to `data_dir/ingest.ndjson` before they are evaluated, and their line
 * numbers there are their positions: a trip's evidence points at lines a regulator can re-derive it from.
 * The file is an input like the others (docs/spec.md#12-embedded-mode-files): a restart rebuilds its
 * windows and evaluates what was appended but not yet evaluated when the process stopped.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AddendumChains, KillEvent } from '../core/documents.js';
import { operatorDocuments } from '../pipeline/trip-documents.js';
import type { Evaluator } from '../core/evaluator.js';
import type { IdentityView, IngestRecord, IngestResult, OperatorAction, OperatorService } from '../ports/operator-service.js';
import { identityView, windowView } from './operator-service.js';
import { KillSwitchError } from '../core/errors.js';
import { ledgerKey } from '../core/ledger-fold.js';
import type { LedgerFileSink } from '../adapters/file/ledger-files.js';
import type { BadLine, FilePipeline, Input, ResumePoint } from '../pipeline/file-pipeline.js';
import { LINE_NOT_UTF8, type DecodeResult } from '../adapters/serde/decision-decoder.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import type { BlocksPage, LedgerFeed } from '../core/ledger-feed.js';
import { Mutex } from '../core/mutex.js';

const MAX_REPORTED_ERRORS = 100;

export interface EmbeddedServiceOptions {
  readonly dataDir: string;
  readonly evaluator: Evaluator;
  readonly chains: AddendumChains;
  readonly sink: LedgerFileSink;
  readonly signer: Signer | undefined;
  readonly pipeline: FilePipeline;
  readonly feed: LedgerFeed;
  readonly log: Logger;
  /** wall clock for operator actions (tests pass their own) */
  readonly now?: () => number;
}

export class EmbeddedService implements OperatorService {
  readonly mutex = new Mutex();
  readonly ingestFile: string;
  private input: Input | undefined;
  private ingestFd: number | undefined;
  private readonly now: () => number;

  constructor(private readonly o: EmbeddedServiceOptions) {
    // the stream is named by its file, as every file stream is, so `verify --decisions` finds the lines
    this.ingestFile = join(o.dataDir, 'ingest.ndjson');
    this.now = o.now ?? Date.now;
  }

  /**
   * Open the ingest stream where the last run left it: with `resume`, its windows are rebuilt from the
   * lines a window still covers (journal.ts's `clears` applied), then the lines appended after the
   * last recorded position are evaluated. Call once, before the first ingest.
   */
  async resume(resume: ResumePoint | undefined, clears: readonly { offset: number; agentId: string }[], signal?: AbortSignal): Promise<void> {
    const exists = existsSync(this.ingestFile);
    if (exists && !endsWithNewline(this.ingestFile)) {
      // a torn last line (a crash mid-append) stays a line of its own; the next append starts a new one
      this.ingestFd = openSync(this.ingestFile, 'a', 0o640);
      writeSync(this.ingestFd, '\n');
      fsyncSync(this.ingestFd);
    }
    const input = this.o.pipeline.openInput(this.ingestFile, resume);
    if (resume !== undefined) await this.o.pipeline.restore(input, resume, clears, signal);
    if (exists) await this.o.pipeline.read(input, signal);
    this.input = input;
  }

  /**
   * Evaluate posted decisions in order; each is first appended to ingest.ndjson (fsynced once per
   * request), except those refused as future_timestamp against the time the request was received:
   * a later read of the file (a restart, `verify --decisions`) must not meet them.
   */
  ingest(records: readonly IngestRecord[]): Promise<IngestResult> {
    const arrival = this.now();
    return this.mutex.run(async () => {
      const input = this.input;
      if (input === undefined) throw new Error('EmbeddedService.resume() must run before ingest()');
      const { pipeline } = this.o;
      const texts = records.map((r) => r.text.replace(/[\r\n]+/g, ' '));
      // what is evaluated is the line as kept in the file, so a restart or `verify --decisions` reads the
      // same: a record's parsed value stands for its text only while the text is kept unchanged
      const decoded = texts.map((t, i): DecodeResult => {
        const r = records[i]!;
        if (r.raw !== undefined) return LINE_NOT_UTF8;
        return pipeline.decodePosted(t, arrival, t === r.text ? r.value : undefined);
      });
      const kept = texts.filter((_, i) => !refusedUnwritten(decoded[i]!));
      if (kept.length > 0) {
        this.ingestFd ??= openSync(this.ingestFile, 'a', 0o640);
        writeSync(this.ingestFd, kept.map((t) => `${t}\n`).join(''));
        fsyncSync(this.ingestFd);
      }
      const before = pipeline.counts.trips;
      const errors: { index: number; reason: string; message: string }[] = [];
      let invalid = 0;
      let start = input.offset;
      let lineNo = input.line;
      for (let i = 0; i < texts.length; i++) {
        const d = decoded[i]!;
        let r: Promise<void> | BadLine | undefined;
        if (refusedUnwritten(d)) {
          r = pipeline.refusePosted(i, records[i]!.raw ?? Buffer.from(texts[i]!), d);
        } else {
          const end = start + Buffer.byteLength(texts[i]!) + 1;
          r = pipeline.processLine(input, texts[i]!, d, ++lineNo, start, end);
          start = end;
        }
        if (r instanceof Promise) await r;
        else if (r !== undefined) {
          invalid++;
          if (errors.length < MAX_REPORTED_ERRORS) errors.push({ index: i, reason: (r).reason, message: (r).message });
        }
      }
      this.o.pipeline.noteTime(input.clock);
      return { accepted: records.length - invalid, invalid, trips: this.o.pipeline.counts.trips - before, errors };
    });
  }

  /** A manual block: a signed kill event (trigger operator) and addendum, then the block is in force. */
  block(a: OperatorAction): Promise<KillEvent> {
    return this.mutex.run(() => {
      const fold = this.o.evaluator.ledger;
      const key = ledgerKey({ agent_id: a.agentId, ...(a.scope === undefined ? {} : { scope: a.scope }) });
      if (fold.isBlocked(key)) throw new KillSwitchError('ALREADY_BLOCKED', `${key} is already blocked (epoch ${fold.get(key)!.epoch})`);
      return this.operatorEvent('block', fold.nextEpoch(key), a);
    });
  }

  /** An unblock: lifts the block of the current epoch and empties the identity's window (docs/spec.md#2-trip-rule). */
  unblock(a: OperatorAction): Promise<KillEvent> {
    return this.mutex.run(() => {
      const key = ledgerKey({ agent_id: a.agentId, ...(a.scope === undefined ? {} : { scope: a.scope }) });
      const state = this.o.evaluator.ledger.get(key);
      if (state?.blocked !== true) throw new KillSwitchError('NOT_BLOCKED', `${key} is not blocked`);
      return this.operatorEvent('unblock', state.epoch, a);
    });
  }

  private async operatorEvent(action: 'block' | 'unblock', epoch: number, a: OperatorAction): Promise<KillEvent> {
    const { chains, evaluator } = this.o;
    const { killEvent, addendum } = operatorDocuments({
      action, agentId: a.agentId, ...(a.scope === undefined ? {} : { scope: a.scope }), epoch, atMs: this.now(), reason: a.reason,
      authorizedBy: a.authorizedBy, settings: evaluator.config.settings,
    }, chains, this.o.signer);
    await this.o.sink.write(killEvent, addendum);
    chains.append(addendum);
    evaluator.applyLedger(killEvent);
    this.o.feed.append(killEvent);
    this.o.log.info({ action, agent_id: a.agentId, scope: a.scope, epoch, authorized_by: a.authorizedBy, reason: a.reason, event_id: killEvent.event_id }, `operator ${action}`);
    return killEvent;
  }

  /** Is this identity, or this scope (`<id>/*`), blocked? */
  isBlocked(key: string): boolean {
    return this.o.evaluator.ledger.isBlocked(key);
  }

  identity(agentId: string): IdentityView {
    const { evaluator, feed, pipeline } = this.o;
    return identityView(agentId, evaluator.ledger, feed, windowView(evaluator, agentId, pipeline.latestTime));
  }

  /** Blocked identities ordered by agent_id, `limit` after the cursor (the last agent_id of the previous page). */
  blocks(limit: number, after: string | undefined): BlocksPage {
    return this.o.feed.blocksPage(this.o.evaluator.ledger, limit, after);
  }

  close(): void {
    if (this.ingestFd !== undefined) closeSync(this.ingestFd);
    this.ingestFd = undefined;
  }
}

/** Empty, or its last byte is a LF. */
function endsWithNewline(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return true;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] === 0x0a;
  } finally {
    closeSync(fd);
  }
}

/**
 * Refused before ingest.ndjson: a decision ahead of the clock (judged against its arrival, which a
 * restart reading the file could not repeat) and a line that is not UTF-8 (which no reader of the
 * file should meet). Kept in the DLQ as a record of the request.
 */
function refusedUnwritten(d: DecodeResult): d is Extract<DecodeResult, { ok: false }> {
  return !d.ok && (d.reason === 'future_timestamp' || d.reason === 'invalid_utf8');
}
