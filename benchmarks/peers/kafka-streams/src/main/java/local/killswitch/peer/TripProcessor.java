package local.killswitch.peer;

import java.nio.ByteBuffer;

import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * One instance per task, so per input partition, as `killswitch run` keeps one stream per partition:
 * stream time S is the largest occurred_at seen on the partition (kept in the store under the empty key,
 * which no SPIFFE ID is, so a restarted task continues with it). Per identity the store holds its
 * window as the non-empty buckets of width g in the window, the latch and the epoch.
 *
 * The order of the checks follows section 2 and `Evaluator.accept` in src/core: late -> dropped; S
 * advances; ignored and anonymous decisions stop there; a decision already outside the window counts
 * nowhere; a blocked identity counts nothing (latched until an unblock, which this peer has no input
 * for); otherwise count, evaluate at T = S, and trip.
 */
final class TripProcessor implements Processor<byte[], byte[], String, String> {
  private static final String STREAM_TIME_KEY = "";

  private final TripRule rule;
  private final KillRecords kills;
  private ProcessorContext<String, String> context;
  private KeyValueStore<String, byte[]> store;
  private long streamTime = Long.MIN_VALUE;

  TripProcessor(TripRule rule, KillRecords kills) {
    this.rule = rule;
    this.kills = kills;
  }

  @Override
  public void init(ProcessorContext<String, String> context) {
    this.context = context;
    this.store = context.getStateStore(DenyRateStreams.STORE);
    byte[] s = store.get(STREAM_TIME_KEY);
    if (s != null) streamTime = ByteBuffer.wrap(s).getLong();
  }

  @Override
  public void process(Record<byte[], byte[]> record) {
    DenyRateStreams.RECORDS.increment();
    Decision d = Decision.decode(record.key(), record.value());
    if (d == null) {
      DenyRateStreams.INVALID.increment();
      return;
    }
    long t = d.timeMs;
    if (streamTime != Long.MIN_VALUE && t < streamTime - rule.latenessMs()) {
      DenyRateStreams.LATE.increment();
      return;
    }
    if (t > streamTime) {
      streamTime = t;
      store.put(STREAM_TIME_KEY, ByteBuffer.allocate(8).putLong(t).array());
    }
    if (d.cls == Decision.IGNORED || d.agentId == null) return;
    long cutoff = rule.cutoffBucket(streamTime);
    long bucket = rule.bucketOf(t);
    if (bucket < cutoff) return;

    Window w = Window.decode(store.get(d.agentId));
    if (w.blocked) return;
    w.dropBefore(cutoff);
    w.add(bucket, d.cls);
    int calls = w.total(0);
    int denies = w.total(1);
    if (rule.trips(calls, denies)) {
      w.blocked = true;
      w.epoch++;
      DenyRateStreams.TRIPS.increment();
      context.forward(new Record<>(d.agentId, kills.block(rule, d, w.epoch, streamTime, calls, denies, w.total(2)), record.timestamp()));
    }
    store.put(d.agentId, w.encode());
  }

  /** An identity's window: buckets in ascending order, each with calls, denies (advisory included) and advisory denies. */
  static final class Window {
    boolean blocked;
    int epoch;
    int n;
    long[] bucket;
    int[] counts; // [i * 3 + kind], kind 0 calls, 1 denies, 2 advisory denies

    static Window decode(byte[] bytes) {
      Window w = new Window();
      if (bytes == null) {
        w.bucket = new long[4];
        w.counts = new int[12];
        return w;
      }
      ByteBuffer b = ByteBuffer.wrap(bytes);
      w.blocked = b.get() != 0;
      w.epoch = b.getInt();
      w.n = b.getInt();
      w.bucket = new long[w.n + 1];
      w.counts = new int[(w.n + 1) * 3];
      for (int i = 0; i < w.n; i++) {
        w.bucket[i] = b.getLong();
        w.counts[i * 3] = b.getInt();
        w.counts[i * 3 + 1] = b.getInt();
        w.counts[i * 3 + 2] = b.getInt();
      }
      return w;
    }

    byte[] encode() {
      ByteBuffer b = ByteBuffer.allocate(9 + n * 20);
      b.put((byte) (blocked ? 1 : 0)).putInt(epoch).putInt(n);
      for (int i = 0; i < n; i++) b.putLong(bucket[i]).putInt(counts[i * 3]).putInt(counts[i * 3 + 1]).putInt(counts[i * 3 + 2]);
      return b.array();
    }

    void dropBefore(long cutoff) {
      int k = 0;
      while (k < n && bucket[k] < cutoff) k++;
      if (k == 0) return;
      System.arraycopy(bucket, k, bucket, 0, n - k);
      System.arraycopy(counts, k * 3, counts, 0, (n - k) * 3);
      n -= k;
    }

    void add(long b, int cls) {
      // Decisions arrive nearly in order: look from the newest bucket back.
      int i = n - 1;
      while (i >= 0 && bucket[i] > b) i--;
      if (i < 0 || bucket[i] != b) {
        i++;
        if (n == bucket.length) {
          bucket = java.util.Arrays.copyOf(bucket, n * 2 + 1);
          counts = java.util.Arrays.copyOf(counts, (n * 2 + 1) * 3);
        }
        System.arraycopy(bucket, i, bucket, i + 1, n - i);
        System.arraycopy(counts, i * 3, counts, (i + 1) * 3, (n - i) * 3);
        bucket[i] = b;
        counts[i * 3] = counts[i * 3 + 1] = counts[i * 3 + 2] = 0;
        n++;
      }
      counts[i * 3]++;
      if (cls == Decision.DENY || cls == Decision.ADVISORY_DENY) counts[i * 3 + 1]++;
      if (cls == Decision.ADVISORY_DENY) counts[i * 3 + 2]++;
    }

    int total(int kind) {
      int s = 0;
      for (int i = 0; i < n; i++) s += counts[i * 3 + kind];
      return s;
    }
  }
}
