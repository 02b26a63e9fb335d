/**
 * `killswitch run` in embedded mode: decisions from NDJSON files / stdin, kill events and addenda
 * appended (fsynced) to ledger files under data_dir, bad lines to data_dir/dlq.ndjson. At start the
 * ledger is read back: blocked identities stay blocked and addendum chains continue.
 */
import { AddendumChains, type KillEvent } from '../core/documents.js';
import { Evaluator, type Trip } from '../core/evaluator.js';
import type { Config } from '../config/config.js';
import { lockDataDir } from '../adapters/file/data-dir-lock.js';
import { ledgerPaths, LedgerFileSink, readLedger } from '../adapters/file/ledger-files.js';
import { FilePipeline } from '../pipeline/file-pipeline.js';
import { tripRuleConfig } from '../pipeline/trip-rule-config.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import { checkSignature } from '../adapters/signing/ed25519-signer.js';
import type { TrustedKey } from '../adapters/signing/keys.js';
import { KillSwitchError } from '../core/errors.js';
import { startProgress } from './progress.js';
import { createMetrics } from '../adapters/metrics/metrics.js';
import { EmbeddedService } from '../service/embedded-service.js';
import { LedgerFeed } from '../service/ledger-feed.js';
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

const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

export async function runEmbedded(options: RunOptions): Promise<number> {
  const { config, log, out } = options;
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
    const evaluator = new Evaluator(tripRuleConfig(config));
    const chains = new AddendumChains();
    const ledger = readLedger(paths);
    for (const file of ledger.repaired) log.warn({ file }, 'cut off a torn last line left by an interrupted write');
    if (options.trusted.size > 0) {
      // A forged line in our own ledger must not block anyone, nor lift a block: refuse to start.
      const check = (docs: readonly object[], file: string, what: string): void => {
        docs.forEach((doc, i) => {
          const r = checkSignature(doc as Record<string, unknown>, options.trusted);
          if (!r.ok) throw new KillSwitchError('LEDGER_CORRUPT', `${file}: ${what} #${i + 1} is not trusted (${r.code}: ${r.message})`);
        });
      };
      check(ledger.killEvents, paths.kills, 'kill event');
      check(ledger.addenda, paths.addenda, 'addendum');
    }
    for (const ev of ledger.killEvents) evaluator.applyLedger(ev);
    for (const a of ledger.addenda) chains.restoreTip(a);

    const ks = config.kill_switch;
    out.write(`killswitch (embedded mode) — kill switch ${ks.enabled ? 'ENABLED' : 'DISABLED (nothing will be blocked)'}: ` +
      `trips at >= ${pct(ks.deny_rate_threshold)} denies over >= ${ks.min_calls} calls in ${ks.window_seconds}s\n`);
    out.write(`ledger: ${paths.kills} (${plural(ledger.killEvents.length, 'kill event')}, ` +
      `${plural(evaluator.ledger.blocked, 'identity', 'identities')} blocked)\n`);
    for (const s of evaluator.ledger.blockedIdentities()) {
      out.write(`  still blocked: ${s.agentId} (epoch ${s.epoch}, since ${s.entry.at ?? '?'})\n`);
    }

    const sink = new LedgerFileSink(paths);
    const feed = new LedgerFeed();
    for (const ev of ledger.killEvents) feed.append(ev);
    const metrics = createMetrics();
    metrics.blocked.set(evaluator.ledger.blocked);
    const pipeline = new FilePipeline(evaluator, chains, sink, options.signer, {
      onBadLine: (bad) => {
        log.warn({ file: bad.file, line: bad.line, reason: bad.reason, detail: bad.message }, 'invalid decision skipped');
        sink.writeDlq(bad);
        metrics.dlq.inc({ reason: bad.reason });
      },
      onTrip: (trip, killEvent) => {
        feed.append(killEvent);
        metrics.trips.inc();
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
    });
    feed.subscribe(() => metrics.blocked.set(evaluator.ledger.blocked));
    const service = new EmbeddedService({ dataDir: config.data_dir, evaluator, chains, sink, signer: options.signer, pipeline, feed, log });
    let ready = false;
    const api = config.http === undefined ? undefined : await startApi(config, service, feed, metrics.registry, () => ready, log);
    const progress = startProgress(process.stderr, () => pipeline.counts);
    // with the API, decisions may come over HTTP only: stdin is read when asked for, not by default
    const inputs = options.inputs.length > 0 ? options.inputs : api === undefined ? ['-'] : [];
    try {
      for (const input of inputs) {
        if (stop.signal.aborted) break;
        out.write(`reading ${input === '-' ? 'stdin' : input}\n`);
        await pipeline.processFile(input, stop.signal);
      }
      ready = true;
      const summary = (): void => {
        const c = pipeline.counts;
        const st = evaluator.stats;
        out.write(`\n${stop.signal.aborted ? 'stopped' : 'done'}: ${plural(c.decisions, 'decision')} from ${plural(inputs.length, 'input')}${api === undefined ? '' : ' and the API'}: ` +
          `${plural(c.trips, 'new block')}${c.held > 0 ? `, ${plural(c.held, 'trip')} held by the governor or shadow rules (${paths.shadow})` : ''}, ${plural(c.invalid, 'invalid line')} skipped${c.invalid > 0 ? ` (kept in ${paths.dlq})` : ''}, ` +
          `${st.late} late, ${st.anonymous} anonymous\n`);
        if (evaluator.liveEvictions > 0) {
          log.warn({ evicted: evaluator.liveEvictions, last: evaluator.lastLiveEvicted }, 'tracked-identity cap reached: live windows evicted (raise limits.max_tracked_identities)');
          out.write(`warning: ${evaluator.liveEvictions} identities with live windows were evicted at limits.max_tracked_identities\n`);
        }
        const blocked = [...evaluator.ledger.blockedIdentities()];
        out.write(blocked.length === 0 ? 'no identity is blocked\n' : `blocked identities (${blocked.length}):\n`);
        for (const s of blocked) out.write(`  ${s.agentId}  epoch ${s.epoch}, ${s.entry.trigger ?? 'deny_rate'}, since ${s.entry.at ?? '?'}\n`);
        out.write(`kill events: ${paths.kills}\naddenda:     ${paths.addenda}\n`);
      };
      if (api === undefined || stop.signal.aborted) {
        summary();
      } else {
        out.write(`\nserving the operator API on http://${config.http!.listen} (SIGTERM or Ctrl-C stops); the input files are read\n`);
        await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
        summary();
      }
    } finally {
      progress.stop();
      if (api !== undefined) await closeServer(api);
      await service.mutex.run(() => undefined);
      service.close();
      await sink.close();
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
