import type { Socket } from 'node:net';

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
  private readonly byKey = new Map<string, Socket[]>();
  private readonly forget = new Map<Socket, () => void>();
  private closed = false;

  constructor(options: IdleUpstreamsOptions = {}) {
    this.maxPerKey = options.maxPerKey ?? 64;
    this.maxTotal = options.maxTotal ?? 1024;
    this.idleMs = options.idleMs ?? 4000;
  }

  get size(): number {
    return this.forget.size;
  }

  /** The most recently parked live connection for this key, now the caller's; null when there is none. */
  take(client: string, address: string, port: number): Socket | null {
    const list = this.byKey.get(keyOf(client, address, port));
    for (let socket = list?.pop(); socket; socket = list?.pop()) {
      this.unpark(socket);
      if (!socket.destroyed && socket.readable && socket.writable) return socket;
      socket.destroy();
    }
    return null;
  }

  /** Parks a connection whose exchange ended cleanly; destroys it when it cannot be kept. */
  put(client: string, address: string, port: number, socket: Socket): void {
    const key = keyOf(client, address, port);
    const list = this.byKey.get(key) ?? [];
    if (this.closed || socket.destroyed || !socket.readable || !socket.writable || list.length >= this.maxPerKey || this.forget.size >= this.maxTotal) {
      socket.destroy();
      return;
    }
    const drop = (): void => {
      this.unpark(socket);
      const at = list.indexOf(socket);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0 && this.byKey.get(key) === list) this.byKey.delete(key);
      socket.destroy();
    };
    // An upstream that talks while nobody asked is out of step (or hostile): its bytes must never become the
    // start of the next client's response.
    for (const event of ENDS_PARKING) socket.on(event, drop);
    socket.setTimeout(this.idleMs);
    this.forget.set(socket, () => {
      for (const event of ENDS_PARKING) socket.removeListener(event, drop);
      socket.setTimeout(0);
    });
    list.push(socket);
    this.byKey.set(key, list);
    // 'data' listeners switch a paused stream to flowing; an idle socket should read (to notice a FIN or junk).
    socket.resume();
  }

  close(): void {
    this.closed = true;
    for (const socket of [...this.forget.keys()]) {
      this.unpark(socket);
      socket.destroy();
    }
    this.byKey.clear();
  }

  private unpark(socket: Socket): void {
    const detach = this.forget.get(socket);
    if (!detach) return;
    this.forget.delete(socket);
    detach();
  }
}

/** Anything at all happening on a parked connection ends its parking. */
const ENDS_PARKING = ['data', 'end', 'error', 'close', 'timeout'] as const;

const keyOf = (client: string, address: string, port: number): string => `${client} ${address} ${port}`;
