/**
 * IP address parsing, formatting and CIDR containment. Pure and allocation-light: decisions call these on every
 * connection, so containment is integer compares on precomputed words, never string work.
 *
 * IPv6 is parsed here rather than with ipaddr.js because ipaddr.js accepts zone ids (`fe80::1%eth0`) and
 * inet_aton-style IPv4 spellings that must not sneak into an IPv6 literal.
 */
import type { IpAddress } from './types.js';

const MAX_U32 = 0xffffffff;

/** Parses one inet_aton part: `0x`-hex (empty digits mean 0, as in WHATWG), `0`-octal, or decimal. */
function parseIpv4Part(part: string): number | null {
  if (part.length === 0) return null;
  let digits = part;
  let radix = 10;
  if (part.length >= 2 && part[0] === '0' && (part[1] === 'x' || part[1] === 'X')) {
    digits = part.slice(2);
    radix = 16;
    if (digits.length === 0) return 0;
    if (!/^[0-9a-fA-F]+$/.test(digits)) return null;
  } else if (part.length >= 2 && part[0] === '0') {
    digits = part.slice(1);
    radix = 8;
    if (!/^[0-7]+$/.test(digits)) return null;
  } else if (!/^[0-9]+$/.test(digits)) {
    return null;
  }
  // Strip leading zeros so a long run of them cannot look like an overflow; anything past 2^53 is already far
  // beyond 2^32, so float imprecision cannot turn an overflow into a valid value.
  const value = parseInt(digits, radix);
  return Number.isFinite(value) ? value : null;
}

/**
 * Parses every spelling inet_aton and the WHATWG URL host parser accept: 1 to 4 parts, each decimal, `0x` hex
 * or leading-zero octal, the last part filling the remaining bytes (`127.1`, `0x7f000001`, `017700000001`).
 * Rejects empty parts, more than 4 parts, a non-last part over 255 and a last part over its remaining bytes.
 * No trailing dot and no surrounding whitespace: `parseHost` strips the one trailing dot a name may carry.
 */
export function parseIpv4(text: string): IpAddress | null {
  if (text.length === 0 || text.length > 256) return null;
  const parts = text.split('.');
  if (parts.length > 4) return null;
  let value = 0;
  for (let i = 0; i < parts.length - 1; i++) {
    const part = parseIpv4Part(parts[i]);
    if (part === null || part > 255) return null;
    value = value * 256 + part;
  }
  const last = parseIpv4Part(parts[parts.length - 1]);
  const remainingBytes = 5 - parts.length;
  if (last === null || last >= 2 ** (8 * remainingBytes)) return null;
  value = value * 2 ** (8 * remainingBytes) + last;
  if (value > MAX_U32) return null;
  return ipv4FromU32(value);
}

const DOT = 0x2e;
const ZERO = 0x30;

/**
 * The common spelling only: four decimal octets, no leading zeros. For such text `parseIpv4` gives the same
 * address and UTS-46 mapping leaves it as it is, so `parseHost` may take it as is: a CONNECT or SOCKS5 target
 * is parsed once per connection, and the general path (mapping, inet_aton parts) costs several times more.
 * One pass over the characters, no regular expression and no intermediate strings: it runs on every connection.
 */
export function parseCanonicalIpv4(text: string): IpAddress | null {
  if (text.length < 7 || text.length > 15) return null;
  const bytes = new Uint8Array(4);
  let octet = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i === text.length ? DOT : text.charCodeAt(i);
    if (c === DOT) {
      // An empty octet, a fifth one, or a leading zero ("01") is not the canonical spelling.
      if (digits === 0 || octet === 4 || (digits > 1 && text.charCodeAt(i - digits) === ZERO)) return null;
      bytes[octet++] = value;
      value = 0;
      digits = 0;
    } else if (c >= ZERO && c <= ZERO + 9 && digits < 3) {
      value = value * 10 + (c - ZERO);
      if (value > 255) return null;
      digits++;
    } else return null;
  }
  return octet === 4 ? { family: 4, text, bytes } : null;
}

/** Strict dotted quad for the tail of an IPv6 literal: no octal/hex/short forms, no leading zeros. */
function parseDottedQuadStrict(text: string, out: Uint8Array, offset: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const part = parts[i];
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return false;
    const n = Number(part);
    if (n > 255) return false;
    out[offset + i] = n;
  }
  return true;
}

/** Parses `h:h:...` groups (1-4 hex digits each), the last possibly a dotted quad; null on any error. */
function parseIpv6Groups(text: string, allowDottedTail: boolean): number[] | null {
  if (text.length === 0) return [];
  const groups = text.split(':');
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i];
    if (allowDottedTail && i === groups.length - 1 && group.includes('.')) {
      const quad = new Uint8Array(4);
      if (!parseDottedQuadStrict(group, quad, 0)) return null;
      words.push(((quad[0]) << 8) | (quad[1]), ((quad[2]) << 8) | (quad[3]));
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
    words.push(parseInt(group, 16));
  }
  return words;
}

/**
 * Parses an IPv6 literal (RFC 4291 text forms, including `::` compression and an embedded dotted quad such as
 * `::ffff:127.0.0.1`). Refuses zone ids (`%eth0`), brackets and anything else: callers strip brackets first.
 */
