import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { createSocks5Server, type Socks5ServerOptions } from '../../proxy/socks5.js';
import type { OpenRequest, OpenResult, Tunnel, UpstreamFailure } from '../../proxy/types.js';
import { hostToString } from '../../src/net/host.js';
import { RawClient } from '../fixtures/raw-client.js';
import { waitUntil } from '../fixtures/wait.js';
import { MemoryAuditSink } from '../../src/audit/sink.js';


/** A plain byte pipe standing in for the lead's tunnel (which adds the SNI gate and close audit lines). */
class PipeTunnel implements Tunnel {
  closedWith: string | undefined | null = null;
  constructor(private readonly upstream: net.Socket) {
    upstream.on('error', () => undefined);
  }
  pipe(client: net.Socket, head?: Buffer): void {
    if (head) this.upstream.write(head);
    client.pipe(this.upstream);
    this.upstream.pipe(client);
    client.on('close', () => this.upstream.destroy());
    this.upstream.on('close', () => client.destroy());
  }
  close(error?: string): void {
    this.closedWith = error;
    this.upstream.destroy();
  }
  localEndpoint(): { address: string; port: number } {
    return { address: this.upstream.localAddress ?? '0.0.0.0', port: this.upstream.localPort ?? 0 };
  }
  release(): net.Socket | null {
    return null; // SOCKS5 tunnels are always piped, never handed back
  }
}

interface Harness {
  readonly proxy: net.AddressInfo;
  readonly echoPort: number;
  readonly audit: MemoryAuditSink;
  readonly requests: OpenRequest[];
  readonly tunnels: PipeTunnel[];
  /** `slow.test` waits for this before it answers. */
  release: () => void;
  /** Server-side sockets still open. */
  openSockets: () => number;
}

const FAILURES: Record<string, UpstreamFailure> = {
  'refused.test': 'refused',
  'timeout.test': 'timeout',
  'missing.test': 'dns-not-found',
  'dnsfail.test': 'dns-failed',
  'unreachable.test': 'unreachable',
  'reset.test': 'reset',
};

async function listen(server: net.Server, host = '127.0.0.1'): Promise<net.AddressInfo> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return server.address() as net.AddressInfo;
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

async function start(t: TestContext, opts: { handshakeTimeoutMs?: number; listenHost?: string } = {}): Promise<Harness> {
  const echoSockets = new Set<net.Socket>();
  const echo = net.createServer((s) => {
    echoSockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => echoSockets.delete(s));
    s.pipe(s);
  });
  t.after(async () => {
    for (const s of echoSockets) s.destroy();
    await closeServer(echo);
  });
  const echoPort = (await listen(echo)).port;

  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const requests: OpenRequest[] = [];
  const tunnels: PipeTunnel[] = [];
  const dialEcho = async (): Promise<OpenResult> => {
    const upstream = net.connect(echoPort, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      upstream.once('connect', resolve);
      upstream.once('error', reject);
    });
    const tunnel = new PipeTunnel(upstream);
    tunnels.push(tunnel);
    return { ok: true, upstream, tunnel, dialed: '127.0.0.1' };
  };
  const connector: Socks5ServerOptions['connector'] = {
    async open(req) {
      requests.push(req);
      const host = hostToString(req.host);
      if (host === 'echo.test' || host === '127.0.0.1') return dialEcho();
      if (host === 'slow.test') {
        await gate;
        return dialEcho();
      }
      if (host === 'throws.test') throw new Error('connector bug');
      const failure = FAILURES[host];
      if (failure) return { ok: false, kind: 'upstream', failure, message: `${host}: ${failure}` };
      return { ok: false, kind: 'deny', decision: { allow: false, rule: 'network_policy', reason: `${host} is not allowed` } };
    },
  };

  const audit = new MemoryAuditSink();
  const server = createSocks5Server({
    connector,
    log: pino({ level: 'silent' }),
    audit,
    ...(opts.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: opts.handshakeTimeoutMs }),
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await closeServer(server);
  });
  const proxy = await listen(server, opts.listenHost);
  return { proxy, echoPort, audit, requests, tunnels, release: () => release(), openSockets: () => sockets.size };
}

const GREETING = [5, 1, 0];

function domainRequest(name: string | Buffer, port: number, cmd = 1): Buffer {
  const raw = typeof name === 'string' ? Buffer.from(name) : name;
  return Buffer.concat([Buffer.from([5, cmd, 0, 3, raw.length]), raw, Buffer.from([port >> 8, port & 0xff])]);
}

function errorReply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/** The full happy path: proves the server still works after whatever the previous client did. */
async function assertServes(t: TestContext, h: Harness): Promise<void> {
  const c = new RawClient(t, h.proxy);
  c.send(GREETING);
  assert.deepEqual(await c.read(2), Buffer.from([5, 0]));
  c.send(domainRequest('echo.test', h.echoPort));
  const reply = await c.read(10);
  assert.deepEqual(reply.subarray(0, 4), Buffer.from([5, 0, 0, 1]));
  c.send('ping');
  assert.equal((await c.read(4)).toString(), 'ping');
  c.socket.destroy();
}

