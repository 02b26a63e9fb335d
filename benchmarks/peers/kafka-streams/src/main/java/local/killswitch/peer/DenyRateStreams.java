package local.killswitch.peer;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.LongAdder;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueBytesStoreSupplier;
import org.apache.kafka.streams.state.Stores;

/**
 * The deny-rate trip rule of docs/spec.md section 2 as a Kafka Streams application, for the side-by-side
 * benchmark in benchmarks/peers: reads the decisions topic, keeps a sliding window per SPIFFE identity in
 * a state store, and writes a signed kill record to the output topic when an identity trips. Exactly-once
 * (processing.guarantee=exactly_once_v2), one stream thread unless told otherwise.
 *
 * Options (all --name value): brokers, input, output, application-id, state-dir (required); threads (1),
 * store (memory | rocksdb; memory), commit-interval-ms (Kafka Streams' default: 100 under exactly-once),
 * window-seconds (300), threshold (0.9), min-calls (10), resolution-ms (ceil(window / 60)),
 * lateness-seconds (5).
 *
 * Prints one JSON line on stdout when the application is RUNNING ({"state":"RUNNING"}) and one when it
 * stops ({"state":"STOPPED", "records":..., "trips":..., ...}). SIGTERM closes it cleanly.
 */
public final class DenyRateStreams {
  static final String STORE = "deny-rate-windows";

  /** Counters over every task of this process. */
  static final LongAdder RECORDS = new LongAdder();
  static final LongAdder TRIPS = new LongAdder();
  static final LongAdder INVALID = new LongAdder();
  static final LongAdder LATE = new LongAdder();

  private DenyRateStreams() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> o = options(argv);
    String brokers = required(o, "brokers");
    String input = required(o, "input");
    String output = required(o, "output");
    String appId = required(o, "application-id");
    String stateDir = required(o, "state-dir");
    int windowSeconds = Integer.parseInt(o.getOrDefault("window-seconds", "300"));
    long windowMs = windowSeconds * 1000L;
    TripRule rule = new TripRule(
        windowMs,
        Long.parseLong(o.getOrDefault("resolution-ms", Long.toString((windowMs + 59) / 60))),
        Long.parseLong(o.getOrDefault("lateness-seconds", "5")) * 1000L,
        Integer.parseInt(o.getOrDefault("min-calls", "10")),
        Double.parseDouble(o.getOrDefault("threshold", "0.9")),
        windowSeconds);

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(o.getOrDefault("threads", "1")));
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    if (o.containsKey("commit-interval-ms")) p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(o.get("commit-interval-ms")));
    Files.createDirectories(Path.of(stateDir));

    KeyValueBytesStoreSupplier supplier = "rocksdb".equals(o.getOrDefault("store", "memory"))
        ? Stores.persistentKeyValueStore(STORE)
        : Stores.inMemoryKeyValueStore(STORE);
    StreamsBuilder builder = new StreamsBuilder();
    // Changelogged (the Kafka Streams default) and cached: what makes the windows survive a restart.
    builder.addStateStore(Stores.keyValueStoreBuilder(supplier, Serdes.String(), Serdes.ByteArray()).withCachingEnabled());
    builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
        .process(() -> new TripProcessor(rule, new KillRecords()), STORE)
        .to(output, Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(builder.build(), p);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) line("{\"state\":\"RUNNING\"}");
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) stopped.countDown();
    });
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(30));
      line(String.format("{\"state\":\"STOPPED\",\"records\":%d,\"trips\":%d,\"invalid\":%d,\"late\":%d}",
          RECORDS.sum(), TRIPS.sum(), INVALID.sum(), LATE.sum()));
    }));
    streams.start();
    stopped.await();
  }

  static synchronized void line(String s) {
    System.out.println(s);
    System.out.flush();
  }

  private static Map<String, String> options(String[] argv) {
    Map<String, String> o = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw new IllegalArgumentException("usage: --name value ...; at " + argv[i]);
      o.put(argv[i].substring(2), argv[++i]);
    }
    return o;
  }

  private static String required(Map<String, String> o, String name) {
    String v = o.get(name);
    if (v == null) throw new IllegalArgumentException("--" + name + " is required");
    return v;
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
