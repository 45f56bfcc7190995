/**
 * Addresses and hosts after normalisation. Everything that enters clawbox (config entries, CONNECT targets,
 * SOCKS5 requests, DNS questions, URLs) is turned into one of these exactly once, by `parseHost` in
 * `net/host.ts`; decision code never sees a raw string.
 */

/** An IP address in canonical text form (`192.0.2.1`, `2001:db8::1`; IPv6 lower-case, RFC 5952). */
export interface IpAddress {
  readonly family: 4 | 6;
  /** Canonical text. IPv4-mapped IPv6 stays IPv6 (`::ffff:7f00:1`); the classifier looks inside it. */
  readonly text: string;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

/** A DNS name: ASCII (punycode for IDNs), lower-case, no trailing dot, validated label syntax. */
export interface HostName {
  readonly kind: 'name';
  readonly name: string;
}

export interface HostIp {
  readonly kind: 'ip';
  readonly ip: IpAddress;
}

export type Host = HostName | HostIp;
