/**
 * The whole gateway through real sockets: our own upstreams on loopback aliases in 198.18.0.0/15 and our own
 * DNS server as the gateway's only resolver. Every refusal asserted here comes from clawbox's decision: the
 * denied names resolve to a live upstream, and the tests check that upstream saw nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import dnsPacket from 'dns-packet';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { startTestGateway, type TestGateway } from '../fixtures/gateway.js';
import { addLoopbackAlias, startEchoServer, startHttpUpstream, type Upstream } from '../fixtures/upstreams.js';
import { connectTunnel, httpViaProxy, nextChunk, rawHttp, readAll, socks5Connect } from '../fixtures/clients.js';
import type { AuditEvent, CloseEvent, DecisionEvent } from '../../src/audit/types.js';
import { acceptsFromFrozenOptions } from '../../proxy/frozen-accept.js';

const UPSTREAM_IP = '198.19.1.2';
const HOST_ALIAS_IP = '198.19.1.3';

const CONFIG = `
network_policy: deny-by-default
allowed_hosts:
  - allowed.test
  - 'allowed.test:8080'
  - 'allowed.test:2525'
  - '*.wild.test'
  - '${UPSTREAM_IP}'
  - hostaddr.test
  - mixed.test
  - rebind.test
  - loop.test
denied_hosts:
  - bad.wild.test
  - '169.254.169.254'
  - '127.0.0.1'
`;

let dns: TestDnsServer;
let gw: TestGateway;
const upstreams: Upstream[] = [];
const removeAliases: Array<() => void> = [];
let web: Upstream;

before(async () => {
  removeAliases.push(addLoopbackAlias(UPSTREAM_IP), addLoopbackAlias(HOST_ALIAS_IP));
  web = await startHttpUpstream(UPSTREAM_IP, 80, 'allowed-upstream');
  upstreams.push(
    web,
    await startHttpUpstream(UPSTREAM_IP, 8080, 'port-8080'),
    await startEchoServer(UPSTREAM_IP, 443),
    await startEchoServer(UPSTREAM_IP, 2525, '220 banner.test ESMTP\r\n'),
    await startEchoServer(UPSTREAM_IP, 22),
    await startHttpUpstream(HOST_ALIAS_IP, 80, 'host-alias'),
  );
  dns = await startTestDnsServer({
    'allowed.test': { A: [UPSTREAM_IP] },
    'api.wild.test': { A: [UPSTREAM_IP] },
    'wild.test': { A: [UPSTREAM_IP] },
    'bad.wild.test': { A: [UPSTREAM_IP] },
    'denied.test': { A: [UPSTREAM_IP] },
    'rebind.test': { A: ['169.254.169.254'] },
    'loop.test': { A: ['127.0.0.1'] },
    'mixed.test': { A: [UPSTREAM_IP, '10.1.2.3'] },
    'hostaddr.test': { A: [HOST_ALIAS_IP] },
  });
  gw = await startTestGateway(CONFIG, dns);
});

after(async () => {
  await gw?.close();
  await dns?.close();
  await Promise.all(upstreams.map((u) => u.close()));
  for (const remove of removeAliases) remove();
});

const isDecision = (host: string, port?: number) => (e: AuditEvent): e is DecisionEvent =>
  e.event === 'decision' && e.host === host && (port === undefined || e.port === port);
const isClose = (host: string, port: number) => (e: AuditEvent): e is CloseEvent =>
  e.event === 'close' && e.host === host && e.port === port;

describe('allowed traffic', () => {
  it('tunnels CONNECT to an allowed .test name and audits decision and close', async () => {
    const reply = await connectTunnel(gw.gateway.addresses.http, 'allowed.test:443');
    assert.equal(reply.status, 200);
    reply.socket.write('ping over the tunnel');
    assert.equal((await nextChunk(reply.socket))?.toString(), 'ping over the tunnel');
    reply.socket.end();
    await readAll(reply.socket);
    const decision = await gw.waitFor(isDecision('allowed.test', 443), 'CONNECT decision');
    assert.equal(decision.decision, 'allow');
    assert.equal(decision.channel, 'connect');
    assert.equal(decision.dialed, UPSTREAM_IP);
    assert.equal(decision.rule, 'allowed_hosts[0]');
    const close = await gw.waitFor(isClose('allowed.test', 443), 'CONNECT close');
    assert.equal(close.conn, decision.conn);
    assert.equal(close.bytes_up, 'ping over the tunnel'.length);
    assert.equal(close.bytes_down, 'ping over the tunnel'.length);
  });

  it('forwards absolute-URI GET and POST, stripping hop-by-hop and Proxy-* headers both ways', async () => {
    const got = await httpViaProxy(gw.gateway.addresses.http, 'http://allowed.test/hello?x=1', {
      headers: { 'proxy-authorization': 'Basic c2VjcmV0', 'x-keep': 'yes', connection: 'x-drop', 'x-drop': 'gone' },
    });
    assert.equal(got.status, 200);
    const seen = JSON.parse(got.body) as { marker: string; url: string; headers: Record<string, string> };
    assert.equal(seen.marker, 'allowed-upstream');
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers['x-keep'], 'yes');
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.equal(seen.headers['x-drop'], undefined);
    assert.equal(got.headers['x-secret-hop'], undefined, 'a header the upstream named in Connection is not passed on');

    const posted = await httpViaProxy(gw.gateway.addresses.http, 'http://allowed.test/submit', {
      method: 'POST',
      body: 'a'.repeat(100_000),
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(posted.status, 200);
    assert.equal((JSON.parse(posted.body) as { body: string }).body.length, 100_000);
  });

  it('decides every request of a keep-alive connection anew', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await httpViaProxy(gw.gateway.addresses.http, 'http://allowed.test/one', { agent });
      const second = await httpViaProxy(gw.gateway.addresses.http, 'http://denied.test/two', { agent });
      const third = await httpViaProxy(gw.gateway.addresses.http, 'http://allowed.test/three', { agent });
      assert.equal(first.status, 200);
      assert.equal(second.status, 403);
      assert.equal(second.headers['x-clawbox-rule'], 'network_policy');
      assert.equal(third.status, 200);
    } finally {
      agent.destroy();
    }
  });

  it('connects SOCKS5 by name and carries a request', async () => {
    const { reply, socket } = await socks5Connect(gw.gateway.addresses.socks, 'allowed.test', 80);
    assert.equal(reply, 0x00);
    socket.write('GET /via-socks HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n');
    const response = (await readAll(socket)).toString();
    assert.match(response, /^HTTP\/1\.1 200/);
    assert.match(response, /"url":"\/via-socks"/);
    const decision = await gw.waitFor(isDecision('allowed.test', 80), 'SOCKS decision');
    assert.equal(decision.decision, 'allow');
  });

  it('allows a port only when an entry names it, and a wildcard only below its apex', async () => {
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'allowed.test:8080')).status, 200);
    const port22 = await connectTunnel(gw.gateway.addresses.http, 'allowed.test:22');
    assert.equal(port22.status, 403);
    assert.equal(port22.headers['x-clawbox-rule'], 'port');
    assert.equal((await connectTunnel(gw.gateway.addresses.http, 'api.wild.test:443')).status, 200);
    const apex = await connectTunnel(gw.gateway.addresses.http, 'wild.test:443');
    assert.equal(apex.status, 403);
    assert.equal(apex.headers['x-clawbox-rule'], 'network_policy');
    const denied = await connectTunnel(gw.gateway.addresses.http, 'bad.wild.test:443');
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-clawbox-rule'], 'denied_hosts[0]', 'deny wins over a matching allow wildcard');
  });

  it('lets a server-speaks-first protocol talk before the client sends anything', async () => {
    const reply = await connectTunnel(gw.gateway.addresses.http, 'allowed.test:2525');
    assert.equal(reply.status, 200);
    const banner = reply.rest.length > 0 ? reply.rest : await nextChunk(reply.socket);
    assert.equal(banner?.toString(), '220 banner.test ESMTP\r\n');
    reply.socket.destroy();
  });
});

describe('denied traffic', () => {
  it('refuses a name not in allowed_hosts on every channel, and the upstream sees nothing', async () => {
    const before = web.hits();
    const connect = await connectTunnel(gw.gateway.addresses.http, 'denied.test:443');
    assert.equal(connect.status, 403);
    assert.equal(connect.headers['x-clawbox-rule'], 'network_policy');
    const absolute = await rawHttp(gw.gateway.addresses.http, 'GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n', { readBody: true });
    assert.equal(absolute.status, 403);
    assert.match(absolute.body, /denied\.test is not in sandbox\.allowed_hosts/);
    assert.match(absolute.body, /rule network_policy/);
    const socks = await socks5Connect(gw.gateway.addresses.socks, 'denied.test', 80);
    assert.equal(socks.reply, 0x02);
    socks.socket.destroy();
    assert.equal(web.hits(), before);
    assert.equal(dns.queries('denied.test'), 0, 'a denied name is not even resolved');
    const audited = gw.decisions().filter((e) => e.host === 'denied.test');
    assert.deepEqual(new Set(audited.map((e) => e.channel)), new Set(['connect', 'http', 'socks5']));
    assert.ok(audited.every((e) => e.decision === 'deny' && e.rule === 'network_policy'));
  });

  const metadataSpellings = [
    '169.254.169.254', '0xa9fea9fe', '2852039166', '0251.0376.0251.0376', '169.254.43518', '0xa9.0xfe.0xa9.0xfe',
    '[::ffff:169.254.169.254]', '[::ffff:a9fe:a9fe]', '[64:ff9b::a9fe:a9fe]', '[::169.254.169.254]', '[2002:a9fe:a9fe::1]',
    'metadata.google.internal', 'METADATA.GOOGLE.INTERNAL.', 'rebind.test', '[fd00:ec2::254]',
  ];
  for (const spelling of metadataSpellings) {
    it(`refuses cloud metadata written as ${spelling} on CONNECT and absolute-URI`, async () => {
      const connect = await connectTunnel(gw.gateway.addresses.http, `${spelling}:80`);
      assert.equal(connect.status, 403, `CONNECT ${spelling}`);
      assert.equal(connect.headers['x-clawbox-rule'], 'builtin.cloud-metadata');
      assert.match(connect.headers['x-clawbox-reason'] ?? '', /cloud metadata/);
      assert.doesNotMatch(connect.headers['x-clawbox-reason'] ?? '', spelling === 'rebind.test' ? /169\.254/ : /$^/);
      const absolute = await rawHttp(gw.gateway.addresses.http, `GET http://${spelling}/latest/meta-data/ HTTP/1.1\r\nHost: ${spelling}\r\n\r\n`);
      assert.equal(absolute.status, 403, `GET http://${spelling}/`);
      assert.equal(absolute.headers['x-clawbox-rule'], 'builtin.cloud-metadata');
    });
  }

  it('refuses cloud metadata over SOCKS5 as IPv4, IPv6 and domain address types', async () => {
    for (const host of ['169.254.169.254', '::ffff:a9fe:a9fe', 'fd00:ec2::254', '0xa9fea9fe', 'metadata.google.internal', 'rebind.test']) {
      const { reply, socket } = await socks5Connect(gw.gateway.addresses.socks, host, 80);
      socket.destroy();
      assert.equal(reply, 0x02, `SOCKS5 ${host}`);
    }
  });

  const loopbackSpellings = ['127.0.0.1', '127.1', '0x7f.1', '2130706433', '017700000001', '127.0.0.2', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[0:0:0:0:0:0:0:1]', 'localhost', 'LocalHost.', 'loop.test', '0.0.0.0', '[::]'];
  for (const spelling of loopbackSpellings) {
    it(`refuses loopback written as ${spelling}`, async () => {
      const reply = await connectTunnel(gw.gateway.addresses.http, `${spelling}:80`);
      assert.equal(reply.status, 403);
      assert.match(reply.headers['x-clawbox-rule'] ?? '', /^builtin\.(loopback|unspecified)$|^denied_hosts\[2\]$/);
    });
  }

  it('refuses a name whose addresses include a private one, and the host\'s own addresses', async () => {
    const mixed = await connectTunnel(gw.gateway.addresses.http, 'mixed.test:80');
    assert.equal(mixed.status, 403);
    assert.equal(mixed.headers['x-clawbox-rule'], 'builtin.private');
    assert.doesNotMatch(mixed.headers['x-clawbox-reason'] ?? '', /10\.1\.2\.3/);
    const host = await connectTunnel(gw.gateway.addresses.http, 'hostaddr.test:80');
    assert.equal(host.status, 403);
    assert.match(host.headers['x-clawbox-rule'] ?? '', /^builtin\.(host-address|private)$/);
    const literal = await connectTunnel(gw.gateway.addresses.http, `${HOST_ALIAS_IP}:80`);
    assert.equal(literal.status, 403);
  });

  it('refuses the gateway\'s own listeners even on an allowed address', async () => {
    const { port } = gw.gateway.addresses.socks;
    const reply = await connectTunnel(gw.gateway.addresses.http, `127.0.0.1:${port}`);
    assert.equal(reply.status, 403);
  });
});

describe('bad input', () => {
  async function stillServes(): Promise<void> {
    const ok = await httpViaProxy(gw.gateway.addresses.http, 'http://allowed.test/after-bad-input');
    assert.equal(ok.status, 200);
  }

  const cases: Array<[string, string, number]> = [
    ['a garbage request line', 'HELLO THERE\r\n\r\n', 400],
    ['a CONNECT target without a port', 'CONNECT allowed.test HTTP/1.1\r\n\r\n', 400],
    ['a CONNECT target with a zone id', 'CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n', 400],
    ['a CONNECT target with a control character', 'CONNECT allowed.test\x01:443 HTTP/1.1\r\n\r\n', 400],
    ['a CONNECT target with port 0', 'CONNECT allowed.test:0 HTTP/1.1\r\n\r\n', 400],
    ['a CONNECT target with port 70000', 'CONNECT allowed.test:70000 HTTP/1.1\r\n\r\n', 400],
    ['an origin-form request', 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n', 400],
    ['an https absolute URI', 'GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n', 400],
    ['a Host header that disagrees with the URI', 'GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n', 400],
    ['two Host headers', 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n', 400],
    ['userinfo in the URI', 'GET http://user:pw@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n', 400],
    ['an oversized header', `GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ['both Content-Length and Transfer-Encoding', 'POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['a bare LF request', 'GET http://allowed.test/ HTTP/1.1\nHost: allowed.test\n\n', 400],
  ];
  for (const [name, bytes, status] of cases) {
    it(`answers ${status} to ${name}, then serves the next client`, async () => {
      const reply = await rawHttp(gw.gateway.addresses.http, bytes);
      assert.equal(reply.status, status);
      reply.socket.destroy();
      await stillServes();
    });
  }

  it('closes at once a client that closes its side before sending anything, and writes no line for it', async () => {
    const lines = gw.decisions().length;
    const quitter = connect(gw.gateway.addresses.http.port, gw.gateway.addresses.http.address);
    quitter.on('error', () => undefined);
    await once(quitter, 'connect');
    quitter.end();
    // The gateway's FIN: its handshake limit here is the default 10 s, so before the fix this waited for the limit.
    const closed = once(quitter, 'close').then(() => 'closed' as const);
    const atHalfTheLimit = new Promise<'still open'>((resolve) => setTimeout(() => resolve('still open'), 5_000).unref());
    assert.equal(await Promise.race([closed, atHalfTheLimit]), 'closed');
    quitter.destroy();
    await stillServes();
    assert.equal(gw.decisions().length, lines + 1, 'only the next client\'s line');
  });

  it('closes a tunnel whose TLS ClientHello names another host, and audits it', async () => {
    const reply = await connectTunnel(gw.gateway.addresses.http, 'allowed.test:443');
    assert.equal(reply.status, 200);
    const tls = tlsConnect({ socket: reply.socket, servername: 'evil.test', rejectUnauthorized: false });
    const outcome = await new Promise<string>((resolve) => {
      tls.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      tls.on('close', () => resolve('closed'));
      tls.on('secureConnect', () => resolve('connected'));
    });
    assert.notEqual(outcome, 'connected');
    const deny = await gw.waitFor(
      (e): e is DecisionEvent => e.event === 'decision' && e.rule === 'builtin.sni-mismatch',
      'SNI mismatch line',
    );
    assert.match(deny.reason, /evil\.test/);
    const close = await gw.waitFor((e): e is CloseEvent => e.event === 'close' && e.conn === deny.conn, 'close line');
    assert.equal(close.bytes_up, 0, 'the mismatching ClientHello never reached the upstream');
    await stillServes();
  });

  it('passes a ClientHello that names the tunnel\'s own host', async () => {
    const reply = await connectTunnel(gw.gateway.addresses.http, 'allowed.test:443');
    const tls = tlsConnect({ socket: reply.socket, servername: 'allowed.test', rejectUnauthorized: false });
    tls.on('error', () => undefined);
    // The echo upstream returns our own ClientHello, which the TLS client rejects; what matters is that it got there.
    await new Promise((resolve) => tls.once('close', resolve));
    reply.socket.destroy();
    const decision = gw.decisions().filter((e) => e.host === 'allowed.test' && e.port === 443).at(-1)!;
    const close = await gw.waitFor((e): e is CloseEvent => e.event === 'close' && e.conn === decision.conn, 'close line');
    assert.ok(close.bytes_up > 0);
    assert.ok(!gw.decisions().some((e) => e.conn === decision.conn && e.rule === 'builtin.sni-mismatch'));
  });
});

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const rcodeOf = (packet: dnsPacket.DecodedPacket): string => RCODES[(packet.flags ?? 0) & 0xf] ?? 'OTHER';

describe('DNS channel', () => {
  async function ask(name: string, type: 'A' | 'AAAA' | 'TXT'): Promise<dnsPacket.DecodedPacket> {
    const socket = dgram.createSocket('udp4');
    try {
      const query = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
      const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve));
      socket.send(query, gw.gateway.addresses.dns.port, '127.0.0.1');
      return dnsPacket.decode(await answer);
    } finally {
      socket.close();
    }
  }

  it('answers allowed names from upstream and denies the rest without asking upstream', async () => {
    const allowed = await ask('allowed.test', 'A');
    assert.equal(rcodeOf(allowed), 'NOERROR');
    assert.deepEqual(allowed.answers?.map((a) => (a as { data: string }).data), [UPSTREAM_IP]);
    const denied = await ask('denied.test', 'A');
    assert.equal(rcodeOf(denied), 'NXDOMAIN');
    const txt = await ask('denied.test', 'TXT');
    assert.equal(rcodeOf(txt), 'REFUSED');
    assert.equal(dns.queries('denied.test'), 0);
    const rebind = await ask('rebind.test', 'A');
    assert.notEqual(rcodeOf(rebind), 'NOERROR');
    assert.equal(rebind.answers?.length ?? 0, 0, 'a metadata answer is never handed out');
  });
});

describe('handshake time limit (sandbox.gateway.handshake_timeout)', () => {
  let slow: TestGateway;
  before(async () => {
    slow = await startTestGateway(CONFIG, dns, { gatewayYaml: 'handshake_timeout: 300ms' });
  });
  after(async () => {
    await slow?.close();
  });
  const protocolLines = (): DecisionEvent[] => slow.decisions().filter((d) => d.rule === 'protocol');
  /** The limit must be enforced, not merely eventually: 10 s is 33 times the limit and a third of node:http's own check interval. */
  const within10s = <T>(reply: Promise<T>, what: string): Promise<T> =>
    Promise.race([reply, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within 10 s, with handshake_timeout 300ms`)), 10_000).unref())]);

  it('answers 408 to a client that sends nothing, audits it, then serves the next client', async () => {
    const reply = await within10s(rawHttp(slow.gateway.addresses.http, ''), 'silent client');
    assert.equal(reply.status, 408);
    reply.socket.destroy();
    const line = await slow.waitFor((e): e is DecisionEvent => e.event === 'decision' && e.rule === 'protocol', 'the 408 line');
    assert.equal(line.decision, 'deny');
    assert.match(line.reason, /not received within sandbox\.gateway\.handshake_timeout/);
    const ok = await httpViaProxy(slow.gateway.addresses.http, 'http://allowed.test/after-silence');
    assert.equal(ok.status, 200);
  });

  it('answers 408 to a head that never completes (node:http\'s path), then serves the next client', async () => {
    const reply = await within10s(rawHttp(slow.gateway.addresses.http, 'GET http://allowed.test/ HTTP/1.1\r\nHost: allo'), 'partial head');
    assert.equal(reply.status, 408);
    reply.socket.destroy();
    const ok = await httpViaProxy(slow.gateway.addresses.http, 'http://allowed.test/after-partial-head');
    assert.equal(ok.status, 200);
  });

  it('leaves no line for a client that leaves before sending, nor for one whose head came in time', async () => {
    const before = protocolLines().length;
    const leaver = connect(slow.gateway.addresses.http.port, slow.gateway.addresses.http.address);
    leaver.on('error', () => undefined);
    await once(leaver, 'connect');
    leaver.destroy();
    const prompt = await connectTunnel(slow.gateway.addresses.http, `${UPSTREAM_IP}:443`);
    assert.equal(prompt.status, 200);
    // Well past the limit: had either connection's deadline stayed armed, its 408 line would be here by now.
    await new Promise((r) => setTimeout(r, 900));
    prompt.socket.write('still here');
    assert.equal((await nextChunk(prompt.socket))?.toString(), 'still here', 'the tunnel outlived the handshake limit');
    prompt.socket.destroy();
    assert.equal(protocolLines().length, before);
  });
});

describe('connections handed over from another worker (steer, adopt)', () => {
  it("accepts on the HTTP and SOCKS5 fronts from frozen socket options, not node:net's callback", async () => {
    const servers = new Map<string, Server>();
    const steered = await startTestGateway(CONFIG, dns, {
      steer: (front, socket) => {
        servers.set(front, (socket as Socket & { server: Server }).server);
        return false;
      },
    });
    try {
      const tunnel = await connectTunnel(steered.gateway.addresses.http, 'allowed.test:80');
      assert.equal(tunnel.status, 200);
      tunnel.socket.destroy();
      const socks = await socks5Connect(steered.gateway.addresses.socks, 'allowed.test', 80);
      assert.equal(socks.reply, 0);
      socks.socket.destroy();
      assert.deepEqual([...servers.keys()].sort(), ['http', 'socks']);
      for (const [front, server] of servers) assert.equal(acceptsFromFrozenOptions(server), true, front);
    } finally {
      await steered.close();
    }
  });

  it('asks the steer about each accepted connection, serves an adopted one without asking again', async () => {
    const asked: string[] = [];
    const steered = await startTestGateway(CONFIG, dns, {
      steer: (front) => {
        asked.push(front);
        return false; // keeps every one
      },
    });
    // Stands in for the other worker: a socket accepted elsewhere, with a CONNECT head already sent.
    const elsewhere = createServer({ pauseOnConnect: true, allowHalfOpen: true }); // as a handed-over socket is made
    try {
      const accepted = connectTunnel(steered.gateway.addresses.http, 'allowed.test:80');
      assert.equal((await accepted).status, 200);
      (await accepted).socket.destroy();
      assert.deepEqual(asked, ['http']);

      await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
      const handedOver = once(elsewhere, 'connection') as Promise<[Socket]>;
      const client = connect((elsewhere.address() as AddressInfo).port, '127.0.0.1');
      client.write('CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n');
      const [socket] = await handedOver;
      steered.gateway.adopt('http', socket);
      assert.match(String(await nextChunk(client)), /^HTTP\/1\.1 200 /);
      client.end('GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n');
      assert.match((await readAll(client)).toString(), /allowed-upstream/);
      assert.deepEqual(asked, ['http'], 'the adopted connection was not steered');
    } finally {
      elsewhere.close();
      await steered.close();
    }
  });
});
