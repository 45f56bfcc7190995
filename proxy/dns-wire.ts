/**
 * DNS wire format, the small part the gateway writes itself: a strict reader for the one query shape sandboxes
 * send (one question, an optional EDNS OPT record, nothing else) and the response writer. Anything the reader
 * does not recognise returns null, and the caller takes the general path through dns-packet instead; so this
 * reader only has to be right about what it accepts, never about what it refuses.
 */

/** RFC 1035 §4.2.1 limit without EDNS; with EDNS we honour the client's size up to the 1232 of DNS Flag Day 2020. */
const UDP_DEFAULT_SIZE = 512;
const UDP_MAX_SIZE = 1232;

const HEADER = 12;
const MAX_NAME_WIRE = 255; // RFC 1035 §2.3.4
const MAX_LABEL = 63;
const QR = 0x8000;
const OPCODE_MASK = 0x7800;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;
const QUESTION_NAME_POINTER = 0xc000 | HEADER; // the question name always starts right after the header

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';
const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

export interface SimpleQuery {
  readonly id: number;
  /** The query's RD and CD bits, which the response echoes. */
  readonly echoedFlags: number;
  /**
   * The question section lower-cased (labels, type, class) as a latin1 string: names the question for a cache in
   * one flat string made by one native call. Building the name a character at a time made a rope of string parts
   * that every map lookup had to flatten again. `questionName` turns it back into a name.
   */
  readonly key: string;
  readonly qtype: number;
  /** The question section exactly as sent (case included: RFC 5452 §9.1 clients check it), for the answer. */
  readonly question: Buffer;
  readonly edns: boolean;
  /** RFC 6891 §6.2.5: the requestor's advertised payload size, within [512, 1232]. */
  readonly udpLimit: number;
}

/**
 * Reads a standard query with one IN question whose labels are letters, digits, '-' and '_' (no compression),
 * and at most one additional record, an EDNS(0) OPT at the root. Null for anything else.
 */
export function parseSimpleQuery(msg: Buffer): SimpleQuery | null {
  if (msg.length < HEADER + 5) return null;
  const flags = msg.readUInt16BE(2);
  if ((flags & (QR | OPCODE_MASK | TC)) !== 0) return null;
  if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0) return null;
  const additionals = msg.readUInt16BE(10);
  if (additionals > 1) return null;

  let offset = HEADER;
  let upperCase = false;
  for (;;) {
    if (offset >= msg.length) return null;
    const length = msg[offset];
    if (length === 0) break;
    if (length > MAX_LABEL || offset + 1 + length > msg.length) return null; // also refuses pointers (0xc0)
    const label = labelCase(msg, offset + 1, length);
    if (label === LABEL_INVALID) return null;
    if (label === LABEL_HAS_UPPER) upperCase = true;
    offset += 1 + length;
    if (offset - HEADER >= MAX_NAME_WIRE) return null;
  }
  if (offset === HEADER) return null; // the root: rare enough for the general path
  offset += 1;
  if (offset + 4 > msg.length) return null;
  const qtype = msg.readUInt16BE(offset);
  if (msg.readUInt16BE(offset + 2) !== CLASS_IN || qtype === TYPE_OPT) return null;
  offset += 4;
  const question = msg.subarray(HEADER, offset);

  let udpLimit = UDP_DEFAULT_SIZE;
  if (additionals === 1) {
    // Root name (1 byte), type, class = payload size, TTL = extended rcode/version/flags, rdlength, options.
    if (offset + 11 > msg.length || msg[offset] !== 0 || msg.readUInt16BE(offset + 1) !== TYPE_OPT) return null;
    if (msg[offset + 6] !== 0) return null; // EDNS version other than 0: the general path answers it
    const optionsEnd = offset + 11 + msg.readUInt16BE(offset + 9);
    if (optionsEnd !== msg.length) return null;
    udpLimit = udpLimitOf(msg.readUInt16BE(offset + 3));
  } else if (offset !== msg.length) {
    return null;
  }
  const key = upperCase ? lowerCasedLabels(question).toString('latin1') : msg.toString('latin1', HEADER, offset);
  return { id: msg.readUInt16BE(0), echoedFlags: flags & (RD | CD), key, qtype, question, edns: additionals === 1, udpLimit };
}

/** The dot-separated name of a query's question, lower-cased, without the root's trailing dot. */
export function questionName(query: SimpleQuery): string {
  const labels: string[] = [];
  for (let offset = 0; query.key.charCodeAt(offset) !== 0; offset += 1 + query.key.charCodeAt(offset)) {
    labels.push(query.key.slice(offset + 1, offset + 1 + query.key.charCodeAt(offset)));
  }
  return labels.join('.');
}

