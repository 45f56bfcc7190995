/**
 * The sandbox's only DNS server. It answers A/AAAA for names the policy allows, with only the addresses the
 * policy would let the sandbox reach, and refuses the rest without asking upstream, so a denied name leaks
 * nothing: not to an upstream resolver log, not through a tunnel in the query name to an attacker's zone.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net, { type AddressInfo } from 'node:net';
import dnsPacket, { type DecodedPacket, type Question } from 'dns-packet';
import type { Logger } from 'pino';
import type { AuditSink, DecisionEvent, SerializedEvent } from '../src/audit/types.js';
import { parseHost } from '../src/net/host.js';
import type { IpAddress } from '../src/net/types.js';
import type { Decision, Policy, PolicyTable } from '../src/policy/types.js';
import { clientAddress } from './client-address.js';
import { nextConnId } from './conn-id.js';
import { DnsAnswerCache } from './dns-answer-cache.js';
import { echoedFlagsOf, encodeResponse, parseSimpleQuery, udpLimitOf, type Rcode, type SimpleQuery } from './dns-wire.js';
import { acceptFromFrozenOptions } from './frozen-accept.js';
import { ResolveError } from './resolver.js';
import type { Resolver } from './types.js';
import { openDatagramIo, type DatagramIo, type DatagramIoKind, type DatagramReply, type DatagramSource } from './udp-batch.js';

export interface DnsServerOptions {
  readonly policies: PolicyTable;
  readonly resolver: Resolver;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly host: string;
  readonly port: number;
  /** A TCP connection with no complete query for this long is closed. Default 10 000 ms. */
  readonly tcpIdleTimeoutMs?: number;
  /**
   * UDP reads and answers in batches (`proxy/udp-batch.ts`) where the native part is built, else node:dgram's
   * per-datagram path; 'dgram' always takes the latter. Default 'batched'.
   */
  readonly datagramIo?: DatagramIoKind;
}

export interface DnsServer {
  /** `io`: how UDP queries are read and answered (`proxy/udp-batch.ts`). */
  listen(): Promise<{ udp: AddressInfo; tcp: AddressInfo; io: DatagramIoKind }>;
  /** Stop or resume reading UDP queries, for a cluster where one worker reads the shared socket (DatagramIo). */
  setUdpReading(on: boolean): void;
  close(): Promise<void>;
}

/** Answers are short-lived so a policy or upstream change reaches the sandbox quickly. */
const MAX_ANSWER_TTL = 300;
/** Queries being answered at once, over all clients; more are dropped (UDP) or wait (TCP) instead of piling up. */
const MAX_INFLIGHT = 1024;
const MAX_TCP_INFLIGHT_PER_CONN = 16;
const MAX_TCP_CONNECTIONS = 256;
const BIND_ATTEMPTS = 10;

/**
 * A query's audit event with its JSON, and the one response to send for it (over UDP, the truncated one if the
 * full one is too big).
 */
interface Answered extends SerializedEvent {
  readonly event: DecisionEvent;
  readonly response: Buffer;
}

/**
 * Every address the server sends to is the IP a datagram came from: answer it in place, without dns.lookup and
 * its extra tick per send. (Node passes the family as a number here, whatever @types/node says.)
 */
