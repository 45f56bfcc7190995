/**
 * A pure, bounded reader of the first flight of a TLS connection: it finds the ClientHello and returns the
 * `server_name` it names. It never allocates more than the input, never reads past a checked length, and never
 * throws: every outcome is a value, because the input comes straight from an untrusted socket.
 *
 * Wire format (RFC 8446 §4, §5.1; RFC 6066 §3). All integers big-endian; `<a..b>` is a vector whose length
 * prefix is as wide as needed for b.
 *
 *   TLSPlaintext record, repeated; the handshake message may be split across several:
 *   +------+---------+---------+-------------------------+
 *   | 0x16 | 0x03 xx | length  | fragment (length bytes) |   length 1..16384
 *   +------+---------+---------+-------------------------+
 *     1 B     2 B       2 B
 *
 *   Handshake message (the concatenated fragments):
 *   +------+--------------+----------------------------------------------------------+
 *   | 0x01 | length (3 B) | ClientHello body (length bytes)                          |
 *   +------+--------------+----------------------------------------------------------+
 *
 *   ClientHello body:
 *   legacy_version (2) | random (32) | session_id <0..32> (1 + n) | cipher_suites <2..2^16-2> (2 + n, even)
 *   | compression_methods <1..2^8-1> (1 + n) | [ extensions <0..2^16-1> (2 + n) ]   (absent in old hellos)
 *
 *   Extension:            type (2) | length (2) | data (length bytes)
 *   server_name (type 0): ServerNameList <1..2^16-1> (2 + n), each entry:
 *                         name_type (1) | name <1..2^16-1> (2 + n)        name_type 0 = host_name (ASCII)
 */

export type ClientHelloInspection =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'malformed'; readonly error: string }
  | { readonly kind: 'hello'; readonly sni: string | null };

/** The largest handshake message (header included) we accept; real ClientHellos are well under 2 KiB. */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;
/** A hello split over more records than this is abuse, not fragmentation (it bounds header overhead too). */
const MAX_RECORDS = 64;
const MAX_RECORD_FRAGMENT = 16 * 1024;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST_NAME = 0x00;

const NEED_MORE: ClientHelloInspection = { kind: 'need-more' };
const NOT_TLS: ClientHelloInspection = { kind: 'not-tls' };

function malformed(error: string): ClientHelloInspection {
  return { kind: 'malformed', error };
}

export function inspectClientHello(buf: Buffer): ClientHelloInspection {
  if (buf.length === 0) return NEED_MORE;
  // Decide "is this TLS at all" from the first two bytes, so plain-text protocols are told apart quickly.
  if (buf[0] !== CONTENT_HANDSHAKE) return NOT_TLS;
  if (buf.length < 2) return NEED_MORE;
  if (buf[1] !== 0x03) return NOT_TLS;

  const gathered = gatherHandshake(buf);
  if (gathered.kind !== 'message') return gathered.result;
  return parseClientHelloBody(gathered.body);
}

type Gathered = { kind: 'message'; body: Buffer } | { kind: 'done'; result: ClientHelloInspection };

/**
 * Walks the records and concatenates their fragments until the whole handshake message is present. Copies at
 * most MAX_CLIENT_HELLO_BYTES: the length in the handshake header is checked before anything is gathered.
 */
function gatherHandshake(buf: Buffer): Gathered {
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1; // total handshake bytes (header + body), known once the 4-byte header is in
  let offset = 0;
  let records = 0;

  for (;;) {
    if (need >= 0 && have >= need) break;
    if (offset + RECORD_HEADER > buf.length) {
      return done(offset < buf.length && !plausibleRecordPrefix(buf, offset) ? notHandshake(buf, offset) : NEED_MORE);
    }
    const type = buf[offset];
    const major = buf[offset + 1];
    const length = buf.readUInt16BE(offset + 3);
    if (type !== CONTENT_HANDSHAKE) return done(malformed(`record ${records} has content type ${type}, expected handshake (22)`));
    if (major !== 0x03) return done(malformed(`record ${records} has version major ${major}, expected 3`));
    if (length === 0) return done(malformed(`record ${records} is empty (forbidden for handshake records)`));
    if (length > MAX_RECORD_FRAGMENT) return done(malformed(`record ${records} length ${length} exceeds ${MAX_RECORD_FRAGMENT}`));
    records += 1;
    if (records > MAX_RECORDS) return done(malformed(`ClientHello spread over more than ${MAX_RECORDS} records`));

    const start = offset + RECORD_HEADER;
    const end = Math.min(start + length, buf.length);
    const fragment = buf.subarray(start, end);
    parts.push(fragment);
    have += fragment.length;

    if (need < 0 && have >= HANDSHAKE_HEADER) {
      const header = parts.length === 1 ? parts[0] : Buffer.concat(parts, have);
      if (header[0] !== HANDSHAKE_CLIENT_HELLO) {
        return done(malformed(`first handshake message has type ${header[0]}, expected ClientHello (1)`));
      }
      const bodyLength = header.readUIntBE(1, 3);
      need = HANDSHAKE_HEADER + bodyLength;
      if (need > MAX_CLIENT_HELLO_BYTES) {
        return done(malformed(`ClientHello of ${need} bytes exceeds the ${MAX_CLIENT_HELLO_BYTES}-byte limit`));
      }
    }
    if (end < start + length) {
      // The record is cut short; a complete message may already be inside it.
      if (need >= 0 && have >= need) break;
      return done(NEED_MORE);
    }
    offset = start + length;
  }

  const message = parts.length === 1 ? parts[0] : Buffer.concat(parts, have);
  return { kind: 'message', body: message.subarray(HANDSHAKE_HEADER, need) };
}

