import type { OnReadOpts, Socket } from 'node:net';
import type { AuditSink, CloseEvent, ConnectionKey } from '../src/audit/types.js';
import { clock, type IdleSweep, type Watched } from './idle-sweep.js';
import { FirstBytesGate, type FirstBytesVerdict } from './sni-gate.js';
import type { Tunnel } from './types.js';

export interface TunnelContext {
  readonly fields: ConnectionKey;
  readonly dialed: string;
  /** The name the policy allowed; a ClientHello must not name another. Null for IP-literal targets. */
  readonly sniHost: string | null;
  readonly audit: AuditSink;
  /** Watches a piped tunnel for inactivity in both directions; its limit is sandbox.gateway.idle_timeout. */
  readonly idle: IdleSweep;
  readonly startedAt: number;
}

/**
 * Bytes per upstream read while a download streams. As stream chunks, a download arrives in 64 KiB pieces and
 * each one costs a push, a pipe 'data' event, a write that reports backpressure (64 KiB is above the socket's
 * 16 KiB high-water mark), a pause/resume and a fresh buffer for the GC: at loopback speeds that per-chunk work,
 * not the copying, was the limit. Measured on 2 cores, 1 × 2 GiB through a CONNECT tunnel (bench `bulk`):
 * stream pipe ~0.7 GB/s; reads of 64 KiB ~1.1 GB/s, 256 KiB ~1.7, 1 MiB ~1.9, 2 MiB no clear gain over 1 MiB.
 */
const STREAMING_READ_BYTES = 1024 * 1024;
/** Streaming buffers kept for the next burst or tunnel, so that bursts neither allocate nor page-fault anew. */
const SPARE_STREAMING_BUFFERS = 8;
const spareStreamingBuffers: Buffer[] = [];

function takeStreamingBuffer(): Buffer {
  return spareStreamingBuffers.pop() ?? Buffer.allocUnsafeSlow(STREAMING_READ_BYTES);
}

function giveStreamingBuffer(buffer: Buffer): void {
  if (spareStreamingBuffers.length < SPARE_STREAMING_BUFFERS) spareStreamingBuffers.push(buffer);
}

/**
 * Where every tunnel's reads land until one fills it (the size of a stream read, so interactive traffic reads as
 * before). One buffer for the whole process: what is read into it is copied out before the read callback
 * returns, and the event loop runs one read callback at a time, so it holds nothing between reads and an idle
 * tunnel costs no buffer of its own.
 */
const SHARED_READ_BYTES = 64 * 1024;
const sharedReadBuffer = Buffer.allocUnsafeSlow(SHARED_READ_BYTES);

/**
 * The download direction of a tunnel without stream machinery: the upstream socket reads into buffers of ours
 * (`net.connect({ onread })`) and each read is written to the client as it is.
 *
 * Reads go to the shared buffer and are copied out. One that fills it means a transfer is streaming: the tunnel
 * then takes a streaming buffer of its own and writes from it without a copy, until a read would have fit the
 * shared buffer again, when the streaming buffer goes back. `socket.write()` does not copy a Buffer, and what
 * the kernel did not take at once stays queued by reference: so a streaming buffer is handed to the next read
 * only when no queued write may still hold it (`onread.buffer` is a function, asked after every read). Reading
 * stops while the client has bytes queued (backpressure) until the write that queued them completes.
 * Reads start as soon as the upstream connects, before a client may be attached: such bytes (a server that
 * speaks first) are kept aside and reading stops until `attach`.
 */
export class UpstreamRelay {
  /** For `net.connect`: incoming bytes reach `onRead`, never the socket's readable side. */
  readonly onread: OnReadOpts;
  private streaming: Buffer | null = null;
  /** A client write still queued may reference the streaming buffer. */
  private streamingQueued = false;
  /** The last read would not have fit the shared buffer: a transfer is streaming. */
  private bulk = false;
  private upstream: Socket | null = null;
  private client: Socket | null = null;
  private held: Buffer[] = [];
  /** Stamped on every read: downloads are activity for the tunnel's idle limit. */
  private activity: Watched | null = null;
  /** Reading stopped until the client's queued bytes are written. */
  private stalled = false;
  private stopped = false;

  constructor() {
    this.onread = {
      buffer: () => this.nextBuffer(),
      callback: (n: number, buf: Uint8Array) => this.onRead(n, buf),
    };
  }

  start(upstream: Socket): void {
    this.upstream = upstream;
  }