/** RFC 6891 §6.2.5: the payload size a requestor advertised (undefined: no EDNS), within [512, 1232]. */
export function udpLimitOf(advertised: number | undefined): number {
  return advertised === undefined ? UDP_DEFAULT_SIZE : Math.min(Math.max(advertised, UDP_DEFAULT_SIZE), UDP_MAX_SIZE);
}

/** The header bits a response echoes from its query (RD, CD). */
export function echoedFlagsOf(rd: boolean, cd: boolean): number {
  return (rd ? RD : 0) | (cd ? CD : 0);
}

const LABEL_LOWER = 0;
const LABEL_HAS_UPPER = 1;
const LABEL_INVALID = 2;

/** Whether a label holds only letters, digits, '-' and '_', and whether any letter is upper-case. */
function labelCase(msg: Buffer, start: number, length: number): number {
  let result = LABEL_LOWER;
  for (let i = start; i < start + length; i += 1) {
    const c = msg[i];
    if (c >= 0x41 && c <= 0x5a) result = LABEL_HAS_UPPER; // A-Z
    else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) return LABEL_INVALID;
  }
  return result;
}

/** A copy of a question section read by parseSimpleQuery with its labels' letters lower-cased (type and class kept). */
function lowerCasedLabels(question: Buffer): Buffer {
  const copy = Buffer.from(question);
  for (let offset = 0; copy[offset] !== 0; offset += 1 + copy[offset]) {
    for (let i = offset + 1; i <= offset + copy[offset]; i += 1) {
      if (copy[i] >= 0x41 && copy[i] <= 0x5a) copy[i] += 0x20;
    }
  }
  return copy;
}

export interface ResponseParts {
  readonly id: number;
  readonly echoedFlags: number;
  readonly rcode: Rcode;
  /** The question section to echo; empty when the query's question cannot be echoed (then no answers either). */
  readonly question: Buffer;
  readonly addresses: readonly { readonly family: 4 | 6; readonly bytes: Uint8Array }[];
  readonly ttl: number;
  readonly edns: boolean;
  readonly truncated?: boolean;
}

/**
 * Answer records are written by hand: every one is owned by the question name, and a compression pointer to it
 * keeps 40 A records at 640 bytes instead of dns-packet's uncompressed ~1.4 KB (which would force TC and a TCP
 * retry for ordinary multi-address names).
 */
export function encodeResponse(parts: ResponseParts): Buffer {
  const question = parts.question;
  const addresses = question.length === 0 || parts.truncated === true ? [] : parts.addresses;
  let size = HEADER + question.length + (parts.edns ? 11 : 0);
  for (const ip of addresses) size += 12 + ip.bytes.length;
  const out = Buffer.allocUnsafe(size);
  let flags = QR | RA | parts.echoedFlags | RCODE[parts.rcode];
  if (parts.truncated === true) flags |= TC;
  // Bytes set one by one, copies in loops: a response is some 30-100 bytes, where Buffer's native copy and write
  // calls cost more than the bytes they move.
  put16(out, 0, parts.id);
  put16(out, 2, flags);
  put16(out, 4, question.length === 0 ? 0 : 1);
  put16(out, 6, addresses.length);
  put16(out, 8, 0);
  put16(out, 10, parts.edns ? 1 : 0);
  for (let i = 0; i < question.length; i += 1) out[HEADER + i] = question[i];
  let offset = HEADER + question.length;
  const ttl = Math.max(0, Math.floor(parts.ttl));
  for (const ip of addresses) {
    put16(out, offset, QUESTION_NAME_POINTER);
    put16(out, offset + 2, ip.family === 4 ? TYPE_A : TYPE_AAAA);
    put16(out, offset + 4, CLASS_IN);
    put16(out, offset + 6, ttl >>> 16);
    put16(out, offset + 8, ttl & 0xffff);
    const bytes = ip.bytes;
    put16(out, offset + 10, bytes.length);
    for (let i = 0; i < bytes.length; i += 1) out[offset + 12 + i] = bytes[i];
    offset += 12 + bytes.length;
  }
  if (parts.edns) {
    // RFC 6891 §7: an EDNS query gets an OPT record back (root name, our payload size, version 0, no options).
    out[offset] = 0;
    put16(out, offset + 1, TYPE_OPT);
    put16(out, offset + 3, UDP_MAX_SIZE);
    for (let i = offset + 5; i < offset + 11; i += 1) out[i] = 0; // extended rcode, version, flags, no options
  }
  return out;
}

function put16(out: Buffer, offset: number, value: number): void {
  out[offset] = value >>> 8;
  out[offset + 1] = value & 0xff;
}
