import { appendFileSync, mkdirSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Level, type LevelWithSilent } from 'pino';
import { AUDIT_SCHEMA_VERSION, type AuditEvent, type AuditSink, type RunEvent } from './types.js';

export interface AuditOptions {
  /** File to append to (created with its directory), or a file descriptor (1 = stdout). */
  readonly destination: string | number;
  readonly level: LevelWithSilent;
  /** `sandbox.logging.enabled: false` turns the trail off; nothing is written. */
  readonly enabled: boolean;
}

/**
 * The audit trail: one pino JSON line per decision and per close. Writes are synchronous (one write(2) per
 * line) so a line that was logged is in the file even if the process is killed the next instant; pino's
 * asynchronous mode would lose the last buffered lines (pino docs/asynchronous.md).
 * Levels: allow → info, deny → warn, upstream errors → error, close → info; `logging.level` filters them.
 */
export function createAuditSink(options: AuditOptions): AuditSink {
  if (!options.enabled) return { write: () => undefined, close: () => Promise.resolve() };
  const stream = pino.destination({ dest: options.destination, sync: true, mkdir: true });
  const logger = pino(
    {
      level: options.level,
      base: { v: AUDIT_SCHEMA_VERSION },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
    },
    stream,
  );
  let closed = false;
  return {
    write(event) {
      if (!closed) logger[levelOf(event)](event, event.event === 'decision' ? 'egress decision' : 'egress close');
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      // fd 1/2 belong to the process; only files we opened are ours to close.
      if (typeof options.destination === 'number') return Promise.resolve();
      return new Promise((resolve) => {
        stream.flushSync();
        stream.once('close', () => resolve());
        stream.end();
      });
    },
  };
}

function levelOf(event: AuditEvent): Level {
  if (event.event === 'close') return 'info';
  switch (event.decision) {
    case 'allow':
      return 'info';
    case 'deny':
      return 'warn';
    case 'error':
      return 'error';
  }
}

/**
 * The runner's line per run, appended to the same trail the gateway writes: same pino line format, one
 * O_APPEND write(2), no descriptor kept open between runs (a library caller may run thousands).
 */
export function writeRunRecord(destination: string | number, level: LevelWithSilent, event: RunEvent): void {
  const failed = event.exit_code !== 0 || event.timed_out || event.oom_killed;
  const lineLevel = failed ? 'warn' : 'info';
  if (pino.levels.values[lineLevel] < (pino.levels.values[level] ?? Infinity)) return;
  const line = JSON.stringify({
    level: pino.levels.values[lineLevel],
    time: new Date().toISOString(),
    v: AUDIT_SCHEMA_VERSION,
    ...event,
    msg: 'sandbox run',
  });
  if (typeof destination === 'number') writeSync(destination, `${line}\n`);
  else {
    mkdirSync(dirname(destination), { recursive: true });
    appendFileSync(destination, `${line}\n`);
  }
}

/** An in-memory sink for tests and for programs that consume events directly. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  write(event: AuditEvent): void {
    this.events.push(event);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
