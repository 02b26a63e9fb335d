/** Progress of a long read on stderr, only when stderr is a terminal (never in pipes, files or CI logs). */
import type { PipelineCounts } from '../pipeline/file-pipeline.js';

/** Interval between updates; KILLSWITCH_PROGRESS_INTERVAL_MS overrides it (tests use a short one). */
const INTERVAL_MS = Number(process.env.KILLSWITCH_PROGRESS_INTERVAL_MS ?? 1000) || 1000;

export function startProgress(stream: NodeJS.WriteStream, counts: () => PipelineCounts): { stop(): void } {
  if (stream.isTTY !== true) return { stop: () => undefined };
  const started = performance.now();
  let shown = false;
  const timer = setInterval(() => {
    const c = counts();
    const secs = (performance.now() - started) / 1000;
    const rate = Math.round(c.lines / Math.max(secs, 0.001));
    stream.write(`\r\x1b[K${c.lines.toLocaleString('en-US')} lines, ${rate.toLocaleString('en-US')}/s, ` +
      `${c.trips} trips, ${c.invalid} invalid`);
    shown = true;
  }, INTERVAL_MS);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      if (shown) stream.write('\r\x1b[K');
    },
  };
}
