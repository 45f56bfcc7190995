/**
 * The sandbox's only DNS server. It answers A/AAAA for names the policy allows, with only the addresses the
 * policy would let the sandbox reach, and refuses the rest without asking upstream, so a denied name leaks
 * nothing: not to an upstream resolver log, not through a tunnel in the query name to an attacker's zone.
 */
import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import dnsPacket, { type DecodedPacket, type Packet, type Question } from 'dns-packet';
import type { Logger } from 'pino';
import type { AuditSink, DecisionEvent } from '../src/audit/types.js';
import { parseHost } from '../src/net/host.js';
import type { IpAddress } from '../src/net/types.js';
import type { Decision, PolicyTable } from '../src/policy/types.js';
import { clientAddress } from './client-address.js';
import { nextConnId } from './conn-id.js';
import { ResolveError } from './resolver.js';
import type { Resolver } from './types.js';

export interface DnsServerOptions {
  readonly policies: PolicyTable;
  readonly resolver: Resolver;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly host: string;
  readonly port: number;
  /** A TCP connection with no complete query for this long is closed. Default 10 000 ms. */
  readonly tcpIdleTimeoutMs?: number;
}

export interface DnsServer {
  listen(): Promise<{ udp: AddressInfo; tcp: AddressInfo }>;
  close(): Promise<void>;
}

type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';
const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

/** Answers are short-lived so a policy or upstream change reaches the sandbox quickly. */
const MAX_ANSWER_TTL = 300;
/** RFC 1035 §4.2.1 limit without EDNS; with EDNS we honour the client's size up to the 1232 of DNS Flag Day 2020. */
const UDP_DEFAULT_SIZE = 512;
const UDP_MAX_SIZE = 1232;
/** Queries being answered at once, over all clients; more are dropped (UDP) or wait (TCP) instead of piling up. */
const MAX_INFLIGHT = 1024;
const MAX_TCP_INFLIGHT_PER_CONN = 16;
const MAX_TCP_CONNECTIONS = 256;
const BIND_ATTEMPTS = 10;

/** The response to send; over UDP the truncated variant replaces it when it does not fit. */
interface Handled {
  readonly response: Buffer;
  readonly truncatedResponse?: Buffer;
}

