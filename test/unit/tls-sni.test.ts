import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import fc from 'fast-check';
import { inspectClientHello, MAX_CLIENT_HELLO_BYTES } from '../../proxy/tls-sni.js';

/** Starts a raw TCP server, lets `tls.connect` talk to it and returns the bytes of the client's first flight. */
async function captureClientHello(t: { after: (fn: () => void | Promise<void>) => void }, options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;

  const captured = new Promise<Buffer>((resolve, reject) => {
    server.once('connection', (socket) => {
      let buf = Buffer.alloc(0);
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const r = inspectClientHello(buf);
        if (r.kind === 'need-more') return;
        socket.destroy();
        if (r.kind === 'hello') resolve(buf);
        else reject(new Error(`unexpected inspection of a real ClientHello: ${JSON.stringify(r)}`));
      });
    });
  });
  const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
  client.on('error', () => undefined);
  t.after(() => {
    client.destroy();
  });
  return captured;
}

interface HelloSpec {
  /** Each entry is one server_name extension holding these host names; `null` omits the extension. */
  serverNames?: (readonly Buffer[])[] | null;
  /** Raw extensions added before server_name. */
  extraExtensions?: Buffer[];
  omitExtensions?: boolean;
  sessionIdLength?: number;
  cipherSuites?: Buffer;
  compression?: Buffer;
  trailing?: Buffer;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function vec16(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u16(body.length), body]);
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vec16(data)]);
}

function serverNameExtension(names: readonly Buffer[], nameType = 0): Buffer {
  return extension(0, vec16(...names.map((n) => Buffer.concat([Buffer.from([nameType]), vec16(n)]))));
}

/** A ClientHello handshake message (type + 24-bit length + body), built field by field. */
function buildHello(spec: HelloSpec = {}): Buffer {
  const sidLength = spec.sessionIdLength ?? 32;
  const body: Buffer[] = [
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 0xab),
    Buffer.concat([Buffer.from([sidLength]), Buffer.alloc(sidLength, 0x11)]),
    spec.cipherSuites ?? vec16(Buffer.from([0x13, 0x01, 0x13, 0x02])),
    spec.compression ?? Buffer.from([0x01, 0x00]),
  ];
  if (!spec.omitExtensions) {
    const exts = [...(spec.extraExtensions ?? [extension(0x002b, Buffer.from([0x02, 0x03, 0x04]))])];
    for (const names of spec.serverNames === undefined ? [[Buffer.from('example.test')]] : (spec.serverNames ?? [])) {
      exts.push(serverNameExtension(names));
    }
    body.push(vec16(...exts));
  }
  if (spec.trailing) body.push(spec.trailing);
  const b = Buffer.concat(body);
  const header = Buffer.alloc(4);
  header[0] = 0x01;
  header.writeUIntBE(b.length, 1, 3);
  return Buffer.concat([header, b]);
}

/** Wraps a handshake message in records; `sizes` are fragment lengths, the last one takes the rest. */
function records(message: Buffer, sizes: number[] = [], version = 0x0301): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  const all = [...sizes];
  while (offset < message.length) {
    const size = Math.min(all.shift() ?? message.length, message.length - offset);
    out.push(Buffer.from([0x16, version >> 8, version & 0xff]), u16(size), message.subarray(offset, offset + size));
    offset += size;
  }
  return Buffer.concat(out);
}

function assertMalformed(buf: Buffer, pattern: RegExp): void {
  const r = inspectClientHello(buf);
  assert.equal(r.kind, 'malformed', `expected malformed, got ${JSON.stringify(r)}`);
  if (r.kind === 'malformed') assert.match(r.error, pattern);
}

void test('real ClientHello from tls.connect with servername', async (t) => {
  const hello = await captureClientHello(t, { servername: 'api.example.test' });
  assert.deepEqual(inspectClientHello(hello), { kind: 'hello', sni: 'api.example.test' });
});

void test('real TLS 1.2-only ClientHello', async (t) => {
  const hello = await captureClientHello(t, { servername: 'old.example.test', maxVersion: 'TLSv1.2' });
  assert.deepEqual(inspectClientHello(hello), { kind: 'hello', sni: 'old.example.test' });
});

