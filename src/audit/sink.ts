import { appendFileSync, closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Level, LevelWithSilent } from 'pino';
import { AUDIT_SCHEMA_VERSION, type AuditEvent, type AuditSink, type DecisionEvent, type RunEvent, type SerializedEvent } from './types.js';

export interface AuditOptions {
  /** File to append to (created with its directory), or a file descriptor (1 = stdout). */
  readonly destination: string | number;
  readonly level: LevelWithSilent;
  /** `sandbox.logging.enabled: false` turns the trail off; nothing is written. */
  readonly enabled: boolean;
  /**
   * Told of every write that failed (disk full, I/O error). `record` callers also get the error and refuse what
   * they were about to do; `write` lines (refusals, which need no gate) are lost, and this is how they are noticed.
   */
  readonly onWriteError?: (err: Error) => void;
}

/**
 * pino's level numbers (pino.levels.values). Spelled out so that writing audit lines does not load pino: a
 * `clawbox run` appends its run record and has no other use for it. A unit test holds them equal to pino's.
 */
export const LEVEL_VALUES: Readonly<Record<LevelWithSilent, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/**
 * The audit trail: one pino JSON line per decision and per close. Writes are synchronous, so a line that was
 * logged is in the file even if the process is killed the next instant; pino's asynchronous mode would lose the
 * last buffered lines (pino docs/asynchronous.md). `write` is one write(2) at once; `record` batches the lines of
 * one event-loop turn into one write(2) at the turn's end, and its promise settles after that write, so a caller
 * that awaits it before acting still has its line in the file before the act.
 * Levels: allow → info, deny → warn, upstream errors → error, close → info; `logging.level` filters them.
 */
