import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type StringAnswer } from 'dns-packet';
import { parseHost } from '../src/net/host.js';
import { parseIpv4, parseIpv6 } from '../src/net/ip.js';
import type { IpAddress } from '../src/net/types.js';
import type { DnsServerAddress, ResolvedAddresses, Resolver } from './types.js';

/**
 * A small stub resolver for the gateway's own lookups. The gateway must dial exactly the address it checked,
 * so it resolves names itself instead of letting `net.connect` (getaddrinfo) resolve them a second time.
 *
 * Spoofing: a response is accepted only if it comes from the address and port queried, carries the random
 * 16-bit ID of a pending query and repeats its question. All queries share one socket (per address family),
 * so the source port is not randomised per query: the upstream is expected to be a nearby recursive resolver
 * (the host's stub, Docker's embedded DNS), not a server across the internet.
 */

export type ResolveErrorCode = 'ENOTFOUND' | 'ESERVFAIL' | 'ETIMEOUT' | 'EBADNAME' | 'ECANCELLED';

export class ResolveError extends Error {
  override readonly name = 'ResolveError';

  constructor(
    readonly code: ResolveErrorCode,
    message: string,
  ) {
    super(message);
  }
}

type QType = 'A' | 'AAAA';

export interface UpstreamResolverOptions {
  /** Per attempt; each server is tried `1 + retries` times. Default 2000 ms. */
  readonly timeoutMs?: number;
  /** Default 1. */
  readonly retries?: number;
  /** Cache entries (positive and negative). Default 10 000. */
  readonly cacheSize?: number;
  /** Upper bound on how long a positive answer is cached, seconds. Default 3600. */
  readonly maxTtl?: number;
  /** Upper bound on how long NXDOMAIN/NODATA is cached, seconds. Default 30. */
  readonly maxNegativeTtl?: number;
  /** Clock in ms, for tests. */
  readonly now?: () => number;
}

interface Server {
  readonly ip: IpAddress;
  readonly port: number;
  readonly label: string;
}

/** What one lookup of (name, type) produced, before CNAME re-queries. */
interface LookupResult {
  readonly addresses: readonly IpAddress[];
  readonly ttl: number;
  /** Set when the answer stopped at a CNAME whose target had no records in the same response. */
  readonly danglingCname?: { readonly target: string; readonly hops: number };
}

interface CacheEntry {
  readonly expiresAt: number;
  readonly value: LookupResult | ResolveError;
}

interface PendingUdp {
  readonly server: Server;
  readonly name: string;
  readonly type: QType;
  readonly resolve: (packet: DecodedPacket) => void;
  readonly reject: (err: ResolveError) => void;
  readonly timer: NodeJS.Timeout;
}

/** RFC 1034 §3.6.2 allows chains; we bound them (inside one answer and across re-queries). */
const MAX_CNAME_HOPS = 8;
const UDP_PAYLOAD = 1232;
const MAX_TCP_MESSAGE = 65535;

export class UpstreamResolver implements Resolver {
  private readonly servers: readonly Server[];
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly cacheSize: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;

  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<LookupResult>>();
  private readonly pending = new Map<number, PendingUdp>();
  private readonly tcpSockets = new Set<net.Socket>();
  private sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  private closed = false;

  constructor(servers: readonly DnsServerAddress[], options: UpstreamResolverOptions = {}) {
    if (servers.length === 0) throw new Error('UpstreamResolver needs at least one DNS server');
    this.servers = servers.map(toServer);
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.retries = options.retries ?? 1;
    this.cacheSize = options.cacheSize ?? 10_000;
    this.maxTtl = options.maxTtl ?? 3600;
    this.maxNegativeTtl = options.maxNegativeTtl ?? 30;
    this.now = options.now ?? Date.now;
  }

