import { tickMsFor } from './idle-sweep.js';
import { LinkedList, type Linked } from './linked-list.js';

/** A key's place in its `Deadlines`, returned by `add`; hand it to `delete`. */
export interface Deadline<K> extends Linked<Deadline<K>> {
  readonly key: K;
  /** When it falls due (performance.now(), ms). */
  readonly due: number;
}

/**
 * One time limit (a handshake's) for many keys (sockets), checked by one interval timer instead of a Node timer
 * per connection. `socket.setTimeout` costs a Timeout, a listener and a move in the timer list per connection,
 * and its removal as much again. On the CONNECT path, alternating A/B runs measured 2 to 5 µs less CPU per tunnel
 * and 2 to 3 % more tunnels/s (medians of 6 rounds; single rounds drift more than that).
 *
 * Every key has the same limit, so the order keys were added in is the order they fall due: a tick reads only
 * the keys that are due and the first one that is not. The keys are held in a linked list of the entries `add`
 * returns, which the caller gives back to `delete`: a Map from key to deadline, with an entry added and deleted per
 * connection, kept the sockets of every connection alive through the young-generation collections (see
 * linked-list.ts), about 700 bytes promoted per tunnel under the 64-client load.
 * Precision: a tick is an eighth of the limit (10 ms to 1 s). A key expires once its limit has passed, never
 * before, and at most one tick after. The timer runs only while keys are held, and does not keep the process alive.
 */
export class Deadlines<K> {
  private readonly held = new LinkedList<Deadline<K>>();
  private timer: NodeJS.Timeout | null = null;
  private readonly tickMs: number;

  constructor(
    readonly limitMs: number,
    private readonly onExpired: (key: K) => void,
  ) {
    this.tickMs = tickMsFor(limitMs);
  }

  /** Starts the key's limit now. */
  add(key: K): Deadline<K> {
    const deadline: Deadline<K> = { key, due: performance.now() + this.limitMs, prev: null, next: null };
    this.held.push(deadline);
    if (this.timer === null) {
      this.timer = setInterval(this.tick, this.tickMs);
      this.timer.unref();
    }
    return deadline;
  }

  /** The key met its deadline (or went away): it never expires. False when it was not held (expired, deleted). */
  delete(deadline: Deadline<K>): boolean {
    return this.held.remove(deadline);
  }

  /** Whether the deadline is held: its limit runs. */
  has(deadline: Deadline<K>): boolean {
    return this.held.has(deadline);
  }

  /** How many keys are held (for tests). */
  get size(): number {
    return this.held.size;
  }

  private readonly tick = (): void => {
    const now = performance.now();
    // One at a time: an expiry may delete a later deadline, which then does not expire.
    for (let deadline = this.held.first; deadline !== null && deadline.due <= now; deadline = this.held.first) {
      this.held.remove(deadline);
      this.onExpired(deadline.key);
    }
    if (this.held.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  };
}