function done(result: ClientHelloInspection): Gathered {
  return { kind: 'done', result };
}

/** A partial record header at `offset`: are the bytes we have consistent with a handshake record? */
function plausibleRecordPrefix(buf: Buffer, offset: number): boolean {
  if (buf[offset] !== CONTENT_HANDSHAKE) return false;
  return offset + 1 >= buf.length || buf[offset + 1] === 0x03;
}

function notHandshake(buf: Buffer, offset: number): ClientHelloInspection {
  return malformed(`record header at offset ${offset} is not a handshake record (bytes ${buf.subarray(offset, offset + 2).toString('hex')})`);
}

/** Raised inside the body parser only; converted to a `malformed` value before leaving this module. */
class HelloParseError extends Error {}

/** A cursor that checks every length against the end of its own slice before reading. */
class Reader {
  private pos = 0;

  constructor(private readonly buf: Buffer, private readonly what: string) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining) {
      throw new HelloParseError(`${this.what}: ${field} needs ${n} bytes, ${this.remaining} left`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    const v = this.buf[this.pos];
    this.pos += 1;
    return v;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** A vector with a 1- or 2-byte length prefix, returned as its own bounded reader. */
  vector(prefix: 1 | 2, field: string): Reader {
    const length = prefix === 1 ? this.u8(`${field} length`) : this.u16(`${field} length`);
    return new Reader(this.bytes(length, field), field);
  }
}

function parseClientHelloBody(body: Buffer): ClientHelloInspection {
  try {
    return { kind: 'hello', sni: readServerName(body) };
  } catch (err) {
    if (err instanceof HelloParseError) return malformed(err.message);
    throw err;
  }
}

function readServerName(body: Buffer): string | null {
  const r = new Reader(body, 'ClientHello');
  r.bytes(2, 'legacy_version');
  r.bytes(32, 'random');
  const sessionId = r.vector(1, 'session_id');
  if (sessionId.remaining > 32) throw new HelloParseError(`session_id of ${sessionId.remaining} bytes exceeds 32`);
  const suites = r.vector(2, 'cipher_suites');
  if (suites.remaining < 2 || suites.remaining % 2 !== 0) {
    throw new HelloParseError(`cipher_suites length ${suites.remaining} is not a positive even number`);
  }
  const compression = r.vector(1, 'compression_methods');
  if (compression.remaining < 1) throw new HelloParseError('compression_methods is empty');
  // SSL 3.0 / early TLS hellos may stop here: no extensions, hence no SNI.
  if (r.remaining === 0) return null;

  const extensions = r.vector(2, 'extensions');
  if (r.remaining !== 0) throw new HelloParseError(`${r.remaining} trailing bytes after extensions`);

  let sni: string | null = null;
  let seenServerName = false;
  while (extensions.remaining > 0) {
    const type = extensions.u16('extension type');
    const data = extensions.vector(2, `extension ${type}`);
    if (type !== EXT_SERVER_NAME) continue;
    // RFC 8446 §4.2: an extension type appears at most once; two server_names would make the answer ambiguous.
    if (seenServerName) throw new HelloParseError('duplicate server_name extension');
    seenServerName = true;
    sni = readServerNameExtension(data);
  }
  return sni;
}

function readServerNameExtension(data: Reader): string | null {
  // RFC 6066 allows an empty extension_data in the *server's* hello only; from a client it must hold a list.
  const list = data.vector(2, 'server_name_list');
  if (data.remaining !== 0) throw new HelloParseError(`${data.remaining} trailing bytes after server_name_list`);
  if (list.remaining === 0) throw new HelloParseError('server_name_list is empty');

  let hostName: string | null = null;
  while (list.remaining > 0) {
    const nameType = list.u8('name_type');
    const name = list.vector(2, 'server name');
    if (nameType !== NAME_TYPE_HOST_NAME) continue;
    if (hostName !== null) throw new HelloParseError('more than one host_name in server_name');
    hostName = decodeHostName(name.bytes(name.remaining, 'host_name'));
  }
  return hostName;
}

/** host_name is ASCII without a trailing dot (RFC 6066 §3); anything else is refused, not "repaired". */
function decodeHostName(raw: Buffer): string {
  if (raw.length === 0) throw new HelloParseError('host_name is empty');
  for (const byte of raw) {
    if (byte < 0x21 || byte > 0x7e) {
      throw new HelloParseError(`host_name contains byte 0x${byte.toString(16).padStart(2, '0')} (not printable ASCII)`);
    }
  }
  return raw.toString('ascii');
}
