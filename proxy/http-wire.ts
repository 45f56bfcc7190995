/**
 * HTTP/1.1 heads for the absolute-URI fast path, pure: a strict reader for the request shapes it takes (a
 * body-less GET, HEAD, OPTIONS or DELETE), a strict reader for the upstream's response head with its body framing,
 * and a scanner that finds where a chunked body ends. Anything the request reader does not recognise returns null
 * and node:http takes the request, as it always did; so the reader only has to be right about what it accepts.
 * A response the reader refuses is a 502: an upstream that frames ambiguously must not be relayed.
 */
import { hostToString, parseAuthority } from '../src/net/host.js';
import type { Host } from '../src/net/types.js';
import { HOP_BY_HOP } from './http-headers.js';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e]*$/;
/** Methods without a request body in practice; a Content-Length or Transfer-Encoding sends the request to node:http. */
const REQUEST_LINE = /^(GET|HEAD|OPTIONS|DELETE) http:\/\/([^\s/?#@]+)(\/[!-"$-~]*)? HTTP\/1\.1$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: [\t\x20-\x7e]*)?$/;
const CONNECT_AUTHORITY = /^[A-Za-z0-9.\-_~%:[\]]{1,300}$/;

export interface ForwardHead {
  readonly method: string;
  readonly host: Host;
  readonly port: number;
  /** What goes upstream: request line, Host, the end-to-end fields, our Connection; ends with the blank line. */
  readonly upstreamHead: string;
  /** The client did not ask to close after this exchange. */
  readonly clientKeepAlive: boolean;
  readonly headLength: number;
}

interface Field {
  readonly name: string;
  readonly lower: string;
  readonly value: string;
}

/** Header lines as fields, or null when one is not `token: printable value` (obs-fold included). */
function fieldsOf(lines: readonly string[]): Field[] | null {
  const fields: Field[] = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1);
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) return null;
    fields.push({ name, lower: name.toLowerCase(), value: value.trim() });
  }
  return fields;
}

/** Fields named by Connection, lower-cased (they are hop-by-hop too). */
function connectionTokens(fields: readonly Field[]): Set<string> {
  const tokens = new Set<string>();
  for (const f of fields) {
    if (f.lower !== 'connection') continue;
    for (const t of f.value.split(',')) {
      const token = t.trim().toLowerCase();
      if (token.length > 0) tokens.add(token);
    }
  }
  return tokens;
}

/** Copies end-to-end fields as lines: no hop-by-hop field, none that Connection names, no Proxy-* field. */
function endToEndLines(fields: readonly Field[], named: ReadonlySet<string>, keep: (f: Field) => boolean): string {
  let out = '';
  for (const f of fields) {
    if (!keep(f)) continue;
    if (HOP_BY_HOP.has(f.lower) || named.has(f.lower) || f.lower.startsWith('proxy-')) continue;
    out += `${f.name}: ${f.value}\r\n`;
  }
  return out;
}

/**
 * The strict grammar of the CONNECT fast path: `CONNECT authority HTTP/1.x`, CRLF line ends only, token header
 * names, printable values, no obs-fold, no body headers, the whole head in the first chunk and within
 * max_header_size. Returns null for anything else (node:http then decides, as it always did).
 */
export function parseConnectHead(chunk: Buffer, maxHeaderSize: number): { target: string; headLength: number } | null {
  if (chunk.length < 8 || chunk.toString('latin1', 0, 8) !== 'CONNECT ') return null;
  const end = chunk.indexOf('\r\n\r\n');
  if (end < 0 || end + 4 > maxHeaderSize) return null;
  const lines = chunk.toString('latin1', 0, end).split('\r\n');
  const requestLine = lines[0];
  const space = requestLine.indexOf(' ', 8);
  if (space < 0) return null;
  const version = requestLine.slice(space + 1);
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return null;
  const target = requestLine.slice(8, space);
  if (!CONNECT_AUTHORITY.test(target)) return null;
  const fields = fieldsOf(lines.slice(1));
  if (!fields || fields.some((f) => f.lower === 'content-length' || f.lower === 'transfer-encoding')) return null;
  return { target, headLength: end + 4 };
}

function authorityWithPort(authority: string): string {
  return /^\[.*\]$|^[^:]*$/.test(authority) ? `${authority}:80` : authority;
}

/**
 * A complete request head at the start of `buffer` in the fast path's grammar, or null. Null also for every
 * request node:http refuses (a Host that disagrees, two Hosts, credentials in the URI...), so that refusal comes
 * from one place.
 */