  /** Starts relaying to `client`: bytes held so far first, then reading resumes. */
  attach(client: Socket, activity: Watched): void {
    this.client = client;
    this.activity = activity;
    for (const chunk of this.held) client.write(chunk);
    this.held = [];
    this.upstream?.resume();
  }

  /** Call only once both sockets are destroyed: neither reads nor writes again, so the buffer is free. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.held = [];
    if (this.streaming !== null) giveStreamingBuffer(this.streaming);
    this.streaming = null;
  }

  private nextBuffer(): Buffer {
    // Writes complete in order: with nothing queued, no write holds the streaming buffer any more.
    if (this.streamingQueued && (this.client === null || this.client.writableLength === 0)) this.streamingQueued = false;
    if (this.bulk && !this.stopped) {
      this.streaming ??= takeStreamingBuffer();
      if (!this.streamingQueued) return this.streaming;
    } else if (this.streaming !== null && !this.streamingQueued) {
      // The burst is over: an idle tunnel does not sit on a streaming buffer.
      giveStreamingBuffer(this.streaming);
      this.streaming = null;
    }
    // Always safe, even while the streaming buffer is queued: nothing references it after a read callback.
    return sharedReadBuffer;
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.stopped) return false;
    const read = Buffer.from(buf.buffer, buf.byteOffset, n);
    const own = buf === this.streaming;
    const client = this.client;
    if (client === null) {
      this.held.push(Buffer.from(read));
      return false;
    }
    this.bulk = n >= SHARED_READ_BYTES;
    if (this.activity !== null) this.activity.lastActive = clock.now;
    client.write(own ? read : Buffer.from(read), this.afterWrite);
    // A write the kernel took whole has already left the queue (writableLength drops synchronously then).
    if (client.writableLength === 0) return true;
    if (own) this.streamingQueued = true;
    this.stalled = true;
    return false;
  }

  /** Runs after each client write completes, in order: the one that leaves nothing queued ends a stall. */
  private readonly afterWrite = (err?: Error | null): void => {
    if (err || !this.stalled || this.stopped || this.client === null || this.client.writableLength > 0) return;
    this.stalled = false;
    this.upstream?.resume();
  };
}

/** For close lines: nothing waits for them. */
function nothingWaits(): void {}

/**
 * A tunnel's close line. The close already happened: the line joins the turn's batch, nothing waits for it. A failed
 * write is logged by the sink and surfaces on the next decision, which does wait.
 */
export function recordClose(ctx: TunnelContext, bytes_up: number, bytes_down: number, error: string | undefined): void {
  const { conn, channel, client, host, port } = ctx.fields;
  const dialed = ctx.dialed;
  const duration_ms = Math.round((performance.now() - ctx.startedAt) * 1000) / 1000;
  // One literal per branch, not spreads (see the connector's decision line); same fields, same order.
  const event: CloseEvent =
    error === undefined
      ? { event: 'close', conn, channel, client, host, port, dialed, bytes_up, bytes_down, duration_ms }
      : { event: 'close', conn, channel, client, host, port, dialed, bytes_up, bytes_down, duration_ms, error };
  ctx.audit.recordThen(event, nothingWaits);
}

/** The deny line of a tunnel whose first bytes failed the SNI check (`sni-gate.ts`). */
export function recordSniDeny(ctx: TunnelContext, reason: string): void {
  ctx.audit.write({ event: 'decision', ...ctx.fields, dialed: ctx.dialed, decision: 'deny', rule: 'builtin.sni-mismatch', reason });
}

/**
 * Owns an upstream socket from the moment it connects until the close audit line is written. Byte counts come
 * from the upstream socket's own counters, so the data path does no accounting of its own.
 * With a `relay` (the upstream was dialed with its `onread`), downloads go through it; without one, through
 * a stream pipe.
 */