export function createAuditSink(options: AuditOptions): AuditSink {
  if (!options.enabled) {
    return {
      write: () => undefined,
      record: () => Promise.resolve(),
      recordThen: (_event, done) => queueMicrotask(() => done(null)),
      recordSerialized: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
  }
  const threshold = LEVEL_VALUES[options.level];
  let fd: number;
  if (typeof options.destination === 'number') fd = options.destination;
  else {
    mkdirSync(dirname(options.destination), { recursive: true });
    fd = openSync(options.destination, 'a'); // O_APPEND: whole lines even with several writers (cluster workers)
  }
  let closed = false;
  /** The event's line, or '' when `logging.level` filters it out. */
  const lineFor = (event: AuditEvent, json?: string): string => {
    const level = LEVEL_VALUES[levelOf(event)];
    return level >= threshold ? lineOf(level, event, json) : '';
  };

  // record() and recordThen(): the lines of one event-loop turn, written together when the turn ends; then the
  // batch's callbacks run and its promise (made only if record() asked for one) settles, with the write's error.
  let queued = '';
  let queuedFailure: Error | null = null;
  let flushPending = false;
  let callbacks: ((err: Error | null) => void)[] = [];
  let batch: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | null = null;
  const writeQueued = (): void => {
    if (queued.length === 0) return;
    const failure = tryWrite(queued);
    queuedFailure ??= failure;
    queued = '';
  };
  const flushQueued = (): void => {
    writeQueued();
    const failure = queuedFailure;
    const waiting = callbacks;
    const settling = batch;
    queuedFailure = null;
    callbacks = [];
    batch = null;
    flushPending = false;
    for (const done of waiting) done(failure);
    if (failure) settling?.reject(failure);
    else settling?.resolve();
  };
  /** One write(2); a failure is reported and returned, never thrown: a broken disk must not crash the gateway. */
  const tryWrite = (text: string): Error | null => {
    try {
      writeLine(fd, text);
      return null;
    } catch (err) {
      const failure = err instanceof Error ? err : new Error(String(err));
      options.onWriteError?.(failure);
      return failure;
    }
  };
  const enqueue = (event: AuditEvent, json?: string): void => {
    queued += lineFor(event, json);
    if (!flushPending) {
      flushPending = true;
      setImmediate(flushQueued);
    }
  };

  /** Queues the line with the batch of this turn; the promise settles after the batch's write. */
  const recordBatched = (event: AuditEvent, json: string | undefined): Promise<void> => {
    if (closed) return Promise.resolve();
    enqueue(event, json);
    if (batch === null) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      batch = { promise, resolve, reject };
    }
    return batch.promise;
  };

  return {
    write(event) {
      if (closed) return;
      const line = lineFor(event);
      // Lines already queued are older: they go first, so the file keeps the order events happened in. Their
      // callbacks still wait for the end of the turn, as promised.
      writeQueued();
      if (line.length > 0) tryWrite(line);
    },
    record: (event) => recordBatched(event, undefined),
    recordSerialized: ({ event, json }) => recordBatched(event, json),
    recordThen(event, done) {
      if (closed) {
        queueMicrotask(() => done(null));
        return;
      }
      enqueue(event);
      callbacks.push(done);
    },
    close() {
      if (closed) return Promise.resolve();
      flushQueued();
      closed = true;
      // fd 1/2 belong to the process; only files we opened are ours to close.
      if (typeof options.destination !== 'number') closeSync(fd);
      return Promise.resolve();
    },
  };
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * One write(2) per call, synchronously; a non-blocking pipe (stdout) that is full is waited for, not dropped. A
 * file opened O_APPEND takes the whole buffer in one write, so batched lines do not interleave with other writers.
 */
function writeLine(fd: number, line: string): void {
  let buffer: Buffer | null = null;
  let text: string | null = line;
  for (;;) {
    try {
      const written = text !== null ? writeSync(fd, text) : writeSync(fd, buffer!);
      const total = text !== null ? Buffer.byteLength(text) : buffer!.length;
      if (written >= total) return;
      buffer = (buffer ?? Buffer.from(text!)).subarray(written);
      text = null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/**
 * pino's line, written by hand (same fields, same order: level, time, v, the event, msg); JSON.stringify of the
 * event is V8's fast path, and there is no pino machinery per line. Putting decision and close lines together field
 * by field was tried twice and measured no faster (alternating A/B runs of the gateway): V8 serialises the object
 * into one flat string, where a template of a dozen pieces builds a tree of string parts to flatten at the write.
 */
function lineOf(level: number, event: AuditEvent | RunEvent, json?: string): string {
  const body = json ?? JSON.stringify(event);
  const msg = event.event === 'decision' ? 'egress decision' : event.event === 'close' ? 'egress close' : 'sandbox run';
  return `{"level":${level},"time":"${isoNow()}","v":${AUDIT_SCHEMA_VERSION},${body.slice(1, -1)},"msg":"${msg}"}\n`;
}

let isoSecond = -1;
let isoPrefix = '';
/**
 * The time in pino's isoTime format. The text up to the second is made once per second and the milliseconds are
 * appended: a Date formatted anew every millisecond showed in the profile at about 1 µs per line.
 */
function isoNow(): string {
  const ms = Date.now();
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20); // "2026-11-27T07:40:12."
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

function levelOf(event: AuditEvent | RunEvent): Level {
  if (event.event === 'run') return event.exit_code !== 0 || event.timed_out || event.oom_killed ? 'warn' : 'info';
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
 * The runner's lines (what it saw of a sandbox, and one per run), appended to the trail the gateway writes: the
 * same line format, one O_APPEND write(2) per line, no descriptor kept open between runs (a library caller may
 * run thousands).
 */
export function appendToTrail(destination: string | number, level: LevelWithSilent, events: readonly (AuditEvent | RunEvent)[]): void {
  const threshold = LEVEL_VALUES[level];
  const lines = events
    .map((event) => ({ event, value: LEVEL_VALUES[levelOf(event)] }))
    .filter(({ value }) => value >= threshold)
    .map(({ event, value }) => lineOf(value, event));
  if (lines.length === 0) return;
  if (typeof destination === 'number') {
    for (const line of lines) writeLine(destination, line);
    return;
  }
  mkdirSync(dirname(destination), { recursive: true });
  for (const line of lines) appendFileSync(destination, line);
}

/** An in-memory sink for tests and for programs that consume events directly. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  write(event: AuditEvent): void {
    this.events.push(event);
  }
  record(event: AuditEvent): Promise<void> {
    this.events.push(event);
    return Promise.resolve();
  }
  recordThen(event: AuditEvent, done: (err: Error | null) => void): void {
    this.events.push(event);
    queueMicrotask(() => done(null));
  }
  /** Also holds the caller to its promise: a line whose JSON is not its event's is a bug, and throws here. */
  recordSerialized({ event, json }: SerializedEvent): Promise<void> {
    const expected = JSON.stringify(event);
    if (json !== expected) throw new Error(`serialized audit event differs from its event:\n  made     ${json}\n  expected ${expected}`);
    return this.record(event);
  }
  decisions(): DecisionEvent[] {
    return this.events.filter((e): e is DecisionEvent => e.event === 'decision');
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
