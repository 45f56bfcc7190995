import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConnectHead } from '../../proxy/http-wire.js';

const head = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('the fast CONNECT head parser', () => {
  it('takes a well-formed CONNECT head and leaves the bytes after it', () => {
    const parsed = parseConnectHead(head('CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03'), 16384);
    assert.deepEqual(parsed, { target: 'a.test:443', headLength: 49 });
    assert.deepEqual(parseConnectHead(head('CONNECT [2001:db8::1]:443 HTTP/1.0\r\n\r\n'), 16384)?.target, '[2001:db8::1]:443');
  });

  it('hands everything else to node:http', () => {
    for (const text of [
      'GET http://a.test/ HTTP/1.1\r\n\r\n',
      'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test', // incomplete
      'CONNECT a.test:443 HTTP/1.1\nHost: a.test\n\n', // bare LF
      'CONNECT a.test:443 HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n', // obs-fold
      'CONNECT a.test:443 HTTP/1.1\r\nBad Name: x\r\n\r\n',
      'CONNECT a.test:443 HTTP/1.1\r\nX: a\x01b\r\n\r\n',
      'CONNECT a.test:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc',
      'CONNECT a.test\x01:443 HTTP/1.1\r\n\r\n',
      'CONNECT a.test:443 HTTP/2.0\r\n\r\n',
      'CONNECT a.test:443  HTTP/1.1\r\n\r\n',
      'connect a.test:443 HTTP/1.1\r\n\r\n',
    ]) {
      assert.equal(parseConnectHead(head(text), 16384), null, JSON.stringify(text));
    }
    assert.equal(parseConnectHead(head(`CONNECT a.test:443 HTTP/1.1\r\nX: ${'y'.repeat(200)}\r\n\r\n`), 100), null, 'over max_header_size');
  });
});
