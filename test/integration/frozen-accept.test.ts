import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type ServerOpts, type Socket } from 'node:net';
import { constants } from 'node:os';
import { acceptFromFrozenOptions, acceptsFromFrozenOptions } from '../../proxy/frozen-accept.js';
import { nextChunk, readAll } from '../fixtures/clients.js';
import { waitUntil } from '../fixtures/wait.js';

async function listening(options: ServerOpts, onSocket: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(options, onSocket);
  acceptFromFrozenOptions(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function connected(port: number): Promise<Socket> {
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  return client;
}

const closed = (server: Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

describe('acceptFromFrozenOptions: a server accepts as node:net does, from frozen socket options', () => {
  it('takes over the listening handle on every listen, not before', async () => {
    const server = createServer();
    acceptFromFrozenOptions(server);
    assert.equal(acceptsFromFrozenOptions(server), false, 'not listening yet');
    for (let listen = 0; listen < 2; listen++) {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      assert.equal(acceptsFromFrozenOptions(server), true, `listen ${listen + 1}`);
      await closed(server);
      assert.equal(acceptsFromFrozenOptions(server), false);
    }
    const plain = createServer();
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    assert.equal(acceptsFromFrozenOptions(plain), false, "node:net's own callback");
    await closed(plain);
  });

  it("keeps the server's options: paused until resumed, half-open, and the server's socket", async () => {
    const accepted: Socket[] = [];
    const { server, port } = await listening({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (socket) => {
      accepted.push(socket);
    });
    const client = await connected(port);
    client.end('question');
    await waitUntil(() => accepted.length === 1, 'the connection');
    const [socket] = accepted as [Socket];
    assert.equal(socket.readableFlowing, false, 'pauseOnConnect: nothing read before resume');
    assert.equal(socket.bytesRead, 0);
    assert.equal((socket as Socket & { server?: Server }).server, server);
    assert.equal(socket.remotePort, client.localPort);
    // Both waits are set before reading starts: the chunk and the FIN may arrive in one read.
    const chunk = nextChunk(socket);
    const ended = once(socket, 'end');
    socket.resume();
    assert.equal(String(await chunk), 'question');
    await ended;
    // allowHalfOpen: the client's FIN left our side open for the answer.
    assert.equal(socket.writable, true);
    socket.end('answer');
    assert.equal(String(await readAll(client)), 'answer');
    await closed(server);
  });

  it("counts connections: getConnections, and close() waits for the last one", async () => {
    const accepted: Socket[] = [];
    const { server, port } = await listening({}, (socket) => accepted.push(socket));
    const clients = [await connected(port), await connected(port)];
    await waitUntil(() => accepted.length === 2, 'both connections');
    const count = await new Promise<number>((resolve, reject) =>
      server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
    assert.equal(count, 2);
    let serverClosed = false;
    server.close(() => {
      serverClosed = true;
    });
    accepted[0]?.destroy();
    await once(clients[0], 'close');
    await new Promise((r) => setImmediate(r));
    assert.equal(serverClosed, false, 'one connection still open');
    accepted[1]?.destroy();
    await waitUntil(() => serverClosed, "the server's close");
  });

  it("drops connections past maxConnections with 'drop', and serves the next one after a slot frees", async () => {
    const accepted: Socket[] = [];
    const { server, port } = await listening({}, (socket) => accepted.push(socket));
    server.maxConnections = 1;
    const drops: Array<{ remotePort?: number }> = [];
    server.on('drop', (data: { remotePort?: number }) => drops.push(data));
    const clients: Socket[] = [];
    try {
      const first = await connected(port);
      clients.push(first);
      await waitUntil(() => accepted.length === 1, 'the first connection');
      const second = await connected(port);
      clients.push(second);
      const secondPort = second.localPort;
      await once(second, 'close');
      assert.equal(accepted.length, 1);
      assert.equal(drops.length, 1);
      assert.equal(drops[0]?.remotePort, secondPort, "'drop' names the refused client");
      accepted[0]?.destroy();
      await once(first, 'close');
      await waitUntil(() => (server as Server & { _connections: number })._connections === 0, 'the slot freed');
      clients.push(await connected(port));
      await waitUntil(() => accepted.length === 2, 'the third connection');
    } finally {
      for (const socket of [...clients, ...accepted]) socket.destroy();
      await closed(server);
    }
  });

  it("reports an accept error on the server's 'error', and goes on accepting", async () => {
    const accepted: Socket[] = [];
    const { server, port } = await listening({}, (socket) => accepted.push(socket));
    const errors: Array<Error & { code?: string; syscall?: string }> = [];
    server.on('error', (err) => errors.push(err));
    // What libuv hands the callback when the process is out of descriptors.
    const handle = (server as unknown as { _handle: { onconnection(status: number): void } })._handle;
    handle.onconnection(-constants.errno.EMFILE);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.code, 'EMFILE');
    assert.equal(errors[0]?.syscall, 'accept');
    assert.match(String(errors[0]?.message), /^accept EMFILE/);
    const client = await connected(port);
    await waitUntil(() => accepted.length === 1, 'the next connection');
    client.destroy();
    accepted[0]?.destroy();
    await closed(server);
  });

  it("publishes each accepted socket on node:net's diagnostics channel", async () => {
    const published: Socket[] = [];
    const onMessage = (message: unknown): void => {
      published.push((message as { socket: Socket }).socket);
    };
    subscribe('net.server.socket', onMessage);
    const accepted: Socket[] = [];
    const { server, port } = await listening({}, (socket) => accepted.push(socket));
    try {
      const client = await connected(port);
      await waitUntil(() => accepted.length === 1, 'the connection');
      assert.ok(published.includes(accepted[0]));
      client.destroy();
      accepted[0]?.destroy();
    } finally {
      unsubscribe('net.server.socket', onMessage);
      await closed(server);
    }
  });
});
