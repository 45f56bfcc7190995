/**
 * Accepting a TCP front's connections without the ~500 bytes node:net leaves per connection.
 *
 * node:net's accept callback builds each socket from a fresh options literal, and its Socket constructor copies
 * that with a spread and adds four properties (`options = { ...options }`, then `allowHalfOpen`, `emitClose`, ...).
 * Node 20's V8 gives such a copy hidden classes of its own on every call, unless its source is frozen: about 500
 * bytes per connection outlive the young-generation collection that should take them, and every scavenge copies
 * them (`src/copy-with.ts`; bench/README.md, *What the ~500 bytes per connection are*). Measured with a one-client
 * echo server under `--trace-gc-nvp`, 20,000-31,000 connections a run: 432-539 bytes promoted per connection
 * with node:net's callback, 357-399 with the same literal unfrozen, 2 frozen; a scavenge's pause 1.9-2.5 ms
 * against 0.17-0.19.
 *
 * So the listening handle's callback is replaced with one that does what node:net's does (Node 20's
 * `onconnection` in lib/net.js: errors, `maxConnections` and 'drop', the socket's options, noDelay and keep-alive,
 * the server's connection count, 'connection', the diagnostics channel) from a frozen options object.
 * Every listen makes a new handle, so it is replaced on every 'listening', which node:net emits on the next
 * tick after the handle starts listening, before the event loop can run its first accept. `onconnection` on the
 * listening handle is the one place this leans on Node's internals; the integration tests
 * (`frozen-accept.test.ts`) fail if it stops being the callback used.
 */
import { channel } from 'node:diagnostics_channel';
import { Socket, type Server, type SocketConstructorOpts } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** What this module reads and writes on a `net.Server` beyond its public API: the fields node:net's callback uses. */
interface ServerInternals {
  _handle: ListeningHandle | null;
  _connections: number;
  readonly allowHalfOpen: boolean;
  readonly pauseOnConnect: boolean;
  readonly noDelay: boolean;
  readonly keepAlive: boolean;
  /** In seconds, as node:net keeps it. */
  readonly keepAliveInitialDelay: number;
  readonly highWaterMark: number;
}

interface ListeningHandle {
  /** `status` 0 with the accepted connection's handle, or a negative errno. */
  onconnection: (status: number, client: ClientHandle) => void;
}

interface ClientHandle {
  close(): void;
  getsockname?(out: AddressOut): number;
  getpeername?(out: AddressOut): number;
}

interface AddressOut {
  address?: string;
  port?: number;
  family?: string;
}

/** What a socket's constructor takes in node:net's accept: the public options and the accepted handle. */
type AcceptedSocketOptions = SocketConstructorOpts & {
  readonly handle: ClientHandle;
  readonly pauseOnCreate: boolean;
  readonly readableHighWaterMark: number;
  readonly writableHighWaterMark: number;
};

/** node:net publishes every accepted socket here; subscribers (APMs) expect the gateway's too. */
const serverSocketChannel = channel('net.server.socket');

/** Each server's callback, so that `acceptsFromFrozenOptions` can tell it from node:net's. */
const callbacks = new WeakMap<Server, ListeningHandle['onconnection']>();

export function acceptFromFrozenOptions(server: Server): void {
  const internals = server as unknown as ServerInternals;
  const onconnection = onFrozenConnection.bind(null, server);
  callbacks.set(server, onconnection);
  server.on('listening', () => {
    if (internals._handle !== null) internals._handle.onconnection = onconnection;
  });
}

/** Whether `server` is listening, and accepting through this module. */
export function acceptsFromFrozenOptions(server: Server): boolean {
  const handle = (server as unknown as ServerInternals)._handle;
  return handle !== null && handle.onconnection === callbacks.get(server);
}

/** What node:net sets on each socket it accepts: its close counts the server's connections down. */
interface AcceptedSocketInternals {
  server: Server;
  _server: Server;
}

function onFrozenConnection(server: Server, status: number, client: ClientHandle): void {
  const internals = server as unknown as ServerInternals;
  if (status !== 0) {
    const code = getSystemErrorName(status);
    server.emit('error', Object.assign(new Error(`accept ${code}`), { errno: status, code, syscall: 'accept' }));
    return;
  }
  if (server.maxConnections > 0 && internals._connections >= server.maxConnections) {
    server.emit('drop', dropped(client));
    client.close();
    return;
  }
  const options: AcceptedSocketOptions = Object.freeze({
    handle: client,
    allowHalfOpen: internals.allowHalfOpen,
    pauseOnCreate: internals.pauseOnConnect,
    readable: true,
    writable: true,
    readableHighWaterMark: internals.highWaterMark,
    writableHighWaterMark: internals.highWaterMark,
  });
  const socket = new Socket(options);
  if (internals.noDelay) socket.setNoDelay(true);
  if (internals.keepAlive) socket.setKeepAlive(true, internals.keepAliveInitialDelay * 1000);
  // What the socket's close counts down, and what `server.close()` and `getConnections` go by.
  internals._connections += 1;
  const accepted = socket as unknown as AcceptedSocketInternals;
  accepted.server = server;
  accepted._server = server;
  server.emit('connection', socket);
  if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
}

/** 'drop''s argument as node:net gives it: both ends of the connection refused for `maxConnections`. */
function dropped(client: ClientHandle): Record<string, string | number | undefined> {
  const local: AddressOut = {};
  const remote: AddressOut = {};
  client.getsockname?.(local);
  client.getpeername?.(remote);
  return {
    localAddress: local.address,
    localPort: local.port,
    localFamily: local.family,
    remoteAddress: remote.address,
    remotePort: remote.port,
    remoteFamily: remote.family,
  };
}
