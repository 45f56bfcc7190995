/**
 * The tunnel's data path with real sockets and real sizes: 64 MiB each way through CONNECT and SOCKS5 with a
 * checksum, a client that stops reading (backpressure), half-close in both directions, bytes a server sends
 * before the client is attached, and the byte counts of the close audit line. Upstreams listen on a loopback
 * alias in 198.18.0.0/15, the gateway runs in-process (test/fixtures/gateway.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { IdleSweep } from '../../proxy/idle-sweep.js';
import type { TcpRelayKind } from '../../proxy/tcp-relay.js';
import { UpstreamRelay, createTunnel } from '../../proxy/tunnel.js';
import { MemoryAuditSink } from '../../src/audit/sink.js';
import type { AuditEvent, CloseEvent } from '../../src/audit/types.js';
import { connectTunnel, readAll, readExactly, socks5Connect } from '../fixtures/clients.js';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { startTestGateway, type TestGateway } from '../fixtures/gateway.js';
import { addLoopbackAlias, TestServers, trickle } from '../fixtures/upstreams.js';

const UPSTREAM_IP = '198.19.3.2';
/** Sends as many bytes as the client asks for (8-byte big-endian count, 8-byte seed), then ends. */
const SOURCE_PORT = 9001;
/** Reads to the client's end, then answers the SHA-256 and the count of what it read, then ends. */
const SINK_PORT = 9002;
/** Speaks first (a banner), then echoes. */
const BANNER_PORT = 9003;
const BANNER = '220 banner.test ESMTP ready\r\n';
/** Sends one byte every TRICKLE_EVERY_MS, TRICKLE_BYTES times, then stays silent. */
const TRICKLE_PORT = 9004;
const TRICKLE_BYTES = 15;
const TRICKLE_EVERY_MS = 40;
/** The idle limit of the idle-time-out tests: several trickle periods, so a trickle keeps a tunnel alive. */
const SHORT_IDLE_MS = 250;

const MiB = 1024 * 1024;
const BULK = 64 * MiB;
const REQUEST_BYTES = 16;

const CONFIG = `
network_policy: deny-by-default
allowed_hosts:
  - '${UPSTREAM_IP}:${SOURCE_PORT}'
  - '${UPSTREAM_IP}:${SINK_PORT}'
  - 'bulk.test:${SOURCE_PORT}'
`;

