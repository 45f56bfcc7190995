import type { IpAddress } from '../src/net/types.js';

/** Resolves names for the gateway itself: it dials only what it resolved and checked (no second lookup). */
export interface Resolver {
  /**
   * A and AAAA addresses for `name`, CNAMEs followed, with the smallest TTL seen (seconds).
   * Rejects with a `ResolveError` (code `ENOTFOUND`, `ETIMEOUT`, `ESERVFAIL`, ...) when there is no answer.
   */
  resolve(name: string): Promise<ResolvedAddresses>;
  /** One record type only, for the DNS channel (which answers A and AAAA questions separately). */
  resolveType(name: string, type: 'A' | 'AAAA'): Promise<ResolvedAddresses>;
  close(): void;
}

export interface ResolvedAddresses {
  readonly addresses: readonly IpAddress[];
  readonly ttl: number;
}

/** `host:port` of an upstream DNS server. */
export interface DnsServerAddress {
  readonly host: string;
  readonly port: number;
}

import type { Socket } from 'node:net';
import type { Host } from '../src/net/types.js';
import type { Channel, Deny } from '../src/policy/types.js';

export interface OpenRequest {
  readonly channel: Channel;
  /** Client source address, canonical IP text. */
  readonly client: string;
  readonly host: Host;
  readonly port: number;
  /**
   * Asked after the request was allowed, with the address it may dial: an idle connection to exactly that
   * address and port to use instead of dialing (absolute-URI HTTP keep-alive), or null.
   */
  readonly reuse?: (dialed: string, port: number) => Socket | null;
}

/**
 * Asked first for each connection a TCP front accepts, before anything is read (the fronts accept with
 * `pauseOnConnect`): true when it was handed to another process, which then serves it whole.
 */
export type ConnectionSteer = (socket: Socket) => boolean;

/** Why an upstream could not be reached; mapped to 502/504 and SOCKS reply codes in one place (`proxy/errors.ts`). */
export type UpstreamFailure = 'dns-not-found' | 'dns-failed' | 'refused' | 'unreachable' | 'timeout' | 'reset';

/** `upstream`: the node:net socket dialed, or null where the native relay dialed (CONNECT and SOCKS5 only). */
export type OpenResult<Upstream extends Socket | null = Socket | null> =
  | { readonly ok: true; readonly upstream: Upstream; readonly tunnel: Tunnel; readonly dialed: string }
  | { readonly ok: false; readonly kind: 'deny'; readonly decision: Deny }
  | { readonly ok: false; readonly kind: 'upstream'; readonly failure: UpstreamFailure; readonly message: string }
  /** The decision's audit line could not be written: the connection is refused (fail closed). */
  | { readonly ok: false; readonly kind: 'audit'; readonly message: string };

/**
 * The shared path of CONNECT and SOCKS5: decide on the host, resolve it ourselves, check every address, dial
 * the checked IP. Writes the decision audit line in every outcome.
 */
export interface Connector {
  /** Absolute-URI HTTP: node:http reads the upstream as a stream, so it is always a node:net socket. */
  open(req: OpenRequest & { readonly channel: 'http' }): Promise<OpenResult<Socket>>;
  open(req: OpenRequest): Promise<OpenResult>;
  /** `open` with a callback, for the per-connection fast path: `done` runs once, never synchronously. */
  openThen(req: OpenRequest, done: (result: OpenResult) => void): void;
}

/** An open upstream connection waiting for its client side; writes the close audit line when it ends. */
export interface Tunnel {
  /**
   * Joins client and upstream as a byte pipe. `head` is data the client already sent (CONNECT head, bytes read
   * during the handshake). Upstream bytes flow at once (server-first protocols work); the client's first bytes
   * are held until they are known not to be a TLS ClientHello naming another host than the one decided on
   * (no domain fronting). Then each upload chunk is written on as it is read (the client pauses while the upstream's
   * queue is full), and downloads go through the tunnel's `UpstreamRelay` (large reads into our own buffers,
   * written to the client as they are).
   * Both sockets are destroyed when the client closes, when either side errors, once the upstream has closed and
   * its bytes reached the client (a client that half-closed first still gets the whole answer), or after the idle
   * limit (the idle sweep, stamped by reads in both directions).
   */
  pipe(client: Socket, head?: Buffer): void;
  /** Ends the upstream side without piping (client went away, HTTP exchange done) and writes the close line once. */
  close(error?: string): void;
  /**
   * Ends the tunnel without closing the upstream (an HTTP exchange finished on a keep-alive connection): writes
   * the close line with this tunnel's bytes, lets go of the socket and returns it; null if the tunnel had closed.
   */
  release(): Socket | null;
  /** The upstream connection's own address and port (a SOCKS5 reply names them). */
  localEndpoint(): { readonly address: string; readonly port: number };
}