const literalLookup = (
  address: string,
  options: dns.LookupOneOptions | number,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void => {
  const family = net.isIP(address);
  if (family !== 0) callback(null, address, family);
  else dns.lookup(address, typeof options === 'number' ? { family: options } : options, callback);
};

export function createDnsServer(opts: DnsServerOptions): DnsServer {
  const tcpIdleTimeoutMs = opts.tcpIdleTimeoutMs ?? 10_000;
  const cache = new DnsAnswerCache<PreparedOutcome>();
  let udp: dgram.Socket | null = null;
  let io: DatagramIo | null = null;
  let tcp: net.Server | null = null;
  const tcpConnections = new Set<net.Socket>();
  let inflight = 0;
  let closed = false;

  // UDP answers wait for their audit lines: the sink writes a turn's lines in one write(2) (`record`), and the
  // answers of that batch are sent once it is written. An answer whose line could not be written is not sent.
  let batch: { readonly committed: Promise<void>; readonly sends: DatagramReply[] } | null = null;
  const queueUdp = (answered: Answered, from: DatagramSource): void => {
    const committed = opts.audit.recordSerialized(answered);
    if (batch?.committed !== committed) {
      const sends: DatagramReply[] = [];
      batch = { committed, sends };
      committed.then(
        () => {
          // A send error is a lost datagram, which the client retries like any other loss.
          if (!closed) io?.sendAll(sends);
        },
        (err: unknown) => opts.log.error({ err: (err as Error).message, withheld: sends.length }, 'dns: audit trail write failed; answers withheld'),
      );
    }
    batch.sends.push({ response: answered.response, to: from });
  };

  // `msg` lives only during this call (DatagramHandler): the cache hit answers within it, a miss keeps a copy.
  const answerUdp = (msg: Buffer, from: DatagramSource): void => {
    const client = clientAddress(from.address);
    const simple = parseSimpleQuery(msg);
    const hit = simple && answerFromCache(simple, client, 'udp', cache, opts);
    if (hit) {
      queueUdp(hit, from);
      return;
    }
    if (inflight >= MAX_INFLIGHT) {
      opts.log.warn('dns: too many queries in flight, dropping one');
      return;
    }
    inflight += 1;
    const kept = Buffer.from(msg);
    handleQuery(kept, simple && parseSimpleQuery(kept), client, 'udp', cache, opts)
      .then((answered) => {
        if (answered && !closed) queueUdp(answered, from);
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
        const simple = parseSimpleQuery(msg);
        const hit = simple && answerFromCache(simple, client, 'tcp', cache, opts);
        (hit ? Promise.resolve(hit) : handleQuery(msg, simple, client, 'tcp', cache, opts))
          .then((answered) => {
            if (socket.destroyed) return;
            if (!answered) {
              socket.destroy(); // undecodable: the framing can no longer be trusted
              return;
            }
            opts.audit.write(answered.event);
            const frame = Buffer.alloc(2 + answered.response.length);
            frame.writeUInt16BE(answered.response.length, 0);
            answered.response.copy(frame, 2);
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
    const u = dgram.createSocket({ type: net.isIPv6(opts.host) ? 'udp6' : 'udp4', lookup: literalLookup });
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
    acceptFromFrozenOptions(t);
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
          io = openDatagramIo(socket, answerUdp, opts.datagramIo ?? 'batched', (why) =>
            opts.log.warn({ why }, 'dns: answering one datagram at a time (node:dgram), not in batches'),
          );
          return { udp: socket.address(), tcp: bound.tcp.address() as AddressInfo, io: io.kind };
        } catch (err) {
          lastError = err;
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
        }
      }
      throw new Error(`dns server cannot listen on ${opts.host}:${opts.port}: ${(lastError as Error).message}`);
    },

    setUdpReading(on: boolean) {
      io?.setReading(on);
    },

    async close() {
      closed = true;
      const u = udp;
      const t = tcp;
      const reading = io;
      io = null;
      udp = null;
      tcp = null;
      for (const s of tcpConnections) s.destroy();
      // The batched reader holds a descriptor of its own: gone first, so the port is free once `u` is closed.
      await reading?.stop();
      await Promise.all([
        u ? new Promise<void>((resolve) => u.close(() => resolve())) : Promise.resolve(),
        t ? new Promise<void>((resolve) => t.close(() => resolve())) : Promise.resolve(),
      ]);
    },
  };
}

/**
 * An outcome with what each answer's audit line repeats: the question type's name, the answers' text (`dialed`;
 * null for a malformed query, which had no question to answer), and the JSON of every field after `client`. The
 * answer cache keeps these, so a hit serialises only the connection id and the client.
 */
interface PreparedOutcome {
  readonly outcome: Outcome;
  readonly qtype: string;
  readonly dialed: readonly string[] | null;
  readonly fixedJson: string;
}

function prepare(outcome: Outcome, qtype: string, withAnswers: boolean): PreparedOutcome {
  const { host, decision, rule, reason } = outcome;
  const dialed = withAnswers ? outcome.answers.map((a) => a.text) : null;
  // The same fields in the same order as the event `answer` makes: the line must be JSON.stringify(event).
  const fixed = dialed === null ? { host, port: 53, decision, rule, reason, qtype } : { host, port: 53, dialed, decision, rule, reason, qtype };
  return { outcome, qtype, dialed, fixedJson: JSON.stringify(fixed).slice(1, -1) };
}

/** The answer to a repeated question, from the cache, with the TTL counted down; null on a miss. */
function answerFromCache(
  query: SimpleQuery,
  client: string,
  transport: 'udp' | 'tcp',
  cache: DnsAnswerCache<PreparedOutcome>,
  opts: DnsServerOptions,
): Answered | null {
  const hit = cache.get(opts.policies.forClient(client), query.key);
  if (!hit) return null;
  return answer(client, hit.value, respond(query, hit.value.outcome, hit.ttl, transport));
}

/** The general path: dns-packet decodes, the policy and the resolver decide. Null when the packet must be dropped. */
async function handleQuery(
  msg: Buffer,
  simple: SimpleQuery | null,
  client: string,
  transport: 'udp' | 'tcp',
  cache: DnsAnswerCache<PreparedOutcome>,
  opts: DnsServerOptions,
): Promise<Answered | null> {
  let query: DecodedPacket;
  try {
    query = dnsPacket.decode(msg);
  } catch (err) {
    opts.log.debug({ client, err: (err as Error).message }, 'dns: dropped undecodable packet');
    return null;
  }
  // Never answer a response: two DNS servers pointed at each other would ping-pong forever.
  if (query.flag_qr) return null;

  const questions = query.questions ?? [];
  const opcode = (query as DecodedPacket & { opcode?: string }).opcode;
  const first = questions[0];
  const parts = partsOf(query, simple, first);
  if (opcode !== 'QUERY' || questions.length !== 1 || !first) {
    const why = opcode !== 'QUERY' ? `opcode ${opcode ?? '?'} is not QUERY` : `${questions.length} questions, expected 1`;
    const outcome: Outcome = { host: printable(first?.name ?? ''), rcode: 'FORMERR', ...NO_ANSWER, decision: 'deny', rule: 'protocol', reason: why, cacheFor: 0 };
    return answer(client, prepare(outcome, first?.type ?? '', false), respond({ ...parts, question: EMPTY }, outcome, 0, transport));
  }

  const policy = opts.policies.forClient(client);
  const outcome = await decide(first, policy, opts);
  const prepared = prepare(outcome, first.type, true);
  // Only questions the strict reader accepts are cached: the fast path looks them up with the same key.
  if (simple) cache.set(policy, simple.key, prepared, outcome.cacheFor);
  return answer(client, prepared, respond(parts, outcome, outcome.ttl, transport));
}

interface QueryParts {
  readonly id: number;
  readonly echoedFlags: number;
  readonly question: Buffer;
  readonly edns: boolean;
  readonly udpLimit: number;
}

const EMPTY = Buffer.alloc(0);

/** What a response needs from its query; the question as sent when the strict reader took it, else re-encoded. */
function partsOf(query: DecodedPacket, simple: SimpleQuery | null, question: Question | undefined): QueryParts {
  if (simple) return simple;
  const opt = (query.additionals ?? []).find((a) => a.type === 'OPT');
  return {
    id: query.id ?? 0,
    echoedFlags: echoedFlagsOf(query.flag_rd === true, query.flag_cd === true),
    question: question ? encodeQuestion(question) : EMPTY,
    edns: opt !== undefined,
    udpLimit: udpLimitOf(opt && opt.type === 'OPT' ? opt.udpPayloadSize : undefined),
  };
}

function encodeQuestion(question: Question): Buffer {
  try {
    return dnsPacket.encode({ type: 'query', id: 0, flags: 0, questions: [{ name: question.name, type: question.type, class: question.class ?? 'IN' }] }).subarray(12);
  } catch {
    // A question dns-packet decoded but cannot re-encode (odd label bytes): answer without echoing it.
    return EMPTY;
  }
}

interface Outcome {
  readonly host: string;
  readonly rcode: Rcode;
  readonly answers: readonly IpAddress[];
  readonly ttl: number;
  readonly decision: DecisionEvent['decision'];
  readonly rule: DecisionEvent['rule'];
  readonly reason: string;
  /** Seconds the outcome may be reused for the same question under the same policy; 0: not at all. */
  readonly cacheFor: number;
}

const NO_ANSWER = { answers: [], ttl: 0 } as const;

async function decide(question: Question, policy: Policy, opts: DnsServerOptions): Promise<Outcome> {
  // Outcomes that follow from the policy alone are as fresh as the policy they are cached under.
  const none = { ...NO_ANSWER, cacheFor: MAX_ANSWER_TTL };
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
    // Not cached here: the resolver keeps NXDOMAIN for its negative TTL, and a failure should be retried.
    const code = err instanceof ResolveError ? err.code : (err as { code?: string }).code;
    const rcode: Rcode = code === 'ENOTFOUND' ? 'NXDOMAIN' : 'SERVFAIL';
    return { host: name, rcode, ...NO_ANSWER, cacheFor: 0, decision: 'error', rule: 'upstream', reason: `upstream: ${code ?? (err as Error).message}` };
  }

  const ttl = Math.min(resolved.ttl, MAX_ANSWER_TTL);
  const kept: IpAddress[] = [];
  let firstDenial: Decision | null = null;
  for (const ip of resolved.addresses) {
    const d = policy.decideAnswer(ip);
    if (d.allow) kept.push(ip);
    else firstDenial ??= d;
  }
  if (resolved.addresses.length > 0 && kept.length === 0 && firstDenial) {
    return { host: name, rcode: 'REFUSED', ...NO_ANSWER, cacheFor: ttl, ...fromDecision(firstDenial), reason: `every answer filtered: ${firstDenial.reason}` };
  }
  const filtered = resolved.addresses.length - kept.length;
  return {
    host: name,
    rcode: 'NOERROR',
    answers: kept,
    ttl,
    cacheFor: ttl,
    ...fromDecision(verdict),
    reason: filtered > 0 ? `${verdict.reason}; ${filtered} answer(s) filtered` : verdict.reason,
  };
}

function fromDecision(d: Decision): Pick<Outcome, 'decision' | 'rule' | 'reason'> {
  return { decision: d.allow ? 'allow' : 'deny', rule: d.rule, reason: d.reason };
}

/**
 * The answer's audit event and its JSON. Each branch is one object literal, so every event of a kind has one shape
 * for V8; the connection id needs no escaping (hex and base-36 digits).
 */
function answer(client: string, prepared: PreparedOutcome, response: Buffer): Answered {
  const { outcome, qtype, dialed } = prepared;
  const conn = nextConnId();
  const event: DecisionEvent =
    dialed === null
      ? { event: 'decision', conn, channel: 'dns', client, host: outcome.host, port: 53, decision: outcome.decision, rule: outcome.rule, reason: outcome.reason, qtype }
      : { event: 'decision', conn, channel: 'dns', client, host: outcome.host, port: 53, dialed, decision: outcome.decision, rule: outcome.rule, reason: outcome.reason, qtype };
  const json = `{"event":"decision","conn":"${conn}","channel":"dns","client":${JSON.stringify(client)},${prepared.fixedJson}}`;
  return { event, json, response };
}

/** The response for the transport: over UDP, one that does not fit becomes an empty truncated one. */
function respond(parts: QueryParts, outcome: Outcome, ttl: number, transport: 'udp' | 'tcp'): Buffer {
  // Literals of one shape, not spreads of `parts`: a SimpleQuery and a QueryParts would give V8 two shapes to copy.
  const { id, echoedFlags, question, edns } = parts;
  const full = encodeResponse({ id, echoedFlags, question, edns, rcode: outcome.rcode, addresses: outcome.answers, ttl, truncated: false });
  if (transport === 'tcp' || full.length <= parts.udpLimit) return full;
  // RFC 2181 §9: a truncated answer carries no partial RRset; the client retries over TCP.
  return encodeResponse({ id, echoedFlags, question, edns, rcode: outcome.rcode, addresses: [], ttl: 0, truncated: true });
}

/** Names from the wire can hold any byte; keep audit lines and logs free of control characters. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.slice(0, 255).replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
