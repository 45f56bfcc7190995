/**
 * The DNS front's datagram I/O: a burst of queries read with one recvmmsg(2) and its answers sent with one
 * sendmmsg(2) (`proxy/native/udp-batch.c`), on the socket node:dgram bound, or node:dgram's own per-datagram
 * path where the native part is not built or not wanted.
 *
 * Why: Node 20's dgram reads, calls into JavaScript and sends once per datagram, each with its own objects
 * (a 64 KiB receive buffer cut down, an `rinfo`, an address parsed per send). Measured here with a server that only
 * echoes a fixed answer, under dnsperf: 9.2–9.7 µs of CPU per query through node:dgram, 6.0–6.4 µs batched
 * (bench/README.md, *DNS in batches*). The binding (bind, port choice, the cluster's shared socket, its errors) stays
 * node:dgram's; only the reads and the answers go around it.
 */
import type dgram from 'node:dgram';
import { ClawboxError } from '../src/errors.js';
import { loadNativeAddon } from './native-addon.js';

/** Where a datagram came from, and so where its answer goes. */
export interface DatagramSource {
  /** The peer address's text, as node:dgram gives it. */
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  /**
   * Only for the batched path: the address as the native part read it (IPv4: one word; IPv6: four, then the scope
   * id of a link-local one), so that the answer goes back without parsing the text.
   */
  readonly words: readonly [number, number, number, number, number];
}

export interface DatagramReply {
  readonly response: Buffer;
  readonly to: DatagramSource;
}

/**
 * `message` is valid only until the handler returns (the batched path reuses its memory for the next burst):
 * whatever outlives the call must be copied.
 */
export type DatagramHandler = (message: Buffer, from: DatagramSource) => void;

/** How datagrams are read and answered: in batches by the native part, or one at a time by node:dgram. */
export type DatagramIoKind = 'batched' | 'dgram';

export interface DatagramIo {
  readonly kind: DatagramIoKind;
  /** Sends every answer; one that cannot go (a full socket buffer) is lost, as any datagram may be. */
  sendAll(replies: readonly DatagramReply[]): void;
  /**
   * Batched path only: stop or resume reading while other processes read the same (cluster-shared) socket; answers
   * still go out. node:dgram reads on regardless (stopping it would need its private handle too), so every worker
   * reads there, as before.
   */
  setReading(on: boolean): void;
  /**
   * Stops reading for good; resolves once nothing of this reader holds the socket, so that closing the dgram
   * socket after it frees the port. The dgram socket itself is its owner's to close.
   */
  stop(): Promise<void>;
}

/**
 * `CLAWBOX_DNS_IO`: `dgram` makes the gateway answer one datagram at a time even where the native part is built
 * (to compare the two, or to set the native part aside); unset or `batched` is the default.
 */
export function datagramIoOf(value: string | undefined): DatagramIoKind {
  if (value === undefined || value === '' || value === 'batched') return 'batched';
  if (value === 'dgram') return 'dgram';
  throw new ClawboxError('CONFIG_INVALID', `CLAWBOX_DNS_IO must be "batched" or "dgram", not ${JSON.stringify(value)}`);
}

/** What `proxy/native/udp-batch.c` exports. */
interface NativeUdpBatch {
  attach(fd: number, arena: ArrayBuffer, meta: Int32Array, onBatch: (count: number) => void): object;
  send(handle: object, arena: ArrayBuffer, meta: Int32Array, count: number): number;
  reading(handle: object, on: boolean): void;
  close(handle: object, onClosed: () => void): void;
  readonly SLOTS: number;
  readonly SLOT_BYTES: number;
  readonly DATA_BYTES: number;
  readonly IN_STRIDE: number;
  readonly OUT_STRIDE: number;
}

/** The native part, or why it cannot be used (not built, or built for another Node). Loaded once. */
export function nativeUdpBatch(): NativeUdpBatch | string {
  return loadNativeAddon<NativeUdpBatch>('udp-batch');
}

/**
 * The handle under a bound dgram socket, for its file descriptor. Node 20 has no public accessor: dgram keeps the
 * handle in its state object, under a symbol of its own (`socket._handle` reads the same but is deprecated,
 * DEP0112). Anything else found there means another Node: the caller falls back to node:dgram.
 */
function boundHandle(socket: dgram.Socket): { readonly fd: number; recvStop(): number } | string {
  const state = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === 'state symbol');
  const handle = state === undefined ? undefined : (socket as unknown as Record<symbol, { handle?: { fd?: unknown; recvStop?: unknown } } | undefined>)[state]?.handle;
  if (handle === undefined || typeof handle.fd !== 'number' || handle.fd < 0 || typeof handle.recvStop !== 'function') {
    return 'this Node does not expose the dgram socket’s descriptor';
  }
  return handle as { readonly fd: number; recvStop(): number };
}

/**
 * Starts reading `socket` (bound) into `handler`: batched when the native part loads and `prefer` allows it,
 * else through node:dgram's 'message' events. `onFallback` hears why the batched path is not used.
 */
