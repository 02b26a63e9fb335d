/**
 * `killswitch run` in embedded mode: decisions from NDJSON files / stdin (and HTTP ingest), kill events
 * and addenda written through the journal to ledger files under data_dir, bad lines to
 * data_dir/dlq.ndjson (docs/spec.md#12-embedded-mode-files).
 *
 * A start takes up where the last run stopped, whatever stopped it: the data_dir lock is a socket the
 * kernel releases with its owner; the ledger files are repaired from the journal (journal.ts); blocks
 * stay in force and chains continue; each input file seen before is resumed after the last position
 * recorded, its windows rebuilt by re-reading what a window still covers (FilePipeline.restore), and
 * an input that changed since (input-identity.ts) is read from its start as a new input.
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { AddendumChains, type KillEvent } from '../core/documents.js';
import { Evaluator, type Trip } from '../core/evaluator.js';
import { Governor } from '../core/governor.js';
import { LedgerFold } from '../core/ledger-fold.js';
import type { Config } from '../config/config.js';
import { lockDataDir } from '../adapters/file/data-dir-lock.js';
import { compareInput, inputPrefix } from '../adapters/file/input-identity.js';
import { completeLines, ledgerPaths, LedgerFileSink, openLedger } from '../adapters/file/ledger-files.js';
import { FilePipeline, type Input, type ResumePoint, resumePoint, streamName } from '../pipeline/file-pipeline.js';
import { tripRuleConfig } from '../pipeline/trip-rule-config.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import { KillSwitchError } from '../core/errors.js';
import { startProgress } from './progress.js';
import { createMetrics } from '../adapters/metrics/metrics.js';
import { EmbeddedMetrics } from './embedded-metrics.js';
import { EmbeddedService } from '../service/embedded-service.js';
import { LedgerFeed } from '../core/ledger-feed.js';
import { closeServer, startApi } from './api.js';

export interface RunOptions {
  readonly config: Config;
  readonly configFile: string;
  readonly inputs: readonly string[];
  readonly signer: Signer | undefined;
  /** keys a ledger document must be signed with; empty = unsigned ledgers are accepted (allow_unsigned) */
  readonly trusted: ReadonlyMap<string, TrustedKey>;
  readonly log: Logger;
  /** human-readable report (stdout) */
  readonly out: NodeJS.WriteStream;
}

/** a progress record at most this often (wall time) while lines are read; trips write their own */
const PROGRESS_EVERY_MS = 1000;

const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * Every INPUT is a readable file before any is read: a missing second input found after the first was
 * processed (and blocks were written) would leave a half-done run to explain. One line per problem.
 */
