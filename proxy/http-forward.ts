import type { Socket } from 'node:net';
import { clientAddress } from './client-address.js';
import { refusalOf, refuseOnSocket } from './http-replies.js';
import { ChunkedScanner, parseForwardHead, parseResponseHead, type ForwardHead, type ResponseHead } from './http-wire.js';
import type { IdleUpstreams } from './idle-upstreams.js';
import type { Connector, OpenResult } from './types.js';

export interface ForwardOptions {
  readonly connector: Connector;
  readonly idle: IdleUpstreams;
  readonly maxHeaderSize: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Gives the connection to node:http with `pending` put back: a request this path does not take. */
  readonly handOff: (socket: Socket, pending: Buffer) => void;
}

type Outcome = 'keep' | 'close' | 'retry';

/** As `refuseOnSocket`: after our last byte, a client gets this long to close its side. */
const CLOSING_GRACE_MS = 2000;

/**
 * The absolute-URI fast path: body-less requests in the strict grammar of `http-wire.ts`, on a client connection
 * that stays ours while its requests keep to that grammar. Each request is decided by the connector (decision
 * line, checked address) like every other; the request head goes upstream rewritten (hop-by-hop and Proxy-*
 * fields dropped), the response comes back with its framing checked and its body relayed as it arrives, and a
 * connection that ended cleanly goes back to `IdleUpstreams` for this client. The first request that does not
 * fit the grammar hands the connection to node:http, which answers it and the rest as before.
 */
export function serveForward(options: ForwardOptions, socket: Socket, first: Buffer, firstHead: ForwardHead): void {
  const client = clientAddress(socket.remoteAddress);
  let pending = first;
  // The caller already read the first head (to choose this path); later ones are read here.
  let known: ForwardHead | null = firstHead;
  let busy = false;
  let gone = false;
  let clientEnded = false;

  const detach = (): void => {
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('timeout', onTimeout);
    socket.setTimeout(0);
  };
  const next = (): void => {
    if (gone || busy) return;
    if (pending.length === 0) {
      if (clientEnded) socket.end();
      else socket.setTimeout(options.idleTimeoutMs);
      return;
    }
    const head = known ?? parseForwardHead(pending, options.maxHeaderSize);
    known = null;
    if (head === null) {
      if (pending.indexOf('\r\n\r\n') < 0 && pending.length < options.maxHeaderSize && !clientEnded) {
        socket.setTimeout(options.handshakeTimeoutMs); // the rest of the head is still coming
        return;
      }
      gone = true;
      detach();
      options.handOff(socket, pending);
      return;
    }
    busy = true;
    socket.setTimeout(0);
    socket.pause(); // a pipelined request waits for this response
    pending = pending.subarray(head.headLength);
    void exchange(head).then((outcome) => {
      busy = false;
      if (outcome === 'close') {
        // The connection is ending (refused, or the response closes it): what the client still sends is read
        // and dropped until its FIN, and a client that never closes is cut off.
        gone = true;
        detach();
        socket.setTimeout(CLOSING_GRACE_MS, () => socket.destroy());
        socket.resume();
      }
      if (gone) return;
      socket.resume();
      next();
    });
  };

  const exchange = async (head: ForwardHead): Promise<Outcome> => {
    // One retry, on a fresh connection, when a kept one turned out closed before any response byte: the
    // upstream may close an idle connection just as it is reused (every method of this path is idempotent).
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const result = await options.connector.open({
        channel: 'http',
        client,
        host: head.host,
        port: head.port,
        ...(attempt === 0 ? { reuse: (dialed: string, port: number) => options.idle.take(client, dialed, port) } : {}),
      });
      if (!result.ok) {
        refuseOnSocket(socket, refusalOf(result));
        return 'close';
      }
      if (socket.destroyed) {
        result.tunnel.close('client went away');
        return 'close';
      }
      const outcome = await relay(socket, head, result, options, client);
      if (outcome !== 'retry') return outcome;
    }
    refuseOnSocket(socket, { status: 502, message: 'upstream closed the connection before responding' });
    return 'close';
  };

  const onData = (chunk: Buffer): void => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    next();
  };
  const onEnd = (): void => {
    clientEnded = true;
    next();
  };
  const onTimeout = (): void => {
    gone = true;
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('timeout', onTimeout);
  socket.on('close', () => {
    gone = true;
  });
  next();
}

