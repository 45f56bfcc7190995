/**
 * SOCKS5 (RFC 1928), CONNECT only, no authentication. Written here rather than taken from npm: the `socksv5`
 * package was last published in 2015 (unmaintained, untyped), and what we need is mostly what it would hide:
 * every domain through `parseHost`, every dial through the Connector, exact reply codes, a bounded buffer and
 * a handshake time-out. About 300 lines of explicit state machine are easier to audit than an adapter.
 *
 * One connection is a small state machine over one bounded buffer:
 *
 *   greeting ──(method 0x00 chosen)──▶ request ──(CONNECT parsed)──▶ connecting ──(ok)──▶ tunnel
 *       │                                  │                              │
 *       └───── bad input / time-out ───────┴───── reply code, close ──────┘
 *
 * Any protocol error ends only that connection; the server keeps serving everyone else.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { AuditSink } from '../src/audit/types.js';
import { parseHost } from '../src/net/host.js';
import { ipFromBytes, parseIpv4, parseIpv6 } from '../src/net/ip.js';
import type { Host } from '../src/net/types.js';
import { clientAddress } from './client-address.js';
import { nextConnId } from './conn-id.js';
import { Deadlines } from './deadlines.js';
import { socksReplyOf } from './errors.js';
import { acceptFromFrozenOptions } from './frozen-accept.js';
import type { ConnectionSteer, OpenRequest, OpenResult } from './types.js';

export interface Socks5ServerOptions {
  /** SOCKS5 connects once per connection after a handshake of its own; the promise form is enough. */
  /** CONNECT's path to an upstream (the gateway's `Connector`). */
  readonly connector: { open(req: OpenRequest): Promise<OpenResult> };
  readonly log: Logger;
  readonly audit: AuditSink;
  /** From accept until the CONNECT request is complete. Default 10 000 ms. */
  readonly handshakeTimeoutMs?: number;
  readonly steer?: ConnectionSteer;
}

const VERSION = 0x05;

/** Method selection (client → server, §3):  VER(1)=5 | NMETHODS(1) | METHODS(NMETHODS) */
const METHOD_NO_AUTH = 0x00;
/**                  (server → client):      VER(1)=5 | METHOD(1)        0xFF = no acceptable method */
const METHOD_NONE_ACCEPTABLE = 0xff;

/**
 * Request (§4):
 *   +-----+-----+-------+------+----------+----------+
 *   | VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
 *   +-----+-----+-------+------+----------+----------+
 *   |  1  |  1  | X'00' |  1   | Variable |    2     |
 *   ATYP 1: 4-byte IPv4 | 3: LEN(1) then LEN bytes of name | 4: 16-byte IPv6
 */
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/**
 * Reply (§6):
 *   +-----+-----+-------+------+----------+----------+
 *   | VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
 *   +-----+-----+-------+------+----------+----------+
 *   |  1  |  1  | X'00' |  1   | Variable |    2     |
 */
const REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

/** Largest legal greeting (2 + 255 methods) and request (4 + 1 + 255 + 2): nothing bigger is ever buffered. */
const MAX_GREETING = 2 + 255;
const MAX_REQUEST = 4 + 1 + 255 + 2;
/** Bytes a client may send after its request before the reply (optimistic data, e.g. a ClientHello). */
const MAX_EARLY_DATA = 64 * 1024;
/** After an error reply we wait this long for the client to close before dropping the socket. */
const LINGER_MS = 1000;

type ParsedRequest =
  | { kind: 'need-more' }
  | { kind: 'error'; reply: number; why: string; audit?: { host: string; port: number; reason: string } }
  | { kind: 'connect'; host: Host; port: number; consumed: number };

type ParsedGreeting = { kind: 'need-more' } | { kind: 'bad-version'; version: number } | { kind: 'ok'; noAuth: boolean; consumed: number };

