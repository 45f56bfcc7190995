/**
 * The native relay's own lifecycle (`proxy/native/tcp-relay.c`, `proxy/tcp-relay.ts`), through a real gateway and
 * real sockets: idle limits judged by the bytes the native part moved, every way a tunnel ends (client gone,
 * upstream reset, gateway shutdown, connect refused or timed out) and nothing left behind after any of them
 * (descriptors, relay entries). The data path itself (bulk, backpressure, half-close) runs through both relays in
 * tunnel.test.ts. Upstreams listen on a loopback alias in 198.18.0.0/15; the connect time-out's silence comes from
 * an iptables rule of this test on that alias, never from the network.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tcpRelay, tcpRelayOf, type TcpRelay } from '../../proxy/tcp-relay.js';
import type { AuditEvent, CloseEvent } from '../../src/audit/types.js';
import { connectTunnel, socks5Connect } from '../fixtures/clients.js';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { startTestGateway, type TestGateway } from '../fixtures/gateway.js';
import { addLoopbackAlias, TestServers, trickle } from '../fixtures/upstreams.js';
import { waitUntil } from '../fixtures/wait.js';

const UPSTREAM_IP = '198.19.5.2';
/** Echoes. */
const ECHO_PORT = 9101;
/** Sends one byte every TRICKLE_EVERY_MS, TRICKLE_BYTES times, then stays silent. */
const TRICKLE_PORT = 9102;
const TRICKLE_BYTES = 12;
const TRICKLE_EVERY_MS = 50;
/** Nothing listens here: a connect is refused. */
const CLOSED_PORT = 9103;
/** SYNs to this port are dropped by the test's iptables rule: a connect never completes. */
const SILENT_PORT = 9104;
const IDLE_MS = 250;

let dns: TestDnsServer;
let gw: TestGateway;
let relay: TcpRelay;
let removeAlias: () => void = () => undefined;
let dropRule: string[] | null = null;
const upstreams = new TestServers(UPSTREAM_IP);
/** The echo server's side of each connection, newest last, and by the first bytes its client sent. */
const echoSides: net.Socket[] = [];
const echoSideBy = new Map<string, net.Socket>();
let tunnelsMade = 0;

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

function closeLineAfter(mark: number, port: number): Promise<CloseEvent> {
  return gw.waitFor(
    (e: AuditEvent): e is CloseEvent => e.event === 'close' && e.port === port && gw.audit.events.indexOf(e) >= mark,
    `close line for port ${port}`,
  );
}

