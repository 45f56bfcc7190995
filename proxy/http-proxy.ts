import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AuditSink } from '../src/audit/types.js';
import { hostToString, parseAuthority } from '../src/net/host.js';
import type { Host } from '../src/net/types.js';
import { clientAddress } from './client-address.js';
import { nextConnId } from './conn-id.js';
import { Deadlines } from './deadlines.js';
import { acceptFromFrozenOptions } from './frozen-accept.js';
import { tickMsFor } from './idle-sweep.js';
import { countHeader, endToEndHeaders } from './http-headers.js';
import { refusalOf, refuseOnResponse, refuseOnSocket, type Refusal } from './http-replies.js';
import { serveForward, type ForwardOptions } from './http-forward.js';
import { parseConnectHead, parseForwardHead } from './http-wire.js';
import { IdleUpstreams } from './idle-upstreams.js';
import type { ConnectionSteer, Connector } from './types.js';

export interface HttpProxyOptions {
  readonly connector: Connector;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly maxHeaderSize: number;
  /** Time allowed to send a complete request head. */
  readonly handshakeTimeoutMs: number;
  /** Idle time after which a keep-alive client connection is closed. */
  readonly idleTimeoutMs: number;
  readonly steer?: ConnectionSteer;
}

/** The HTTP front: its listener, and what it holds beyond its connections (closed by `dispose`, at shutdown). */
export interface HttpFront {
  readonly server: NetServer;
  dispose(): void;
}

/**
 * The HTTP proxy: CONNECT tunnels and absolute-URI requests (RFC 9112 §3.2.2). Each request, also on a
 * keep-alive connection, is decided anew through the connector. Replies to refusals come from
 * `http-replies.ts`: 403 denied (rule in `X-Clawbox-Rule` and the body), 400 bad request, 502/504 upstream.
 */
export function createHttpProxyServer(options: HttpProxyOptions): HttpFront {
  const idle = new IdleUpstreams();
  const server = createNodeHttpServer(options, idle);
  const handOff = (socket: Socket, pending: Buffer): void => {
    socket.pause();
    socket.unshift(pending);
    server.emit('connection', socket);
    socket.resume();
  };
  const forwardOptions: ForwardOptions = {
    connector: options.connector,
    idle,
    maxHeaderSize: options.maxHeaderSize,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
    handOff,
  };
  // Fast paths: a raw listener reads the first chunk itself. A complete, strictly well-formed CONNECT head (the bulk
  // of the traffic) is handled here without IncomingMessage / ServerResponse / llhttp, and so is a body-less
  // absolute-URI request (`http-forward.ts`). Everything else (other methods, bodies, partial or odd heads, anything
  // the strict grammars do not match) goes to node:http with its bytes put back, so every refusal (400, 408, 431)
  // comes from the same code as before.
  // A client that sends nothing at all is refused as node:http would refuse a head that never completes. Its time
  // limit is one sweep for every connection (`deadlines.ts`), not a Node timer per socket.
  const silent = new Deadlines<Socket>(options.handshakeTimeoutMs, (socket) => {
    if (socket.destroyed) return;
    const refusal = clientErrorRefusal(Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }));
    protocolError(options, socket, refusal.message);
    refuseOnSocket(socket, refusal);
  });
  const onFirstChunk = (socket: Socket, chunk: Buffer): void => {
    const fast = parseConnectHead(chunk, options.maxHeaderSize);
    if (fast === null) {
      const forward = parseForwardHead(chunk, options.maxHeaderSize);
      if (forward !== null) serveForward(forwardOptions, socket, chunk, forward);
      else handOff(socket, chunk);
      return;
    }
    socket.pause(); // the tunnel resumes it
    handleConnect(options, fast.target, socket, chunk.subarray(fast.headLength));
  };
  // allowHalfOpen as node:http has it: a client that sends its request and FIN still gets the answer.
  // pauseOnConnect: see ConnectionSteer.
  const front = createNetServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (socket: Socket) => {
    if (options.steer?.(socket)) return;
    // Errors after a reply was sent (client reset) must never reach the process.
    socket.on('error', destroySelf);
    // The handlers hold the connection's deadline: no table from socket to deadline (see deadlines.ts).
    const deadline = silent.add(socket);
    socket.on('close', () => silent.delete(deadline));
    // A client that closes its side before sending anything had no request to refuse or to audit: it goes now, not
    // when its handshake limit runs out. After a first chunk this is a half-close, which that request's path answers.
    socket.on('end', () => {
      if (silent.delete(deadline)) socket.destroy();
    });
    socket.once('data', (chunk: Buffer) => {
      silent.delete(deadline);
      onFirstChunk(socket, chunk);
    });
    socket.resume();
  });
  acceptFromFrozenOptions(front);
  // node:http never listens itself; its header/keep-alive time-out checks start on 'listening'.
  front.once('listening', () => server.emit('listening'));
  // Not on the front's 'close': a standby worker closes its listener while it still serves connections.
  const dispose = (): void => {
    server.close();
    idle.close();
  };
  return { server: front, dispose };
}