/** Greeting, then `request`; asserts the method reply and returns the client. */
async function afterGreeting(t: TestContext, h: Harness, request: number[] | Buffer): Promise<RawClient> {
  const c = new RawClient(t, h.proxy);
  c.send(GREETING);
  assert.deepEqual(await c.read(2), Buffer.from([5, 0]));
  c.send(request);
  return c;
}

void test('CONNECT by domain: reply carries the upstream local address; bytes sent with the request reach upstream', async (t) => {
  const h = await start(t);
  const c = new RawClient(t, h.proxy);
  c.send(Buffer.concat([Buffer.from(GREETING), domainRequest('Echo.Test', h.echoPort), Buffer.from('early')]));
  assert.deepEqual(await c.read(2), Buffer.from([5, 0]));
  const reply = await c.read(10);
  assert.deepEqual(reply.subarray(0, 8), Buffer.from([5, 0, 0, 1, 127, 0, 0, 1]));
  assert.ok(reply.readUInt16BE(8) > 0);
  assert.equal((await c.read(5)).toString(), 'early');
  c.send('more');
  assert.equal((await c.read(4)).toString(), 'more');
  assert.equal(h.requests.length, 1);
  const req = h.requests[0];
  assert.deepEqual(req?.host, { kind: 'name', name: 'echo.test' });
  assert.equal(req?.channel, 'socks5');
  assert.equal(req?.client, '127.0.0.1');
  assert.equal(req?.port, h.echoPort);
});

void test('CONNECT by IPv4 and IPv6 address', async (t) => {
  const h = await start(t);
  const c = await afterGreeting(t, h, [5, 1, 0, 1, 127, 0, 0, 1, h.echoPort >> 8, h.echoPort & 0xff]);
  assert.deepEqual((await c.read(10)).subarray(0, 4), Buffer.from([5, 0, 0, 1]));
  c.send('v4');
  assert.equal((await c.read(2)).toString(), 'v4');

  const v6 = await afterGreeting(t, h, [5, 1, 0, 4, ...new Array<number>(15).fill(0), 1, 0, 80]);
  assert.deepEqual(await v6.read(10), errorReply(0x02));
  const req = h.requests.at(-1);
  assert.equal(req?.host.kind, 'ip');
  assert.equal(req?.host.kind === 'ip' ? req.host.ip.text : '', '::1');
  assert.equal(req?.port, 80);
});

void test('IPv4-mapped client addresses are normalised', async (t) => {
  let h: Harness;
  try {
    h = await start(t, { listenHost: '::ffff:127.0.0.1' });
  } catch {
    t.skip('no dual-stack loopback here');
    return;
  }
  const c = await afterGreeting(t, h, domainRequest('echo.test', h.echoPort));
  await c.read(10);
  assert.equal(h.requests[0]?.client, '127.0.0.1');
});

void test('greeting with a version other than 5 is closed without a reply', async (t) => {
  const h = await start(t);
  const c = new RawClient(t, h.proxy).send([4, 1, 0, 80, 127, 0, 0, 1, 0]);
  assert.equal((await c.rest()).length, 0);
  await assertServes(t, h);
});

void test('truncated greeting then EOF: closed without a reply', async (t) => {
  const h = await start(t);
  const c = new RawClient(t, h.proxy).send([5, 3, 0]);
  c.socket.end();
  assert.equal((await c.rest()).length, 0);
  await assertServes(t, h);
});

void test('no acceptable method: 05 FF, then close', async (t) => {
  const h = await start(t);
  const c = new RawClient(t, h.proxy).send([5, 2, 1, 2]);
  assert.deepEqual(await c.rest(), Buffer.from([5, 0xff]));
  const empty = new RawClient(t, h.proxy).send([5, 0]);
  assert.deepEqual(await empty.rest(), Buffer.from([5, 0xff]));
  await assertServes(t, h);
});

void test('invalid domains: reply 02 and an audit line with rule builtin.invalid-host', async (t) => {
  const h = await start(t);
  const cases: { name: Buffer; shown: RegExp }[] = [
    { name: Buffer.alloc(255, 'a'), shown: /^a{255}$/ }, // longest length byte, longer than a DNS name may be
    { name: Buffer.alloc(0), shown: /^$/ },
    { name: Buffer.from('evil.test\x00.echo.test'), shown: /^evil\.test\\x00\.echo\.test$/ },
    { name: Buffer.from('echo.test\r\nX-Injected: 1'), shown: /^echo\.test\\x0d\\x0aX-Injected: 1$/ },
    { name: Buffer.from([0xff, 0xfe, 0x41]), shown: /A$/ },
    { name: Buffer.from('[::1]'), shown: /^\[::1\]$/ },
  ];
  for (const { name, shown } of cases) {
    const c = await afterGreeting(t, h, domainRequest(name, 443));
    assert.deepEqual(await c.rest(), errorReply(0x02), `reply for ${name.toString('hex')}`);
    const line = h.audit.decisions().at(-1);
    assert.equal(line?.rule, 'builtin.invalid-host');
    assert.equal(line?.decision, 'deny');
    assert.equal(line?.channel, 'socks5');
    assert.equal(line?.port, 443);
    assert.equal(line?.client, '127.0.0.1');
    assert.match(line?.host ?? '', shown);
    assert.match(line?.reason ?? '', /^invalid host: /);
  }
  assert.equal(h.audit.decisions().length, cases.length);
  assert.equal(h.requests.length, 0, 'nothing reached the connector');
  await assertServes(t, h);
});