export function openDatagramIo(
  socket: dgram.Socket,
  handler: DatagramHandler,
  prefer: DatagramIoKind,
  onFallback: (reason: string) => void,
): DatagramIo {
  if (prefer === 'batched') {
    const native = nativeUdpBatch();
    const handle = typeof native === 'string' ? native : boundHandle(socket);
    let why = typeof native === 'string' ? native : (handle as string);
    if (typeof native !== 'string' && typeof handle !== 'string') {
      try {
        return batchedIo(native, handle, handler);
      } catch (err) {
        why = `the native part could not take the socket: ${(err as Error).message}`; // e.g. no descriptor left
      }
    }
    onFallback(why);
  }
  return dgramIo(socket, handler);
}

function dgramIo(socket: dgram.Socket, handler: DatagramHandler): DatagramIo {
  const onMessage = (message: Buffer, rinfo: dgram.RemoteInfo): void =>
    handler(message, { address: rinfo.address, port: rinfo.port, family: rinfo.family === 'IPv6' ? 6 : 4, words: NO_WORDS });
  socket.on('message', onMessage);
  return {
    kind: 'dgram',
    sendAll(replies) {
      for (const r of replies) socket.send(r.response, r.to.port, r.to.address);
    },
    setReading() {},
    stop() {
      socket.removeListener('message', onMessage);
      return Promise.resolve();
    },
  };
}

const NO_WORDS = [0, 0, 0, 0, 0] as const;
/** One native send's answers at most (bytes, datagrams); sendAll calls it again for the rest. */
const OUT_ARENA_BYTES = 1024 * 1024;
const OUT_DATAGRAMS = 8192;
/** IPv4 peers' text by address: a sandbox network has few clients, and each text is made once. */
const V4_TEXT_LIMIT = 4096;

function batchedIo(native: NativeUdpBatch, bound: { readonly fd: number; recvStop(): number }, handler: DatagramHandler): DatagramIo {
  const { SLOTS, SLOT_BYTES, DATA_BYTES, IN_STRIDE, OUT_STRIDE } = native;
  const inArena = new ArrayBuffer(SLOTS * SLOT_BYTES);
  const inBytes = Buffer.from(inArena);
  const inMeta = new Int32Array(SLOTS * IN_STRIDE);
  const outArena = new ArrayBuffer(OUT_ARENA_BYTES);
  const outBytes = new Uint8Array(outArena);
  const outMeta = new Int32Array(OUT_DATAGRAMS * OUT_STRIDE);
  const v4Text = new Map<number, string>();

  const textOf = (slot: number, family: number, w0: number): string => {
    if (family === 6) {
      const start = slot * SLOT_BYTES + DATA_BYTES;
      const end = inBytes.indexOf(0, start);
      return inBytes.toString('latin1', start, end < 0 ? start : end);
    }
    let text = v4Text.get(w0);
    if (text === undefined) {
      text = `${w0 >>> 24}.${(w0 >>> 16) & 255}.${(w0 >>> 8) & 255}.${w0 & 255}`;
      if (v4Text.size >= V4_TEXT_LIMIT) v4Text.clear();
      v4Text.set(w0, text);
    }
    return text;
  };

  const onBatch = (count: number): void => {
    for (let slot = 0; slot < count; slot += 1) {
      const m = slot * IN_STRIDE;
      const length = inMeta[m];
      const family = inMeta[m + 2];
      // A datagram longer than its slot is no DNS query of ours (they are far below 4 KiB); nor is one without a
      // return address. Either is dropped, as node:dgram's path drops what it cannot parse.
      if (inMeta[m + 1] !== 0 || (family !== 4 && family !== 6)) continue;
      const words = [inMeta[m + 4], inMeta[m + 5], inMeta[m + 6], inMeta[m + 7], inMeta[m + 8]] as const;
      const from: DatagramSource = { address: textOf(slot, family, words[0]), port: inMeta[m + 3], family, words };
      handler(inBytes.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + length), from);
    }
  };

  const handle = native.attach(bound.fd, inArena, inMeta, onBatch);
  // From here the native part reads the socket; node:dgram's own reader would race it for every datagram.
  bound.recvStop();
  let stopped = false;
  let closed: Promise<void> = Promise.resolve();

  return {
    kind: 'batched',
    sendAll(replies) {
      if (stopped) return;
      let index = 0;
      while (index < replies.length) {
        let offset = 0;
        let count = 0;
        for (; index < replies.length && count < OUT_DATAGRAMS; index += 1) {
          const { response, to } = replies[index];
          if (response.length > OUT_ARENA_BYTES) continue; // no DNS answer is; never one that cannot fit
          if (offset + response.length > OUT_ARENA_BYTES) break;
          outBytes.set(response, offset);
          const m = count * OUT_STRIDE;
          outMeta[m] = offset;
          outMeta[m + 1] = response.length;
          outMeta[m + 2] = to.family;
          outMeta[m + 3] = to.port;
          outMeta[m + 4] = to.words[0];
          outMeta[m + 5] = to.words[1];
          outMeta[m + 6] = to.words[2];
          outMeta[m + 7] = to.words[3];
          outMeta[m + 8] = to.words[4];
          offset += response.length;
          count += 1;
        }
        // A negative result is the first lost datagram's errno; the others still went. Loss is UDP's to handle.
        native.send(handle, outArena, outMeta, count);
      }
    },
    setReading(on) {
      if (!stopped) native.reading(handle, on);
    },
    stop() {
      if (stopped) return closed;
      stopped = true;
      closed = new Promise<void>((resolve) => native.close(handle, resolve));
      return closed;
    },
  };
}
