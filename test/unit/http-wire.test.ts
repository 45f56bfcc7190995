import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ChunkedScanner, parseForwardHead, parseResponseHead } from '../../proxy/http-wire.js';

const MAX = 16 * 1024;
const head = (text: string): Buffer => Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');

describe('parseForwardHead', () => {
  it('takes a body-less absolute-URI request and rewrites it for the upstream', () => {
    const h = parseForwardHead(
      head('GET http://api.allowed.test:8080/v1/items?q=1 HTTP/1.1\nHost: api.allowed.test:8080\nAccept: */*\nProxy-Authorization: Basic c2VjcmV0\nConnection: keep-alive, X-Drop\nX-Drop: 1\nKeep-Alive: timeout=5\n\nGET http://next/'),
      MAX,
    );
    assert.ok(h);
    assert.equal(h.method, 'GET');
    assert.equal(h.port, 8080);
    assert.deepEqual(h.host, { kind: 'name', name: 'api.allowed.test' });
    assert.equal(h.upstreamHead, 'GET /v1/items?q=1 HTTP/1.1\r\nHost: api.allowed.test:8080\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n');
    assert.equal(h.clientKeepAlive, true);
    assert.equal(h.headLength, head('GET http://api.allowed.test:8080/v1/items?q=1 HTTP/1.1\nHost: api.allowed.test:8080\nAccept: */*\nProxy-Authorization: Basic c2VjcmV0\nConnection: keep-alive, X-Drop\nX-Drop: 1\nKeep-Alive: timeout=5\n\n').length);
    const bare = parseForwardHead(head('HEAD http://198.19.1.6 HTTP/1.1\nHost: 198.19.1.6\nConnection: close\n\n'), MAX);
    assert.equal(bare?.upstreamHead, 'HEAD / HTTP/1.1\r\nHost: 198.19.1.6\r\nConnection: keep-alive\r\n\r\n');
    assert.equal(bare?.clientKeepAlive, false);
  });

  it('leaves every other request to node:http, which answers or refuses it as before', () => {
    const cases: Record<string, string> = {
      'a body (POST)': 'POST http://a.test/ HTTP/1.1\nHost: a.test\nContent-Length: 1\n\nx',
      'Content-Length on a GET': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nContent-Length: 0\n\n',
      'Transfer-Encoding': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nTransfer-Encoding: chunked\n\n',
      'Upgrade': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nUpgrade: websocket\nConnection: upgrade\n\n',
      'Expect': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nExpect: 100-continue\n\n',
      'origin form': 'GET / HTTP/1.1\nHost: a.test\n\n',
      'https URI': 'GET https://a.test/ HTTP/1.1\nHost: a.test\n\n',
      'HTTP/1.0': 'GET http://a.test/ HTTP/1.0\nHost: a.test\n\n',
      'no Host': 'GET http://a.test/ HTTP/1.1\n\n',
      'two Hosts': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nHost: b.test\n\n',
      'a Host that disagrees': 'GET http://a.test/ HTTP/1.1\nHost: b.test\n\n',
      'a port that disagrees': 'GET http://a.test:81/ HTTP/1.1\nHost: a.test\n\n',
      'credentials': 'GET http://user:pw@a.test/ HTTP/1.1\nHost: a.test\n\n',
      'a fragment': 'GET http://a.test/#x HTTP/1.1\nHost: a.test\n\n',
      'obs-fold': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nX-A: 1\n  folded\n\n',
      'a control byte in a value': 'GET http://a.test/ HTTP/1.1\nHost: a.test\nX-A: \u0001\n\n',
      'an incomplete head': 'GET http://a.test/ HTTP/1.1\nHost: a.test\n',
    };
    for (const [what, text] of Object.entries(cases)) assert.equal(parseForwardHead(head(text), MAX), null, what);
    assert.equal(parseForwardHead(head('GET http://a.test/ HTTP/1.1\nHost: a.test\n\n'), 20), null, 'longer than max_header_size');
    assert.equal(parseForwardHead(Buffer.from('GET http://a.test/ HTTP/1.1\nHost: a.test\n\n'), MAX), null, 'bare LF');
  });

  it('never throws, and what it takes always has one Host agreeing with the URI', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const h = parseForwardHead(Buffer.from(`GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n${text}\r\n\r\n`, 'latin1'), MAX);
        if (h) assert.equal(h.upstreamHead.match(/^Host: /gm)?.length, 1);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parseResponseHead', () => {
  const parse = (text: string, method = 'GET') => parseResponseHead(head(text), method, MAX);

  it('reads the framing and whether the connection can carry another request', () => {
    const r = parse('HTTP/1.1 200 OK\nContent-Length: 13\nConnection: keep-alive, X-Secret\nX-Secret: 1\nX-Keep: yes\n\nhello');
    assert.ok(r && !('error' in r));
    assert.deepEqual(r.framing, { kind: 'length', length: 13 });
    assert.equal(r.reusable, true);
    assert.equal(r.clientHead, 'HTTP/1.1 200 OK\r\nContent-Length: 13\r\nX-Keep: yes\r\n');
    const chunked = parse('HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n');
    assert.ok(chunked && !('error' in chunked));
    assert.deepEqual(chunked.framing, { kind: 'chunked' });
    assert.match(chunked.clientHead, /Transfer-Encoding: chunked\r\n$/);
    const eof = parse('HTTP/1.1 200 OK\n\n');
    assert.ok(eof && !('error' in eof));
    assert.deepEqual(eof.framing, { kind: 'close' });
    assert.equal(eof.reusable, false);
    for (const [text, method] of [['HTTP/1.1 204 No Content\n\n', 'GET'], ['HTTP/1.1 304 Not Modified\nContent-Length: 9\n\n', 'GET'], ['HTTP/1.1 200 OK\nContent-Length: 9\n\n', 'HEAD']]) {
      const none = parse(text, method);
      assert.ok(none && !('error' in none));
      assert.deepEqual(none.framing, { kind: 'none' }, text);
    }
    const closing = parse('HTTP/1.1 200 OK\nContent-Length: 1\nConnection: close\n\n');
    assert.ok(closing && !('error' in closing));
    assert.equal(closing.reusable, false);
    const old = parse('HTTP/1.0 200 OK\nContent-Length: 1\n\n');
    assert.ok(old && !('error' in old));
    assert.equal(old.reusable, false);
    const early = parse('HTTP/1.1 103 Early Hints\nLink: </a.css>\n\n');
    assert.ok(early && !('error' in early));
    assert.equal(early.interim, true);
  });

  it('refuses what cannot be relayed safely, and waits for an incomplete head', () => {
    assert.equal(parse('HTTP/1.1 200 OK\nContent-Length: 1\n'), null);
    for (const text of [
      'HTTP/1.1 200 OK\nContent-Length: 1\nTransfer-Encoding: chunked\n\n',
      'HTTP/1.1 200 OK\nContent-Length: 1\nContent-Length: 2\n\n',
      'HTTP/1.1 200 OK\nContent-Length: -1\n\n',
      'HTTP/1.1 101 Switching Protocols\n\n',
      'HTTP/2 200\n\n',
      'HTTP/1.1 200 OK\nBad Header\n\n',
    ]) {
      const r = parse(text);
      assert.ok(r && 'error' in r, text);
    }
    const huge = parseResponseHead(Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(MAX)}`), 'GET', MAX);
    assert.ok(huge && 'error' in huge);
  });
});

describe('ChunkedScanner', () => {
  const body = '4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n';

  it('finds the end of a chunked body however it is split, and what follows it', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 60 }), (cuts) => {
        const bytes = Buffer.from(`${body}HTTP/1.1 200 OK`);
        const scanner = new ChunkedScanner();
        let offset = 0;
        let used = 0;
        for (const cut of [...cuts, bytes.length]) {
          if (scanner.done || offset >= bytes.length) break;
          const piece = bytes.subarray(offset, offset + cut);
          const n = scanner.feed(piece);
          assert.equal(typeof n, 'number');
          used += n as number;
          offset += piece.length;
        }
        if (offset >= body.length) {
          assert.equal(scanner.done, true);
          assert.equal(used, body.length);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a bad size, data longer than its size, and unbounded lines', () => {
    for (const bad of ['x\r\n', '4\r\nWikiX\r\n', '4\nWiki\r\n', `${'1'.repeat(5000)}\r\n`]) {
      const r = new ChunkedScanner().feed(Buffer.from(bad));
      assert.ok(typeof r !== 'number', JSON.stringify(bad.slice(0, 20)));
    }
  });
});