/** Non-repeating bytes (AES-CTR keystream), so a buffer reused too early cannot go unnoticed. */
function* pattern(seed: number, total: number, chunk = MiB): Generator<Buffer> {
  const key = createHash('sha256').update(`tunnel-test-${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let left = total; left > 0; left -= chunk) yield cipher.update(zeros.subarray(0, Math.min(chunk, left)));
}

function digestOf(seed: number, total: number): string {
  const hash = createHash('sha256');
  for (const part of pattern(seed, total)) hash.update(part);
  return hash.digest('hex');
}

interface SourceConnection {
  /** Bytes the kernel has taken from the source (write callbacks run). */
  accepted: number;
  readonly total: number;
}

let dns: TestDnsServer;
let gw: TestGateway;
const gateways = {} as Record<TcpRelayKind, TestGateway>;
const upstreams = new TestServers(UPSTREAM_IP);
const sources: SourceConnection[] = [];
let removeAlias: () => void = () => undefined;

function drainedOrClosed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

async function sendPattern(socket: net.Socket, seed: number, total: number, progress?: SourceConnection): Promise<void> {
  for (const part of pattern(seed, total)) {
    if (socket.destroyed) return;
    const ok = socket.write(part, (err) => {
      if (!err && progress) progress.accepted += part.length;
    });
    if (!ok) await drainedOrClosed(socket);
  }
}

before(async () => {
  removeAlias = addLoopbackAlias(UPSTREAM_IP);
  await upstreams.serve(SOURCE_PORT, (socket) => {
    void readExactly(socket, REQUEST_BYTES).then(async (request) => {
      const progress: SourceConnection = { accepted: 0, total: Number(request.readBigUInt64BE(0)) };
      sources.push(progress);
      await sendPattern(socket, Number(request.readBigUInt64BE(8)), progress.total, progress);
      socket.end();
    }, () => socket.destroy());
  });
  await upstreams.serve(SINK_PORT, (socket) => {
    const hash = createHash('sha256');
    let count = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      count += chunk.length;
    });
    socket.on('end', () => {
      const answer = Buffer.alloc(40);
      hash.digest().copy(answer);
      answer.writeBigUInt64BE(BigInt(count), 32);
      socket.end(answer);
    });
  });
  await upstreams.serve(BANNER_PORT, (socket) => {
    socket.write(BANNER);
    socket.pipe(socket);
  });
  await upstreams.serve(TRICKLE_PORT, (socket) => trickle(socket, TRICKLE_BYTES, TRICKLE_EVERY_MS));
  dns = await startTestDnsServer({ 'bulk.test': { A: [UPSTREAM_IP] } });
  gateways.native = await startTestGateway(CONFIG, dns, { tcpRelay: 'native' });
  gateways.node = await startTestGateway(CONFIG, dns, { tcpRelay: 'node' });
  gw = gateways.native;
});

after(async () => {
  await gateways.native?.close();
  await gateways.node?.close();
  await dns?.close();
  await upstreams.close();
  removeAlias();
});

function request(total: number, seed: number): Buffer {
  const bytes = Buffer.alloc(REQUEST_BYTES);
  bytes.writeBigUInt64BE(BigInt(total), 0);
  bytes.writeBigUInt64BE(BigInt(seed), 8);
  return bytes;
}

/** The close line of the first tunnel to `port` audited after `mark` events. */
function closeLine(port: number, mark: number): Promise<CloseEvent> {
  return gw.waitFor(
    (e: AuditEvent): e is CloseEvent => e.event === 'close' && e.port === port && gw.audit.events.indexOf(e) >= mark,
    `close line for port ${port}`,
  );
}

interface Received {
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Reads `socket` to its end, hashing as it goes. `hold` is asked after every chunk: while it returns a promise,
 * the client reads nothing (a slow reader).
 */
function receive(socket: net.Socket, first: Buffer, hold?: (received: number) => Promise<void> | null): Promise<Received> {
  const hash: Hash = createHash('sha256').update(first);
  let bytes = first.length;
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      const wait = hold?.(bytes);
      if (wait) {
        socket.pause();
        void wait.then(() => socket.resume());
      }
    });
    socket.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    socket.once('close', () => reject(new Error(`closed after ${bytes} bytes without an end`)));
    socket.resume();
  });
}

/** Polls until `value` stops changing (the pipeline is full), bounded so a broken gateway fails, not hangs. */
async function settled(value: () => number): Promise<number> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < 400 && same < 6; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = value();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// Each of these through both data paths: the native relay and node:net (CLAWBOX_TCP_RELAY=node).
for (const kind of ['native', 'node'] as const) {
  describe(`through the ${kind} relay`, () => {
    before(() => {
      gw = gateways[kind];
      assert.equal(gw.gateway.tcpRelay, kind, `the gateway relays tunnels through ${kind}`);
    });

    describe('the end of a tunnel', { timeout: 60_000 }, () => {
      it('closes once the upstream has closed and its bytes reached the client, without waiting for the client', async () => {
        const mark = gw.audit.events.length;
        // allowHalfOpen: this client never sends its FIN, so only the upstream's close can end the tunnel.
        const client = net.connect({ host: gw.gateway.addresses.http.address, port: gw.gateway.addresses.http.port, allowHalfOpen: true });
        try {
          client.write(`CONNECT ${UPSTREAM_IP}:${SOURCE_PORT} HTTP/1.1\r\nHost: ${UPSTREAM_IP}:${SOURCE_PORT}\r\n\r\n`);
          client.write(request(1000, 21));
          const received = await readAll(client);
          const head = 'HTTP/1.1 200 Connection Established\r\n\r\n';
          assert.equal(received.subarray(0, head.length).toString('latin1'), head);
          assert.equal(received.length - head.length, 1000, 'every byte the upstream sent arrived before the FIN');
          assert.equal(client.writableEnded, false);
          const close = await closeLine(SOURCE_PORT, mark);
          assert.equal(close.bytes_down, 1000);
          assert.equal(close.error, undefined);
        } finally {
          client.destroy();
        }
      });
    });

    describe('bulk through a CONNECT tunnel', { timeout: 120_000 }, () => {
      it('downloads 64 MiB intact; the server half-closes and the close line counts every byte', async () => {
        const mark = gw.audit.events.length;
        const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SOURCE_PORT}`);
        assert.equal(reply.status, 200);
        reply.socket.write(request(BULK, 1));
        const got = await receive(reply.socket, reply.rest);
        assert.equal(got.bytes, BULK);
        assert.equal(got.sha256, digestOf(1, BULK));
        reply.socket.end();
        const close = await closeLine(SOURCE_PORT, mark);
        assert.equal(close.bytes_down, BULK);
        assert.equal(close.bytes_up, REQUEST_BYTES);
        assert.equal(close.error, undefined);
      });

      it('uploads 64 MiB intact; the client half-closes and still gets the answer', async () => {
        const mark = gw.audit.events.length;
        const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SINK_PORT}`);
        assert.equal(reply.status, 200);
        const answer = readAll(reply.socket);
        await sendPattern(reply.socket, 2, BULK);
        reply.socket.end();
        const bytes = Buffer.concat([reply.rest, await answer]);
        assert.equal(bytes.length, 40);
        assert.equal(bytes.subarray(0, 32).toString('hex'), digestOf(2, BULK));
        assert.equal(Number(bytes.readBigUInt64BE(32)), BULK);
        const close = await closeLine(SINK_PORT, mark);
        assert.equal(close.bytes_up, BULK);
        assert.equal(close.bytes_down, 40);
      });

      it('stops reading the upstream while the client does not read, and loses nothing', async () => {
        const mark = gw.audit.events.length;
        const reply = await connectTunnel(gw.gateway.addresses.http, `bulk.test:${SOURCE_PORT}`);
        assert.equal(reply.status, 200);
        const before = sources.length;
        reply.socket.pause();
        reply.socket.write(request(BULK, 3));
        await settled(() => sources[before]?.accepted ?? 0);
        const source = sources[before];
        assert.ok(source, 'the source got the request');
        // Kernel buffers on three sockets hold at most tens of MiB here; without backpressure the gateway would
        // have read all of it.
        assert.ok(source.accepted < BULK, `the source could send all ${BULK} bytes to a client that reads nothing`);

        // Then a reader that keeps stopping: every few MiB it waits until the pipeline is full again.
        let nextStop = 4 * MiB;
        const got = await receive(reply.socket, reply.rest, (received) => {
          if (received < nextStop) return null;
          nextStop += 8 * MiB;
          return settled(() => source.accepted).then(() => undefined);
        });
        assert.equal(got.bytes, BULK);
        assert.equal(got.sha256, digestOf(3, BULK));
        reply.socket.end();
        const close = await closeLine(SOURCE_PORT, mark);
        assert.equal(close.bytes_down, BULK);
        assert.equal(close.bytes_up, REQUEST_BYTES);
      });

      it('keeps concurrent downloads to slow readers apart', async () => {
        const mark = gw.audit.events.length;
        const size = 32 * MiB;
        const stopAndGo = async (seed: number): Promise<Received> => {
          const reply = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SOURCE_PORT}`);
          reply.socket.write(request(size, seed));
          let nextStop = MiB;
          return receive(reply.socket, reply.rest, (received) => {
            if (received < nextStop) return null;
            nextStop += 3 * MiB;
            return new Promise((resolve) => setTimeout(resolve, 30));
          });
        };
        const [a, b, c] = await Promise.all([stopAndGo(11), stopAndGo(12), stopAndGo(13)]);
        assert.equal(a.sha256, digestOf(11, size));
        assert.equal(b.sha256, digestOf(12, size));
        assert.equal(c.sha256, digestOf(13, size));
        const closes = (): CloseEvent[] =>
          gw.audit.events.slice(mark).filter((e): e is CloseEvent => e.event === 'close' && e.port === SOURCE_PORT);
        await gw.waitFor((e: AuditEvent): e is CloseEvent => e.event === 'close' && closes().length === 3, 'three close lines');
        assert.deepEqual(closes().map((e) => e.bytes_down), [size, size, size]);
      });

      it('keeps both directions going at once', async () => {
        const mark = gw.audit.events.length;
        const down = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SOURCE_PORT}`);
        const up = await connectTunnel(gw.gateway.addresses.http, `${UPSTREAM_IP}:${SINK_PORT}`);
        down.socket.write(request(16 * MiB, 4));
        const answer = readAll(up.socket);
        const [got] = await Promise.all([receive(down.socket, down.rest), sendPattern(up.socket, 5, 16 * MiB).then(() => up.socket.end())]);
        assert.equal(got.sha256, digestOf(4, 16 * MiB));
        assert.equal(Buffer.concat([up.rest, await answer]).subarray(0, 32).toString('hex'), digestOf(5, 16 * MiB));
        down.socket.end();
        assert.equal((await closeLine(SOURCE_PORT, mark)).bytes_down, 16 * MiB);
        assert.equal((await closeLine(SINK_PORT, mark)).bytes_up, 16 * MiB);
      });
    });

    describe('bulk through SOCKS5', { timeout: 120_000 }, () => {
      it('downloads 64 MiB intact', async () => {
        const mark = gw.audit.events.length;
        const { reply, socket } = await socks5Connect(gw.gateway.addresses.socks, UPSTREAM_IP, SOURCE_PORT);
        assert.equal(reply, 0x00);
        socket.write(request(BULK, 6));
        const got = await receive(socket, Buffer.alloc(0));
        assert.equal(got.bytes, BULK);
        assert.equal(got.sha256, digestOf(6, BULK));
        socket.end();
        const close = await closeLine(SOURCE_PORT, mark);
        assert.equal(close.channel, 'socks5');
        assert.equal(close.bytes_down, BULK);
      });
    });
  });
}

describe('a tunnel whose client is attached later', { timeout: 120_000 }, () => {
  /** A server-accepted socket, as the gateway's listeners hand to `pipe()`, and its other end. */
  async function socketPair(): Promise<{ accepted: net.Socket; peer: net.Socket; close: () => void }> {
    const server = net.createServer({ allowHalfOpen: true }); // as the gateway's listeners
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    const peer = net.connect(port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [net.Socket];
    return { accepted, peer, close: () => server.close() };
  }

  async function dialRelayed(port: number): Promise<{ upstream: net.Socket; relay: UpstreamRelay }> {
    const relay = new UpstreamRelay();
    const upstream = net.connect({ host: UPSTREAM_IP, port, onread: relay.onread });
    await once(upstream, 'connect');
    return { upstream, relay };
  }

  async function closeLineOf(audit: MemoryAuditSink): Promise<CloseEvent> {
    for (let i = 0; i < 200; i++) {
      const found = audit.events.find((e): e is CloseEvent => e.event === 'close');
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('no close line');
  }

  const context = (audit: MemoryAuditSink, port: number, idleTimeoutMs = 60_000) => ({
    fields: { conn: 'test-1', channel: 'connect' as const, client: '127.0.0.1', host: UPSTREAM_IP, port },
    dialed: UPSTREAM_IP,
    sniHost: null,
    audit,
    idle: new IdleSweep(idleTimeoutMs),
    startedAt: performance.now(),
  });

  interface Relayed {
    readonly audit: MemoryAuditSink;
    readonly upstream: net.Socket;
    readonly tunnel: ReturnType<typeof createTunnel>;
    readonly pair: Awaited<ReturnType<typeof socketPair>>;
  }

  /** A relayed tunnel to `port` and a client pair, not yet joined (the test calls `pipe`); cleaned up after `body`. */
  async function withRelayedTunnel(port: number, idleTimeoutMs: number | undefined, body: (t: Relayed) => Promise<void>): Promise<void> {
    const audit = new MemoryAuditSink();
    const { upstream, relay } = await dialRelayed(port);
    const tunnel = createTunnel(upstream, context(audit, port, idleTimeoutMs), relay);
    const pair = await socketPair();
    try {
      await body({ audit, upstream, tunnel, pair });
    } finally {
      pair.peer.destroy();
      pair.close();
    }
  }

  // A relayed tunnel has one idle watch: reads in both directions (downloads and uploads) keep it alive.
  it('stays open while only the upstream sends, and closes on idle timeout once both sides are silent', async () => {
    await withRelayedTunnel(TRICKLE_PORT, SHORT_IDLE_MS, async ({ audit, tunnel, pair }) => {
      tunnel.pipe(pair.accepted);
      // The trickle lasts more than twice the idle limit.
      assert.equal((await readExactly(pair.peer, TRICKLE_BYTES)).toString(), 't'.repeat(TRICKLE_BYTES));
      const close = await closeLineOf(audit);
      assert.equal(close.error, 'idle timeout');
      assert.equal(close.bytes_down, TRICKLE_BYTES);
      assert.equal((await readAll(pair.peer)).length, 0, 'the client saw its end and nothing more');
    });
  });

  it('stays open while only the client sends', async () => {
    await withRelayedTunnel(SINK_PORT, SHORT_IDLE_MS, async ({ audit, tunnel, pair }) => {
      tunnel.pipe(pair.accepted);
      for (let i = 0; i < TRICKLE_BYTES; i++) {
        pair.peer.write('u');
        await new Promise((resolve) => setTimeout(resolve, TRICKLE_EVERY_MS));
      }
      pair.peer.end();
      // The sink answers only at the end of the upload: the tunnel was still open after more than twice its limit.
      const answer = await readAll(pair.peer);
      assert.equal(answer.readBigUInt64BE(32), BigInt(TRICKLE_BYTES));
      const close = await closeLineOf(audit);
      assert.equal(close.error, undefined);
      assert.equal(close.bytes_up, TRICKLE_BYTES);
    });
  });

  it('delivers bytes the server sent before pipe(), then relays both ways', async () => {
    await withRelayedTunnel(BANNER_PORT, undefined, async ({ audit, upstream, tunnel, pair }) => {
      // The banner has been read by the gateway (and has nowhere to go yet) before the client is attached.
      await settled(() => upstream.bytesRead);
      assert.equal(upstream.bytesRead, BANNER.length);
      tunnel.pipe(pair.accepted);
      assert.equal((await readExactly(pair.peer, BANNER.length)).toString(), BANNER);
      pair.peer.write('echo me');
      assert.equal((await readExactly(pair.peer, 7)).toString(), 'echo me');
      pair.peer.end();
      const close = await closeLineOf(audit);
      assert.equal(close.error, undefined);
      assert.equal(close.bytes_down, BANNER.length + 7);
      assert.equal(close.bytes_up, 7);
    });
  });

  it('never reads into a buffer a queued write still holds, even if reading is restarted while stalled', async () => {
    await withRelayedTunnel(SOURCE_PORT, undefined, async ({ upstream, tunnel, pair }) => {
      pair.peer.pause();
      tunnel.pipe(pair.accepted);
      upstream.write(request(32 * MiB, 8));
      await settled(() => upstream.bytesRead);
      // Something other than the relay restarting reads (a stray resume()) must cost memory, not bytes.
      for (let i = 0; i < 40; i++) {
        upstream.resume();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const got = await receive(pair.peer, Buffer.alloc(0));
      assert.equal(got.bytes, 32 * MiB);
      assert.equal(got.sha256, digestOf(8, 32 * MiB));
    });
  });

  it('delivers a download that started before pipe()', async () => {
    await withRelayedTunnel(SOURCE_PORT, undefined, async ({ audit, upstream, tunnel, pair }) => {
      upstream.write(request(3 * MiB, 7));
      await settled(() => upstream.bytesRead);
      tunnel.pipe(pair.accepted);
      const got = await receive(pair.peer, Buffer.alloc(0));
      assert.equal(got.bytes, 3 * MiB);
      assert.equal(got.sha256, digestOf(7, 3 * MiB));
      pair.peer.end();
      const close = await closeLineOf(audit);
      assert.equal(close.bytes_down, 3 * MiB);
      assert.equal(close.bytes_up, REQUEST_BYTES);
    });
  });
});
