import { pino } from 'pino';
import type { Logger } from '../../ports/logger.js';

/** JSON logs on stderr (stdout belongs to command output). Secrets are redacted wherever they appear. */
export function createLogger(level: string, name = 'killswitch'): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'privateKey', '*.privateKey'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
