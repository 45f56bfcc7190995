import pino, { type Logger, type LevelWithSilent } from 'pino';

/**
 * The application log (not the audit trail): pino JSON on stderr, pretty-printed when a human is watching.
 * stdout stays free for machine output (`--json`, audit lines when no file is configured).
 */
export function createAppLogger(level: LevelWithSilent = 'info', pretty = process.stderr.isTTY): Logger {
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: null }, pino.destination({ dest: 2, sync: true }));
}

export type { Logger };
