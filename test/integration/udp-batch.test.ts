import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import { nativeUdpBatch, openDatagramIo, type DatagramIo, type DatagramIoKind, type DatagramSource } from '../../proxy/udp-batch.js';

/** A liveness bound, not a timing check: datagrams on loopback take microseconds. */
const NO_DATAGRAM_MS = 10_000;

interface Received {
  readonly text: string;
  readonly from: DatagramSource;
}

/** A bound server socket whose reader echoes every datagram back upper-cased, batched per event-loop turn. */
async function echoServer(t: TestContext, kind: DatagramIoKind, type: 'udp4' | 'udp6' = 'udp4'): Promise<{ port: number; io: DatagramIo; seen: Received[]; socket: dgram.Socket }> {
  const socket = dgram.createSocket(type);
  await new Promise<void>((resolve) => socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', resolve));
  const seen: Received[] = [];
  const replies: { response: Buffer; to: DatagramSource }[] = [];
  const fallbacks: string[] = [];
  const io = openDatagramIo(
    socket,
    (message, from) => {
      // The message is valid only during the call: what outlives it is a copy.
      const text = message.toString('latin1');
      seen.push({ text, from });
      if (replies.length === 0) setImmediate(() => io.sendAll(replies.splice(0)));
      replies.push({ response: Buffer.from(text.toUpperCase(), 'latin1'), to: from });
    },
    kind,
    (why) => fallbacks.push(why),
  );
  assert.deepEqual(fallbacks, [], 'no fall-back to node:dgram');
  assert.equal(io.kind, kind);
  t.after(async () => {
    await io.stop();
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  });
  return { port: socket.address().port, io, seen, socket };
}

/** A client socket that collects what it receives. */
async function client(
  t: TestContext,
  type: 'udp4' | 'udp6' = 'udp4',
): Promise<{ socket: dgram.Socket; port: number; next: (n: number) => Promise<string[]>; unread: () => number }> {
  const socket = dgram.createSocket(type);
  await new Promise<void>((resolve) => socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', resolve));
  t.after(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  const got: string[] = [];
  socket.on('message', (m) => got.push(m.toString('latin1')));
  const next = async (n: number): Promise<string[]> => {
    const deadline = Date.now() + NO_DATAGRAM_MS;
    while (got.length < n) {
      if (Date.now() > deadline) throw new Error(`got ${got.length} of ${n} datagrams within ${NO_DATAGRAM_MS} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return got.splice(0, n);
  };
  return { socket, port: socket.address().port, next, unread: () => got.length };
}

describe('batched datagram I/O (proxy/native/udp-batch.c)', () => {
  it('is built by npm run build and loads in this Node', () => {
    const native = nativeUdpBatch();
    assert.ok(typeof native !== 'string', `the native part is unavailable: ${typeof native === 'string' ? native : ''}`);
  });

  for (const kind of ['batched', 'dgram'] as const) {
    describe(`through ${kind}`, () => {
      it('hands each datagram over with its source, and each answer reaches that source', async (t) => {
        const server = await echoServer(t, kind);
        const c = await client(t);
        for (const word of ['alpha', 'beta', 'gamma']) c.socket.send(word, server.port, '127.0.0.1');
        assert.deepEqual(await c.next(3), ['ALPHA', 'BETA', 'GAMMA']);
        assert.deepEqual(
          server.seen.map((s) => [s.text, s.from.address, s.from.port, s.from.family]),
          ['alpha', 'beta', 'gamma'].map((w) => [w, '127.0.0.1', c.port, 4]),
        );
      });

      it('serves a burst larger than one read from three clients, each answer to its own client', async (t) => {
        const server = await echoServer(t, kind);
        const clients = await Promise.all([client(t), client(t), client(t)]);
        // 150 small datagrams queue well within the socket's default receive buffer, so none is lost on the way.
        for (let i = 0; i < 50; i++) for (const [n, c] of clients.entries()) c.socket.send(`c${n}-${i}`, server.port, '127.0.0.1');
        for (const [n, c] of clients.entries()) {
          assert.deepEqual(await c.next(50), Array.from({ length: 50 }, (_, i) => `C${n}-${i}`));
        }
        assert.equal(server.seen.length, 150);
      });

      it('serves IPv6 clients, the address as node:dgram writes it', async (t) => {
        const server = await echoServer(t, kind, 'udp6');
        const c = await client(t, 'udp6');
        c.socket.send('six', server.port, '::1');
        assert.deepEqual(await c.next(1), ['SIX']);
        assert.deepEqual([server.seen[0].from.address, server.seen[0].from.port, server.seen[0].from.family], ['::1', c.port, 6]);
      });

      it('answers a link-local IPv6 client through its interface, its address written as node:dgram writes it', async (t) => {
        // A veth pair of our own, each end with a link-local address: the answer must carry the scope id back.
        const [near, far] = [`cbx${process.pid % 100_000}a`, `cbx${process.pid % 100_000}b`];
        execFileSync('ip', ['link', 'add', near, 'type', 'veth', 'peer', 'name', far]);
        t.after(() => execFileSync('ip', ['link', 'del', near]));
        for (const [dev, address] of [[near, 'fe80::c1a:1/64'], [far, 'fe80::c1a:2/64']]) {
          execFileSync('ip', ['link', 'set', dev, 'up']);
          execFileSync('ip', ['-6', 'addr', 'add', address, 'dev', dev, 'nodad']);
        }
        const socket = dgram.createSocket('udp6');
        await new Promise<void>((resolve) => socket.bind(0, '::', resolve));
        const seen: DatagramSource[] = [];
        const io = openDatagramIo(socket, (_message, from) => {
          seen.push(from);
          setImmediate(() => io.sendAll([{ response: Buffer.from('pong'), to: from }]));
        }, kind, () => undefined);
        t.after(async () => {
          await io.stop();
          await new Promise<void>((resolve) => socket.close(() => resolve()));
        });
        const c = dgram.createSocket('udp6');
        await new Promise<void>((resolve) => c.bind(0, `fe80::c1a:2%${far}`, resolve));
        t.after(() => new Promise<void>((resolve) => c.close(() => resolve())));
        const answered = once(c, 'message', { signal: AbortSignal.timeout(NO_DATAGRAM_MS) });
        c.send('ping', socket.address().port, `fe80::c1a:1%${far}`);
        assert.equal(String((await answered)[0]), 'pong');
        assert.equal(seen[0].address, `fe80::c1a:2%${near}`);
        // What the answer is sent with: the interface's index (a route lookup without it may pick another link).
        if (kind === 'batched') assert.equal(seen[0].words[4], Number(readFileSync(`/sys/class/net/${near}/ifindex`, 'utf8')));
      });

      it('frees the port once stopped and its socket closed', async (t) => {
        const socket = dgram.createSocket('udp4');
        await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
        const port = socket.address().port;
        const io = openDatagramIo(socket, () => undefined, kind, () => undefined);
        await io.stop();
        await new Promise<void>((resolve) => socket.close(() => resolve()));
        const again = dgram.createSocket('udp4');
        t.after(() => new Promise<void>((resolve) => again.close(() => resolve())));
        await new Promise<void>((resolve, reject) => {
          again.once('error', reject);
          again.bind(port, '127.0.0.1', resolve);
        });
      });
    });
  }

  describe('only where batched', () => {
    it('hands over every datagram up to its slot whole, drops every longer one, and keeps serving', async (t) => {
      const server = await echoServer(t, 'batched');
      const c = await client(t);
      const native = nativeUdpBatch();
      assert.ok(typeof native !== 'string');
      const slot = native.DATA_BYTES;
      // The edges of the slot, the empty datagram, the largest UDP payload, and sizes in between.
      const sizes = [0, 1, 12, 512, slot - 1, slot, slot + 1, slot + 2, 8192, 65_507];
      for (let i = 0; i < 40; i++) sizes.push((i * 7919) % 9000);
      for (const [i, size] of sizes.entries()) {
        const body = Buffer.alloc(size, 0x61 + (i % 26));
        c.socket.send(body, server.port, '127.0.0.1');
        // Answered in order: the ping's answer comes after the datagram's, if it had one.
        c.socket.send(`ping${i}`, server.port, '127.0.0.1');
        const expected = size <= slot ? [body.toString('latin1').toUpperCase(), `PING${i}`] : [`PING${i}`];
        const got = await c.next(expected.length);
        assert.deepEqual(
          got.map((g) => `${g.length}:${g.slice(0, 8)}`),
          expected.map((e) => `${e.length}:${e.slice(0, 8)}`),
          `a datagram of ${size} bytes`,
        );
        assert.deepEqual(got, expected);
      }
    });

    it('leaves datagrams in the socket while not reading, and reads them when told to again', async (t) => {
      const server = await echoServer(t, 'batched');
      const c = await client(t);
      server.io.setReading(false);
      c.socket.send('held', server.port, '127.0.0.1');
      // A generous hold: a reader still reading would have answered within microseconds.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(server.seen, []);
      server.io.setReading(true);
      assert.deepEqual(await c.next(1), ['HELD']);
    });

    it('sends nothing after stop, without an error', async (t) => {
      const server = await echoServer(t, 'batched');
      const c = await client(t);
      const from: DatagramSource = { address: '127.0.0.1', port: c.port, family: 4, words: [0x7f000001, 0, 0, 0, 0] };
      server.io.sendAll([{ response: Buffer.from('before'), to: from }]);
      assert.deepEqual(await c.next(1), ['before']);
      await server.io.stop();
      server.io.sendAll([{ response: Buffer.from('after'), to: from }]);
      server.io.setReading(true);
      c.socket.send('unheard', server.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(server.seen, []);
      assert.equal(c.unread(), 0, 'the answer sent after stop did not go out');
    });
  });
});