function parseGreeting(buf: Buffer): ParsedGreeting {
  if (buf.length < 1) return { kind: 'need-more' };
  if (buf[0] !== VERSION) return { kind: 'bad-version', version: buf[0] ?? -1 };
  if (buf.length < 2) return { kind: 'need-more' };
  const count = buf.readUInt8(1);
  if (buf.length < 2 + count) return { kind: 'need-more' };
  return { kind: 'ok', noAuth: buf.subarray(2, 2 + count).includes(METHOD_NO_AUTH), consumed: 2 + count };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseRequest(buf: Buffer): ParsedRequest {
  if (buf.length < 4) return { kind: 'need-more' };
  if (buf[0] !== VERSION) return { kind: 'error', reply: REPLY.generalFailure, why: `request version ${buf[0]}, expected 5` };
  const cmd = buf.readUInt8(1);
  // BIND (2) and UDP ASSOCIATE (3) would open inbound or UDP paths the policy cannot see.
  if (cmd !== CMD_CONNECT) return { kind: 'error', reply: REPLY.commandNotSupported, why: `command ${cmd} not supported` };
  const atyp = buf.readUInt8(3);
  let addrEnd: number;
  switch (atyp) {
    case ATYP_IPV4:
      addrEnd = 4 + 4;
      break;
    case ATYP_IPV6:
      addrEnd = 4 + 16;
      break;
    case ATYP_DOMAIN:
      if (buf.length < 5) return { kind: 'need-more' };
      addrEnd = 5 + buf.readUInt8(4);
      break;
    default:
      return { kind: 'error', reply: REPLY.addressTypeNotSupported, why: `address type ${atyp} not supported` };
  }
  if (buf.length < addrEnd + 2) return { kind: 'need-more' };
  const port = buf.readUInt16BE(addrEnd);
  const consumed = addrEnd + 2;

  if (atyp !== ATYP_DOMAIN) {
    return { kind: 'connect', host: { kind: 'ip', ip: ipFromBytes(buf.subarray(4, addrEnd)) }, port, consumed };
  }
  const raw = buf.subarray(5, addrEnd);
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    return invalidHost(printable(raw.toString('latin1')), port, 'domain is not valid UTF-8');
  }
  const parsed = parseHost(text, { brackets: 'forbidden' });
  if (!parsed.ok) return invalidHost(printable(text), port, parsed.error);
  return { kind: 'connect', host: parsed.host, port, consumed };
}

function invalidHost(shown: string, port: number, error: string): ParsedRequest {
  const reason = `invalid host: ${error}`;
  return { kind: 'error', reply: REPLY.notAllowed, why: reason, audit: { host: shown, port, reason } };
}

/** Audit lines and logs must not carry raw control bytes from a client (CRLF injection into text logs). */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A reply with BND.ADDR/BND.PORT; error replies carry 0.0.0.0:0 as RFC 1928 leaves them unspecified. */
function reply(code: number, bound?: { address: string | undefined; port: number | undefined }): Buffer {
  const text = bound?.address ?? '0.0.0.0';
  const unmapped = text.startsWith('::ffff:') && text.includes('.') ? text.slice(7) : text;
  const ip = parseIpv4(unmapped) ?? parseIpv6(text) ?? parseIpv4('0.0.0.0');
  const bytes = ip?.bytes ?? new Uint8Array(4);
  const out = Buffer.alloc(4 + bytes.length + 2);
  out.set([VERSION, code, 0x00, bytes.length === 4 ? ATYP_IPV4 : ATYP_IPV6], 0);
  out.set(bytes, 4);
  out.writeUInt16BE(bound?.port ?? 0, 4 + bytes.length);
  return out;
}

export function createSocks5Server(opts: Socks5ServerOptions): net.Server {
  // One sweep holds every handshake's time limit (`deadlines.ts`); each connection's entry is its own expiry.
  const handshakes = new Deadlines<() => void>(opts.handshakeTimeoutMs ?? 10_000, (expire) => expire());
  // noDelay as on the HTTP front: small writes (replies, interactive bytes) leave at once instead of waiting
  // behind an unacknowledged segment.
  // pauseOnConnect: see ConnectionSteer.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
    if (opts.steer?.(socket)) return;
    handleConnection(socket, opts, handshakes);
    socket.resume();
  });
  acceptFromFrozenOptions(server);
  return server;
}

type State = 'greeting' | 'request' | 'connecting' | 'tunnel' | 'closing';

