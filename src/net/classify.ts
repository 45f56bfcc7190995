/**
 * What kind of address is this? The built-in half of every decision: loopback, metadata, link-local and friends
 * are refused whatever the config says; private ranges only when an allowed IP/CIDR entry names them.
 *
 * IPv4 embedded in IPv6 (mapped, compatible, translated, NAT64, 6to4, Teredo) is classified by the IPv4 inside,
 * because a dual-stack socket, a NAT64 gateway or a tunnel relay delivers the packet to that IPv4.
 *
 * Tables are built once at load; `classifyAddress` does integer compares only.
 */
import { cidr, cidrContains, ipv4FromU32, readU32, type Cidr } from './ip.js';
import type { IpAddress } from './types.js';
import type { AddressClass, RuleId } from '../policy/types.js';

export type Liftability = 'never' | 'by-allowed-ip-or-cidr';

export interface Classification {
  readonly cls: AddressClass;
  /** The built-in rule that refuses it; `network_policy` for public addresses (no built-in rule applies). */
  readonly rule: RuleId;
  /**
   * `never`: no config can allow it. `by-allowed-ip-or-cidr`: private, allowed only by an IP/CIDR entry that
   * contains it. Public addresses are `by-allowed-ip-or-cidr` too, but need no lifting: check `cls` first.
   */
  readonly liftable: Liftability;
  /** How an embedded IPv4 was found (`IPv4-mapped`, `NAT64`, `6to4`, `Teredo client`, ...). */
  readonly via?: string;
}

interface Range {
  readonly block: Cidr;
  readonly classification: Classification;
}

function never(cls: AddressClass, rule: RuleId): Classification {
  return { cls, rule, liftable: 'never' };
}

const CLOUD_METADATA = never('cloud metadata', 'builtin.cloud-metadata');
const LOOPBACK = never('loopback', 'builtin.loopback');
const UNSPECIFIED = never('unspecified', 'builtin.unspecified');
const LINK_LOCAL = never('link-local', 'builtin.link-local');
const MULTICAST = never('multicast', 'builtin.multicast');
const BROADCAST = never('broadcast', 'builtin.broadcast');
const RESERVED = never('reserved', 'builtin.reserved');
const PRIVATE: Classification = { cls: 'private', rule: 'builtin.private', liftable: 'by-allowed-ip-or-cidr' };
const PUBLIC: Classification = { cls: 'public', rule: 'network_policy', liftable: 'by-allowed-ip-or-cidr' };

function ranges(classification: Classification, blocks: readonly string[]): Range[] {
  return blocks.map((text) => ({ block: cidr(text), classification }));
}

/**
 * Instance metadata and host-agent endpoints: they hand out cloud credentials to whoever asks from the
 * instance, the classic SSRF prize. Listed before link-local so the message says "cloud metadata".
 */
const METADATA_V4 = ranges(CLOUD_METADATA, [
  '169.254.169.254/32', // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS
  '169.254.170.2/32', // AWS ECS task metadata and credentials endpoint
  '169.254.170.23/32', // AWS EKS Pod Identity agent
  '169.254.0.23/32', // Tencent Cloud metadata (metadata.tencentyun.com)
  '168.63.129.16/32', // Azure WireServer / host agent (public-looking, but answers only inside Azure)
  '100.100.100.200/32', // Alibaba Cloud metadata
  '192.0.0.192/32', // Oracle Cloud legacy metadata
]);

const METADATA_V6 = ranges(CLOUD_METADATA, [
  'fd00:ec2::254/128', // AWS IMDS over IPv6 (Nitro)
  'fd00:ec2::23/128', // AWS EKS Pod Identity agent over IPv6
  'fd00:ec2::253/128', // AWS Route 53 Resolver over IPv6: resolves private hosted zones (internal map)
  'fd20:ce::254/128', // GCP metadata server over IPv6
]);

/** Order matters: the first match wins, so specific addresses come before the blocks containing them. */
const V4_RANGES: readonly Range[] = [
  ...METADATA_V4,
  ...ranges(UNSPECIFIED, ['0.0.0.0/8']), // RFC 1122 "this network"; 0.0.0.0 reaches localhost on Linux
  ...ranges(LOOPBACK, ['127.0.0.0/8']), // RFC 1122
  ...ranges(LINK_LOCAL, ['169.254.0.0/16']), // RFC 3927
  ...ranges(MULTICAST, ['224.0.0.0/4']), // RFC 5771
  ...ranges(BROADCAST, ['255.255.255.255/32']), // RFC 919 limited broadcast
  ...ranges(RESERVED, ['240.0.0.0/4']), // RFC 1112 class E
  ...ranges(PRIVATE, [
    '10.0.0.0/8', // RFC 1918
    '172.16.0.0/12', // RFC 1918
    '192.168.0.0/16', // RFC 1918
    '100.64.0.0/10', // RFC 6598 carrier-grade NAT (also Tailscale addresses)
    '198.18.0.0/15', // RFC 2544 benchmarking
    '192.0.0.0/24', // RFC 6890 IETF protocol assignments (.192 handled above as metadata)
    '192.0.2.0/24', // RFC 5737 TEST-NET-1
    '198.51.100.0/24', // RFC 5737 TEST-NET-2
    '203.0.113.0/24', // RFC 5737 TEST-NET-3
  ]),
];

