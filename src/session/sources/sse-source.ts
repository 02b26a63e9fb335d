/**
 * The block ledger as the service's Server-Sent Events stream (`GET /v1/blocks/stream`): the backlog,
 * `caught-up`, then live events and keep-alive comments. A dropped connection is resumed with
 * `Last-Event-ID`, so nothing is missed and nothing needs re-reading.
 */
import type { LedgerSink, LedgerSource } from '../ledger-source.js';

/** longer than any kill event; a connection sending a longer line is dropped and resumed */
const MAX_LINE = 1 << 20;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

export interface SseSourceOptions {
  /** the service's base URL, e.g. `http://127.0.0.1:8080` */
  readonly url: string;
  /** a bearer token with the viewer role */
  readonly token: string;
}

export class SseLedgerSource implements LedgerSource {
  readonly description: string;
  private abort: AbortController | undefined;
  private lastId = '0';
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly o: SseSourceOptions) {
    this.description = `stream ${new URL('/v1/blocks/stream', o.url).href}`;
  }

  async start(sink: LedgerSink): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    // the first connection's failure is the caller's to see; later ones are retried here
    const first = await this.connect(abort.signal);
    this.loop = this.follow(first, sink, abort.signal);
  }

  private async connect(signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await fetch(new URL('/v1/blocks/stream', this.o.url), {
      headers: { authorization: `Bearer ${this.o.token}`, 'last-event-id': this.lastId, accept: 'text/event-stream' },
      signal,
    });
    if (res.status !== 200 || res.body === null) {
      const text = (await res.text().catch(() => '')).slice(0, 200);
      throw new Error(`${this.description}: HTTP ${res.status} ${text}`);
    }
    return res.body;
  }

  private async follow(body: ReadableStream<Uint8Array>, sink: LedgerSink, signal: AbortSignal): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    let stream: ReadableStream<Uint8Array> | undefined = body;
    while (!signal.aborted) {
      try {
        stream ??= await this.connect(signal);
        backoff = BACKOFF_MIN_MS;
        await this.read(stream, sink, signal);
        if (!signal.aborted) sink.trouble(`${this.description}: the server closed the stream`);
      } catch (err) {
        if (signal.aborted) return;
        sink.trouble((err as Error).message);
      }
      stream = undefined;
      await new Promise((r) => setTimeout(r, backoff).unref());
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  private async read(stream: ReadableStream<Uint8Array>, sink: LedgerSink, signal: AbortSignal): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    let event = 'message';
    let data: string[] = [];
    let id: string | undefined;
    const reader = stream.getReader();
    try {
      while (!signal.aborted) {
        const { value, done } = await reader.read();
        if (done) return;
        sink.alive();
        buffer += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (line === '') {
            if (event === 'kill' && data.length > 0) {
              sink.record(data.join('\n'));
              if (id !== undefined) this.lastId = id;
            } else if (event === 'caught-up') {
              sink.caughtUp();
            }
            event = 'message';
            data = [];
            id = undefined;
          } else if (line.startsWith(':')) {
            // keep-alive comment
          } else {
            const colon = line.indexOf(':');
            const field = colon === -1 ? line : line.slice(0, colon);
            const v = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') data.push(v);
            else if (field === 'event') event = v;
            else if (field === 'id') id = v;
          }
        }
        if (buffer.length > MAX_LINE) throw new Error(`${this.description}: a line longer than ${MAX_LINE} bytes`);
      }
    } finally {
      reader.releaseLock();
      await stream.cancel().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    this.abort = undefined;
    await this.loop.catch(() => undefined);
  }
}