void test('real ClientHello to an IP address carries no SNI', async (t) => {
  const hello = await captureClientHello(t, {});
  assert.deepEqual(inspectClientHello(hello), { kind: 'hello', sni: null });
});

void test('every strict prefix of a real ClientHello asks for more', async (t) => {
  const hello = await captureClientHello(t, { servername: 'prefix.example.test' });
  for (let i = 0; i < hello.length; i += 1) {
    assert.deepEqual(inspectClientHello(hello.subarray(0, i)), { kind: 'need-more' }, `prefix of ${i} bytes`);
  }
});

void test('real ClientHello re-fragmented into 1-byte records still parses', async (t) => {
  const hello = await captureClientHello(t, { servername: 'frag.example.test' });
  const message = hello.subarray(5); // one record in practice: strip its header
  const sizes = new Array<number>(60).fill(1); // stay under the record cap
  const refragmented = records(message, sizes);
  assert.deepEqual(inspectClientHello(refragmented), { kind: 'hello', sni: 'frag.example.test' });
});

void test('hand-built hello split over several records, with bytes of the next flight after it', () => {
  const message = buildHello({ serverNames: [[Buffer.from('split.example.test')]] });
  const buf = Buffer.concat([records(message, [3, 7, 20]), Buffer.from([0x17, 0x03, 0x03, 0x00, 0x01, 0x00])]);
  assert.deepEqual(inspectClientHello(buf), { kind: 'hello', sni: 'split.example.test' });
  const exact = records(message, [3, 7, 20]);
  for (let i = 0; i < exact.length; i += 1) {
    assert.equal(inspectClientHello(exact.subarray(0, i)).kind, 'need-more', `prefix of ${i} bytes`);
  }
});

void test('hello without extensions (SSL 3.0 style) has no SNI', () => {
  assert.deepEqual(inspectClientHello(records(buildHello({ omitExtensions: true }))), { kind: 'hello', sni: null });
});

void test('hello with extensions but no server_name has no SNI', () => {
  assert.deepEqual(inspectClientHello(records(buildHello({ serverNames: null }))), { kind: 'hello', sni: null });
});

void test('server_name entries of another name_type are skipped', () => {
  const ext = serverNameExtension([Buffer.from('ignored')], 7);
  const hello = buildHello({ serverNames: null, extraExtensions: [ext] });
  assert.deepEqual(inspectClientHello(records(hello)), { kind: 'hello', sni: null });
});

void test('not TLS: HTTP, SSH, SSLv2-style and wrong record version', () => {
  for (const text of ['GET / HTTP/1.1\r\n', 'SSH-2.0-OpenSSH_9.6\r\n', 'CONNECT a:443 HTTP/1.1']) {
    assert.deepEqual(inspectClientHello(Buffer.from(text)), { kind: 'not-tls' }, text);
  }
  assert.deepEqual(inspectClientHello(Buffer.from([0x80, 0x2e, 0x01])), { kind: 'not-tls' });
  assert.deepEqual(inspectClientHello(Buffer.from([0x16, 0x02, 0x00])), { kind: 'not-tls' });
  assert.deepEqual(inspectClientHello(Buffer.alloc(0)), { kind: 'need-more' });
  assert.deepEqual(inspectClientHello(Buffer.from([0x16])), { kind: 'need-more' });
});

void test('malformed: record layer', () => {
  const message = buildHello();
  assertMalformed(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00]), /empty/);
  assertMalformed(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff]), /exceeds 16384/);
  // Second record switches to application data before the hello is complete.
  const first = records(message.subarray(0, 10));
  assertMalformed(Buffer.concat([first, Buffer.from([0x17, 0x03, 0x03, 0x00, 0x05]), Buffer.alloc(5)]), /content type 23/);
  assertMalformed(Buffer.concat([first, Buffer.from([0x16, 0x02, 0x03, 0x00, 0x05]), Buffer.alloc(5)]), /version major 2/);
  // Garbage partial header after a complete record.
  assertMalformed(Buffer.concat([first, Buffer.from([0x41, 0x42])]), /not a handshake record/);
});