function handleConnection(socket: net.Socket, opts: Socks5ServerOptions, handshakes: Deadlines<() => void>): void {
  const conn = nextConnId();
  const client = clientAddress(socket.remoteAddress);
  // The connection's lines are debug level: its fields are put together only for a line that is written (a child
  // logger made per connection cost more than the handshake's own parsing).
  const debug = (fields: Record<string, unknown>, msg: string): void => {
    if (opts.log.isLevelEnabled('debug')) opts.log.debug({ conn, channel: 'socks5', client, ...fields }, msg);
  };
  socket.on('error', (err: NodeJS.ErrnoException) => {
    debug({ err: err.code ?? err.message }, 'socks5 client socket error');
  });

  let state: State = 'greeting';
  let buffer: Buffer = Buffer.alloc(0);
  let clientGone = false;
  let lingerTimer: NodeJS.Timeout | undefined;

  const handshakeTimedOut = (): void => {
    debug({ state }, 'socks5 handshake timed out');
    socket.destroy();
  };
  const handshake = handshakes.add(handshakeTimedOut);

  socket.on('close', () => {
    clientGone = true;
    handshakes.delete(handshake);
    clearTimeout(lingerTimer);
  });
  socket.on('end', () => {
    // A client that half-closes before its tunnel exists cannot go on; without this the socket would stay
    // open (our side is still writable) until the connector answers. After an error reply the linger timer
    // owns the socket, so the reply is not cut off.
    if (state === 'greeting' || state === 'request' || state === 'connecting') {
      clientGone = true;
      socket.destroy();
    }
  });

  const fail = (answer: Buffer | null, why: string): void => {
    debug({ state, why }, 'socks5 request refused');
    handshakes.delete(handshake);
    state = 'closing';
    buffer = Buffer.alloc(0);
    if (answer === null) {
      socket.destroy();
      return;
    }
    // Half-close after the reply and keep draining input, so unread bytes do not turn our FIN into an RST that
    // could discard the reply before the client reads it.
    socket.end(answer);
    lingerTimer = setTimeout(() => socket.destroy(), LINGER_MS);
    lingerTimer.unref();
  };

  const onData = (chunk: Buffer): void => {
    if (state === 'closing' || state === 'tunnel') return;
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    if (state === 'connecting') {
      if (buffer.length > MAX_EARLY_DATA) {
        debug({}, 'socks5 client sent too much data before the reply');
        socket.destroy();
      }
      return;
    }
    step();
  };

  const step = (): void => {
    if (state === 'greeting') {
      const g = parseGreeting(buffer);
      if (g.kind === 'need-more') {
        if (buffer.length > MAX_GREETING) fail(null, 'greeting too long');
        return;
      }
      if (g.kind === 'bad-version') {
        fail(null, `greeting version ${g.version}, expected 5`);
        return;
      }
      if (!g.noAuth) {
        fail(Buffer.from([VERSION, METHOD_NONE_ACCEPTABLE]), 'client offers no acceptable authentication method');
        return;
      }
      socket.write(Buffer.from([VERSION, METHOD_NO_AUTH]));
      buffer = buffer.subarray(g.consumed);
      state = 'request';
    }
    if (state === 'request') {
      const r = parseRequest(buffer);
      if (r.kind === 'need-more') {
        if (buffer.length > MAX_REQUEST) fail(reply(REPLY.generalFailure), 'request too long');
        return;
      }
      if (r.kind === 'error') {
        if (r.audit) {
          opts.audit.write({
            event: 'decision',
            conn,
            channel: 'socks5',
            client,
            host: r.audit.host,
            port: r.audit.port,
            decision: 'deny',
            rule: 'builtin.invalid-host',
            reason: r.audit.reason,
          });
        }
        fail(reply(r.reply), r.why);
        return;
      }
      handshakes.delete(handshake);
      buffer = buffer.subarray(r.consumed);
      state = 'connecting';
      void connect(r.host, r.port);
    }
  };

  const connect = async (host: Host, port: number): Promise<void> => {
    let result: OpenResult;
    try {
      result = await opts.connector.open({ channel: 'socks5', client, host, port });
    } catch (err) {
      opts.log.error({ err, conn, channel: 'socks5', client }, 'socks5 connector failed');
      if (!clientGone) fail(reply(REPLY.generalFailure), 'internal error');
      return;
    }
    if (!result.ok) {
      if (!clientGone) {
        // The failure-to-reply mapping is shared with the HTTP statuses, in errors.ts.
        if (result.kind === 'deny') fail(reply(REPLY.notAllowed), result.decision.reason);
        else fail(reply(result.kind === 'audit' ? REPLY.generalFailure : socksReplyOf(result.failure)), result.message);
      }
      return;
    }
    if (clientGone || socket.destroyed) {
      result.tunnel.close('client disconnected before the upstream connection was established');
      return;
    }
    state = 'tunnel';
    const head = buffer;
    buffer = Buffer.alloc(0);
    socket.removeListener('data', onData);
    socket.write(reply(REPLY.succeeded, result.tunnel.localEndpoint()));
    result.tunnel.pipe(socket, head.length > 0 ? head : undefined);
  };

  socket.on('data', onData);
}