export function parseIpv6(text: string): IpAddress | null {
  if (text.length < 2 || text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const doubleColon = text.indexOf('::');
  let words: number[];
  if (doubleColon === -1) {
    const parsed = parseIpv6Groups(text, true);
    if (parsed === null || parsed.length !== 8) return null;
    words = parsed;
  } else {
    if (text.indexOf('::', doubleColon + 1) !== -1) return null;
    const head = text.slice(0, doubleColon);
    const tail = text.slice(doubleColon + 2);
    const headWords = parseIpv6Groups(head, false);
    const tailWords = parseIpv6Groups(tail, true);
    if (headWords === null || tailWords === null) return null;
    // `::` stands for at least one zero group.
    const missing = 8 - headWords.length - tailWords.length;
    if (missing < 1) return null;
    words = [...headWords, ...new Array<number>(missing).fill(0), ...tailWords];
  }
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const word = words[i];
    bytes[2 * i] = word >> 8;
    bytes[2 * i + 1] = word & 0xff;
  }
  return { family: 6, text: formatIpv6(bytes), bytes };
}

/** Either family; IPv6 first only when the text has a colon, so `parseIp('1.2.3.4')` is IPv4. */
export function parseIp(text: string): IpAddress | null {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

function formatIpv6(bytes: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((bytes[2 * i]) << 8) | (bytes[2 * i + 1]));
  // RFC 5952 4.2: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    words
      .slice(from, to)
      .map((w) => w.toString(16))
      .join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** Canonical text: dotted decimal for IPv4; RFC 5952 for IPv6 (lower-case, longest zero run as `::`). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length === 16) return formatIpv6(bytes);
  throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
}

/** Builds an IpAddress from 4 or 16 network-order bytes (copied). */
export function ipFromBytes(bytes: Uint8Array): IpAddress {
  const copy = Uint8Array.from(bytes);
  return { family: copy.length === 4 ? 4 : 6, text: formatIp(copy), bytes: copy };
}

export function ipv4FromU32(value: number): IpAddress {
  const bytes = new Uint8Array([value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff]);
  return { family: 4, text: formatIp(bytes), bytes };
}

/** The 32-bit word of `bytes` starting at byte `offset`, unsigned. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return (
    (((bytes[offset]) << 24) |
      ((bytes[offset + 1]) << 16) |
      ((bytes[offset + 2]) << 8) |
      (bytes[offset + 3])) >>>
    0
  );
}

export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  if (a.bytes.length !== b.bytes.length) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}

/**
 * A CIDR block, precomputed as 32-bit words and masks so containment is at most four integer compares.
 * `words`/`masks` have 1 entry for IPv4 and 4 for IPv6.
 */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: IpAddress;
  readonly prefix: number;
  /** Canonical text, `10.0.0.0/8`, `fd00::/8`. */
  readonly text: string;
  readonly words: readonly number[];
  readonly masks: readonly number[];
}

function maskForWord(prefix: number, wordIndex: number): number {
  const bits = Math.min(32, Math.max(0, prefix - 32 * wordIndex));
  return bits === 0 ? 0 : (MAX_U32 << (32 - bits)) >>> 0;
}

/** Builds a CIDR from an address and prefix; `null` when host bits are set or the prefix is out of range. */
export function cidrFromIp(ip: IpAddress, prefix: number): Cidr | null {
  const maxPrefix = ip.family === 4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix) return null;
  const wordCount = ip.family === 4 ? 1 : 4;
  const words: number[] = [];
  const masks: number[] = [];
  for (let i = 0; i < wordCount; i++) {
    const mask = maskForWord(prefix, i);
    const word = readU32(ip.bytes, 4 * i);
    if ((word & ~mask) >>> 0 !== 0) return null;
    words.push(word);
    masks.push(mask);
  }
  return { family: ip.family, network: ip, prefix, text: `${ip.text}/${prefix}`, words, masks };
}

/** The network of `ip` at `prefix` (host bits cleared); used for "did you mean" hints. */
export function networkOf(ip: IpAddress, prefix: number): IpAddress {
  const bytes = Uint8Array.from(ip.bytes);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.min(8, Math.max(0, prefix - 8 * i));
    bytes[i] = (bytes[i]) & ((0xff << (8 - bits)) & 0xff);
  }
  return ipFromBytes(bytes);
}

export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; error: string };

/**
 * Parses `address/prefix`. The address takes any spelling `parseIpv4`/`parseIpv6` accept; the prefix is plain
 * decimal. Host bits set is an error with a hint (`use 10.0.0.0/8`): a typo there silently widens or narrows a
 * security rule, so it is refused rather than masked.
 */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/');
  if (slash === -1) return { ok: false, error: `${text} is not a CIDR (expected address/prefix)` };
  const addressText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const ip = parseIp(addressText);
  if (ip === null) return { ok: false, error: `${addressText} is not an IP address` };
  const maxPrefix = ip.family === 4 ? 32 : 128;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > maxPrefix) {
    return { ok: false, error: `CIDR prefix length must be a number from 0 to ${maxPrefix}, not "${prefixText}"` };
  }
  const prefix = Number(prefixText);
  const cidr = cidrFromIp(ip, prefix);
  if (cidr === null) {
    return { ok: false, error: `${text} has host bits set; use ${networkOf(ip, prefix).text}/${prefix}` };
  }
  return { ok: true, cidr };
}

/** Does the block contain `ip`? Different families never match (IPv4-mapped forms are the caller's concern). */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const { words, masks } = cidr;
  for (let i = 0; i < words.length; i++) {
    if ((readU32(ip.bytes, 4 * i) & (masks[i])) >>> 0 !== words[i]) return false;
  }
  return true;
}

/** Parses a CIDR known to be valid (built-in tables); throws on a typo so it fails at load, not at decision. */
export function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(`invalid built-in CIDR ${text}: ${parsed.error}`);
  return parsed.cidr;
}
