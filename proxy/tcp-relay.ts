/**
 * The tunnels' native data path (`proxy/native/tcp-relay.c`): the upstream dialed and the bytes relayed both ways
 * without a node:net socket for the upstream and without JavaScript per chunk, or, where the native part is not
 * built or not wanted, node:net as before (`tunnel.ts`).
 *
 * Why: per tunnel, the node:net upstream socket (its construction, connect, stream machinery and destroy) and the
 * relay's stream events were about 40 µs of the ~190 µs of CPU a minimal Node CONNECT proxy spends (measured here on
 * node-floor, bench/README.md, *Tunnels relayed natively*). What stays in TypeScript: parsing the CONNECT and SOCKS5
 * handshakes, the decision and its audit lines, the address dialed (the checked one), the SNI check of the client's
 * first bytes, and every time-out.
 */
import { constants } from 'node:os';
import type { Socket } from 'node:net';
import { ClawboxError } from '../src/errors.js';
import type { IpAddress } from '../src/net/types.js';
import { loadNativeAddon } from './native-addon.js';

/** How tunnels reach their upstream: the native relay, or node:net sockets and streams. */
export type TcpRelayKind = 'native' | 'node';

/**
 * `CLAWBOX_TCP_RELAY`: `node` makes the gateway relay tunnels through node:net even where the native part is built
 * (to compare the two, or to set the native part aside); unset or `native` is the default.
 */
export function tcpRelayOf(value: string | undefined): TcpRelayKind {
  if (value === undefined || value === '' || value === 'native') return 'native';
  if (value === 'node') return 'node';
  throw new ClawboxError('CONFIG_INVALID', `CLAWBOX_TCP_RELAY must be "native" or "node", not ${JSON.stringify(value)}`);
}

/** What `proxy/native/tcp-relay.c` exports. */
interface NativeTcpRelay {
  open(events: Float64Array, onEvents: (count: number) => void): void;
  dial(family: number, address: string, port: number): number;
  start(id: number, clientFd: number): number;
  pass(id: number, head: Buffer | null): number;
  abort(id: number, counts: Float64Array): number;
  idleMs(id: number): number;
  moved(id: number): number;
  local(id: number): [string, number];
  readonly MAX_EVENTS: number;
  readonly EVENT_STRIDE: number;
  readonly EV_CONNECTED: number;
  readonly EV_CLOSED: number;
  readonly SLOT_BITS: number;
}

/** An errno as the code node:net would report it (`ECONNREFUSED`), for audit lines and the upstream-failure map. */
const errnoCodes = new Map<number, string>(Object.entries(constants.errno).map(([code, errno]) => [errno, code]));
function codeOf(errno: number): string {
  return errnoCodes.get(errno) ?? `errno ${errno}`;
}

/** Bytes a tunnel moved: up, from the client to the upstream; down, the other way. */
export interface RelayedBytes {
  readonly up: number;
  readonly down: number;
}

/** How a relayed tunnel ended by itself: its bytes, and the error code if a socket failed (else undefined). */
export type RelayClosed = (bytes: RelayedBytes, error: string | undefined) => void;

/** A tunnel the native part relays: who hears its end, and its client (for `bytesMovedBy`). */
interface Relaying {
  readonly closed: RelayClosed;
  readonly client: Socket;
  readonly fd: number;
}

/** The client socket's libuv handle: its descriptor, and its reads to stop. node:net has no public accessor. */
interface StreamHandle {
  readonly fd: number;
  readStop(): number;
  reading: boolean;
}

function streamHandleOf(socket: Socket): StreamHandle | null {
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (handle === undefined || handle === null || typeof handle.fd !== 'number' || handle.fd < 0 || typeof handle.readStop !== 'function') return null;
  return handle as StreamHandle;
}

/**
 * Per-tunnel state in an array indexed by the slot in the tunnel's id, not in a Map. A Map with an entry added and
 * deleted per tunnel, thousands a second, is rebuilt as it goes, and a table it drops keeps its entries and a link
 * to its successor; once such a table is old enough to be in the old generation, it is garbage that points at
 * young callbacks, and the young-generation collector, which takes every old-to-young pointer for a live one, kept
 * them and the sockets they hold, then promoted them (see linked-list.ts for the same with Sets). The native part
 * reuses freed slots first, so the arrays stay as long as the most tunnels open at once.
 * A slot's entry is taken before the slot holds another tunnel's: an end is read, and its entry taken, in the call
 * that reports it; a tunnel dialed meanwhile (only JavaScript dials) reaches `relaying` only when its own connect is
 * reported, in a later burst.
 */
class BySlot<T> {
  private readonly ids: number[] = [];
  private readonly values: (T | null)[] = [];
  private count = 0;

  constructor(private readonly slotMask: number) {}

  get size(): number {
    return this.count;
  }

  set(id: number, value: T): void {
    const slot = id & this.slotMask;
    while (this.values.length <= slot) {
      this.values.push(null);
      this.ids.push(0);
    }
    if (this.values[slot] === null) this.count += 1;
    this.ids[slot] = id;
    this.values[slot] = value;
  }

  /** The value set for `id`; null when there is none. */
  get(id: number): T | null {
    const slot = id & this.slotMask;
    return this.ids[slot] === id ? (this.values[slot] ?? null) : null;
  }

  /** The value set for `id`, now taken out; null when there is none (never set, taken, or a later tunnel's slot). */
  take(id: number): T | null {
    const slot = id & this.slotMask;
    const value = this.values[slot] ?? null;
    if (value === null || this.ids[slot] !== id) return null;
    this.values[slot] = null;
    this.count -= 1;
    return value;
  }
}

