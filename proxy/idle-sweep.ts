import { LinkedList, type Linked } from './linked-list.js';

/**
 * Something a sweep watches: stamp `lastActive` with `clock.now` on activity; `expire` runs once it has had none.
 * `prev` and `next` are the sweep's (see linked-list.ts); make them null.
 */
export interface Watched extends Linked<Watched> {
  lastActive: number;
  readonly expire: () => void;
}

/**
 * The time (performance.now(), ms) at the latest tick of any sweep. Activity is stamped from it: a field read per
 * chunk instead of a call for the time.
 */
export const clock = { now: performance.now() };

const MIN_TICK_MS = 10;
const MAX_TICK_MS = 1000;

/** A sweep's tick for a limit: an eighth of it, from 10 ms to 1 s (the sweeps' precision, see below). */
export function tickMsFor(limitMs: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(limitMs / 8)));
}

/**
 * Time-outs by inactivity (connect, idle tunnel) checked by one interval timer per limit instead of a
 * Node timer per socket. A socket's own timer is re-armed on every read and every write (a call into libuv for
 * the time and a move in the timer list) and costs a Timeout and a listener per connection: on the tunnel path,
 * measured on this machine, the per-socket timers cost 3-5 % of the tunnel rate.
 *
 * Precision: a tick is an eighth of the limit (10 ms to 1 s). An entry is expired once it has been inactive for
 * the limit plus one tick (stamps come from a clock up to a tick old), so never early, and at most two ticks late.
 * The timer runs only while entries were watched since its last tick, and does not keep the process alive.
 */
export class IdleSweep {
  private readonly watched = new LinkedList<Watched>();
  private timer: NodeJS.Timeout | null = null;
  private readonly tickMs: number;

  constructor(readonly limitMs: number) {
    this.tickMs = tickMsFor(limitMs);
  }

  /** Starts watching `item` as active now. */
  watch(item: Watched): void {
    if (this.timer === null) {
      clock.now = performance.now();
      this.timer = setInterval(this.tick, this.tickMs);
      this.timer.unref();
    }
    item.lastActive = clock.now;
    this.watched.push(item);
  }

  unwatch(item: Watched): void {
    this.watched.remove(item);
  }

  /** How many entries are watched (for tests and for the gateway's shutdown log). */
  get size(): number {
    return this.watched.size;
  }

  private readonly tick = (): void => {
    const now = performance.now();
    clock.now = now;
    const cutoff = now - this.limitMs - this.tickMs;
    // All taken out first, then expired in the order they were watched: each entry found idle at this tick expires,
    // even if another's expiry unwatches it meanwhile.
    for (const item of this.watched.removeWhere((entry) => entry.lastActive <= cutoff)) item.expire();
    // Stopped here, not in unwatch: a gateway that serves one connection at a time would otherwise start and stop
    // the timer for every connection.
    if (this.watched.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  };
}
