/** kafkajs behind one small factory, logging through our logger (kafkajs's own logger is silenced). */
import type { Kafka, LogEntry } from 'kafkajs';
import kafkajs from './kafkajs.js';

const { logLevel } = kafkajs;
import type { Logger } from '../../ports/logger.js';

export function createKafka(brokers: readonly string[], clientId: string, log: Logger): Kafka {
  const kafkaLog = log.child({ component: 'kafkajs' });
  return new kafkajs.Kafka({
    clientId,
    brokers: [...brokers],
    logLevel: logLevel.WARN,
    logCreator: () => ({ level, log: entry }: LogEntry) => {
      const { message, ...rest } = entry;
      // kafkajs logs expected rebalance chatter at WARN/ERROR; keep it out of info, never drop an error.
      if (level <= logLevel.ERROR) kafkaLog.warn({ ...rest }, message);
      else kafkaLog.debug({ ...rest }, message);
    },
    retry: { initialRetryTime: 100, retries: 8 },
  });
}
