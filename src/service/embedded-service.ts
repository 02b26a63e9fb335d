/**
 * The long-running embedded service behind the operator API: decisions posted over HTTP, operator
 * blocks and unblocks, and the views operators read. Every change goes through one mutex, so the
 * ledger files, the addendum chains and the windows see one order.
 *
 * Posted decisions are appended to `data_dir/ingest.ndjson` before they are evaluated, and their line
 * numbers there are their positions: a trip's evidence points at lines a regulator can re-derive it from.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AddendumChains, KillEvent } from '../core/documents.js';
import { operatorDocuments } from '../pipeline/trip-documents.js';
import type { Evaluator, StreamClock } from '../core/evaluator.js';
import { identityView, windowView, type IdentityView, type IngestRecord, type IngestResult, type OperatorAction, type OperatorService } from './operator-service.js';
import { KillSwitchError } from '../core/errors.js';
import { ledgerKey } from '../core/ledger-fold.js';
import type { LedgerFileSink } from '../adapters/file/ledger-files.js';
import type { FilePipeline } from '../pipeline/file-pipeline.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import type { BlocksPage, LedgerFeed } from './ledger-feed.js';
import { Mutex } from './mutex.js';

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
  private readonly ingestClock: StreamClock;
  private ingestFd: number | undefined;
  private ingestLines: number;
  private readonly now: () => number;

  constructor(private readonly o: EmbeddedServiceOptions) {
    this.ingestFile = join(o.dataDir, 'ingest.ndjson');
    // the stream is named by its file, as every file stream is, so `verify --decisions` finds the lines
    this.ingestClock = o.evaluator.openStream(this.ingestFile, { file: this.ingestFile });
    const existing = existsSync(this.ingestFile) ? readFileSync(this.ingestFile) : Buffer.alloc(0);
    this.ingestLines = countLines(existing);
    if (existing.length > 0 && existing[existing.length - 1] !== 10) {
      // a torn last line (a crash mid-append) stays a line of its own; the next append starts a new one
      this.ingestFd = openSync(this.ingestFile, 'a', 0o640);
      writeSync(this.ingestFd, '\n');
    }
    this.now = o.now ?? Date.now;
  }

  /** Evaluate posted decisions in order; each is first appended to ingest.ndjson (fsynced once per request). */
  ingest(records: readonly IngestRecord[]): Promise<IngestResult> {
    return this.mutex.run(async () => {
      this.ingestFd ??= openSync(this.ingestFile, 'a', 0o640);
      const first = this.ingestLines + 1;
      writeSync(this.ingestFd, records.map((r) => `${r.text.replace(/[\r\n]+/g, ' ')}\n`).join(''));
      fsyncSync(this.ingestFd);
      this.ingestLines += records.length;
      const before = this.o.pipeline.counts.trips;
      const errors: { index: number; reason: string; message: string }[] = [];
      let invalid = 0;
      for (let i = 0; i < records.length; i++) {
        const r = this.o.pipeline.processLine(this.ingestClock, records[i]!.text, undefined, first + i);
        if (r instanceof Promise) await r;
        else if (r !== undefined) {
          invalid++;
          if (errors.length < MAX_REPORTED_ERRORS) errors.push({ index: i, reason: (r).reason, message: (r).message });
        }
      }
      this.o.pipeline.noteTime(this.ingestClock);
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

  /** An unblock: lifts the block of the current epoch and empties the identity's window (CONTRACTS.md section 2). */
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

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  if (buf.length > 0 && buf[buf.length - 1] !== 10) n++;
  return n;
}
