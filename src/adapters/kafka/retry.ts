/** Retry a Kafka call while the broker says the error is transient (leader moving, topic just made). */
export async function retrying<T>(fn: () => Promise<T>, attempts = 12, firstDelayMs = 100): Promise<T> {
  let delay = firstDelayMs;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const e = err as { retriable?: boolean; cause?: { retriable?: boolean } };
      if (i >= attempts || !(e.retriable === true || e.cause?.retriable === true)) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }
}
