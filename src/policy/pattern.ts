/**
 * Parses one allowed_hosts / denied_hosts entry. Names go through `parseHost`, so an entry and a request are
 * normalised by the same code and can only match when they mean the same host.
 */
import { parseHost, parsePort } from '../net/host.js';
import { parseCidr, type Cidr } from '../net/ip.js';
import type { IpAddress } from '../net/types.js';

/** `port` is null when the entry names no port (allowed: the default ports; denied: every port). */
export type HostPattern =
  | { readonly kind: 'exact'; readonly name: string; readonly port: number | null }
  /** `*.suffix`: any name strictly below `suffix`, at any depth; never `suffix` itself. */
  | { readonly kind: 'wildcard'; readonly suffix: string; readonly port: number | null }
  | { readonly kind: 'ip'; readonly ip: IpAddress; readonly port: number | null }
  | { readonly kind: 'cidr'; readonly cidr: Cidr; readonly port: number | null };

export type PatternParse = { ok: true; pattern: HostPattern } | { ok: false; error: string };

const TOO_BROAD =
  'is too broad: it would let the sandbox reach (or hide) whole top-level domains, which defeats the allow-list. ' +
  'Name the hosts or the domain instead, e.g. api.example.com, *.example.com, 10.0.0.0/8';

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

/** Splits `host:port` / `[v6]:port` / `[v6/len]:port`. A bare IPv6 (two or more colons) carries no port. */
function splitPort(raw: string): { host: string; port: string | null; bracketed: boolean } | string {
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close === -1) return 'entry has an unclosed bracket';
    const rest = raw.slice(close + 1);
    if (rest.length === 0) return { host: raw.slice(1, close), port: null, bracketed: true };
    if (!rest.startsWith(':')) return 'only a :port may follow a bracketed address, like [::1]:8080';
    return { host: raw.slice(1, close), port: rest.slice(1), bracketed: true };
  }
  const first = raw.indexOf(':');
  if (first === -1) return { host: raw, port: null, bracketed: false };
  if (raw.indexOf(':', first + 1) !== -1) return { host: raw, port: null, bracketed: false };
  return { host: raw.slice(0, first), port: raw.slice(first + 1), bracketed: false };
}

function parseWildcard(host: string, port: number | null, raw: string): PatternParse {
  const suffixText = host.slice(2);
  if (suffixText.includes('*')) return fail(`${raw}: '*' is only allowed as the whole first label, like *.example.com`);
  const parsed = parseHost(suffixText);
  if (!parsed.ok) return fail(`${raw}: ${parsed.error}`);
  if (parsed.host.kind === 'ip') return fail(`${raw}: a wildcard must be followed by a domain name, not an IP address`);
  const suffix = parsed.host.name;
  if (!suffix.includes('.')) return fail(`${raw} ${TOO_BROAD}`);
  return { ok: true, pattern: { kind: 'wildcard', suffix, port } };
}

function parseCidrPattern(host: string, bracketed: boolean, port: number | null, raw: string): PatternParse {
  const parsed = parseCidr(host);
  if (!parsed.ok) return fail(`${raw}: ${parsed.error}`);
  if (parsed.cidr.family === 4 && bracketed) return fail(`${raw}: brackets are only for IPv6 CIDRs`);
  if (parsed.cidr.prefix === 0) {
    return fail(
      `${raw} matches every address; to allow everything use network_policy: allow-all, ` +
        'otherwise name the networks, e.g. 10.0.0.0/8',
    );
  }
  return { ok: true, pattern: { kind: 'cidr', cidr: parsed.cidr, port } };
}

/**
 * Parses an entry: `api.example.com`, `*.example.com`, an IPv4 (any inet_aton spelling) or IPv6 literal, a CIDR
 * (`10.0.0.0/8`, `fd00::/8`), each optionally with `:port` (`[::1]:8080`, `[fd00::/8]:5432`, `10.0.0.0/8:5432`).
 */
export function parseHostPattern(raw: string): PatternParse {
  if (raw.length === 0) return fail('entry is empty');
  const split = splitPort(raw);
  if (typeof split === 'string') return fail(`${raw}: ${split}`);
  const { host, bracketed } = split;

  let port: number | null = null;
  if (split.port !== null) {
    const parsedPort = parsePort(split.port);
    if (typeof parsedPort === 'string') return fail(`${raw}: ${parsedPort}`);
    port = parsedPort;
  }

  if (host === '*' || host === '*.') return fail(`${raw} ${TOO_BROAD}`);
  if (host.startsWith('*.')) return parseWildcard(host, port, raw);
  if (host.includes('*')) return fail(`${raw}: '*' is only allowed as the whole first label, like *.example.com`);

  if (host.includes('/')) return parseCidrPattern(host, bracketed, port, raw);

  const parsed = parseHost(host);
  if (!parsed.ok) return fail(`${raw}: ${parsed.error}`);
  if (bracketed && (parsed.host.kind !== 'ip' || parsed.host.ip.family === 4)) {
    return fail(`${raw}: brackets are only allowed around an IPv6 address`);
  }
  if (parsed.host.kind === 'ip') return { ok: true, pattern: { kind: 'ip', ip: parsed.host.ip, port } };
  return { ok: true, pattern: { kind: 'exact', name: parsed.host.name, port } };
}

/** Canonical text of a pattern, for messages and round-trips. */
export function patternToString(pattern: HostPattern): string {
  let host: string;
  switch (pattern.kind) {
    case 'exact':
      host = pattern.name;
      break;
    case 'wildcard':
      host = `*.${pattern.suffix}`;
      break;
    case 'ip':
      host = pattern.ip.family === 6 && pattern.port !== null ? `[${pattern.ip.text}]` : pattern.ip.text;
      break;
    case 'cidr':
      host = pattern.cidr.family === 6 && pattern.port !== null ? `[${pattern.cidr.text}]` : pattern.cidr.text;
      break;
  }
  return pattern.port === null ? host : `${host}:${pattern.port}`;
}