/**
 * One process's native relay: every tunnel's upstream and its relay, reporting connections made and tunnels ended
 * in bursts. Ids are the native part's: valid from `dial` until the tunnel's end is reported or `abort` is called.
 */
export class TcpRelay {
  private readonly events: Float64Array;
  private readonly counts = new Float64Array(2);
  private readonly connecting: BySlot<(error: string | null) => void>;
  private readonly relaying: BySlot<Relaying>;
  /** The id relaying each client descriptor (node:net's, the one `start` was given), 0 for none. */
  private readonly idByFd: number[] = [];

  constructor(private readonly native: NativeTcpRelay) {
    this.events = new Float64Array(native.MAX_EVENTS * native.EVENT_STRIDE);
    const slotMask = 2 ** native.SLOT_BITS - 1;
    this.connecting = new BySlot(slotMask);
    this.relaying = new BySlot(slotMask);
    native.open(this.events, this.onEvents);
  }

  /** Tunnels dialing or relaying (for tests and the shutdown log). */
  get size(): number {
    return this.connecting.size + this.relaying.size;
  }

  /**
   * Starts connecting to `ip`:`port`: the id, or the error code of a connect that failed at once. `connected`
   * runs once, later, with null or the error code; not after `abort(id)`.
   */
  dial(ip: IpAddress, port: number, connected: (error: string | null) => void): number | string {
    const id = this.native.dial(ip.family, ip.text, port);
    if (id < 0) return codeOf(-id);
    this.connecting.set(id, connected);
    return id;
  }

  /**
   * Relays the upstream's bytes to `client` from now on; the client's own bytes wait for `pass`. Node stops reading
   * the socket only at `pass`: until then the caller reads its first bytes. Null, or why it could not start.
   */
  start(id: number, client: Socket, closed: RelayClosed): string | null {
    const handle = streamHandleOf(client);
    if (handle === null) return 'the client socket has no descriptor';
    const result = this.native.start(id, handle.fd);
    if (result < 0) return codeOf(-result);
    this.relaying.set(id, { closed, client, fd: handle.fd });
    while (this.idByFd.length <= handle.fd) this.idByFd.push(0);
    this.idByFd[handle.fd] = id;
    return null;
  }

  /**
   * Hands the client's reads to the native part: `head` (the bytes read so far) goes up first, then what node:net
   * still buffered, then the socket's own. Null, or why it could not.
   */
  pass(id: number, client: Socket, head: Buffer): string | null {
    const handle = streamHandleOf(client);
    if (handle === null) return 'the client socket has no descriptor';
    client.pause();
    const buffered: Buffer[] = [];
    for (let chunk = client.read() as Buffer | null; chunk !== null; chunk = client.read() as Buffer | null) buffered.push(chunk);
    handle.readStop();
    // node:net's own flag: left true, its _read never starts the handle again (a paused stream still calls it).
    handle.reading = true;
    const bytes = buffered.length === 0 ? head : Buffer.concat([head, ...buffered]);
    const result = this.native.pass(id, bytes.length === 0 ? null : bytes);
    return result < 0 ? codeOf(-result) : null;
  }

  /** Ends a tunnel now (its sockets closed, no report to come): the bytes it moved. */
  abort(id: number): RelayedBytes {
    this.connecting.take(id);
    this.forget(id);
    if (this.native.abort(id, this.counts) < 0) return { up: 0, down: 0 };
    return { up: this.counts[0], down: this.counts[1] };
  }

  /**
   * Bytes the native part moved for `client` so far, 0 when it relays nothing for it (for the accept steering's busy
   * count: node:net's own counters stop at `pass`).
   */
  bytesMovedBy(client: Socket): number {
    const fd = streamHandleOf(client)?.fd;
    const id = fd === undefined ? 0 : (this.idByFd[fd] ?? 0);
    if (id === 0 || this.relaying.get(id)?.client !== client) return 0;
    return Math.max(0, this.native.moved(id));
  }

  /** Milliseconds since a byte was last read on either side, or -1 for an id that has ended. */
  idleMs(id: number): number {
    return this.native.idleMs(id);
  }

  /** Bytes moved both ways so far, or -1 for an id that has ended. */
  moved(id: number): number {
    return this.native.moved(id);
  }

  /** The upstream socket's own address and port (a SOCKS5 reply names them). */
  local(id: number): { readonly address: string; readonly port: number } {
    const [address, port] = this.native.local(id);
    return { address, port };
  }

  private forget(id: number): Relaying | null {
    const relaying = this.relaying.take(id);
    if (relaying !== null && this.idByFd[relaying.fd] === id) this.idByFd[relaying.fd] = 0;
    return relaying;
  }

  private readonly onEvents = (count: number): void => {
    const { events } = this;
    const { EVENT_STRIDE, EV_CONNECTED } = this.native;
    for (let i = 0; i < count; i += 1) {
      const at = i * EVENT_STRIDE;
      const id = events[at + 1];
      const errno = events[at + 4];
      if (events[at] === EV_CONNECTED) {
        const connected = this.connecting.take(id);
        connected?.(errno === 0 ? null : codeOf(errno));
        continue;
      }
      this.forget(id)?.closed({ up: events[at + 2], down: events[at + 3] }, errno === 0 ? undefined : codeOf(errno));
    }
  };
}

let opened: TcpRelay | string | null = null;

/** This process's native relay, or why there is none (not built, another Node, no epoll). Opened once. */
export function tcpRelay(): TcpRelay | string {
  if (opened === null) {
    const native = loadNativeAddon<NativeTcpRelay>('tcp-relay');
    if (typeof native === 'string') {
      opened = native;
    } else {
      try {
        opened = new TcpRelay(native);
      } catch (err) {
        opened = `the native relay could not start: ${(err as Error).message}`;
      }
    }
  }
  return opened;
}