/** A tunnel to the echo server, with the server's side of it (found by a token the client sends first). */
async function echoTunnel(): Promise<{ socket: net.Socket; upstream: net.Socket }> {
  const token = `ping-${(tunnelsMade += 1)}`;
  const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${ECHO_PORT}`);
  assert.equal(reply.status, 200);
  reply.socket.write(token);
  const echo = once(reply.socket, 'data');
  reply.socket.resume(); // connectTunnel hands the socket over paused
  const [echoed] = (await echo) as [Buffer];
  assert.equal(Buffer.concat([reply.rest, echoed]).toString(), token);
  const upstream = echoSideBy.get(token);
  assert.ok(upstream, 'the echo server saw the token');
  echoSideBy.delete(token);
  return { socket: reply.socket, upstream };
}

before(async () => {
  removeAlias = addLoopbackAlias(UPSTREAM_IP);
  dropRule = ['INPUT', '-d', UPSTREAM_IP, '-p', 'tcp', '--dport', String(SILENT_PORT), '-j', 'DROP'];
  execFileSync('iptables', ['-I', ...dropRule]);
  await upstreams.serve(ECHO_PORT, (socket) => {
    echoSides.push(socket);
    socket.once('data', (first: Buffer) => echoSideBy.set(first.toString(), socket));
    socket.pipe(socket);
  });
  await upstreams.serve(TRICKLE_PORT, (socket) => trickle(socket, TRICKLE_BYTES, TRICKLE_EVERY_MS));
  dns = await startTestDnsServer({});
  const allowed = [ECHO_PORT, TRICKLE_PORT, CLOSED_PORT, SILENT_PORT].map((port) => `  - '${UPSTREAM_IP}:${port}'`).join('\n');
  gw = await startTestGateway(`network_policy: deny-by-default\nallowed_hosts:\n${allowed}\n`, dns, {
    tcpRelay: 'native',
    gatewayYaml: `idle_timeout: ${IDLE_MS}ms\nconnect_timeout: 500ms`,
  });
  assert.equal(gw.gateway.tcpRelay, 'native', 'the native relay is built and loads (npm run build)');
  const opened = tcpRelay();
  if (typeof opened === 'string') throw new Error(opened);
  relay = opened;
});

after(async () => {
  await gw?.close();
  await dns?.close();
  await upstreams.close();
  if (dropRule !== null) execFileSync('iptables', ['-D', ...dropRule]);
  removeAlias();
});

describe('the idle limit, judged by the bytes the native part moved', { timeout: 30_000 }, () => {
  it('keeps a tunnel open while its upstream trickles for longer than the limit, then closes it', async () => {
    const mark = gw.audit.events.length;
    const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${TRICKLE_PORT}`);
    assert.equal(reply.status, 200);
    // No byte from the client at all: the only activity is the upstream's, which JavaScript never sees.
    let received = reply.rest.length;
    reply.socket.on('data', (chunk: Buffer) => (received += chunk.length));
    reply.socket.resume(); // connectTunnel hands the socket over paused
    await once(reply.socket, 'close');
    assert.equal(received, TRICKLE_BYTES, `every trickled byte arrived (${TRICKLE_BYTES * TRICKLE_EVERY_MS} ms, limit ${IDLE_MS} ms)`);
    const close = await closeLineAfter(mark, TRICKLE_PORT);
    assert.equal(close.error, 'idle timeout');
    assert.equal(close.bytes_down, TRICKLE_BYTES);
    assert.ok(close.duration_ms >= TRICKLE_BYTES * TRICKLE_EVERY_MS, `closed after ${close.duration_ms} ms, before the trickle ended`);
  });

  it('closes a silent tunnel and its upstream connection', async () => {
    const mark = gw.audit.events.length;
    const { socket, upstream } = await echoTunnel();
    await Promise.all([once(socket, 'close'), once(upstream, 'close')]);
    const close = await closeLineAfter(mark, ECHO_PORT);
    assert.equal(close.error, 'idle timeout');
    assert.ok(close.bytes_up > 0 && close.bytes_up === close.bytes_down, 'the token went up and came back');
  });
});

