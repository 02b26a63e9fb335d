/**
 * `killswitch replay` output: kill events as NDJSON on stdout in input order, addenda to a file when
 * `--addenda OUT` is given. Lines are canonical JSON, so the same input gives the same bytes.
 */
import { KillSwitchError } from '../../core/errors.js';
import { closeSync, openSync, writeSync } from 'node:fs';
import { canonicalJson } from '../../core/canonical-json.js';
import type { KillEvent, ShadowEvent, TraceAddendum } from '../../core/documents.js';
import type { TripSink } from '../../ports/trip-sink.js';

export class ReplaySink implements TripSink {
  private readonly addendaFd: number | undefined;

  constructor(addendaFile: string | undefined) {
    try {
      this.addendaFd = addendaFile === undefined ? undefined : openSync(addendaFile, 'w', 0o644);
    } catch (err) {
      throw new KillSwitchError('USAGE', `replay: --addenda ${addendaFile}: cannot write it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }

  write(killEvent: KillEvent, addendum: TraceAddendum): Promise<void> {
    process.stdout.write(canonicalJson(killEvent) + '\n'); // synchronous for files and pipes on Linux
    if (this.addendaFd !== undefined) writeSync(this.addendaFd, canonicalJson(addendum) + '\n');
    return Promise.resolve();
  }

  /** Held trips are not kill events: stdout keeps only what a run would block; they are reported on stderr. */
  writeShadow(event: ShadowEvent): Promise<void> {
    process.stderr.write(`held by the governor (${event.reason}): ${event.agent_id} at ${event.at}, ${event.evidence.denies} of ${event.evidence.calls} calls denied; not blocked\n`);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.addendaFd !== undefined) closeSync(this.addendaFd);
    return Promise.resolve();
  }
}
