/** A Logger that keeps what it is told, so a test can assert the log lines a user would see. */
import type { Logger } from '../../src/ports/logger.js';

export interface LogLine {
  level: 'info' | 'warn' | 'error' | 'debug';
  msg: string;
  fields: Record<string, unknown>;
}

export function captureLogger(lines: LogLine[] = [], bindings: object = {}): Logger & { lines: LogLine[] } {
  const at = (level: LogLine['level']) => (obj: object, msg = ''): void => {
    lines.push({ level, msg, fields: { ...bindings, ...obj } });
  };
  return {
    lines,
    info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'),
    child: (b: object) => captureLogger(lines, { ...bindings, ...b }),
  };
}