/** One request/response over `result.upstream`: resolves when the response has been relayed (or failed). */
function relay(
  socket: Socket,
  head: ForwardHead,
  result: Extract<OpenResult<Socket>, { ok: true }>,
  options: ForwardOptions,
  client: string,
): Promise<Outcome> {
  const { upstream, tunnel } = result;
  const reused = upstream.bytesWritten > 0;
  const where = `upstream ${result.dialed}:${head.port}`;
  return new Promise((resolve) => {
    let received: Buffer = Buffer.alloc(0);
    let response: ResponseHead | null = null;
    let remaining = 0;
    let scanner: ChunkedScanner | null = null;
    let headSent = false;
    let keepClient = false;
    let finished = false;

    const finish = (outcome: Outcome, reuse: boolean, error?: string): void => {
      if (finished) return;
      finished = true;
      upstream.removeListener('data', onUpstreamData);
      upstream.removeListener('end', onUpstreamEnd);
      upstream.removeListener('close', onUpstreamClose);
      upstream.removeListener('error', onUpstreamError);
      socket.removeListener('close', onClientClose);
      socket.removeListener('drain', onDrain);
      if (reuse) {
        const kept = tunnel.release();
        if (kept) options.idle.put(client, result.dialed, head.port, kept);
      } else {
        tunnel.close(error);
      }
      resolve(outcome);
    };
    /** The response is complete; `clean`: nothing arrived after it, so the connection is still in step. */
    const complete = (clean: boolean): void => {
      const reuse = clean && response !== null && response.reusable;
      if (keepClient) finish('keep', reuse);
      else {
        socket.end();
        finish('close', reuse);
      }
    };
    const fail = (message: string): void => {
      if (headSent) socket.destroy();
      else refuseOnSocket(socket, { status: 502, message: `${where} ${message}` });
      finish('close', false, message);
    };
    const send = (bytes: Buffer | string): void => {
      if (!socket.write(bytes)) upstream.pause(); // resumed on the client's drain
    };
    const onDrain = (): void => {
      upstream.resume();
    };

    const relayBody = (chunk: Buffer): void => {
      if (response === null) return;
      switch (response.framing.kind) {
        case 'none':
          complete(chunk.length === 0);
          return;
        case 'length': {
          const take = Math.min(remaining, chunk.length);
          if (take > 0) send(chunk.subarray(0, take));
          remaining -= take;
          if (remaining === 0) complete(take === chunk.length);
          return;
        }
        case 'chunked': {
          const used = scanner!.feed(chunk);
          if (typeof used !== 'number') {
            fail(`sent a bad chunked body: ${used.error}`);
            return;
          }
          if (used > 0) send(chunk.subarray(0, used));
          if (scanner!.done) complete(used === chunk.length);
          return;
        }
        case 'close':
          if (chunk.length > 0) send(chunk);
          return;
      }
    };

    const onUpstreamData = (chunk: Buffer): void => {
      if (response !== null) {
        relayBody(chunk);
        return;
      }
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      for (;;) {
        const parsed = parseResponseHead(received, head.method, options.maxHeaderSize);
        if (parsed === null) return;
        if ('error' in parsed) {
          fail(`sent an unusable response: ${parsed.error}`);
          return;
        }
        received = received.subarray(parsed.headLength);
        if (parsed.interim) {
          send(`${parsed.clientHead}\r\n`);
          continue;
        }
        response = parsed;
        keepClient = head.clientKeepAlive && parsed.framing.kind !== 'close';
        send(`${parsed.clientHead}Connection: ${keepClient ? 'keep-alive' : 'close'}\r\n\r\n`);
        headSent = true;
        if (parsed.framing.kind === 'length') remaining = parsed.framing.length;
        if (parsed.framing.kind === 'chunked') scanner = new ChunkedScanner();
        relayBody(received); // also completes a response with an empty body
        return;
      }
    };
    // A kept connection the upstream had closed before it saw this request: worth one retry on a fresh one.
    const closedWhileIdle = (): boolean => reused && !headSent && received.length === 0;
    const onUpstreamEnd = (): void => {
      if (response?.framing.kind === 'close') {
        socket.end();
        finish('close', false);
      } else if (closedWhileIdle()) {
        finish('retry', false, 'kept connection was closed by the upstream');
      } else {
        fail(headSent ? 'closed the connection mid-response' : 'closed the connection before responding');
      }
    };
    const onUpstreamClose = (): void => {
      if (finished) return;
      if (closedWhileIdle()) finish('retry', false, 'kept connection was closed by the upstream');
      else fail('connection closed');
    };
    const onUpstreamError = (err: NodeJS.ErrnoException): void => {
      if (closedWhileIdle()) finish('retry', false, err.code ?? err.message);
      else fail(`failed: ${err.code ?? err.message}`);
    };
    const onClientClose = (): void => finish('close', false, 'client went away');

    upstream.on('data', onUpstreamData);
    upstream.on('end', onUpstreamEnd);
    upstream.on('close', onUpstreamClose);
    upstream.on('error', onUpstreamError);
    socket.on('close', onClientClose);
    socket.on('drain', onDrain);
    upstream.resume();
    upstream.write(head.upstreamHead);
  });
}
