/**
 * The block ledger as a file (embedded mode's `data_dir/kills.ndjson`, or a snapshot copied to an
 * air-gapped host): read from the start, then polled for appended lines. A file that shrinks or is
 * replaced is read again from its start; the ledger fold does not care about order or repeats.
 */
import { open, stat } from 'node:fs/promises';
import type { LedgerSink, LedgerSource } from '../ledger-source.js';

const CHUNK = 4 << 20;
/** longer than any kill event; a line beyond it is skipped up to its newline, not held in memory */
export const MAX_LINE_BYTES = 1 << 20;

export class FileLedgerSource implements LedgerSource {
  readonly description: string;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private ino = -1;
  private offset = 0;
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private skippingLongLine = false;
  private caughtUp = false;
  private polling: Promise<void> = Promise.resolve();

  constructor(private readonly path: string, private readonly pollMs = 200) {
    this.description = `file ${path}`;
  }

  async start(sink: LedgerSink): Promise<void> {
    // a (re)start reads the whole file again and reports when it has: the fold does not mind repeats
    this.stopped = false;
    this.ino = -1;
    this.caughtUp = false;
    this.polling = this.poll(sink);
    await this.polling;
  }

  private schedule(sink: LedgerSink): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.polling = this.poll(sink);
    }, this.pollMs);
    this.timer.unref();
  }

  private async poll(sink: LedgerSink): Promise<void> {
    try {
      const st = await stat(this.path);
      if (st.ino !== this.ino || st.size < this.offset) {
        this.ino = st.ino;
        this.offset = 0;
        this.partial = [];
        this.partialBytes = 0;
        this.skippingLongLine = false;
      }
      if (st.size > this.offset) await this.readTo(st.size, sink);
      sink.alive();
      if (!this.caughtUp) {
        this.caughtUp = true;
        sink.caughtUp();
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      sink.trouble(e.code === 'ENOENT' ? `${this.path} does not exist` : `${this.path}: ${e.message}`);
    }
    this.schedule(sink);
  }

  private async readTo(size: number, sink: LedgerSink): Promise<void> {
    const fh = await open(this.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - this.offset));
      while (this.offset < size && !this.stopped) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - this.offset), this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.split(buf.subarray(0, bytesRead), sink);
        sink.alive(); // a long read is contact too, not silence
      }
    } finally {
      await fh.close();
    }
  }

  /** Deliver the complete lines of a chunk; keep a trailing partial line (an append in progress) for later. */
  private split(chunk: Buffer, sink: LedgerSink): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.skippingLongLine) {
        this.skippingLongLine = false;
        continue;
      }
      const line = this.partialBytes === 0 ? piece : Buffer.concat([...this.partial, piece]);
      this.partial = [];
      this.partialBytes = 0;
      // the bytes, not text: a line that is not UTF-8 is refused as such, never read with U+FFFD in it
      if (line.length > 0) sink.record(line);
    }
    if (start < chunk.length && !this.skippingLongLine) {
      this.partial.push(Buffer.from(chunk.subarray(start)));
      this.partialBytes += chunk.length - start;
      if (this.partialBytes > MAX_LINE_BYTES) {
        this.partial = [];
        this.partialBytes = 0;
        this.skippingLongLine = true;
        sink.rejected('too_large', `${this.path}: a line longer than ${MAX_LINE_BYTES} bytes was skipped`);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.polling;
  }
}