function destroySelf(this: Socket): void {
  this.destroy();
}

const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

function createNodeHttpServer(options: HttpProxyOptions, idle: IdleUpstreams): Server {
  const server = createServer({
    maxHeaderSize: options.maxHeaderSize,
    headersTimeout: options.handshakeTimeoutMs,
    requestTimeout: 0, // bodies may stream for long; idleness is handled per socket
    // How often node:http looks for heads past headersTimeout. Its default, 30 s, let a head that never completes
    // hold its connection for up to 30 s past handshake_timeout.
    connectionsCheckingInterval: tickMsFor(options.handshakeTimeoutMs),
    keepAliveTimeout: options.idleTimeoutMs,
    insecureHTTPParser: false,
  });

  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    handleConnect(options, req.url ?? '', socket, head);
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handleRequest(options, idle, req, res);
  });

  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    protocolError(options, req.socket, 'Upgrade through an absolute-URI request is not supported; use CONNECT');
    refuseOnSocket(socket, { status: 400, message: 'Upgrade through an absolute-URI request is not supported; use CONNECT' });
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const refusal = clientErrorRefusal(err);
    protocolError(options, socket, refusal.message);
    refuseOnSocket(socket, refusal);
  });

  return server;
}

function clientErrorRefusal(err: NodeJS.ErrnoException): Refusal {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, message: 'request head is larger than sandbox.gateway.max_header_size' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, message: 'request head not received within sandbox.gateway.handshake_timeout' };
    case undefined:
    default:
      return { status: 400, message: `malformed HTTP request (${err.code ?? 'parse error'})` };
  }
}

/** Requests that never got as far as a host still leave an audit line: every attempt is recorded. */
function protocolError(options: HttpProxyOptions, socket: Socket, reason: string): void {
  options.audit.write({
    event: 'decision',
    conn: nextConnId(),
    channel: 'http',
    client: clientAddress(socket.remoteAddress),
    host: '',
    port: 0,
    decision: 'deny',
    rule: 'protocol',
    reason,
  });
}

function handleConnect(options: HttpProxyOptions, url: string, socket: Socket, head: Buffer): void {
  const target = parseAuthority(url);
  if (!target.ok) {
    const message = `CONNECT target '${url.slice(0, 100)}' is invalid: ${target.error}`;
    protocolError(options, socket, message);
    refuseOnSocket(socket, { status: 400, rule: 'builtin.invalid-host', message });
    return;
  }
  const request = { channel: 'connect', client: clientAddress(socket.remoteAddress), host: target.host, port: target.port } as const;
  options.connector.openThen(request, (result) => {
    if (!result.ok) {
      refuseOnSocket(socket, refusalOf(result));
      return;
    }
    if (socket.destroyed || !socket.writable) {
      result.tunnel.close('client went away');
      return;
    }
    socket.write(CONNECT_ESTABLISHED);
    result.tunnel.pipe(socket, head);
  });
}