void test('malformed: handshake layer and size caps', () => {
  assertMalformed(records(Buffer.from([0x02, 0x00, 0x00, 0x04, 1, 2, 3, 4])), /expected ClientHello/);
  const huge = Buffer.from([0x01, 0x00, 0x40, 0x01]); // declares 16385 body bytes
  assertMalformed(records(huge), new RegExp(`exceeds the ${MAX_CLIENT_HELLO_BYTES}-byte limit`));
  const tiny = buildHello();
  assertMalformed(records(tiny, new Array<number>(65).fill(1)), /more than 64 records/);
});

void test('malformed: body fields', () => {
  assertMalformed(records(buildHello({ sessionIdLength: 33 })), /session_id of 33 bytes/);
  assertMalformed(records(buildHello({ cipherSuites: vec16(Buffer.from([0x13])) })), /cipher_suites length 1/);
  assertMalformed(records(buildHello({ cipherSuites: vec16() })), /cipher_suites length 0/);
  assertMalformed(records(buildHello({ compression: Buffer.from([0x00]) })), /compression_methods is empty/);
  assertMalformed(records(buildHello({ trailing: Buffer.from([0x00]) })), /trailing bytes after extensions/);
  // Extension length runs past the extensions block.
  const overrun = extension(0x0010, Buffer.alloc(4));
  overrun.writeUInt16BE(200, 2);
  assertMalformed(records(buildHello({ serverNames: null, extraExtensions: [overrun] })), /needs 200 bytes/);
  // Handshake length shorter than the body actually needs.
  const cut = buildHello();
  const short = Buffer.concat([Buffer.from([0x01, 0x00, 0x00, 0x26]), cut.subarray(4, 4 + 0x26)]);
  assertMalformed(records(short), /needs/);
});

void test('malformed: server_name contents', () => {
  const s = (names: Buffer[][]): Buffer => records(buildHello({ serverNames: names }));
  assertMalformed(s([[Buffer.from('a.test')], [Buffer.from('b.test')]]), /duplicate server_name/);
  assertMalformed(s([[Buffer.from('a.test'), Buffer.from('b.test')]]), /more than one host_name/);
  assertMalformed(s([[Buffer.from('a\x00.test')]]), /byte 0x00/);
  assertMalformed(s([[Buffer.from('a.test\r\nX: y')]]), /byte 0x0d/);
  assertMalformed(s([[Buffer.from('bücher.test')]]), /not printable ASCII/);
  assertMalformed(s([[Buffer.alloc(0)]]), /host_name is empty/);
  assertMalformed(records(buildHello({ serverNames: null, extraExtensions: [extension(0, vec16())] })), /server_name_list is empty/);
  assertMalformed(records(buildHello({ serverNames: null, extraExtensions: [extension(0, Buffer.alloc(0))] })), /server_name_list length/);
});

const KINDS = new Set(['need-more', 'not-tls', 'malformed', 'hello']);

void test('fuzz: arbitrary bytes never throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      assert.ok(KINDS.has(inspectClientHello(Buffer.from(bytes)).kind));
    }),
    { numRuns: 2000 },
  );
});

void test('fuzz: bytes behind a plausible record header never throw', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 4096 }), (length, bytes) => {
      const buf = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(length), Buffer.from([0x01]), Buffer.from(bytes)]);
      assert.ok(KINDS.has(inspectClientHello(buf).kind));
    }),
    { numRuns: 2000 },
  );
});

void test('fuzz: single-byte mutations and truncations of a valid hello never throw', () => {
  const valid = records(buildHello({ serverNames: [[Buffer.from('fuzz.example.test')]] }), [10, 30]);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.nat({ max: valid.length }),
      (mutations, cut) => {
        const buf = Buffer.from(valid);
        for (const [at, value] of mutations) buf[at] = value;
        const r = inspectClientHello(buf.subarray(0, cut));
        assert.ok(KINDS.has(r.kind));
        if (r.kind === 'hello' && r.sni !== null) assert.match(r.sni, /^[\x21-\x7e]+$/);
      },
    ),
    { numRuns: 3000 },
  );
});