export function createDnsServer(opts: DnsServerOptions): DnsServer {
  const tcpIdleTimeoutMs = opts.tcpIdleTimeoutMs ?? 10_000;
  let udp: dgram.Socket | null = null;
  let tcp: net.Server | null = null;
  const tcpConnections = new Set<net.Socket>();
  let inflight = 0;
  let closed = false;

  const answerUdp = (msg: Buffer, rinfo: dgram.RemoteInfo, socket: dgram.Socket): void => {
    if (inflight >= MAX_INFLIGHT) {
      opts.log.warn('dns: too many queries in flight, dropping one');
      return;
    }
    inflight += 1;
    handleQuery(msg, clientAddress(rinfo.address), 'udp', opts)
      .then((handled) => {
        if (!handled || closed) return;
        socket.send(handled.truncatedResponse ?? handled.response, rinfo.port, rinfo.address, (err) => {
          if (err) opts.log.debug({ err: err.message }, 'dns: udp send failed');
        });
      })
      .catch((err: unknown) => opts.log.error({ err }, 'dns: query handling failed'))
      .finally(() => {
        inflight -= 1;
      });
  };

  const onTcpConnection = (socket: net.Socket): void => {
    tcpConnections.add(socket);
    socket.on('error', (err: NodeJS.ErrnoException) => opts.log.debug({ err: err.code ?? err.message }, 'dns: tcp socket error'));
    socket.on('close', () => tcpConnections.delete(socket));
    socket.setTimeout(tcpIdleTimeoutMs, () => socket.destroy());
    const client = clientAddress(socket.remoteAddress);
    let buffer: Buffer = Buffer.alloc(0);
    let running = 0;

    const drain = (): void => {
      // RFC 7766 §6.2.1: a client may pipeline; each message is a 2-byte length then that many bytes.
      while (buffer.length >= 2 && running < MAX_TCP_INFLIGHT_PER_CONN && !socket.destroyed) {
        const length = buffer.readUInt16BE(0);
        if (length < 12) {
          socket.destroy(); // shorter than a DNS header: not a DNS client
          return;
        }
        if (buffer.length < 2 + length) return;
        const msg = buffer.subarray(2, 2 + length);
        buffer = buffer.subarray(2 + length);
        running += 1;
        if (running >= MAX_TCP_INFLIGHT_PER_CONN) socket.pause();
        handleQuery(msg, client, 'tcp', opts)
          .then((handled) => {
            if (socket.destroyed) return;
            if (!handled) {
              socket.destroy(); // undecodable: the framing can no longer be trusted
              return;
            }
            const frame = Buffer.alloc(2 + handled.response.length);
            frame.writeUInt16BE(handled.response.length, 0);
            handled.response.copy(frame, 2);
            socket.write(frame);
          })
          .catch((err: unknown) => {
            opts.log.error({ err }, 'dns: query handling failed');
            socket.destroy();
          })
          .finally(() => {
            running -= 1;
            if (socket.isPaused() && !socket.destroyed) socket.resume();
            drain();
            finishIfDone();
          });
      }
    };

    let ended = false;
    const finishIfDone = (): void => {
      // The client half-closed: answer what is in flight, then close our side too.
      if (ended && running === 0 && !socket.destroyed) socket.end();
    };
    socket.on('end', () => {
      ended = true;
      finishIfDone();
    });
    socket.on('data', (chunk: Buffer) => {
      // Bounded: complete frames leave at once, and reading pauses while a connection has 16 queries in flight.
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      drain();
    });
  };

  const bindOnce = async (port: number): Promise<{ udp: dgram.Socket; tcp: net.Server }> => {
    const u = dgram.createSocket(net.isIPv6(opts.host) ? 'udp6' : 'udp4');
    u.on('error', (err) => opts.log.error({ err: err.message }, 'dns: udp socket error'));
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind(port, opts.host, () => {
        u.removeListener('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      u.close();
      throw err;
    });
    const udpPort = u.address().port;
    // Half-open: a client may send its queries and FIN; we still owe it the answers (finishIfDone closes).
    const t = net.createServer({ allowHalfOpen: true }, onTcpConnection);
    // Slow or idle TCP clients each hold a descriptor until their idle time-out; cap how many can.
    t.maxConnections = MAX_TCP_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        t.once('error', reject);
        t.listen(udpPort, opts.host, () => {
          t.removeListener('error', reject);
          resolve();
        });
      });
    } catch (err) {
      u.close();
      throw err;
    }
    t.on('error', (err) => opts.log.error({ err: err.message }, 'dns: tcp server error'));
    return { udp: u, tcp: t };
  };

  return {
    async listen() {
      if (udp || tcp) throw new Error('dns server is already listening');
      let lastError: unknown;
      // With port 0 the UDP port is free for UDP only; TCP on the same number may be taken, so pick again.
      for (let attempt = 0; attempt < (opts.port === 0 ? BIND_ATTEMPTS : 1); attempt += 1) {
        try {
          const bound = await bindOnce(opts.port);
          udp = bound.udp;
          tcp = bound.tcp;
          const socket = bound.udp;
          socket.on('message', (msg, rinfo) => answerUdp(msg, rinfo, socket));
          return { udp: socket.address(), tcp: bound.tcp.address() as AddressInfo };
        } catch (err) {
          lastError = err;
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
        }
      }
      throw new Error(`dns server cannot listen on ${opts.host}:${opts.port}: ${(lastError as Error).message}`);
    },

    async close() {
      closed = true;
      const u = udp;
      const t = tcp;
      udp = null;
      tcp = null;
      for (const s of tcpConnections) s.destroy();
      await Promise.all([
        u ? new Promise<void>((resolve) => u.close(() => resolve())) : Promise.resolve(),
        t ? new Promise<void>((resolve) => t.close(() => resolve())) : Promise.resolve(),
      ]);
    },
  };
}

interface QueryContext {
  readonly query: DecodedPacket;
  readonly question: Question;
  readonly transport: 'udp' | 'tcp';
  readonly udpLimit: number;
}