interface ForwardTarget {
  readonly host: Host;
  readonly port: number;
  readonly path: string;
}

function parseAbsoluteUri(req: IncomingMessage): ForwardTarget | string {
  const raw = req.url ?? '';
  if (!/^http:\/\//i.test(raw)) {
    return raw.startsWith('/')
      ? 'this is a proxy: send an absolute URI (http://host/path) or use CONNECT'
      : 'only http:// absolute URIs are forwarded; use CONNECT for https';
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'request URI is not a valid URL';
  }
  if (url.username !== '' || url.password !== '') return 'credentials in the request URI are not forwarded';
  const port = url.port === '' ? 80 : Number(url.port);
  const target = parseAuthority(`${url.hostname}:${port}`);
  if (!target.ok) return `request URI host is invalid: ${target.error}`;
  const hostHeader = req.headers.host;
  if (countHeader(req.rawHeaders, 'host') > 1) return 'more than one Host header';
  if (hostHeader !== undefined) {
    const withPort = /^\[.*\]$|^[^:]*$/.test(hostHeader) ? `${hostHeader}:80` : hostHeader;
    const fromHeader = parseAuthority(withPort);
    if (
      !fromHeader.ok ||
      hostToString(fromHeader.host) !== hostToString(target.host) ||
      fromHeader.port !== target.port
    ) {
      return 'Host header does not agree with the request URI';
    }
  }
  return { host: target.host, port: target.port, path: `${url.pathname}${url.search}` };
}

async function handleRequest(options: HttpProxyOptions, idle: IdleUpstreams, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const target = parseAbsoluteUri(req);
  if (typeof target === 'string') {
    protocolError(options, req.socket, target);
    refuseOnResponse(res, { status: 400, message: target });
    req.resume();
    return;
  }
  const client = clientAddress(req.socket.remoteAddress);
  const result = await options.connector.open({
    channel: 'http',
    client,
    host: target.host,
    port: target.port,
    reuse: (dialed, port) => idle.take(client, dialed, port),
  });
  if (!result.ok) {
    refuseOnResponse(res, refusalOf(result));
    req.resume();
    return;
  }
  const { upstream, tunnel } = result;
  if (req.destroyed) {
    tunnel.close('client went away');
    return;
  }

  const headers = endToEndHeaders(req.rawHeaders, req.headers.connection);
  headers.host ??= req.headers.host ?? `${hostToString(target.host)}:${target.port}`;
  // Our own hop to the upstream is persistent (the client's Connection header was hop-by-hop and is gone).
  headers.connection = 'keep-alive';
  const forward = httpRequest({
    method: req.method,
    path: target.path,
    headers,
    createConnection: () => upstream,
  });
  // node:http emits 'free' on the socket when the exchange ended cleanly (request sent, response read to its
  // end, both sides willing to keep the connection); only then may another request of this client use it.
  let freed = false;
  upstream.once('free', () => {
    freed = true;
    const socket = tunnel.release();
    if (socket) idle.put(client, result.dialed, target.port, socket);
  });
  forward.on('response', (answer: IncomingMessage) => {
    if (res.headersSent || res.destroyed) {
      answer.resume();
      return;
    }
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEndHeaders(answer.rawHeaders, answer.headers.connection));
    answer.pipe(res);
    // 'free' comes on the tick after the response's end; a connection that was not freed by then is not reusable.
    answer.on('end', () =>
      process.nextTick(() => {
        if (!freed) tunnel.close();
      }),
    );
    answer.on('error', (err: NodeJS.ErrnoException) => {
      tunnel.close(err.code ?? err.message);
      res.destroy();
    });
  });
  forward.on('error', (err: NodeJS.ErrnoException) => {
    tunnel.close(err.code ?? err.message);
    refuseOnResponse(res, { status: 502, message: `upstream ${hostToString(target.host)}:${target.port} failed: ${err.code ?? err.message}` });
  });
  res.on('close', () => {
    if (!res.writableFinished) {
      forward.destroy();
      tunnel.close('client went away');
    }
  });
  req.pipe(forward);
}
