import type { Socket } from 'node:net';
import { LinkedList, type Linked } from './linked-list.js';

export interface IdleUpstreamsOptions {
  /** Idle connections kept per (client, address, port). Default 64: a tool may run that many requests at once. */
  readonly maxPerKey?: number;
  /** Idle connections kept in all. Default 1024. */
  readonly maxTotal?: number;
  /** An idle connection is closed after this long; below the usual server keep-alive of 5 s. Default 4000 ms. */
  readonly idleMs?: number;
}

/**
 * Upstream connections of finished absolute-URI HTTP exchanges, kept for the next request of the same client to
 * the same checked address and port, as Squid's server-side persistent connections are.
 *
 * - Reuse never skips a decision: every request is decided and audited first, and only then may it take a
 *   connection, and only one to the address that decision checked.
 * - Keyed by client: two sandboxes never share an upstream connection, so a response left unread by one (or a
 *   desync it provoked) cannot reach another.
 * - An idle connection that receives a byte, errors, closes or idles out is destroyed and forgotten.
 */
export class IdleUpstreams {
  private readonly maxPerKey: number;
  private readonly maxTotal: number;
  private readonly idleMs: number;
  private readonly byKey = new Map<string, Parked[]>();
  /**
   * Every parked connection. A list whose links are in the records, not a Map from socket to record: a connection
   * is parked and taken once per request, and a Map with an entry added and deleted that often keeps rebuilding its
   * table, whose dropped copies (once old) point at young records that the young-generation collector then takes
   * for live and promotes (`linked-list.ts`). Measured with 64 keep-alive clients of plain HTTP (two workers,
   * `--trace-gc-nvp`, three alternations): 160, 183 and 53 bytes promoted per request with the Map (it depends on
   * when the collections fall), 51-54 with the list (bench/README.md, *Parked upstream connections*).
   */
  private readonly parked = new LinkedList<Parked>();
  private closed = false;

  constructor(options: IdleUpstreamsOptions = {}) {
    this.maxPerKey = options.maxPerKey ?? 64;
    this.maxTotal = options.maxTotal ?? 1024;
    this.idleMs = options.idleMs ?? 4000;
  }

  get size(): number {
    return this.parked.size;
  }

  /** The most recently parked live connection for this key, now the caller's; null when there is none. */
  take(client: string, address: string, port: number): Socket | null {
    const list = this.byKey.get(keyOf(client, address, port));
    for (let record = list?.pop(); record; record = list?.pop()) {
      this.unpark(record);
      const { socket } = record;
      if (!socket.destroyed && socket.readable && socket.writable) return socket;
      socket.destroy();
    }
    return null;
  }

  /** Parks a connection whose exchange ended cleanly; destroys it when it cannot be kept. */
  put(client: string, address: string, port: number, socket: Socket): void {
    const key = keyOf(client, address, port);
    const list = this.byKey.get(key) ?? [];
    if (this.closed || socket.destroyed || !socket.readable || !socket.writable || list.length >= this.maxPerKey || this.parked.size >= this.maxTotal) {
      socket.destroy();
      return;
    }
    const record: Parked = {
      socket,
      drop: () => {
        this.unpark(record);
        const at = list.indexOf(record);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0 && this.byKey.get(key) === list) this.byKey.delete(key);
        socket.destroy();
      },
      prev: null,
      next: null,
    };
    // An upstream that talks while nobody asked is out of step (or hostile): its bytes must never become the
    // start of the next client's response.
    for (const event of ENDS_PARKING) socket.on(event, record.drop);
    socket.setTimeout(this.idleMs);
    this.parked.push(record);
    list.push(record);
    this.byKey.set(key, list);
    // 'data' listeners switch a paused stream to flowing; an idle socket should read (to notice a FIN or junk).
    socket.resume();
  }

  close(): void {
    this.closed = true;
    for (const record of this.parked.toArray()) {
      this.unpark(record);
      record.socket.destroy();
    }
    this.byKey.clear();
  }

  /** Ends a record's parking (its listeners and idle limit); nothing when it has already ended. */
  private unpark(record: Parked): void {
    if (!this.parked.remove(record)) return;
    for (const event of ENDS_PARKING) record.socket.removeListener(event, record.drop);
    record.socket.setTimeout(0);
  }
}

/** A parked connection: what ends its parking early, and its place among all parked ones. */
interface Parked extends Linked<Parked> {
  readonly socket: Socket;
  /** Unparks, forgets and destroys it: anything happening on it while parked. */
  readonly drop: () => void;
}

/** Anything at all happening on a parked connection ends its parking. */
const ENDS_PARKING = ['data', 'end', 'error', 'close', 'timeout'] as const;

const keyOf = (client: string, address: string, port: number): string => `${client} ${address} ${port}`;