/** Returns null when the packet must be dropped (undecodable, or not a query at all). */
async function handleQuery(msg: Buffer, client: string, transport: 'udp' | 'tcp', opts: DnsServerOptions): Promise<Handled | null> {
  let query: DecodedPacket;
  try {
    query = dnsPacket.decode(msg);
  } catch (err) {
    opts.log.debug({ client, err: (err as Error).message }, 'dns: dropped undecodable packet');
    return null;
  }
  // Never answer a response: two DNS servers pointed at each other would ping-pong forever.
  if (query.flag_qr) return null;

  const conn = nextConnId();
  const questions = query.questions ?? [];
  const opcode = (query as DecodedPacket & { opcode?: string }).opcode;
  const first = questions[0];
  if (opcode !== 'QUERY' || questions.length !== 1 || !first) {
    const why = opcode !== 'QUERY' ? `opcode ${opcode ?? '?'} is not QUERY` : `${questions.length} questions, expected 1`;
    audit(opts, { conn, client, host: printable(first?.name ?? ''), qtype: first?.type ?? '', decision: 'deny', rule: 'protocol', reason: why });
    return { response: encodeResponse(query, null, 'FORMERR', [], 0) };
  }

  const ctx: QueryContext = { query, question: first, transport, udpLimit: udpLimitOf(query) };
  const outcome = await decide(ctx, client, opts);
  audit(opts, {
    conn,
    client,
    host: outcome.host,
    qtype: first.type,
    decision: outcome.decision,
    rule: outcome.rule,
    reason: outcome.reason,
    dialed: outcome.answers.map((a) => a.text),
  });
  return respond(ctx, outcome.rcode, outcome.answers, outcome.ttl);
}

interface Outcome {
  readonly host: string;
  readonly rcode: Rcode;
  readonly answers: readonly IpAddress[];
  readonly ttl: number;
  readonly decision: DecisionEvent['decision'];
  readonly rule: DecisionEvent['rule'];
  readonly reason: string;
}

async function decide(ctx: QueryContext, client: string, opts: DnsServerOptions): Promise<Outcome> {
  const { question } = ctx;
  const none = { answers: [], ttl: 0 };
  const parsed = parseHost(question.name, { brackets: 'forbidden' });
  if (!parsed.ok) {
    return { host: printable(question.name), rcode: 'NXDOMAIN', ...none, decision: 'deny', rule: 'builtin.invalid-host', reason: `invalid name: ${parsed.error}` };
  }
  if (parsed.host.kind === 'ip') {
    // A question for "1.2.3.4" has no answer in the real DNS either; answering it would only invite confusion.
    return { host: parsed.host.ip.text, rcode: 'NXDOMAIN', ...none, decision: 'deny', rule: 'builtin.invalid-host', reason: 'an IP address is not a DNS name' };
  }
  const name = parsed.host.name;
  if ((question.class ?? 'IN') !== 'IN') {
    return { host: name, rcode: 'REFUSED', ...none, decision: 'deny', rule: 'protocol', reason: `class ${question.class ?? '?'} is not served` };
  }

  const policy = opts.policies.forClient(client);
  const verdict = policy.decideName(name);
  const type = question.type;
  if (!verdict.allow) {
    return { host: name, rcode: type === 'A' || type === 'AAAA' ? 'NXDOMAIN' : 'REFUSED', ...none, ...fromDecision(verdict) };
  }
  if (type !== 'A' && type !== 'AAAA') {
    // The gateway only ever dials addresses; MX, TXT, SRV, HTTPS... would be a side channel with no use here.
    return { host: name, rcode: 'NOERROR', ...none, ...fromDecision(verdict), reason: `${verdict.reason}; ${type} answered empty` };
  }

  let resolved;
  try {
    resolved = await opts.resolver.resolveType(name, type);
  } catch (err) {
    const code = err instanceof ResolveError ? err.code : (err as { code?: string }).code;
    const rcode: Rcode = code === 'ENOTFOUND' ? 'NXDOMAIN' : 'SERVFAIL';
    return { host: name, rcode, ...none, decision: 'error', rule: 'upstream', reason: `upstream: ${code ?? (err as Error).message}` };
  }

  const kept: IpAddress[] = [];
  let firstDenial: Decision | null = null;
  for (const ip of resolved.addresses) {
    const d = policy.decideAnswer(ip);
    if (d.allow) kept.push(ip);
    else firstDenial ??= d;
  }
  if (resolved.addresses.length > 0 && kept.length === 0 && firstDenial) {
    return { host: name, rcode: 'REFUSED', ...none, ...fromDecision(firstDenial), reason: `every answer filtered: ${firstDenial.reason}` };
  }
  const filtered = resolved.addresses.length - kept.length;
  return {
    host: name,
    rcode: 'NOERROR',
    answers: kept,
    ttl: Math.min(resolved.ttl, MAX_ANSWER_TTL),
    ...fromDecision(verdict),
    reason: filtered > 0 ? `${verdict.reason}; ${filtered} answer(s) filtered` : verdict.reason,
  };
}