  /** The servers of a resolv.conf (glibc's default 127.0.0.1 when it names none). */
  static fromResolvConf(path = '/etc/resolv.conf', options: UpstreamResolverOptions = {}): UpstreamResolver {
    const servers = parseResolvConf(readFileSync(path, 'utf8'));
    return new UpstreamResolver(servers.length > 0 ? servers : [{ host: '127.0.0.1', port: 53 }], options);
  }

  async resolve(name: string): Promise<ResolvedAddresses> {
    const [a, aaaa] = await Promise.allSettled([this.resolveType(name, 'A'), this.resolveType(name, 'AAAA')]);
    const found = [a, aaaa].flatMap((r) => (r.status === 'fulfilled' && r.value.addresses.length > 0 ? [r.value] : []));
    if (found.length > 0) {
      return {
        addresses: found.flatMap((r) => r.addresses),
        ttl: Math.min(...found.map((r) => r.ttl)),
      };
    }
    // Neither family has an address: report the more telling failure, A's first.
    for (const r of [a, aaaa]) if (r.status === 'rejected') throw r.reason;
    throw new ResolveError('ENOTFOUND', `${name} has no A or AAAA records`);
  }

  /** Resolves to an empty address list for NODATA; rejects for NXDOMAIN and failures. */
  async resolveType(name: string, type: QType): Promise<ResolvedAddresses> {
    let current = name;
    let ttl = Number.POSITIVE_INFINITY;
    let hops = 0;
    for (;;) {
      const result = await this.lookup(current, type).catch((err: unknown) => {
        // An unusable CNAME target is the upstream's fault, not the caller's.
        if (hops > 0 && err instanceof ResolveError && err.code === 'EBADNAME') {
          throw new ResolveError('ESERVFAIL', `CNAME chain from ${name} leads to an invalid name`);
        }
        throw err;
      });
      ttl = Math.min(ttl, result.ttl);
      if (!result.danglingCname) {
        return { addresses: result.addresses, ttl: Number.isFinite(ttl) ? ttl : 0 };
      }
      hops += result.danglingCname.hops;
      if (hops > MAX_CNAME_HOPS) {
        throw new ResolveError('ESERVFAIL', `CNAME chain from ${name} is longer than ${MAX_CNAME_HOPS}`);
      }
      current = result.danglingCname.target;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new ResolveError('ECANCELLED', 'resolver closed'));
    }
    for (const s of this.tcpSockets) s.destroy();
    this.tcpSockets.clear();
    for (const socket of [this.sockets[4], this.sockets[6]]) socket?.close();
    this.sockets = {};
    this.cache.clear();
  }

  /** Cache, then in-flight de-duplication, then the network. */
  private lookup(raw: string, type: QType): Promise<LookupResult> {
    if (this.closed) return Promise.reject(new ResolveError('ECANCELLED', 'resolver closed'));
    // Callers and CNAME targets alike go through parseHost: what we send is the canonical (punycode) name.
    const valid = parseHost(raw, { brackets: 'forbidden' });
    if (!valid.ok || valid.host.kind !== 'name') {
      return Promise.reject(new ResolveError('EBADNAME', `not a resolvable DNS name: ${JSON.stringify(raw.slice(0, 255))}`));
    }
    const name = valid.host.name;
    const key = `${type} ${name}`;
    const cached = this.fromCache(key);
    if (cached) return cached.value instanceof ResolveError ? Promise.reject(cached.value) : Promise.resolve(cached.value);

    const running = this.inflight.get(key);
    if (running) return running;
    const started = this.queryServers(name, type).then(
      (result) => {
        this.remember(key, result, result.addresses.length > 0 ? result.ttl : Math.min(result.ttl, this.maxNegativeTtl));
        return result;
      },
      (err: unknown) => {
        if (err instanceof NegativeAnswer) {
          this.remember(key, err.error, Math.min(err.ttl, this.maxNegativeTtl));
          throw err.error;
        }
        throw err;
      },
    );
    const tracked = started.finally(() => this.inflight.delete(key));
    this.inflight.set(key, tracked);
    return tracked;
  }

  private fromCache(key: string): { value: LookupResult | ResolveError } | null {
    const entry = this.cache.get(key);
    if (!entry) return null;
    const left = entry.expiresAt - this.now();
    if (left <= 0) {
      this.cache.delete(key);
      return null;
    }
    if (entry.value instanceof ResolveError) return { value: entry.value };
    // Hand out the remaining lifetime, so downstream caches do not extend it.
    return { value: { ...entry.value, ttl: Math.max(1, Math.ceil(left / 1000)) } };
  }

  private remember(key: string, value: LookupResult | ResolveError, ttlSeconds: number): void {
    const ttl = Math.min(ttlSeconds, this.maxTtl);
    if (!(ttl > 0) || this.closed) return;
    this.cache.delete(key);
    while (this.cache.size >= this.cacheSize) {
      // Map iteration is insertion order: evict the oldest entry.
      const oldest = this.cache.keys().next();
      if (oldest.done === true) break;
      this.cache.delete(oldest.value);
    }
    this.cache.set(key, { expiresAt: this.now() + ttl * 1000, value });
  }

  /** Servers in order; each gets `1 + retries` UDP attempts. Definitive answers (incl. NXDOMAIN) stop the walk. */
  private async queryServers(name: string, type: QType): Promise<LookupResult> {
    let lastError: ResolveError = new ResolveError('ETIMEOUT', `no DNS server answered for ${name}`);
    for (const server of this.servers) {
      for (let attempt = 0; attempt <= this.retries; attempt += 1) {
        if (this.closed) throw new ResolveError('ECANCELLED', 'resolver closed');
        let response: DecodedPacket;
        try {
          response = await this.queryUdp(server, name, type);
          if (response.flag_tc) response = await this.queryTcp(server, name, type);
        } catch (err) {
          if (!(err instanceof ResolveError) || err.code === 'ECANCELLED') throw err;
          lastError = err;
          if (err.code === 'ETIMEOUT') continue; // retry the same server
          break; // connection-level failure: next server
        }
        const outcome = interpret(response, name, type);
        if (outcome.kind === 'failed') {
          lastError = outcome.error;
          break; // SERVFAIL/REFUSED: the next server may know better
        }
        // NXDOMAIN is as definitive as an answer: no other server is asked.
        if (outcome.kind === 'nxdomain') throw new NegativeAnswer(outcome.error, outcome.ttl);
        return outcome.result;
      }
    }
    throw lastError;
  }

  private socketFor(family: 4 | 6): dgram.Socket {
    const existing = this.sockets[family];
    if (existing) return existing;
    const socket = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    socket.on('message', (msg, rinfo) => this.onUdpMessage(msg, rinfo));
    socket.on('error', () => {
      // A broken socket is replaced on the next query; queries in flight run into their time-out.
      if (this.sockets[family] === socket) delete this.sockets[family];
      try {
        socket.close();
      } catch {
        // already closed
      }
    });
    socket.unref();
    this.sockets[family] = socket;
    return socket;
  }

  private queryUdp(server: Server, name: string, type: QType): Promise<DecodedPacket> {
    return new Promise((resolve, reject) => {
      const id = this.freeId();
      const query = encodeQuery(id, name, type);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ResolveError('ETIMEOUT', `DNS query ${type} ${name} to ${server.label} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, { server, name, type, resolve, reject, timer });
      const failed = (err: Error): void => {
        if (!this.pending.has(id)) return;
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ResolveError('ESERVFAIL', `cannot send to DNS server ${server.label}: ${err.message}`));
      };
      try {
        this.socketFor(server.ip.family).send(query, server.port, server.ip.text, (err) => {
          if (err) failed(err);
        });
      } catch (err) {
        failed(err as Error); // a socket that broke between queries throws synchronously
      }
    });
  }

  private freeId(): number {
    for (;;) {
      const id = randomInt(0, 65536);
      if (!this.pending.has(id)) return id;
    }
  }

  private onUdpMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return;
    const p = this.pending.get(msg.readUInt16BE(0));
    if (!p) return;
    if (rinfo.port !== p.server.port || !sameAddress(rinfo.address, p.server.ip)) return;
    const packet = decodeResponse(msg, p.name, p.type);
    if (!packet) return;
    clearTimeout(p.timer);
    this.pending.delete(msg.readUInt16BE(0));
    p.resolve(packet);
  }

  /** RFC 7766: the same question over TCP when the UDP answer was truncated. One connection per query. */
  private queryTcp(server: Server, name: string, type: QType): Promise<DecodedPacket> {
    return new Promise((resolve, reject) => {
      const id = randomInt(0, 65536);
      const query = encodeQuery(id, name, type);
      const socket = net.connect({ host: server.ip.text, port: server.port });
      this.tcpSockets.add(socket);
      let received = Buffer.alloc(0);
      let settled = false;
      const finish = (err: ResolveError | null, packet?: DecodedPacket): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.tcpSockets.delete(socket);
        socket.destroy();
        if (err) reject(err);
        else if (packet) resolve(packet);
      };
      const timer = setTimeout(
        () => finish(new ResolveError('ETIMEOUT', `DNS query ${type} ${name} to ${server.label} over TCP timed out`)),
        this.timeoutMs,
      );
      timer.unref();
      socket.on('error', (err) => finish(new ResolveError('ESERVFAIL', `DNS over TCP to ${server.label} failed: ${err.message}`)));
      socket.on('close', () => finish(new ResolveError('ESERVFAIL', `DNS server ${server.label} closed the TCP connection without answering`)));
      socket.on('connect', () => {
        const frame = Buffer.alloc(2 + query.length);
        frame.writeUInt16BE(query.length, 0);
        query.copy(frame, 2);
        socket.write(frame);
      });
      socket.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (received.length > 2 + MAX_TCP_MESSAGE) received = received.subarray(0, 2 + MAX_TCP_MESSAGE);
        if (received.length < 2) return;
        const length = received.readUInt16BE(0);
        if (received.length < 2 + length) return;
        const msg = received.subarray(2, 2 + length);
        const packet = msg.length >= 12 && msg.readUInt16BE(0) === id ? decodeResponse(msg, name, type) : null;
        finish(packet ? null : new ResolveError('ESERVFAIL', `DNS server ${server.label} sent a mismatched TCP answer`), packet ?? undefined);
      });
    });
  }
}

/** NXDOMAIN/NODATA travel as this internally so `lookup` can cache them with their own TTL. */
class NegativeAnswer extends Error {
  constructor(
    readonly error: ResolveError,
    readonly ttl: number,
  ) {
    super(error.message);
  }
}

type Interpreted =
  | { readonly kind: 'answer'; readonly result: LookupResult }
  | { readonly kind: 'nxdomain'; readonly error: ResolveError; readonly ttl: number }
  | { readonly kind: 'failed'; readonly error: ResolveError };

function interpret(response: DecodedPacket, name: string, type: QType): Interpreted {
  const rcode = (response as DecodedPacket & { rcode?: string }).rcode ?? 'NOERROR';
  if (rcode === 'NXDOMAIN') {
    return { kind: 'nxdomain', error: new ResolveError('ENOTFOUND', `${name} does not exist (NXDOMAIN)`), ttl: negativeTtl(response) };
  }
  if (rcode !== 'NOERROR') return { kind: 'failed', error: new ResolveError('ESERVFAIL', `DNS server answered ${rcode} for ${type} ${name}`) };
  const chain = followChain(response.answers ?? [], name, type);
  if (chain instanceof ResolveError) return { kind: 'failed', error: chain };
  if (chain.addresses.length > 0 || chain.danglingCname) return { kind: 'answer', result: chain };
  return { kind: 'answer', result: { addresses: [], ttl: negativeTtl(response) } }; // NODATA
}

/** Walks name → CNAME → ... inside one answer section and collects the records of `type` at the end. */
function followChain(answers: readonly Answer[], qname: string, type: QType): LookupResult | ResolveError {
  let current = qname;
  let ttl = Number.POSITIVE_INFINITY;
  for (let hops = 0; hops <= MAX_CNAME_HOPS; hops += 1) {
    const here = answers.filter((a): a is StringAnswer => isIn(a) && normaliseName(a.name) === current);
    const addresses: IpAddress[] = [];
    for (const record of here) {
      if (record.type !== type) continue;
      const ip = type === 'A' ? parseIpv4(record.data) : parseIpv6(record.data);
      if (!ip) continue;
      addresses.push(ip);
      ttl = Math.min(ttl, record.ttl ?? 0);
    }
    if (addresses.length > 0) return { addresses, ttl };
    const cname = here.find((r) => r.type === 'CNAME');
    if (!cname) {
      if (current === qname) return { addresses: [], ttl: 0 };
      return { addresses: [], ttl: Number.isFinite(ttl) ? ttl : 0, danglingCname: { target: current, hops } };
    }
    ttl = Math.min(ttl, cname.ttl ?? 0);
    current = normaliseName(cname.data);
  }
  return new ResolveError('ESERVFAIL', `CNAME chain from ${qname} is longer than ${MAX_CNAME_HOPS}`);
}

function isIn(a: Answer): boolean {
  return !('class' in a) || a.class === undefined || a.class === 'IN';
}

/** RFC 2308 §5: the SOA in the authority section bounds how long a negative answer may be cached. */
function negativeTtl(response: DecodedPacket): number {
  for (const a of response.authorities ?? []) {
    if (a.type === 'SOA') return Math.min(a.ttl ?? 0, a.data.minimum ?? 0);
  }
  return 0; // no SOA: do not cache
}

function encodeQuery(id: number, name: string, type: QType): Buffer {
  const packet: Packet = {
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  };
  return dnsPacket.encode(packet);
}

/** A response is ours only if it is a response and repeats our question exactly. */
function decodeResponse(msg: Buffer, name: string, type: QType): DecodedPacket | null {
  let packet: DecodedPacket;
  try {
    packet = dnsPacket.decode(msg);
  } catch {
    return null;
  }
  const q = packet.questions;
  if (!packet.flag_qr || !q || q.length !== 1) return null;
  const [question] = q;
  if (!question || question.type !== type || normaliseName(question.name) !== name) return null;
  return packet;
}

function normaliseName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function sameAddress(text: string, ip: IpAddress): boolean {
  const unmapped = text.startsWith('::ffff:') && text.includes('.') ? text.slice(7) : text;
  const parsed = ip.family === 4 ? parseIpv4(unmapped) : parseIpv6(text.replace(/%.*$/, ''));
  return parsed !== null && parsed.text === ip.text;
}

function toServer(s: DnsServerAddress): Server {
  const ip = parseIpv4(s.host) ?? parseIpv6(s.host);
  if (!ip) throw new Error(`DNS server address must be an IP address, got ${JSON.stringify(s.host)}`);
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) {
    throw new Error(`DNS server port must be 1..65535, got ${s.port}`);
  }
  const label = ip.family === 6 ? `[${ip.text}]:${s.port}` : `${ip.text}:${s.port}`;
  return { ip, port: s.port, label };
}

/** `nameserver` lines of resolv.conf(5); scoped IPv6 (`fe80::1%eth0`) and unparsable entries are skipped. */
export function parseResolvConf(text: string): DnsServerAddress[] {
  const servers: DnsServerAddress[] = [];
  for (const line of text.split('\n')) {
    const [keyword, value] = line.replace(/[#;].*$/, '').trim().split(/\s+/);
    if (keyword !== 'nameserver' || value === undefined) continue;
    if (parseIpv4(value) ?? parseIpv6(value)) servers.push({ host: value, port: 53 });
  }
  return servers;
}
