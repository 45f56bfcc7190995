import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { IdleUpstreams } from '../../proxy/idle-upstreams.js';

/** A local server whose accepted sockets the test can talk through; and a connected client socket to it. */
async function pair(t: TestContext): Promise<{ client: net.Socket; server: net.Socket }> {
  const accepted: net.Socket[] = [];
  const srv = net.createServer((s) => accepted.push(s));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const client = net.connect((srv.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  while (accepted.length === 0) await new Promise((r) => setImmediate(r));
  t.after(() => {
    client.destroy();
    for (const s of accepted) s.destroy();
    srv.close();
  });
  return { client, server: accepted[0] };
}

describe('IdleUpstreams', () => {
  it('gives a parked connection back only for the same client, address and port', async (t) => {
    const pool = new IdleUpstreams();
    t.after(() => pool.close());
    const { client } = await pair(t);
    pool.put('10.213.0.5', '198.19.2.20', 80, client);
    assert.equal(pool.take('10.213.0.6', '198.19.2.20', 80), null, 'another sandbox');
    assert.equal(pool.take('10.213.0.5', '198.19.2.21', 80), null, 'another address');
    assert.equal(pool.take('10.213.0.5', '198.19.2.20', 8080), null, 'another port');
    assert.equal(pool.take('10.213.0.5', '198.19.2.20', 80), client);
    assert.equal(pool.take('10.213.0.5', '198.19.2.20', 80), null, 'taken once');
    assert.equal(client.destroyed, false);
    assert.equal(client.listenerCount('data'), 0, 'the pool let go of it');
  });

  it('destroys an idle connection that receives a byte or is closed by the upstream', async (t) => {
    const pool = new IdleUpstreams();
    t.after(() => pool.close());
    const talker = await pair(t);
    const closer = await pair(t);
    pool.put('c', 'a', 80, talker.client);
    pool.put('c', 'a', 80, closer.client);
    assert.equal(pool.size, 2);
    talker.server.write('HTTP/1.1 200 OK\r\n\r\nnot asked for');
    closer.server.end();
    await Promise.all([once(talker.client, 'close'), once(closer.client, 'close')]);
    assert.equal(pool.size, 0);
    assert.equal(pool.take('c', 'a', 80), null);
  });

  it('destroys a connection idle past idleMs', async (t) => {
    const pool = new IdleUpstreams({ idleMs: 20 });
    t.after(() => pool.close());
    const { client } = await pair(t);
    pool.put('c', 'a', 80, client);
    await once(client, 'close');
    assert.equal(pool.size, 0);
  });

  it('is bounded per key and in all, and close() destroys what it holds', async (t) => {
    const pool = new IdleUpstreams({ maxPerKey: 1, maxTotal: 2 });
    const sockets = await Promise.all([pair(t), pair(t), pair(t), pair(t)]).then((ps) => ps.map((p) => p.client));
    pool.put('c', 'a', 80, sockets[0]);
    pool.put('c', 'a', 80, sockets[1]);
    pool.put('c', 'b', 80, sockets[2]);
    pool.put('c', 'd', 80, sockets[3]);
    assert.deepEqual(sockets.map((s) => s.destroyed), [false, true, false, true]);
    pool.close();
    assert.ok(sockets.every((s) => s.destroyed));
    const late = (await pair(t)).client;
    pool.put('c', 'a', 80, late);
    assert.equal(late.destroyed, true, 'a closed pool keeps nothing');
  });
});