export function checkInputs(inputs: readonly string[]): void {
  const problems: string[] = [];
  for (const path of inputs) {
    if (path === '-') continue;
    try {
      if (!statSync(path).isFile()) {
        problems.push(`killswitch: ${path}: cannot read input (not a file)`);
        continue;
      }
      accessSync(path, fsConstants.R_OK);
    } catch (err) {
      problems.push(`killswitch: ${path}: cannot read input (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  if (problems.length > 0) throw new KillSwitchError('INPUT_UNREADABLE', problems[0]!.replace(/^killswitch: /, ''), { details: problems });
}

export async function runEmbedded(options: RunOptions): Promise<number> {
  const { config, log, out } = options;
  checkInputs(options.inputs);
  const paths = ledgerPaths(config.data_dir);
  const lock = await lockDataDir(paths.dir);
  const stop = new AbortController();
  const onSignal = (signal: string): void => {
    if (!stop.signal.aborted) log.info({ signal }, 'stopping: finishing the current line, leaving the rest unread');
    stop.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const tripConfig = tripRuleConfig(config);
    const fold = new LedgerFold();
    // the governor's share counts identities with a window: the evaluator's, made just below
    const windows = { tracked: (): number => 0 };
    const governor = tripConfig.governor === undefined ? undefined : new Governor(tripConfig.governor, fold, () => windows.tracked(), tripConfig.windowMs);
    const evaluator = new Evaluator(tripConfig, fold, governor);
    windows.tracked = () => evaluator.trackedIdentities;
    const chains = new AddendumChains();
    // A forged line in our own ledger must not block anyone, nor lift a block: openLedger refuses to start.
    const ledger = openLedger(paths, { trusted: options.trusted });
    for (const file of ledger.repaired) log.warn({ file }, 'cut off a torn last line left by an interrupted write');
    if (ledger.regenerated.kills + ledger.regenerated.addenda > 0) {
      log.warn({ kill_events: ledger.regenerated.kills, addenda: ledger.regenerated.addenda }, 'wrote the kill events and addenda the journal committed but the ledger files lacked (a crash between the writes)');
    }
    if (ledger.unpaired > 0) {
      log.warn({ kill_events: ledger.unpaired }, 'kill events without an addendum, left by an earlier version that had no journal: they cannot be rebuilt');
    }
    for (const ev of ledger.killEvents) {
      evaluator.applyLedger(ev);
      // the minute's admitted blocks carry over, as a run without the restart would have counted them
      if (ev.action === 'block' && ev.trigger === 'deny_rate' && ev.evidence !== undefined) governor?.noteExternal(Date.parse(ev.evidence.window_end));
    }
    for (const a of ledger.addenda) chains.restoreTip(a);

    const ks = config.kill_switch;
    out.write(`killswitch (embedded mode) — kill switch ${ks.enabled ? 'ENABLED' : 'DISABLED (nothing will be blocked)'}: ` +
      `trips at >= ${pct(ks.deny_rate_threshold)} denies over >= ${ks.min_calls} calls in ${ks.window_seconds}s\n`);
    out.write(`ledger: ${paths.kills} (${plural(ledger.killEvents.length, 'kill event')}, ` +
      `${plural(evaluator.ledger.blocked, 'identity', 'identities')} blocked)\n`);
    for (const s of evaluator.ledger.blockedIdentities()) {
      out.write(`  still blocked: ${s.agentId} (epoch ${s.epoch}, since ${s.entry.at ?? '?'})\n`);
    }

    // with the API, decisions may come over HTTP only: stdin is read when asked for, not by default
    const inputs = options.inputs.length > 0 ? options.inputs : config.http === undefined ? ['-'] : [];
    const journal = ledger.journal;
    const resumeOf = new Map<string, ResumePoint>();
    for (const path of new Set([...inputs.filter((p) => p !== '-'), paths.ingest])) {
      const name = streamName(path);
      const recorded = journal.inputs.get(name);
      if (recorded === undefined) continue;
      const now = compareInput(path, recorded);
      if (now === undefined) continue; // unreadable now: reading it says so
      if (now.same) {
        resumeOf.set(name, resumePoint(recorded));
      } else {
        journal.forget(name);
        out.write(`${name} is not the input read before (${now.why}): reading it from its start as a new input\n`);
      }
    }
    if (ledger.fresh && !resumeOf.has(paths.ingest)) {
      // a data_dir an earlier version wrote: its posted decisions were evaluated as they came, and it
      // started every run with empty windows; so does this first start (no window, no old trip again)
      const { bytes, lines } = completeLines(paths.ingest);
      if (bytes > 0) {
        const adopted = { offset: bytes, line: lines, restore_offset: bytes, restore_line: lines, restore_time: null, ...inputPrefix(paths.ingest, bytes) };
        journal.adopt(paths.ingest, adopted);
        resumeOf.set(paths.ingest, resumePoint(adopted));
      }
    }
    // a bad line kept before the crash is kept once: only inputs resumed read those lines again
    for (const name of [...ledger.dlqSeen.keys()]) if (!resumeOf.has(name)) ledger.dlqSeen.delete(name);
    journal.compact();

    const pipelineRef: { p?: FilePipeline } = {};
    const sink = new LedgerFileSink({ paths, ledger, positions: () => pipelineRef.p?.positions() ?? {} });
    const feed = new LedgerFeed();
    for (const ev of ledger.killEvents) feed.append(ev);
    const metrics = createMetrics();
    const counts = new EmbeddedMetrics(metrics, evaluator);
    let lastProgress = Date.now();
    const pipeline = new FilePipeline(evaluator, chains, sink, options.signer, {
      onBadLine: (bad) => {
        log.warn({ file: bad.file, ...(bad.index === undefined ? { line: bad.line } : { index: bad.index }), reason: bad.reason, detail: bad.message }, 'invalid decision skipped');
        sink.writeDlq(bad);
        metrics.dlq.inc({ reason: bad.reason });
      },
      onTrip: (trip, killEvent) => {
        lastProgress = Date.now();
        feed.append(killEvent);
        metrics.trips.inc();
        counts.sync();
        out.write(describeTrip(trip, killEvent, paths.kills));
        log.info({ agent_id: trip.agentId, epoch: trip.epoch, event_id: killEvent.event_id }, 'identity blocked');
      },
      onHeld: (shadow) => {
        metrics.governorHeld.inc({ reason: shadow.reason });
        const denied = `${shadow.evidence.denies} of ${shadow.evidence.calls} calls denied`;
        if (shadow.reason === 'shadow_rule') {
          out.write(`\nSHADOW ${shadow.agent_id}: the shadow rule ${shadow.rule ?? ''} would block it (${denied}); not blocked; shadow event -> ${paths.shadow}\n`);
          log.info({ agent_id: shadow.agent_id, rule: shadow.rule, event_id: shadow.event_id }, 'shadow rule tripped (not enforced)');
          return;
        }
        out.write(`\nHELD ${shadow.agent_id}: would be blocked (${denied}), but the governor holds it (${shadow.reason}); shadow event -> ${paths.shadow}\n`);
        log.warn({ agent_id: shadow.agent_id, reason: shadow.reason, event_id: shadow.event_id }, 'governor engaged: trip held, not blocked');
      },
      onProgress: () => {
        const now = Date.now();
        if (now - lastProgress < PROGRESS_EVERY_MS) return;
        lastProgress = now;
        sink.checkpoint();
      },
    });
    pipelineRef.p = pipeline;
    feed.subscribe((e) => {
      metrics.blocked.set(evaluator.ledger.blocked);
      if (e.event.action === 'unblock') metrics.unblocks.inc();
    });
    const service = new EmbeddedService({ dataDir: config.data_dir, evaluator, chains, sink, signer: options.signer, pipeline, feed, log });
    let ready = false;
    let api: Awaited<ReturnType<typeof startApi>> | undefined;
    const progress = startProgress(process.stderr, () => pipeline.counts);
    let finished = false;
    try {
      // Windows first, for every input seen before; then what each input holds past its position.
      const opened = new Map<string, Input>();
      for (const path of inputs) {
        const name = streamName(path);
        const resume = resumeOf.get(name);
        if (resume === undefined || opened.has(name) || stop.signal.aborted) continue;
        const input = pipeline.openInput(path, resume);
        opened.set(name, input);
        const reread = resume.line > resume.restoreLine ? ` (lines ${resume.restoreLine + 1}-${resume.line} read again to rebuild the windows)` : '';
        out.write(`resuming ${name} after line ${resume.line}${reread}\n`);
        await pipeline.restore(input, resume, journal.clearsFor(name), stop.signal);
      }
      if (!stop.signal.aborted) await service.resume(resumeOf.get(paths.ingest), journal.clearsFor(paths.ingest), stop.signal);
      const restored = { late: evaluator.stats.late, anonymous: evaluator.stats.anonymous };
      counts.baseline(); // what the restore re-read was counted before the restart
      api = config.http === undefined || stop.signal.aborted ? undefined : await startApi(config, service, feed, metrics.registry, () => ready, log);
      for (const path of inputs) {
        if (stop.signal.aborted) break;
        out.write(`reading ${path === '-' ? 'stdin' : path}\n`);
        if (path === '-') {
          await pipeline.processFile(path, stop.signal);
          continue;
        }
        const name = streamName(path);
        const input = opened.get(name) ?? pipeline.openInput(path);
        opened.set(name, input);
        await pipeline.read(input, stop.signal);
        pipeline.closeInput(input);
        counts.sync();
        if (!stop.signal.aborted) sink.checkpoint();
      }
      ready = true;
      const summary = (served: boolean): void => {
        const c = pipeline.counts;
        const st = evaluator.stats;
        out.write(`\n${stop.signal.aborted ? 'stopped' : 'done'}: ${plural(c.decisions, 'decision')} from ${plural(inputs.length, 'input')}${served ? ' and the API' : ''}: ` +
          `${plural(c.trips, 'new block')}${c.held > 0 ? `, ${plural(c.held, 'trip')} held by the governor or shadow rules (${paths.shadow})` : ''}, ${plural(c.invalid, 'invalid line')} skipped${c.invalid > 0 ? ` (kept in ${paths.dlq})` : ''}, ` +
          `${st.late - restored.late} late, ${st.anonymous - restored.anonymous} anonymous\n`);
        if (evaluator.liveEvictions > 0) {
          log.warn({ evicted: evaluator.liveEvictions, last: evaluator.lastLiveEvicted }, 'tracked-identity cap reached: live windows evicted (raise limits.max_tracked_identities)');
          out.write(`warning: ${evaluator.liveEvictions} identities with live windows were evicted at limits.max_tracked_identities\n`);
        }
        const blocked = [...evaluator.ledger.blockedIdentities()];
        out.write(blocked.length === 0 ? 'no identity is blocked\n' : `blocked identities (${blocked.length}):\n`);
        for (const s of blocked) out.write(`  ${s.agentId}  epoch ${s.epoch}, ${s.entry.trigger ?? 'deny_rate'}, since ${s.entry.at ?? '?'}\n`);
        out.write(`kill events: ${paths.kills}\naddenda:     ${paths.addenda}\n`);
      };
      if (api !== undefined && !stop.signal.aborted) {
        out.write(`\nserving the operator API on http://${config.http!.listen} (SIGTERM or Ctrl-C stops); the input files are read\n`);
        await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      }
      const served = api !== undefined;
      if (api !== undefined) await closeServer(api);
      api = undefined;
      await service.mutex.run(() => sink.checkpoint());
      finished = true;
      summary(served);
    } finally {
      progress.stop();
      counts.stop();
      if (api !== undefined) await closeServer(api);
      await service.mutex.run(() => undefined);
      service.close();
      // after a failure the positions are not recorded: the restart reads those lines again
      if (finished) await sink.close();
      else sink.abandon();
    }
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await lock.release();
  }
}

function describeTrip(trip: Trip, killEvent: KillEvent, ledgerFile: string): string {
  const e = trip.evidence;
  const src = 'file' in e.source ? `${e.source.file} lines ${e.source.line_from}-${e.source.line_to}` :
    `${e.source.topic}[${e.source.partition}] offsets ${e.source.offset_from}-${e.source.offset_to}`;
  return `\nBLOCKED ${trip.agentId} (epoch ${trip.epoch})\n` +
    `  ${e.denies} of ${e.calls} calls denied (${pct(e.deny_rate)}${e.advisory_denies > 0 ? `, ${e.advisory_denies} advisory` : ''})` +
    ` in the window ${e.window_start} .. ${e.window_end}\n` +
    `  tripped by decision ${e.tripping_decision_id} at ${killEvent.at}; evidence: ${src}\n` +
    `  kill event ${killEvent.event_id} -> ${ledgerFile}\n`;
}