void test('unsupported commands (BIND, UDP ASSOCIATE, unknown) get 07', async (t) => {
  const h = await start(t);
  for (const cmd of [2, 3, 0, 9]) {
    const c = await afterGreeting(t, h, domainRequest('echo.test', h.echoPort, cmd));
    assert.deepEqual(await c.rest(), errorReply(0x07), `cmd ${cmd}`);
  }
  assert.equal(h.requests.length, 0);
  await assertServes(t, h);
});

void test('unknown address type gets 08', async (t) => {
  const h = await start(t);
  for (const atyp of [0, 2, 5, 0xff]) {
    const c = await afterGreeting(t, h, [5, 1, 0, atyp, 1, 2, 3, 4, 0, 80]);
    assert.deepEqual(await c.rest(), errorReply(0x08), `atyp ${atyp}`);
  }
  await assertServes(t, h);
});

void test('garbage instead of a request gets 01; a request with version 4 gets 01', async (t) => {
  const h = await start(t);
  const garbage = await afterGreeting(t, h, Buffer.from('GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n'));
  assert.deepEqual(await garbage.rest(), errorReply(0x01));
  const v4 = await afterGreeting(t, h, [4, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
  assert.deepEqual(await v4.rest(), errorReply(0x01));
  await assertServes(t, h);
});

void test('garbage after the CONNECT request is tunnel data, not protocol', async (t) => {
  const h = await start(t);
  const junk = Buffer.from([0x05, 0x01, 0x00, 0xff, 0x00, 0x13, 0x37]);
  const c = await afterGreeting(t, h, Buffer.concat([domainRequest('echo.test', h.echoPort), junk]));
  assert.deepEqual((await c.read(10)).subarray(0, 2), Buffer.from([5, 0]));
  assert.deepEqual(await c.read(junk.length), junk);
  await assertServes(t, h);
});

void test('slowloris: an incomplete handshake is closed at the handshake time-out', async (t) => {
  const h = await start(t, { handshakeTimeoutMs: 150 });
  const greetingOnly = new RawClient(t, h.proxy).send([5]);
  assert.equal((await greetingOnly.rest()).length, 0);
  const partialRequest = await afterGreeting(t, h, [5, 1, 0, 3, 20, 0x61]);
  assert.equal((await partialRequest.rest()).length, 0);
  await assertServes(t, h);
});

void test('policy denial gets 02 (the connector writes the audit line, not the SOCKS layer)', async (t) => {
  const h = await start(t);
  const c = await afterGreeting(t, h, domainRequest('denied.test', 443));
  assert.deepEqual(await c.rest(), errorReply(0x02));
  assert.equal(h.audit.events.length, 0);
  await assertServes(t, h);
});

void test('upstream failures map to RFC 1928 reply codes', async (t) => {
  const h = await start(t);
  const expected: Record<string, number> = {
    'refused.test': 0x05,
    'timeout.test': 0x06,
    'missing.test': 0x04,
    'dnsfail.test': 0x04,
    'unreachable.test': 0x04,
    'reset.test': 0x01,
    'throws.test': 0x01,
  };
  for (const [name, code] of Object.entries(expected)) {
    const c = await afterGreeting(t, h, domainRequest(name, 443));
    assert.deepEqual(await c.rest(), errorReply(code), name);
  }
  await assertServes(t, h);
});

void test('a client that leaves while the connector is busy gets its tunnel closed', async (t) => {
  const h = await start(t);
  const c = await afterGreeting(t, h, domainRequest('slow.test', 443));
  await waitUntil(() => h.requests.length > 0, 'the connector to be asked');
  c.socket.destroy();
  await c.closed;
  await waitUntil(() => h.openSockets() === 0, 'the server to see the close');
  h.release();
  await waitUntil(() => h.tunnels.length > 0 && h.tunnels[0]?.closedWith !== null, 'the tunnel to close');
  assert.match(h.tunnels[0]?.closedWith ?? '', /client disconnected/);
  await assertServes(t, h);
});

void test('many malformed clients at once do not disturb a good one', async (t) => {
  const h = await start(t, { handshakeTimeoutMs: 300 });
  const bad = [
    [4, 1, 0],
    [5, 1, 0, 5, 2, 0, 1],
    [5, 1, 0, 5, 1, 0, 9],
    [5, 1, 0, 5, 1, 0, 3, 0, 0, 80],
    [0xff, 0xff, 0xff, 0xff],
    [5],
  ].map((bytes) => new RawClient(t, h.proxy).send(bytes));
  await assertServes(t, h);
  await Promise.all(bad.map((c) => c.closed));
  await assertServes(t, h);
});
