import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { IDLE_AFTER_SAMPLES, OpenConnections } from '../../proxy/open-connections.js';

describe('OpenConnections: which open connections are busy (for the accept steering)', () => {
  let server: Server;
  const accepted: Socket[] = [];
  /** Each accepted socket's close event (not events.once: that rejects on a reset's 'error', which may come first). */
  const closes = new Map<Socket, Promise<void>>();
  const open = new OpenConnections();

  before(async () => {
    server = createServer((socket) => {
      accepted.push(socket);
      closes.set(socket, new Promise((resolve) => socket.once('close', () => resolve())));
      socket.on('data', () => undefined);
      socket.on('error', () => undefined); // a reset when the test destroys a client with bytes unread
    });
    open.track(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  after(() => {
    for (const socket of accepted) socket.destroy();
    server.close();
  });

  const dial = async (): Promise<Socket> => {
    const before = accepted.length;
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1').on('error', () => undefined);
    await once(client, 'connect');
    while (accepted.length === before) await new Promise((r) => setImmediate(r));
    return client;
  };
  const idleSpell = (): void => {
    for (let i = 0; i <= IDLE_AFTER_SAMPLES; i++) open.sampleActivity();
  };
  /** Until the server side of `client` has read `bytes` more than it had. */
  const served = async (server: Socket, bytes: number): Promise<void> => {
    const target = server.bytesRead + bytes;
    while (server.bytesRead < target) await new Promise((r) => setImmediate(r));
  };

  it('counts new connections busy, still ones idle, and one that moves a byte busy again', async () => {
    const clients = [await dial(), await dial(), await dial()];
    assert.deepEqual([open.size, open.busy], [3, 3]);
    idleSpell();
    assert.deepEqual([open.size, open.busy], [3, 0], 'no byte moved: all idle');
    const fourth = await dial();
    assert.equal(open.busy, 1, 'a new connection is busy before any sample');
    open.sampleActivity();
    assert.equal(open.busy, 1, 'one sample without bytes is not yet idle');

    clients[0].write('x');
    await served(accepted[0], 1);
    open.sampleActivity();
    assert.deepEqual([open.size, open.busy], [4, 1], 'the first moved a byte; the fourth, still for two samples, is idle');
    accepted[3].write('y'); // bytes written count as moved too
    open.sampleActivity();
    assert.equal(open.busy, 2, 'the first (one sample still) and the fourth (written to)');
    fourth.destroy();
    await closes.get(accepted[3]);
    assert.equal(open.size, 3);
  });

  it('keeps the count right when idle and busy connections close between samples', async () => {
    idleSpell();
    assert.deepEqual([open.size, open.busy], [3, 0]);
    const busyOne = await dial();
    assert.deepEqual([open.size, open.busy], [4, 1]);
    // An idle one closes: the size and the idle count both drop, so the busy count stays.
    accepted[0].destroy();
    await closes.get(accepted[0]);
    assert.deepEqual([open.size, open.busy], [3, 1]);
    // The busy one closes: the size drops, the idle count stays.
    busyOne.destroy();
    await closes.get(accepted[4]);
    assert.deepEqual([open.size, open.busy], [2, 0]);
  });
});
