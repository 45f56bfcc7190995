/**
 * The one normalisation entry point for hosts. Every host that reaches a decision (config entry, CONNECT target,
 * SOCKS5 domain, DNS question, URL authority) goes through `parseHost`, so two spellings of the same host can
 * never be judged differently (`0x7f.1`, `2130706433`, `１２７.０.０.１` and `127.0.0.1` are one host).
 */
import { domainToASCII } from 'node:url';
import { parseCanonicalIpv4, parseIpv4, parseIpv6 } from './ip.js';
import type { Host } from './types.js';

export type HostParse = { ok: true; host: Host } | { ok: false; error: string };
export type AuthorityParse = { ok: true; host: Host; port: number } | { ok: false; error: string };

export interface ParseHostOptions {
  /**
   * `required-for-ipv6`: authority context (CONNECT, URLs): IPv6 must be written `[v6]`.
   * `forbidden` (default): SOCKS5 domain field, DNS questions, config names: no brackets; a bare IPv6 is fine.
   */
  readonly brackets?: 'required-for-ipv6' | 'forbidden';
}

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
/** Raw input cap, well above any valid host (IDN input is longer than its punycode only by mapped-away chars). */
const MAX_INPUT_LENGTH = 1024;

// C0, DEL and C1 controls. NUL, CR and LF are in this range and get the same message.
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u001f\u007f-\u009f]/;
// Any Unicode whitespace, including NBSP, U+2028 and the ideographic space: all are separators somewhere.
const WHITESPACE = /\s/u;
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Characters that make a host ambiguous with a URL part; `%` also because `domainToASCII` percent-decodes. */
const FORBIDDEN_CHARS: ReadonlyArray<readonly [string, string]> = [
  ['%', "host contains '%' (zone ids and percent-escapes are not allowed)"],
  ['/', "host contains '/' (a path is not allowed here)"],
  ['\\', "host contains '\\'"],
  ['@', "host contains '@' (userinfo is not allowed here)"],
  ['?', "host contains '?' (a query is not allowed here)"],
  ['#', "host contains '#' (a fragment is not allowed here)"],
];

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

/** Checks that do not depend on what kind of host it is. Returns an error or null. */
function rejectUnsafeCharacters(input: string): string | null {
  if (input.length === 0) return 'host is empty';
  if (input.length > MAX_INPUT_LENGTH) return `host is longer than ${MAX_NAME_LENGTH} characters`;
  if (CONTROL_CHAR.test(input)) return 'host contains a control character';
  if (WHITESPACE.test(input)) return 'host contains a space';
  for (const [char, error] of FORBIDDEN_CHARS) if (input.includes(char)) return error;
  return null;
}

/**
 * WHATWG "ends in a number": the last label is all decimal digits or `0x`-hex. Such a host must be an IPv4
 * address; otherwise `foo.123` would be a name here but an error (or an address) to the URL parser a tool uses.
 */
function endsInNumber(name: string): boolean {
  const last = name.slice(name.lastIndexOf('.') + 1);
  if (/^[0-9]+$/.test(last)) return true;
  return /^0[xX][0-9a-fA-F]*$/.test(last);
}

/** Best-effort ASCII view of the input, only to word the error when `domainToASCII` refuses it. */
function roughAscii(input: string): string {
  return input.normalize('NFKC').replace(/[\u3002\uff0e\uff61]/g, '.').toLowerCase().replace(/\.$/, '');
}

function validateName(name: string): string | null {
  if (name.length > MAX_NAME_LENGTH) return `host is longer than ${MAX_NAME_LENGTH} characters`;
  for (const label of name.split('.')) {
    if (label.length === 0) return 'host has an empty label (two dots in a row, or a leading dot)';
    if (label.length > MAX_LABEL_LENGTH) return `host has a label longer than ${MAX_LABEL_LENGTH} characters`;
    if (!LABEL.test(label)) {
      if (label.startsWith('-') || label.endsWith('-')) return 'host has a label that starts or ends with a hyphen';
      return 'host contains a character not allowed in a domain name (only letters, digits, hyphen, underscore)';
    }
  }
  return null;
}

/** Lower-case letters, digits, '_' and '-' in non-empty labels, one optional trailing dot. */
const PLAIN_ASCII_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?$/;

/**
 * True when UTS-46 mapping (`domainToASCII`) would return `input` unchanged, so the mapping can be skipped: plain
 * lower-case ASCII labels, none of them punycode (`xn--` labels are decoded and checked) and the last one not a
 * number (a host that ends in a number is parsed as IPv4 by the mapping). Most names a tool asks for are like
 * this; test/unit/net-properties.test.ts checks the claim against `domainToASCII` on random input.
 */