function fromDecision(d: Decision): Pick<Outcome, 'decision' | 'rule' | 'reason'> {
  return { decision: d.allow ? 'allow' : 'deny', rule: d.rule, reason: d.reason };
}

function audit(
  opts: DnsServerOptions,
  e: { conn: string; client: string; host: string; qtype: string; decision: DecisionEvent['decision']; rule: DecisionEvent['rule']; reason: string; dialed?: string[] },
): void {
  opts.audit.write({
    event: 'decision',
    conn: e.conn,
    channel: 'dns',
    client: e.client,
    host: e.host,
    port: 53,
    ...(e.dialed === undefined ? {} : { dialed: e.dialed }),
    decision: e.decision,
    rule: e.rule,
    reason: e.reason,
    qtype: e.qtype,
  });
}

/** RFC 6891 §6.2.5: the requestor's advertised payload size, never below 512. */
function udpLimitOf(query: DecodedPacket): number {
  const opt = (query.additionals ?? []).find((a) => a.type === 'OPT');
  if (!opt || opt.type !== 'OPT') return UDP_DEFAULT_SIZE;
  return Math.min(Math.max(opt.udpPayloadSize, UDP_DEFAULT_SIZE), UDP_MAX_SIZE);
}

function respond(ctx: QueryContext, rcode: Rcode, ips: readonly IpAddress[], ttl: number): Handled {
  const response = encodeResponse(ctx.query, ctx.question, rcode, ips, ttl);
  if (ctx.transport === 'tcp' || response.length <= ctx.udpLimit) return { response };
  // RFC 2181 §9: a truncated answer carries no partial RRset; the client retries over TCP.
  return { response, truncatedResponse: encodeResponse(ctx.query, ctx.question, rcode, [], 0, true) };
}

const QUESTION_NAME_POINTER = 0xc000 | 12; // the question name always starts right after the 12-byte header
const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;

/**
 * Header and question through dns-packet; answer records by hand, because every answer is owned by the question
 * name and a compression pointer to it keeps 40 A records at 640 bytes instead of dns-packet's uncompressed
 * ~1.4 KB (which would force TC and a TCP retry for ordinary multi-address names).
 */
function encodeResponse(
  query: DecodedPacket,
  question: Question | null,
  rcode: Rcode,
  ips: readonly IpAddress[],
  ttl: number,
  truncated = false,
): Buffer {
  let flags = dnsPacket.RECURSION_AVAILABLE | RCODE[rcode];
  if (query.flag_rd) flags |= dnsPacket.RECURSION_DESIRED;
  if (query.flag_cd) flags |= dnsPacket.CHECKING_DISABLED;
  if (truncated) flags |= dnsPacket.TRUNCATED_RESPONSE;
  const base: Packet = { type: 'response', id: query.id ?? 0, flags, questions: [] };
  let head: Buffer;
  let answers = ips;
  try {
    head = dnsPacket.encode(question ? { ...base, questions: [{ name: question.name, type: question.type, class: question.class ?? 'IN' }] } : base);
  } catch {
    // A question dns-packet decoded but cannot re-encode (odd label bytes): answer without echoing it.
    head = dnsPacket.encode(base);
    answers = [];
  }
  if (!question) answers = [];

  const parts: Buffer[] = [head];
  for (const ip of answers) {
    const rr = Buffer.alloc(12 + ip.bytes.length);
    rr.writeUInt16BE(QUESTION_NAME_POINTER, 0);
    rr.writeUInt16BE(ip.family === 4 ? TYPE_A : TYPE_AAAA, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(Math.max(0, Math.floor(ttl)), 6);
    rr.writeUInt16BE(ip.bytes.length, 10);
    rr.set(ip.bytes, 12);
    parts.push(rr);
  }
  // RFC 6891 §7: answer an EDNS query with an OPT record (root name, our payload size, version 0, no options).
  const hasOpt = (query.additionals ?? []).some((a) => a.type === 'OPT');
  if (hasOpt) {
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(TYPE_OPT, 1);
    opt.writeUInt16BE(UDP_MAX_SIZE, 3);
    parts.push(opt);
  }
  const out = Buffer.concat(parts);
  out.writeUInt16BE(answers.length, 6); // ANCOUNT
  out.writeUInt16BE(hasOpt ? 1 : 0, 10); // ARCOUNT
  return out;
}

/** Names from the wire can hold any byte; keep audit lines and logs free of control characters. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.slice(0, 255).replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
