/**
 * Absolute-URI HTTP keeps its upstream connections for the next request of the same client to the same checked
 * address (as Squid does). Every request is still decided and audited on its own; sandboxes never share a
 * connection; an upstream that closes, or speaks out of turn, is not reused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { startTestDnsServer, type TestDnsServer } from '../fixtures/dns-upstream.js';
import { startTestGateway, type TestGateway } from '../fixtures/gateway.js';
import { addLoopbackAlias, startHttpUpstream, type Upstream } from '../fixtures/upstreams.js';
import { httpViaProxy, rawHttp, readAll } from '../fixtures/clients.js';
import type { AuditEvent, CloseEvent, DecisionEvent } from '../../src/audit/types.js';

const UPSTREAM_IP = '198.19.1.6';
/** A second source address on this host: the gateway sees it as another sandbox. */
const OTHER_CLIENT_IP = '198.19.1.7';

let dns: TestDnsServer;
let gw: TestGateway;
let web: Upstream;
let raw: Server;
const rawSockets = new Set<Socket>();
const removeAliases: Array<() => void> = [];

/**
 * A hand-written upstream on port 81. `/close` answers with Connection: close, `/double` sends two responses,
 * `/chunked` a chunked body with a trailer, `/eof` a body ended by closing, `/bad` both Content-Length and
 * Transfer-Encoding, `/arm` answers and makes the connection drop the next request it gets without answering.
 */