export function isPlainAsciiName(input: string): boolean {
  return PLAIN_ASCII_NAME.test(input) && !input.includes('xn--') && !endsInNumber(input.endsWith('.') ? input.slice(0, -1) : input);
}

function parseBareHost(input: string, brackets: 'required-for-ipv6' | 'forbidden'): HostParse {
  const quad = parseCanonicalIpv4(input);
  if (quad !== null) return { ok: true, host: { kind: 'ip', ip: quad } };
  if (input.includes(':')) {
    const ip = parseIpv6(input);
    if (ip === null) return fail("host contains ':' but is not a valid IPv6 address (a port is not allowed here)");
    if (brackets === 'required-for-ipv6') return fail('an IPv6 address must be in brackets here, like [::1]');
    return { ok: true, host: { kind: 'ip', ip } };
  }

  // UTS-46 mapping: lower-cases, punycodes IDNs, maps fullwidth digits and dots; '' means it refused the input.
  const mapped = isPlainAsciiName(input) ? input : domainToASCII(input);
  if (mapped === '') {
    if (endsInNumber(roughAscii(input))) return fail('host looks like an IPv4 address but is not a valid one');
    return fail('host is not a valid domain name');
  }
  const name = mapped.endsWith('.') ? mapped.slice(0, -1) : mapped;
  if (name.length === 0) return fail('host is empty');

  if (endsInNumber(name)) {
    const ip = parseIpv4(name);
    if (ip === null) return fail('host looks like an IPv4 address but is not a valid one');
    return { ok: true, host: { kind: 'ip', ip } };
  }

  const error = validateName(name);
  if (error !== null) return fail(error);
  return { ok: true, host: { kind: 'name', name } };
}

/**
 * Normalises a host. Order matters: unsafe characters are refused on the raw input (before `domainToASCII`
 * could decode or map them away), then brackets, then IPv6, then UTS-46 mapping, one trailing dot, the
 * "ends in a number" IPv4 rule and finally label syntax.
 */
export function parseHost(input: string, opts?: ParseHostOptions): HostParse {
  const brackets = opts?.brackets ?? 'forbidden';
  const unsafe = rejectUnsafeCharacters(input);
  if (unsafe !== null) return fail(unsafe);

  const opens = input.startsWith('[');
  const closes = input.endsWith(']');
  if (opens || closes || input.includes('[') || input.includes(']')) {
    if (!opens || !closes || input.length < 2) return fail('host has unbalanced or misplaced brackets');
    const inner = input.slice(1, -1);
    if (inner.includes('[') || inner.includes(']')) return fail('host has unbalanced or misplaced brackets');
    const ip = parseIpv6(inner);
    if (ip === null) return fail('brackets are only allowed around an IPv6 address');
    if (brackets === 'forbidden') return fail('brackets are not allowed here; write the IPv6 address without them');
    return { ok: true, host: { kind: 'ip', ip } };
  }

  return parseBareHost(input, brackets);
}

const PORT = /^[0-9]{1,5}$/;

/** Parses a decimal port 1..65535 (no sign, no hex); returns an error sentence or the number. */
export function parsePort(text: string): number | string {
  if (text.length === 0) return 'port is empty';
  if (!PORT.test(text)) return `port "${text}" is not a decimal number`;
  const port = Number(text);
  if (port < 1 || port > 65535) return `port ${port} is out of range (1-65535)`;
  return port;
}

/**
 * Parses a CONNECT-style authority `host:port` or `[v6]:port`. The port is required; a bare IPv6 address is
 * refused because its last group cannot be told apart from a port.
 */
export function parseAuthority(text: string): AuthorityParse {
  let hostText: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return fail('authority has an unclosed bracket');
    hostText = text.slice(0, close + 1);
    const rest = text.slice(close + 1);
    if (!rest.startsWith(':')) return fail('authority needs a port after the bracketed address, like [::1]:443');
    portText = rest.slice(1);
  } else {
    const colon = text.indexOf(':');
    if (colon === -1) return fail('authority needs a port, like example.com:443');
    if (text.indexOf(':', colon + 1) !== -1) {
      return fail('authority has more than one colon; write an IPv6 address in brackets, like [::1]:443');
    }
    hostText = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  const port = parsePort(portText);
  if (typeof port === 'string') return fail(port);
  const parsed = parseHost(hostText, { brackets: 'required-for-ipv6' });
  if (!parsed.ok) return parsed;
  return { ok: true, host: parsed.host, port };
}

/** Canonical text of a host: the name, or the IP (IPv6 without brackets). */
export function hostToString(host: Host): string {
  return host.kind === 'name' ? host.name : host.ip.text;
}