/** IPv6 ranges that hold no embedded IPv4 (those are handled by `EMBEDDINGS`). */
const V6_RANGES: readonly Range[] = [
  ...METADATA_V6,
  ...ranges(UNSPECIFIED, ['::/128']), // RFC 4291
  ...ranges(LOOPBACK, ['::1/128']), // RFC 4291
  ...ranges(LINK_LOCAL, ['fe80::/10']), // RFC 4291
  ...ranges(MULTICAST, ['ff00::/8']), // RFC 4291
  ...ranges(PRIVATE, [
    'fc00::/7', // RFC 4193 unique local
    'fec0::/10', // RFC 3879 deprecated site-local: still routed inside some networks
    '2001:db8::/32', // RFC 3849 documentation
    '64:ff9b:1::/48', // RFC 8215 local-use NAT64: translates into the local network
  ]),
];

/**
 * Where an IPv4 hides inside an IPv6 address. `offset` is the byte offset of the 32 bits, `xor` undoes Teredo's
 * obfuscation of the client address. `rangeIfPublic` is the class of the IPv6 range itself when the embedded
 * address is unremarkable (a 6to4/Teredo relay is still a tunnel into someone's network).
 */
interface Embedding {
  readonly block: Cidr;
  readonly via: string;
  readonly offset: number;
  readonly xor: number;
  readonly rangeIfPublic: Classification;
}

const EMBEDDINGS: readonly Embedding[] = [
  // RFC 4291 IPv4-mapped: a dual-stack socket dials the IPv4 itself.
  { block: cidr('::ffff:0:0/96'), via: 'IPv4-mapped', offset: 12, xor: 0, rangeIfPublic: PUBLIC },
  // RFC 2765 SIIT IPv4-translated.
  { block: cidr('::ffff:0:0:0/96'), via: 'IPv4-translated', offset: 12, xor: 0, rangeIfPublic: PUBLIC },
  // RFC 6052 well-known NAT64 prefix: the NAT64 gateway dials the last 32 bits.
  { block: cidr('64:ff9b::/96'), via: 'NAT64', offset: 12, xor: 0, rangeIfPublic: PUBLIC },
  // RFC 3056 6to4: bits 16..48 are the IPv4 of the site's relay.
  { block: cidr('2002::/16'), via: '6to4', offset: 2, xor: 0, rangeIfPublic: PRIVATE },
  // RFC 4380 Teredo: the client IPv4 is the last 32 bits inverted; the server is bits 32..64.
  { block: cidr('2001::/32'), via: 'Teredo client', offset: 12, xor: 0xffffffff, rangeIfPublic: PRIVATE },
  { block: cidr('2001::/32'), via: 'Teredo server', offset: 4, xor: 0, rangeIfPublic: PRIVATE },
  // RFC 4291 deprecated IPv4-compatible (`::a.b.c.d`); `::` and `::1` matched earlier as their own classes.
  { block: cidr('::/96'), via: 'IPv4-compatible', offset: 12, xor: 0, rangeIfPublic: PUBLIC },
];

function classifyIpv4Word(word: number): Classification {
  for (const range of V4_RANGES) {
    const block = range.block;
    if ((word & (block.masks[0])) >>> 0 === block.words[0]) return range.classification;
  }
  return PUBLIC;
}

function withVia(classification: Classification, via: string): Classification {
  return { ...classification, via };
}

function classifyIpv6(ip: IpAddress): Classification {
  for (const range of V6_RANGES) if (cidrContains(range.block, ip)) return range.classification;

  // Several embeddings can share a prefix (Teredo client and server): the worst one decides, so a private
  // client cannot launder a loopback server and vice versa.
  let found: Classification | null = null;
  let rangeIfPublic: Classification | null = null;
  for (const embedding of EMBEDDINGS) {
    if (!cidrContains(embedding.block, ip)) continue;
    rangeIfPublic ??= embedding.rangeIfPublic;
    const embedded = classifyIpv4Word((readU32(ip.bytes, embedding.offset) ^ embedding.xor) >>> 0);
    if (embedded.cls === 'public') continue;
    if (found === null || (found.liftable !== 'never' && embedded.liftable === 'never')) {
      found = withVia(embedded, embedding.via);
    }
  }
  return found ?? rangeIfPublic ?? PUBLIC;
}

/** Classifies a canonical address. Never throws; unknown space is `public`. */
export function classifyAddress(ip: IpAddress): Classification {
  if (ip.family === 4) return classifyIpv4Word(readU32(ip.bytes, 0));
  return classifyIpv6(ip);
}

const IPV4_MAPPED = EMBEDDINGS[0];

/** The IPv4 inside an IPv4-mapped address (`::ffff:a.b.c.d`), which a dual-stack socket dials directly. */
export function unmapIpv4(ip: IpAddress): IpAddress | null {
  if (ip.family !== 6 || !cidrContains(IPV4_MAPPED.block, ip)) return null;
  return ipv4FromU32(readU32(ip.bytes, 12));
}

/**
 * Every IPv4 the address may lead to (mapped, translated, compatible, NAT64, 6to4, Teredo client and server).
 * Deny-side matching uses all of them, so `denied_hosts: [10.1.2.3]` also refuses `64:ff9b::a01:203`.
 */
export function embeddedIpv4s(ip: IpAddress): IpAddress[] {
  const found: IpAddress[] = [];
  if (ip.family !== 6) return found;
  for (const embedding of EMBEDDINGS) {
    if (!cidrContains(embedding.block, ip)) continue;
    // `::` and `::1` are not IPv4-compatible addresses of 0.0.0.0 and 0.0.0.1.
    if (embedding.via === 'IPv4-compatible' && readU32(ip.bytes, 12) <= 1) continue;
    found.push(ipv4FromU32((readU32(ip.bytes, embedding.offset) ^ embedding.xor) >>> 0));
  }
  return found;
}

/** `a cloud metadata`, `an unspecified`: for reasons that read as sentences. */
export function withArticle(cls: AddressClass): string {
  return /^[aeiou]/.test(cls) ? `an ${cls}` : `a ${cls}`;
}
