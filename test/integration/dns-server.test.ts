import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type net from 'node:net';
import { test, type TestContext } from 'node:test';
import dnsPacket, { type DecodedPacket, type Packet, type RecordType, type StringAnswer } from 'dns-packet';
import { pino } from 'pino';
import { createDnsServer } from '../../proxy/dns-server.js';
import type { DatagramIoKind } from '../../proxy/udp-batch.js';
import { UpstreamResolver } from '../../proxy/resolver.js';
import type { DecisionEvent } from '../../src/audit/types.js';
import { compilePolicy, StaticPolicyTable } from '../../src/policy/policy.js';
import { startTestDnsServer, type TestDnsServer, type TestRecords } from '../fixtures/dns-upstream.js';
import { RawClient } from '../fixtures/raw-client.js';
import { MemoryAuditSink } from '../../src/audit/sink.js';
import { policyConfig } from '../fixtures/policy-config.js';

class DnsAudit extends MemoryAuditSink {
  last(): DecisionEvent | undefined {
    return this.decisions().at(-1);
  }
}


const RECORDS: TestRecords = {
  'www.allowed.example': { A: ['192.0.2.10'], AAAA: ['2001:db8::10'], ttl: 3600 },
  'short.allowed.example': { A: ['192.0.2.11'], ttl: 20 },
  'alias.allowed.example': { CNAME: 'edge.cdn.example', ttl: 100 },
  'edge.cdn.example': { A: ['192.0.2.12'], ttl: 100 },
  'meta.allowed.example': { A: ['169.254.169.254'], ttl: 0 },
  'mixed.allowed.example': { A: ['10.0.0.1', '192.0.2.13', '169.254.169.254'], ttl: 0 },
  'broken.allowed.example': { rcode: 'SERVFAIL' },
  'v4only.allowed.example': { A: ['192.0.2.14'] },
  'many.allowed.example': { A: Array.from({ length: 40 }, (_, i) => `192.0.2.${100 + i}`) },
  'rebind.allowed.example': { A: ['192.0.2.15'], ttl: 0 },
  'secret.evil.example': { A: ['192.0.2.66'] },
  'blocked.allowed.example': { A: ['192.0.2.67'] },
};

interface Harness {
  readonly udp: net.AddressInfo;
  readonly tcp: net.AddressInfo;
  readonly upstream: TestDnsServer;
  readonly audit: DnsAudit;
  readonly policies: StaticPolicyTable;
}

async function start(t: TestContext, datagramIo: DatagramIoKind): Promise<Harness> {
  const upstream = await startTestDnsServer(RECORDS);
  t.after(() => upstream.close());
  const resolver = new UpstreamResolver([upstream.address], { timeoutMs: 500 });
  t.after(() => resolver.close());
  const policy = compilePolicy({
    networkPolicy: 'deny-by-default',
    // TEST-NET ranges are "private" to the classifier; the CIDR entries lift them so they can be answers.
    allowedHosts: ['*.allowed.example', '192.0.2.0/24', '2001:db8::/32'],
    deniedHosts: ['blocked.allowed.example'],
    defaultPorts: [80, 443],
    selfAddresses: [],
    listenerPorts: [],
  });
  const audit = new DnsAudit();
  const policies = new StaticPolicyTable(policy);
  const server = createDnsServer({
    policies,
    resolver,
    audit,
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    tcpIdleTimeoutMs: 300,
    datagramIo,
  });
  const bound = await server.listen();
  t.after(() => server.close());
  assert.equal(bound.udp.port, bound.tcp.port);
  return { udp: bound.udp, tcp: bound.tcp, upstream, audit, policies };
}

/** Each test runs over both UDP paths: batched reads (the default where built) and node:dgram's (the fall-back). */
function bothWays(name: string, body: (t: TestContext, io: DatagramIoKind) => Promise<void>): void {
  for (const io of ['batched', 'dgram'] as const) void test(`${name} [${io}]`, (t) => body(t, io));
}

let nextId = 1;
function query(name: string, type: string, extra: Partial<Packet> = {}): { id: number; bytes: Buffer } {
  const id = (nextId = (nextId + 7919) & 0xffff);
  const bytes = dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as RecordType, class: 'IN' }],
    ...extra,
  });
  return { id, bytes };
}