export function createTunnel(upstream: Socket, ctx: TunnelContext, relay?: UpstreamRelay): Tunnel {
  let closed = false;
  let client: Socket | null = null;
  /** The piped tunnel's entry in the idle sweep. */
  let activity: Watched | null = null;

  // A reused keep-alive connection has carried earlier exchanges: this tunnel's line counts only its own bytes.
  const baseUp = upstream.bytesWritten;
  const baseDown = upstream.bytesRead;
  const writeCloseLine = (error?: string): void => recordClose(ctx, (upstream.bytesWritten ?? 0) - baseUp, upstream.bytesRead - baseDown, error);

  const close = (error?: string): void => {
    if (closed) return;
    closed = true;
    if (activity !== null) ctx.idle.unwatch(activity);
    upstream.destroy();
    client?.destroy();
    relay?.stop();
    writeCloseLine(error);
  };

  const onUpstreamError = (err: NodeJS.ErrnoException): void => close(err.code ?? err.message);
  // The upstream is closed both ways: nothing the client sends can reach it any more. Bytes still queued for the
  // client, and the FIN that end() put behind them, go out first; then the tunnel closes without waiting for the
  // client's own FIN (as squid does), which would cost a read and a turn of the loop per tunnel for nothing.
  const onUpstreamClose = (): void => {
    if (!client || client.writableFinished) close();
    else client.once('finish', close); // 'finish' has no arguments: a close without error
  };
  const onUpstreamIdle = (): void => close('idle timeout');
  relay?.start(upstream);
  upstream.on('error', onUpstreamError);
  upstream.on('close', onUpstreamClose);
  // An unpiped tunnel (an HTTP exchange, read by node:http) is idle-timed on its upstream socket; a piped one is
  // watched by the idle sweep from `pipe` on, stamped by reads in both directions.
  if (!relay) {
    upstream.on('timeout', onUpstreamIdle);
    upstream.setTimeout(ctx.idle.limitMs);
  }

  return {
    close,
    localEndpoint() {
      return { address: upstream.localAddress ?? '0.0.0.0', port: upstream.localPort ?? 0 };
    },
    release(): Socket | null {
      // Only an unpiped tunnel (an HTTP exchange) is released: a piped one's sockets are joined for good.
      if (closed || client || relay) return null;
      closed = true;
      upstream.removeListener('error', onUpstreamError);
      upstream.removeListener('close', onUpstreamClose);
      upstream.removeListener('timeout', onUpstreamIdle);
      upstream.setTimeout(0);
      writeCloseLine();
      return upstream;
    },
    pipe(socket: Socket, head?: Buffer): void {
      if (closed) {
        socket.destroy();
        return;
      }
      client = socket;
      socket.on('error', (err: NodeJS.ErrnoException) => close(err.code ?? err.message));
      socket.on('close', () => close());
      const watched: Watched = { lastActive: 0, prev: null, next: null, expire: () => close('idle timeout') };
      activity = watched;
      ctx.idle.watch(watched);
      if (relay) {
        relay.attach(socket, watched);
        // The relay writes to the client; end() queues the FIN behind those writes.
        if (upstream.readableEnded) socket.end();
        else upstream.once('end', () => socket.end());
      } else {
        upstream.on('data', () => (watched.lastActive = clock.now));
        upstream.pipe(socket);
      }

      // Uploads: one 'data' listener for the tunnel's life, no stream pipe. The first bytes go through the SNI gate;
      // after its verdict every chunk is written on, and the client is paused while the upstream's queue is full.
      let gate: FirstBytesGate | null = new FirstBytesGate(ctx.sniHost);
      let draining = false;
      const resumeClient = (): void => {
        draining = false;
        socket.resume();
      };
      const forward = (chunk: Buffer): void => {
        if (chunk.length === 0 || upstream.write(chunk) || draining) return;
        draining = true;
        socket.pause();
        upstream.once('drain', resumeClient);
      };
      const judged = (verdict: FirstBytesVerdict): void => {
        gate = null;
        if (verdict.ok) {
          forward(verdict.head);
          return;
        }
        recordSniDeny(ctx, verdict.reason);
        close(verdict.reason);
      };
      socket.on('data', (chunk: Buffer) => {
        if (closed) return;
        watched.lastActive = clock.now;
        if (gate === null) {
          forward(chunk);
          return;
        }
        const verdict = gate.feed(chunk);
        if (verdict !== null) judged(verdict);
      });
      socket.on('end', () => {
        if (closed) return;
        if (gate !== null) judged(gate.end());
        // An upstream that already ended its side (its FIN came first) needs no end() of ours: on a finished stream
        // end() would only build an error object, at a cost felt at every tunnel's close.
        if (!closed && !upstream.writableEnded) upstream.end();
      });
      if (head !== undefined && head.length > 0) {
        const verdict = gate.feed(head);
        if (verdict !== null) judged(verdict);
      }
      if (!closed) socket.resume(); // the CONNECT and SOCKS5 front ends hand the socket over paused
    },
  };
}