describe('the busy count (accept steering) sees bytes the native part moved', { timeout: 30_000 }, () => {
  it('counts a tunnel busy while only its upstream sends, and idle once it is silent', async () => {
    const silent = await echoTunnel();
    const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${TRICKLE_PORT}`);
    assert.equal(reply.status, 200);
    reply.socket.resume();
    try {
      // Three samples 100 ms apart: the silent tunnel is idle after two, the trickling one moved bytes in each gap.
      for (let i = 0; i < 3; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        gw.gateway.sampleActivity();
      }
      assert.equal(gw.gateway.busyConnections, 1, 'the trickling tunnel is busy, the silent one idle');
    } finally {
      reply.socket.destroy();
      silent.socket.destroy();
    }
  });
});

describe('every end of a tunnel releases both connections', { timeout: 30_000 }, () => {
  it('closes the upstream connection when the client goes away mid-tunnel', async () => {
    const mark = gw.audit.events.length;
    const { socket, upstream } = await echoTunnel();
    socket.destroy();
    // The native part holds a duplicate of the client's descriptor: the upstream closes only if that is closed too.
    await once(upstream, 'close');
    const close = await closeLineAfter(mark, ECHO_PORT);
    assert.equal(close.bytes_up, close.bytes_down);
    await waitUntil(() => relay.size === 0, 'no tunnel left in the relay');
  });

  it('closes the client and names the error when the upstream resets', async () => {
    const mark = gw.audit.events.length;
    const { socket, upstream } = await echoTunnel();
    const closed = once(socket, 'close');
    socket.on('error', () => undefined);
    upstream.resetAndDestroy();
    await closed;
    const close = await closeLineAfter(mark, ECHO_PORT);
    assert.equal(close.error, 'ECONNRESET');
  });

  it('answers 502 with the reason when the upstream refuses, and audits the attempt', async () => {
    const mark = gw.audit.events.length;
    const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${CLOSED_PORT}`);
    assert.equal(reply.status, 502);
    assert.match(reply.headers['x-clawbox-reason'] ?? '', /ECONNREFUSED/);
    reply.socket.destroy();
    const close = await closeLineAfter(mark, CLOSED_PORT);
    assert.equal(close.error, 'ECONNREFUSED');
  });

  it('answers 504 after connect_timeout to an upstream that never answers, and drops the attempt', async () => {
    const mark = gw.audit.events.length;
    const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SILENT_PORT}`);
    assert.equal(reply.status, 504);
    assert.match(reply.headers['x-clawbox-reason'] ?? '', /ETIMEDOUT/);
    reply.socket.destroy();
    const close = await closeLineAfter(mark, SILENT_PORT);
    assert.equal(close.error, 'ETIMEDOUT');
    await waitUntil(() => relay.size === 0, 'the timed-out dial was dropped from the relay');
  });

  it('names the upstream connection’s own address and port in the SOCKS5 reply', async () => {
    const before = echoSides.length;
    const { reply, socket, bound } = await socks5Connect(gw.gateway.addresses.socks, UPSTREAM_IP, ECHO_PORT);
    try {
      assert.equal(reply, 0x00);
      await waitUntil(() => echoSides.length > before, 'the echo server saw the connection');
      const upstream = echoSides[echoSides.length - 1];
      assert.deepEqual(bound, { address: upstream.remoteAddress, port: upstream.remotePort });
    } finally {
      socket.destroy();
    }
  });

  it('leaves no descriptor and no relay entry behind after 300 tunnels ended every way', async () => {
    // One round first: the listeners' and the relay's own descriptors are made once.
    await echoTunnel().then(({ socket }) => socket.destroy());
    await waitUntil(() => relay.size === 0, 'no tunnel left in the relay');
    const baseline = openDescriptors();
    const ends = [
      (t: { socket: net.Socket; upstream: net.Socket }) => t.socket.destroy(),
      (t: { socket: net.Socket; upstream: net.Socket }) => t.socket.end(),
      (t: { socket: net.Socket; upstream: net.Socket }) => t.upstream.end(),
      (t: { socket: net.Socket; upstream: net.Socket }) => (t.socket.on('error', () => undefined), t.upstream.resetAndDestroy()),
    ];
    for (let round = 0; round < 30; round += 1) {
      const tunnels = await Promise.all(Array.from({ length: 10 }, () => echoTunnel()));
      tunnels.forEach((t, i) => ends[(round + i) % ends.length](t));
      await Promise.all(tunnels.map((t) => (t.socket.destroyed ? Promise.resolve() : once(t.socket, 'close'))));
    }
    for (const side of echoSides) side.destroy();
    await waitUntil(() => relay.size === 0, 'no tunnel left in the relay');
    await waitUntil(() => openDescriptors() <= baseline, `descriptors back to ${baseline} (now ${openDescriptors()})`);
  });

  it('closes the tunnels still open when the gateway shuts down', async () => {
    const other = await startTestGateway(`network_policy: deny-by-default\nallowed_hosts:\n  - '${UPSTREAM_IP}:${ECHO_PORT}'\n`, dns, { tcpRelay: 'native' });
    const before = echoSides.length;
    const reply = await connectTunnel(other.gateway.addresses.http, `${UPSTREAM_IP}:${ECHO_PORT}`);
    assert.equal(reply.status, 200);
    reply.socket.resume();
    await waitUntil(() => echoSides.length > before, 'the echo server saw the connection');
    const upstream = echoSides[echoSides.length - 1];
    await other.close();
    await Promise.all([
      reply.socket.destroyed ? Promise.resolve() : once(reply.socket, 'close'),
      upstream.destroyed ? Promise.resolve() : once(upstream, 'close'),
    ]);
    await waitUntil(() => relay.size === 0, 'no tunnel left in the relay');
  });
});

describe('the relay setting', () => {
  it('takes native (the default) or node, and refuses anything else by name', () => {
    assert.equal(tcpRelayOf(undefined), 'native');
    assert.equal(tcpRelayOf(''), 'native');
    assert.equal(tcpRelayOf('native'), 'native');
    assert.equal(tcpRelayOf('node'), 'node');
    assert.throws(() => tcpRelayOf('splice'), /CLAWBOX_TCP_RELAY must be "native" or "node", not "splice"/);
  });
});