/** A liveness bound, not a timing check: answers here take milliseconds. */
const NO_ANSWER_MS = 10_000;

/** A UDP client socket that collects every datagram it receives. */
class UdpClient {
  readonly socket = dgram.createSocket('udp4');
  private readonly received: Buffer[] = [];
  private waiters: (() => void)[] = [];

  constructor(
    t: TestContext,
    private readonly server: net.AddressInfo,
  ) {
    this.socket.on('message', (msg) => {
      this.received.push(msg);
      for (const w of this.waiters.splice(0)) w();
    });
    t.after(() => new Promise<void>((resolve) => this.socket.close(() => resolve())));
  }

  send(bytes: Buffer): void {
    this.socket.send(bytes, this.server.port, this.server.address);
  }

  /** The next datagram, in arrival order. A server that never answers fails the test instead of hanging it. */
  async next(): Promise<Buffer> {
    while (this.received.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no datagram from ${this.server.address}:${this.server.port} within ${NO_ANSWER_MS} ms`)), NO_ANSWER_MS);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received.shift() as Buffer;
  }

  async ask(name: string, type: string, extra: Partial<Packet> = {}): Promise<DecodedPacket & { rcode?: string }> {
    const q = query(name, type, extra);
    this.send(q.bytes);
    const response = dnsPacket.decode(await this.next());
    assert.equal(response.id, q.id, 'response to the query just sent, nothing else in between');
    return response;
  }
}

function rcodeOf(p: DecodedPacket): string {
  return (p as DecodedPacket & { rcode?: string }).rcode ?? '';
}

function addresses(p: DecodedPacket): string[] {
  return (p.answers ?? []).filter((a): a is StringAnswer => a.type === 'A' || a.type === 'AAAA').map((a) => a.data);
}

/** A TCP DNS connection: length-prefixed frames in, whole frames out. */
class TcpClient {
  private readonly raw: RawClient;

  constructor(t: TestContext, server: net.AddressInfo) {
    this.raw = new RawClient(t, server);
  }

  get socket(): net.Socket {
    return this.raw.socket;
  }

  get closed(): Promise<Buffer> {
    return this.raw.closed;
  }

  sendFrame(msg: Buffer): void {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    this.raw.send(Buffer.concat([len, msg]));
  }

  async nextFrame(): Promise<DecodedPacket> {
    const length = (await this.raw.read(2)).readUInt16BE(0);
    return dnsPacket.decode(await this.raw.read(length));
  }

  get unread(): number {
    return this.raw.unread;
  }
}

async function assertAnswers(t: TestContext, h: Harness): Promise<void> {
  const c = new UdpClient(t, h.udp);
  const r = await c.ask('www.allowed.example', 'A');
  assert.equal(rcodeOf(r), 'NOERROR');
  assert.deepEqual(addresses(r), ['192.0.2.10']);
}

bothWays('allowed A and AAAA: answers under the question name, header echoed, TTL capped, audited', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const a = await c.ask('www.allowed.example', 'A');
  assert.equal(rcodeOf(a), 'NOERROR');
  assert.ok(a.flag_qr && a.flag_rd && a.flag_ra && !a.flag_tc);
  assert.deepEqual(a.questions, [{ name: 'www.allowed.example', type: 'A', class: 'IN' }]);
  assert.deepEqual(
    (a.answers ?? []).map((x) => [x.name, x.type, 'ttl' in x ? x.ttl : -1, x.type === 'A' ? x.data : '']),
    [['www.allowed.example', 'A', 300, '192.0.2.10']],
  );
  const aaaa = await c.ask('www.allowed.example', 'AAAA');
  assert.deepEqual(addresses(aaaa), ['2001:db8::10']);
  const short = await c.ask('short.allowed.example', 'A');
  assert.equal((short.answers?.[0] as StringAnswer | undefined)?.ttl, 20);

  const [lineA, lineAaaa] = h.audit.decisions();
  assert.deepEqual(
    { ...lineA, conn: 'x' },
    {
      event: 'decision',
      conn: 'x',
      channel: 'dns',
      client: '127.0.0.1',
      host: 'www.allowed.example',
      port: 53,
      dialed: ['192.0.2.10'],
      decision: 'allow',
      rule: 'allowed_hosts[0]',
      reason: lineA?.reason,
      qtype: 'A',
    },
  );
  assert.equal(lineAaaa?.qtype, 'AAAA');
  assert.deepEqual(lineAaaa?.dialed, ['2001:db8::10']);
});

bothWays('RD is echoed as sent, and a mixed-case question is copied verbatim', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const r = await c.ask('WWW.Allowed.Example', 'A', { flags: 0 });
  assert.equal(r.flag_rd, false);
  assert.equal(r.flag_ra, true);
  assert.equal(r.questions?.[0]?.name, 'WWW.Allowed.Example');
  assert.equal(r.answers?.[0]?.name, 'WWW.Allowed.Example');
  assert.equal(h.audit.last()?.host, 'www.allowed.example');
});

bothWays('CNAME chains are flattened into address records under the question name', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const r = await c.ask('alias.allowed.example', 'A');
  assert.deepEqual(
    (r.answers ?? []).map((x) => [x.name, x.type]),
    [['alias.allowed.example', 'A']],
  );
  assert.deepEqual(addresses(r), ['192.0.2.12']);
});

bothWays('a denied name is answered NXDOMAIN (A/AAAA) or REFUSED (other types) and never reaches upstream', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  for (const [type, rcode] of [
    ['A', 'NXDOMAIN'],
    ['AAAA', 'NXDOMAIN'],
    ['TXT', 'REFUSED'],
    ['MX', 'REFUSED'],
  ] as const) {
    const r = await c.ask('secret.evil.example', type);
    assert.equal(rcodeOf(r), rcode, type);
    assert.equal(r.answers?.length ?? 0, 0);
    assert.equal(h.audit.last()?.decision, 'deny');
    assert.equal(h.audit.last()?.rule, 'network_policy');
    assert.equal(h.audit.last()?.qtype, type);
  }
  const blocked = await c.ask('blocked.allowed.example', 'A');
  assert.equal(rcodeOf(blocked), 'NXDOMAIN');
  assert.equal(h.audit.last()?.rule, 'denied_hosts[0]');
  const metadataName = await c.ask('metadata.google.internal', 'A');
  assert.equal(rcodeOf(metadataName), 'NXDOMAIN');
  assert.equal(h.audit.last()?.rule, 'builtin.cloud-metadata');

  assert.equal(h.upstream.queries('secret.evil.example'), 0);
  assert.equal(h.upstream.queries('blocked.allowed.example'), 0);
  assert.equal(h.upstream.queries('metadata.google.internal'), 0);
  assert.equal(h.upstream.totalQueries, 0);
});

bothWays('an allowed name whose only answer is cloud metadata is REFUSED and audited', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const r = await c.ask('meta.allowed.example', 'A');
  assert.equal(rcodeOf(r), 'REFUSED');
  assert.equal(r.answers?.length ?? 0, 0);
  const line = h.audit.last();
  assert.equal(line?.decision, 'deny');
  assert.equal(line?.rule, 'builtin.cloud-metadata');
  assert.equal(line?.host, 'meta.allowed.example');
  assert.deepEqual(line?.dialed, []);
  assert.doesNotMatch(line?.reason ?? '', /169\.254/, 'reasons name the class, not the address');
});

bothWays('mixed answers keep only the allowed addresses', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const r = await c.ask('mixed.allowed.example', 'A');
  assert.equal(rcodeOf(r), 'NOERROR');
  assert.deepEqual(addresses(r), ['192.0.2.13']);
  assert.deepEqual(h.audit.last()?.dialed, ['192.0.2.13']);
  assert.match(h.audit.last()?.reason ?? '', /2 answer\(s\) filtered/);
});

bothWays('rebinding: a name that later resolves to metadata is refused on the next query', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  assert.deepEqual(addresses(await c.ask('rebind.allowed.example', 'A')), ['192.0.2.15']);
  h.upstream.setRecords({ ...RECORDS, 'rebind.allowed.example': { A: ['169.254.169.254'], ttl: 0 } });
  const r = await c.ask('rebind.allowed.example', 'A');
  assert.equal(rcodeOf(r), 'REFUSED');
  assert.equal(h.audit.last()?.rule, 'builtin.cloud-metadata');
});

bothWays('upstream NXDOMAIN, SERVFAIL and NODATA', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const nx = await c.ask('nothing.allowed.example', 'A');
  assert.equal(rcodeOf(nx), 'NXDOMAIN');
  assert.equal(h.audit.last()?.decision, 'error');
  assert.equal(h.audit.last()?.rule, 'upstream');
  const sf = await c.ask('broken.allowed.example', 'A');
  assert.equal(rcodeOf(sf), 'SERVFAIL');
  assert.equal(h.audit.last()?.rule, 'upstream');
  const nodata = await c.ask('v4only.allowed.example', 'AAAA');
  assert.equal(rcodeOf(nodata), 'NOERROR');
  assert.equal(nodata.answers?.length ?? 0, 0);
  assert.equal(h.audit.last()?.decision, 'allow');
});

bothWays('allowed name, other types: NODATA without asking upstream', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  for (const type of ['MX', 'TXT', 'SRV', 'NS', 'UNKNOWN_65']) {
    const r = await c.ask('www.allowed.example', type);
    assert.equal(rcodeOf(r), 'NOERROR', type);
    assert.equal(r.answers?.length ?? 0, 0);
    assert.equal(r.questions?.[0]?.type, type);
  }
  assert.equal(h.upstream.totalQueries, 0);
});

bothWays('IP-literal and invalid names are NXDOMAIN with rule builtin.invalid-host', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  for (const name of ['192.0.2.10', '.', 'bad name.allowed.example', 'x\r\ny.allowed.example', 'a_b!.allowed.example']) {
    const r = await c.ask(name, 'A');
    assert.equal(rcodeOf(r), 'NXDOMAIN', name);
    const line = h.audit.last();
    assert.equal(line?.rule, 'builtin.invalid-host');
    assert.doesNotMatch(line?.host ?? '', /[\r\n]/);
  }
  assert.equal(h.upstream.totalQueries, 0);
});

/** A header with the given flags and counts, then `rest`. */
function rawMessage(id: number, flags: number, qd: number, rest: number[] = []): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(qd, 4);
  return Buffer.concat([header, Buffer.from(rest)]);
}

const QUESTION_WWW = [...Buffer.from('\x03www\x07allowed\x07example\x00'), 0, 1, 0, 1];

bothWays('FORMERR for zero questions, two questions and a non-QUERY opcode', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const cases: [string, Buffer][] = [
    ['0 questions', rawMessage(0x1001, 0x0100, 0)],
    ['2 questions', rawMessage(0x1002, 0x0100, 2, [...QUESTION_WWW, ...QUESTION_WWW])],
    ['opcode STATUS', rawMessage(0x1003, 0x0100 | (2 << 11), 1, QUESTION_WWW)],
  ];
  for (const [what, bytes] of cases) {
    c.send(bytes);
    const r = dnsPacket.decode(await c.next());
    assert.equal(r.id, bytes.readUInt16BE(0), what);
    assert.equal(rcodeOf(r), 'FORMERR', what);
    assert.equal(h.audit.last()?.rule, 'protocol');
  }
  assert.equal(h.upstream.totalQueries, 0);
  await assertAnswers(t, h);
});

bothWays('malformed UDP packets are dropped silently; the next good query is answered first', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const garbage: Buffer[] = [
    Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]), // truncated header
    Buffer.alloc(0),
    rawMessage(0x2001, 0x0100, 1, [0xc0, 0x0c, 0, 1, 0, 1]), // compression pointer to itself
    rawMessage(0x2002, 0x0100, 1, [0x05, 0x61, 0x62]), // label runs off the end
    rawMessage(0x2003, 0x0100, 65535, QUESTION_WWW), // counts the packet cannot hold
    rawMessage(0x2004, 0x8100, 1, [...QUESTION_WWW]), // a response, not a query
    Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff)),
  ];
  for (const bytes of garbage) c.send(bytes);
  const r = await c.ask('www.allowed.example', 'A'); // asserts the first datagram back is this answer
  assert.deepEqual(addresses(r), ['192.0.2.10']);
  assert.equal(h.audit.decisions().length, 1, 'only the good query was audited');
});

bothWays('UDP answers that do not fit are truncated (TC, no answers); TCP carries them whole', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const small = await c.ask('many.allowed.example', 'A');
  assert.equal(small.flag_tc, true);
  assert.equal(small.answers?.length ?? 0, 0);
  const edns = await c.ask('many.allowed.example', 'A', {
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
  assert.equal(edns.flag_tc, false);
  assert.equal(addresses(edns).length, 40);
  assert.ok(edns.additionals?.some((a) => a.type === 'OPT'), 'EDNS answered with EDNS');

  const tcp = new TcpClient(t, h.tcp);
  const q = query('many.allowed.example', 'A');
  tcp.sendFrame(q.bytes);
  const whole = await tcp.nextFrame();
  assert.equal(whole.id, q.id);
  assert.equal(whole.flag_tc, false);
  assert.equal(addresses(whole).length, 40);
});

bothWays('TCP: pipelined queries are all answered', async (t, io) => {
  const h = await start(t, io);
  const tcp = new TcpClient(t, h.tcp);
  const q1 = query('www.allowed.example', 'A');
  const q2 = query('secret.evil.example', 'A');
  const q3 = query('www.allowed.example', 'AAAA');
  for (const q of [q1, q2, q3]) tcp.sendFrame(q.bytes);
  const answers = new Map<number, DecodedPacket>();
  for (let i = 0; i < 3; i += 1) {
    const r = await tcp.nextFrame();
    answers.set(r.id ?? -1, r);
  }
  assert.deepEqual(addresses(answers.get(q1.id) as DecodedPacket), ['192.0.2.10']);
  assert.equal(rcodeOf(answers.get(q2.id) as DecodedPacket), 'NXDOMAIN');
  assert.deepEqual(addresses(answers.get(q3.id) as DecodedPacket), ['2001:db8::10']);
});

bothWays('TCP: a client that half-closes after its query still gets the answer, then the connection closes', async (t, io) => {
  const h = await start(t, io);
  const tcp = new TcpClient(t, h.tcp);
  const q = query('www.allowed.example', 'A');
  tcp.sendFrame(q.bytes);
  tcp.socket.end();
  const r = await tcp.nextFrame();
  assert.equal(r.id, q.id);
  assert.deepEqual(addresses(r), ['192.0.2.10']);
  await tcp.closed;
});

bothWays('TCP: a malformed frame closes that connection only', async (t, io) => {
  const h = await start(t, io);
  const bad = new TcpClient(t, h.tcp);
  bad.sendFrame(rawMessage(0x3001, 0x0100, 1, [0xc0, 0x0c, 0, 1, 0, 1]));
  await bad.closed;
  assert.equal(bad.unread, 0);
  const tooShort = new TcpClient(t, h.tcp);
  tooShort.sendFrame(Buffer.from([1, 2, 3]));
  await tooShort.closed;
  assert.equal(tooShort.unread, 0);

  const good = new TcpClient(t, h.tcp);
  const q = query('www.allowed.example', 'A');
  good.sendFrame(q.bytes);
  assert.deepEqual(addresses(await good.nextFrame()), ['192.0.2.10']);
  await assertAnswers(t, h);
});

bothWays('TCP: a huge length prefix that never fills up is closed at the idle time-out', async (t, io) => {
  const h = await start(t, io);
  const slow = new TcpClient(t, h.tcp);
  slow.socket.write(Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(100, 0x41)]));
  await slow.closed;
  assert.equal(slow.unread, 0);
  await assertAnswers(t, h);
});

bothWays('close() releases both sockets', async (t, io) => {
  const upstream = await startTestDnsServer({});
  t.after(() => upstream.close());
  const resolver = new UpstreamResolver([upstream.address]);
  t.after(() => resolver.close());
  const server = createDnsServer({
    policies: new StaticPolicyTable(compilePolicy(policyConfig({ defaultPorts: [443] }))),
    resolver,
    audit: new DnsAudit(),
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    datagramIo: io,
  });
  const { udp, tcp } = await server.listen();
  const idle = new TcpClient(t, tcp);
  await new Promise((resolve) => idle.socket.once('connect', resolve));
  await server.close();
  await idle.closed;
  // The port is free again for both protocols.
  const again = createDnsServer({
    policies: new StaticPolicyTable(compilePolicy(policyConfig({ defaultPorts: [443] }))),
    resolver,
    audit: new DnsAudit(),
    log: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: udp.port,
    datagramIo: io,
  });
  await again.listen();
  await again.close();
});

bothWays('answer cache: a burst of one repeated question gets an answer each, each audited before it is sent', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  assert.deepEqual(addresses(await c.ask('www.allowed.example', 'A')), ['192.0.2.10']);
  // Lines written when each answer arrived: the server writes a turn's lines, then sends that turn's answers.
  const linesAtArrival: number[] = [];
  c.socket.on('message', () => linesAtArrival.push(h.audit.decisions().length));
  const burst = Array.from({ length: 50 }, () => query('www.allowed.example', 'A'));
  for (const q of burst) c.send(q.bytes);
  const answers = await Promise.all(burst.map(() => c.next().then((b) => dnsPacket.decode(b))));

  assert.deepEqual(answers.map((a) => a.id).sort(), burst.map((q) => q.id).sort());
  for (const a of answers) assert.deepEqual(addresses(a), ['192.0.2.10']);
  linesAtArrival.forEach((lines, i) => assert.ok(lines >= i + 2, `answer ${i + 1} arrived with only ${lines} audit lines written`));
  const lines = h.audit.decisions().filter((e) => e.host === 'www.allowed.example');
  assert.equal(lines.length, 51);
  assert.equal(new Set(lines.map((e) => e.conn)).size, 51, 'every answer has its own conn id');
  assert.ok(lines.every((e) => e.decision === 'allow' && e.dialed?.[0] === '192.0.2.10'));
  assert.equal(h.upstream.queries('www.allowed.example'), 1);
});

bothWays('answer cache: an answer does not outlive its policy', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  assert.deepEqual(addresses(await c.ask('www.allowed.example', 'A')), ['192.0.2.10']);
  assert.deepEqual(addresses(await c.ask('www.allowed.example', 'A')), ['192.0.2.10']);
  // What a sandbox registration or a reload does: the client's policy is replaced.
  h.policies.set('127.0.0.1', compilePolicy(policyConfig({ allowedHosts: ['other.example'] })));
  const r = await c.ask('www.allowed.example', 'A');
  assert.equal(rcodeOf(r), 'NXDOMAIN');
  assert.deepEqual(addresses(r), []);
  assert.equal(h.audit.last()?.decision, 'deny');
  assert.equal(h.audit.last()?.rule, 'network_policy');
});

bothWays('answer cache: the question echoed as asked, the TTL counted down, over UDP and TCP', async (t, io) => {
  const h = await start(t, io);
  const c = new UdpClient(t, h.udp);
  const first = await c.ask('short.allowed.example', 'A');
  assert.equal((first.answers?.[0] as StringAnswer | undefined)?.ttl, 20);
  const again = await c.ask('SHORT.Allowed.EXAMPLE', 'A');
  assert.deepEqual(again.questions, [{ name: 'SHORT.Allowed.EXAMPLE', type: 'A', class: 'IN' }]);
  assert.deepEqual(
    (again.answers ?? []).map((x) => [x.name, x.type, x.type === 'A' ? x.data : '']),
    [['SHORT.Allowed.EXAMPLE', 'A', '192.0.2.11']],
  );
  const ttl = (again.answers?.[0] as StringAnswer | undefined)?.ttl ?? -1;
  assert.ok(ttl >= 1 && ttl <= 20, `ttl ${ttl}`);
  assert.equal(h.audit.last()?.host, 'short.allowed.example');

  const tcp = new TcpClient(t, h.tcp);
  tcp.sendFrame(query('short.allowed.example', 'A').bytes);
  assert.deepEqual(addresses(await tcp.nextFrame()), ['192.0.2.11']);
  assert.equal(h.upstream.queries('short.allowed.example'), 1);
  assert.equal(h.audit.decisions().filter((e) => e.host === 'short.allowed.example').length, 3);
});