export function parseForwardHead(buffer: Buffer, maxHeaderSize: number): ForwardHead | null {
  const end = buffer.indexOf('\r\n\r\n');
  if (end < 0 || end + 4 > maxHeaderSize) return null;
  const lines = buffer.toString('latin1', 0, end).split('\r\n');
  const request = REQUEST_LINE.exec(lines[0]);
  if (!request) return null;
  const [, method, authority, path = '/'] = request;
  const target = parseAuthority(authorityWithPort(authority));
  if (!target.ok) return null;
  const fields = fieldsOf(lines.slice(1));
  if (!fields) return null;

  let hostHeader: string | null = null;
  for (const f of fields) {
    switch (f.lower) {
      case 'host': {
        if (hostHeader !== null) return null;
        const fromHeader = parseAuthority(authorityWithPort(f.value));
        if (!fromHeader.ok || hostToString(fromHeader.host) !== hostToString(target.host) || fromHeader.port !== target.port) return null;
        hostHeader = f.value;
        break;
      }
      case 'content-length':
      case 'transfer-encoding':
      case 'upgrade':
      case 'expect':
        return null;
      default:
    }
  }
  if (hostHeader === null) return null;
  const named = connectionTokens(fields);
  const kept = endToEndLines(fields, named, (f) => f.lower !== 'host');
  return {
    method,
    host: target.host,
    port: target.port,
    upstreamHead: `${method} ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\n${kept}Connection: keep-alive\r\n\r\n`,
    clientKeepAlive: !named.has('close'),
    headLength: end + 4,
  };
}

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** No length: the body ends when the upstream closes (so does the client's connection). */
  | { readonly kind: 'close' };

export interface ResponseHead {
  readonly status: number;
  /** 1xx other than 101: forwarded, and the final response follows. */
  readonly interim: boolean;
  readonly framing: BodyFraming;
  /** The upstream may carry another request after this response. */
  readonly reusable: boolean;
  /** Status line and end-to-end fields for the client, CRLF-terminated, without Connection and the blank line. */
  readonly clientHead: string;
  readonly headLength: number;
}

/** The response head at the start of `buffer`: null while incomplete, an error when it cannot be relayed safely. */
export function parseResponseHead(buffer: Buffer, requestMethod: string, maxHeaderSize: number): ResponseHead | null | { readonly error: string } {
  const end = buffer.indexOf('\r\n\r\n');
  if (end < 0) return buffer.length > maxHeaderSize ? { error: 'response head too large' } : null;
  if (end + 4 > maxHeaderSize) return { error: 'response head too large' };
  const lines = buffer.toString('latin1', 0, end).split('\r\n');
  const status = STATUS_LINE.exec(lines[0]);
  if (!status) return { error: 'malformed status line' };
  const minor = status[1];
  const code = Number(status[2]);
  if (code === 101) return { error: 'switching protocols was not asked for' };
  const fields = fieldsOf(lines.slice(1));
  if (!fields) return { error: 'malformed response header' };

  let length: string | null = null;
  let transferEncoding: string | null = null;
  for (const f of fields) {
    if (f.lower === 'content-length') {
      if (!/^\d{1,15}$/.test(f.value) || (length !== null && length !== f.value)) return { error: 'invalid or conflicting Content-Length' };
      length = f.value;
    } else if (f.lower === 'transfer-encoding') {
      transferEncoding = transferEncoding === null ? f.value : `${transferEncoding}, ${f.value}`;
    }
  }
  // RFC 9112 §6.3: both at once is how responses get smuggled; refuse rather than pick one.
  if (length !== null && transferEncoding !== null) return { error: 'both Content-Length and Transfer-Encoding' };
  const named = connectionTokens(fields);
  const interim = code < 200;
  let framing: BodyFraming;
  if (interim || code === 204 || code === 304 || requestMethod === 'HEAD') framing = { kind: 'none' };
  else if (transferEncoding !== null) {
    const last = transferEncoding.split(',').at(-1)?.trim().toLowerCase();
    framing = last === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  } else if (length !== null) framing = { kind: 'length', length: Number(length) };
  else framing = { kind: 'close' };

  // The body is relayed as it arrives, framing included: a chunked body keeps its Transfer-Encoding.
  const teLine = framing.kind === 'chunked' ? `Transfer-Encoding: ${transferEncoding ?? 'chunked'}\r\n` : '';
  return {
    status: code,
    interim,
    framing,
    reusable: minor === '1' && !named.has('close') && framing.kind !== 'close',
    clientHead: `${lines[0]}\r\n${endToEndLines(fields, named, () => true)}${teLine}`,
    headLength: end + 4,
  };
}

const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER = 16 * 1024;

/**
 * Finds the end of a chunked body (RFC 9112 §7.1) without changing it: sizes, extensions and trailers are passed
 * through as they are. Lines are bounded; a size that is not hex is an error.
 */
export class ChunkedScanner {
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'done' = 'size';
  private line = '';
  private remaining = 0;
  private trailerBytes = 0;

  get done(): boolean {
    return this.state === 'done';
  }

  /** How many bytes of `chunk` belong to the body (all of them unless it ended inside), or an error. */
  feed(chunk: Buffer): number | { readonly error: string } {
    let i = 0;
    while (i < chunk.length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, chunk.length - i);
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-crlf';
        continue;
      }
      const byte = chunk[i];
      i += 1;
      if (byte !== 0x0a) {
        this.line += String.fromCharCode(byte);
        if (this.line.length > MAX_CHUNK_LINE) return { error: 'chunk line too long' };
        continue;
      }
      if (!this.line.endsWith('\r')) return { error: 'chunk line without CRLF' };
      const line = this.line.slice(0, -1);
      this.line = '';
      if (this.state === 'data-crlf') {
        if (line !== '') return { error: 'chunk data longer than its size' };
        this.state = 'size';
      } else if (this.state === 'size') {
        const size = /^([0-9A-Fa-f]{1,12})(?:[ \t]*;[\t\x20-\x7e]*)?$/.exec(line);
        if (!size) return { error: 'invalid chunk size' };
        this.remaining = parseInt(size[1], 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else {
        this.trailerBytes += line.length + 2;
        if (this.trailerBytes > MAX_TRAILER) return { error: 'trailer section too large' };
        if (line === '') this.state = 'done';
      }
    }
    return i;
  }
}
