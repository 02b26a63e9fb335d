// Types for cluster.mjs (plain JavaScript so it runs without a build step), for TypeScript callers
// such as test/setup/kafka-global.ts.

export declare const KAFKA_VERSION: string;
export declare const APICURIO_VERSION: string;

export interface RunningKafka {
  /** bootstrap servers, e.g. "127.0.0.1:40123" */
  brokers: string;
  port: number;
  logFile: string;
  tempDir: string;
  stop: () => Promise<void>;
  /** milliseconds spent fetching jars (0 when cached), formatting, starting, warming up */
  timings: { fetchMs: number; formatMs: number; startMs: number; warmUpMs: number; totalMs: number };
}

export interface RunningSchemaRegistry {
  /** Confluent-compatible API base, e.g. "http://127.0.0.1:40124/apis/ccompat/v7" */
  url: string;
  port: number;
  logFile: string;
  tempDir: string;
  stop: () => Promise<void>;
  timings: { fetchMs: number; startMs: number; totalMs: number };
}

export interface StartKafkaOptions {
  version?: string;
  port?: number;
  controllerPort?: number;
  /** path of the java binary (17+); found on PATH, JAVA_HOME or /usr/lib/jvm otherwise */
  java?: string;
  timeoutMs?: number;
  /** log4j root level (default WARN, or KAFKA_LOG_LEVEL) */
  logLevel?: string;
  /** keep the temp dir (data, logs) after stop (default: KAFKA_KEEP_TEMP=1) */
  keepTemp?: boolean;
  /** max heap, default "1g" */
  heap?: string;
  /** extra or overriding broker settings */
  serverProperties?: Record<string, string>;
  /** create the transaction and offsets topics before returning (default true; needs kafkajs) */
  warmUp?: boolean;
}

export interface StartSchemaRegistryOptions {
  version?: string;
  port?: number;
  /** path of the java binary (21+ for Apicurio 3.2+) */
  java?: string;
  timeoutMs?: number;
  keepTemp?: boolean;
}

export declare function startKafka(options?: StartKafkaOptions): Promise<RunningKafka>;
export declare function startSchemaRegistry(options?: StartSchemaRegistryOptions): Promise<RunningSchemaRegistry>;
/** Path of kcat; installs the Debian package when missing (needs root); throws if it cannot. */
export declare function ensureKcat(): string;
/** Fetches (once) and returns the directory of the broker's jars. */
export declare function ensureKafkaLibs(version?: string): Promise<string>;
/** Fetches and unpacks (once) and returns the directory holding quarkus-run.jar. */
export declare function ensureApicurio(version?: string): Promise<string>;
export declare function findJava(minMajor: number, explicit?: string): string;