function startRawUpstream(): Promise<Server> {
  const server = createServer((socket) => {
    rawSockets.add(socket);
    socket.on('close', () => rawSockets.delete(socket));
    socket.on('error', () => undefined);
    let armed = false;
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      const end = seen.indexOf('\r\n\r\n');
      if (end < 0) return;
      const path = seen.split(' ')[1] ?? '';
      seen = seen.slice(end + 4);
      const peer = String(socket.remotePort);
      if (armed) socket.destroy();
      else if (path === '/arm') {
        armed = true;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${peer.length}\r\n\r\n${peer}`);
      } else if (path === '/chunked') socket.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n`);
      else if (path === '/eof') socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end');
      else if (path === '/bad') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
      else if (path === '/close') socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${peer.length}\r\nConnection: close\r\n\r\n${peer}`);
      else if (path === '/double') socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${peer.length}\r\n\r\n${peer}HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled`);
      else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${peer.length}\r\n\r\n${peer}`);
    });
  });
  return new Promise((resolve) => server.listen(81, UPSTREAM_IP, () => resolve(server)));
}

before(async () => {
  removeAliases.push(addLoopbackAlias(UPSTREAM_IP), addLoopbackAlias(OTHER_CLIENT_IP));
  web = await startHttpUpstream(UPSTREAM_IP, 80, 'reuse-upstream');
  raw = await startRawUpstream();
  dns = await startTestDnsServer({
    'one.reuse.test': { A: [UPSTREAM_IP] },
    'two.reuse.test': { A: [UPSTREAM_IP] },
    'denied.reuse.test': { A: [UPSTREAM_IP] },
  });
  gw = await startTestGateway(`network_policy: deny-by-default\nallowed_hosts:\n  - one.reuse.test\n  - 'one.reuse.test:81'\n  - two.reuse.test\n  - '${UPSTREAM_IP}'`, dns);
});

after(async () => {
  await gw?.close();
  await dns?.close();
  await web?.close();
  for (const s of rawSockets) s.destroy();
  await new Promise<void>((resolve) => (raw ? raw.close(() => resolve()) : resolve()));
  for (const remove of removeAliases) remove();
});

async function get(url: string, localAddress?: string): Promise<{ status: number; peer: number; body: string }> {
  const got = await httpViaProxy(gw.gateway.addresses.http, url, localAddress === undefined ? {} : { localAddress });
  const peer = got.status === 200 && url.includes(':81/') ? Number(got.body) : got.status === 200 ? (JSON.parse(got.body) as { peer: number }).peer : 0;
  return { status: got.status, peer, body: got.body };
}

const httpLines = (host: string) => (e: AuditEvent): e is DecisionEvent | CloseEvent => e.host === host && (e.event === 'close' || e.channel === 'http');

describe('absolute-URI HTTP upstream keep-alive', () => {
  it('a second request reuses the connection, and still gets its own decision and close line', async () => {
    const first = await get('http://one.reuse.test/a');
    const second = await get('http://one.reuse.test/b');
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(second.peer, first.peer, 'both requests went over one upstream connection');
    // A request that is denied in between gets no connection at all, and the next allowed one still reuses.
    assert.equal((await get('http://denied.reuse.test/c')).status, 403);
    assert.equal((await get('http://two.reuse.test/d')).peer, first.peer, 'another allowed name with the same checked address');

    const closes = () => gw.audit.events.filter(httpLines('one.reuse.test')).filter((e): e is CloseEvent => e.event === 'close');
    for (let i = 0; i < 200 && closes().length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    const decisions = gw.decisions().filter((e) => e.host === 'one.reuse.test');
    assert.deepEqual(decisions.map((d) => d.decision), ['allow', 'allow']);
    assert.deepEqual(closes().map((c) => c.conn), decisions.map((d) => d.conn), 'a close line per request, in order');
    for (const c of closes()) {
      assert.ok(c.bytes_up > 0 && c.bytes_down > 0, JSON.stringify(c));
      assert.equal(c.error, undefined);
    }
    // Each line counts its own exchange, not the connection's running total.
    const [a, b] = closes();
    assert.ok(b.bytes_down < a.bytes_down * 1.5, `second exchange ${b.bytes_down} bytes vs first ${a.bytes_down}`);
  });

  it('two sandboxes never share an upstream connection', async () => {
    const mine = await get('http://one.reuse.test/mine');
    const theirs = await get('http://one.reuse.test/theirs', OTHER_CLIENT_IP);
    const mineAgain = await get('http://one.reuse.test/mine-again');
    assert.equal(theirs.status, 200);
    assert.notEqual(theirs.peer, mine.peer);
    assert.equal(mineAgain.peer, mine.peer);
  });

  it('an upstream that answers Connection: close is dialed afresh next time', async () => {
    const first = await get('http://one.reuse.test:81/close');
    const second = await get('http://one.reuse.test:81/close');
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.notEqual(second.peer, first.peer);
  });

  it('bytes an upstream sends beyond its response never reach the next request', async () => {
    const first = await get('http://one.reuse.test:81/double');
    const second = await get('http://one.reuse.test:81/plain');
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.doesNotMatch(second.body, /smuggled/);
    assert.notEqual(second.peer, first.peer, 'the connection that spoke out of turn was not reused');
  });
});

describe('absolute-URI fast path: framing, pipelining, hand-off, retry', () => {
  it('relays a chunked body with its trailer, and keeps the connection', async () => {
    const first = await httpViaProxy(gw.gateway.addresses.http, 'http://one.reuse.test:81/chunked');
    assert.equal(first.status, 200);
    assert.equal(first.body, 'Wikipedia');
    assert.equal(first.headers['transfer-encoding'], 'chunked');
    const after = await get('http://one.reuse.test:81/plain');
    assert.equal(after.status, 200);
  });

  it('relays a body that ends when the upstream closes, then closes the client connection', async () => {
    const reply = await rawHttp(gw.gateway.addresses.http, 'GET http://one.reuse.test:81/eof HTTP/1.1\r\nHost: one.reuse.test:81\r\n\r\n', { readBody: true });
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'until the end');
    assert.equal(reply.headers.connection, 'close');
  });

  it('answers a HEAD without a body, and two pipelined requests in order', async () => {
    const reply = await rawHttp(
      gw.gateway.addresses.http,
      'HEAD http://one.reuse.test/h HTTP/1.1\r\nHost: one.reuse.test\r\n\r\nGET http://one.reuse.test/second HTTP/1.1\r\nHost: one.reuse.test\r\nConnection: close\r\n\r\n',
    );
    assert.equal(reply.status, 200);
    const rest = Buffer.concat([reply.rest, ...(await readAll(reply.socket).then((b) => [b]))]).toString('latin1');
    assert.match(rest, /^HTTP\/1\.1 200 OK\r\n/, 'the HEAD response has no body: the next bytes are the second response');
    assert.match(rest, /"url":"\/second"/);
  });

  it('refuses with 502 a response framed two ways, and audits the close with the reason', async () => {
    const reply = await rawHttp(gw.gateway.addresses.http, 'GET http://one.reuse.test:81/bad HTTP/1.1\r\nHost: one.reuse.test:81\r\n\r\n', { readBody: true });
    assert.equal(reply.status, 502);
    assert.match(reply.body, /both Content-Length and Transfer-Encoding/);
    const close = await gw.waitFor((e: AuditEvent): e is CloseEvent => e.event === 'close' && e.port === 81 && (e.error ?? '').includes('Transfer-Encoding'), 'close line of /bad');
    assert.equal(close.host, 'one.reuse.test');
  });

  it('a request outside the fast grammar on the same connection is served by node:http', async () => {
    const reply = await rawHttp(
      gw.gateway.addresses.http,
      'GET http://one.reuse.test/a HTTP/1.1\r\nHost: one.reuse.test\r\n\r\nPOST http://one.reuse.test/b HTTP/1.1\r\nHost: one.reuse.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
    );
    assert.equal(reply.status, 200);
    const rest = Buffer.concat([reply.rest, await readAll(reply.socket)]).toString('latin1');
    assert.match(rest, /"method":"POST","url":"\/b"/);
    assert.match(rest, /"body":"abc"/);
  });

  it('retries once on a fresh connection when a kept one is dropped before answering', async () => {
    const armed = await get('http://one.reuse.test:81/arm');
    assert.equal(armed.status, 200);
    const before = gw.decisions().length;
    const next = await get('http://one.reuse.test:81/plain');
    assert.equal(next.status, 200);
    assert.notEqual(next.peer, armed.peer, 'answered over a new connection');
    const decided = gw.decisions().slice(before).filter((d) => d.port === 81);
    assert.equal(decided.length, 2, 'the retry was decided and audited too');
  });
});
