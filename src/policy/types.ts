import type { Host, IpAddress } from '../net/types.js';

/**
 * Which proxy protocol an attempt came through; also the `channel` field of audit lines. `direct` is traffic that
 * skipped the gateway: the sandbox network dropped it and the runner records it from the firewall's log.
 */
export type Channel = 'http' | 'connect' | 'socks5' | 'dns' | 'direct';

/**
 * Stable rule identifiers. They appear in 403 bodies, the `X-Clawbox-Rule` header and audit lines, so they are
 * part of the public interface: add, never rename.
 * - `builtin.*`: protections that no config can lift (except where noted),
 * - `denied_hosts[i]` / `allowed_hosts[i]`: the i-th entry of the effective list (config entries first,
 *   then per-sandbox additions),
 * - `network_policy`: nothing allowed it (deny-by-default),
 * - `port`: the host is allowed, but not on this port.
 */
export type RuleId =
  | 'builtin.invalid-host'
  | 'builtin.loopback'
  | 'builtin.unspecified'
  | 'builtin.link-local'
  | 'builtin.cloud-metadata'
  | 'builtin.multicast'
  | 'builtin.broadcast'
  | 'builtin.reserved'
  | 'builtin.private'
  | 'builtin.host-address'
  | 'builtin.gateway-listener'
  | 'builtin.sni-mismatch'
  | 'builtin.direct-connection'
  | `denied_hosts[${number}]`
  | `allowed_hosts[${number}]`
  | 'network_policy'
  | 'port'
  | 'allow-all';

/**
 * Human class of an address, for messages. Deny messages name the class ("cloud metadata"), never the resolved
 * internal IP, so a probe cannot map the inside network through error texts.
 */
export type AddressClass =
  | 'loopback'
  | 'unspecified'
  | 'link-local'
  | 'cloud metadata'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'private'
  | 'host address'
  | 'gateway listener'
  | 'public';

export interface Allow {
  readonly allow: true;
  readonly rule: RuleId;
  readonly reason: string;
}

export interface Deny {
  readonly allow: false;
  readonly rule: RuleId;
  readonly reason: string;
}

export type Decision = Allow | Deny;

/** Inputs to a decision. A struct so fields can be added without breaking callers. */
export interface DecideArgs {
  readonly host: Host;
  readonly port: number;
  /** Source address of the client (the sandbox), canonical text. Selects the per-sandbox policy. */
  readonly client: string;
}

/** A decision on a name that has been resolved: every address is checked, and the one to dial is chosen. */
export type ResolvedDecision =
  | (Allow & { readonly dial: IpAddress })
  | Deny;

/**
 * The compiled, immutable policy for one client. Pure: no I/O, no clocks; safe to call on every connection.
 */
export interface Policy {
  /** Stage 1: the requested host (name or literal) and port. For an IP literal this is the whole decision. */
  decide(host: Host, port: number): Decision;
  /**
   * Stage 2, for names only: after the gateway resolved `name` itself, check every address. If any address is
   * denied by a built-in rule or `denied_hosts`, the whole name is refused (DNS rebinding, internal aliases).
   * Otherwise the first allowed address is the one to dial.
   */
  decideResolved(name: string, port: number, addresses: readonly IpAddress[]): ResolvedDecision;
  /** For the DNS channel: may this name be resolved at all (is any port of it allowed)? */
  decideName(name: string): Decision;
  /** For the DNS channel: may this address be handed to the client as an answer for an allowed name? */
  decideAnswer(ip: IpAddress): Decision;
}

/** Maps a client to its policy; the runner gives each sandbox its own (issue 3). */
export interface PolicyTable {
  forClient(client: string): Policy;
}
