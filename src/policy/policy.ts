/**
 * Compiles a PolicyConfig into an immutable, precomputed Policy. All parsing happens here, once; a decision is a
 * handful of Map lookups and integer compares, made once per host and port (`decision-memo.ts`).
 */
import { classifyAddress, embeddedIpv4s, unmapIpv4, withArticle, type Classification } from '../net/classify.js';
import { hostToString, parseHost } from '../net/host.js';
import { cidrContains, ipEquals, parseIp } from '../net/ip.js';
import type { Host, HostIp, HostName, IpAddress } from '../net/types.js';
import type { PolicyConfig } from './config.js';
import { DecisionMemo } from './decision-memo.js';
import { parseHostPattern, patternToString, type HostPattern } from './pattern.js';
import type {
  Allow,
  Decision,
  Deny,
  Policy,
  PolicyTable,
  ResolvedDecision,
  RuleId,
} from './types.js';

/**
 * Names that are instance-metadata endpoints on some cloud. Refused by name so the message is clear even before
 * resolution; their addresses are refused by `classifyAddress` anyway.
 */
const METADATA_NAMES: ReadonlySet<string> = new Set([
  'metadata.google.internal', // GCP
  'metadata.goog', // GCP
  'metadata', // GCP short name (search domain google.internal)
  'instance-data', // AWS short name
  'instance-data.ec2.internal', // AWS
  'metadata.tencentyun.com', // Tencent Cloud
  'metadata.azure.internal', // Azure
  'metadata.platformequinix.com', // Equinix Metal: answers by source address, so it hands out the instance's data
  'metadata.packet.net', // Equinix Metal's former name for the same service
]);

/** Names every resolver maps to loopback (RFC 6761 for `localhost`; /etc/hosts defaults for the others). */
const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);

type ListName = 'allowed_hosts' | 'denied_hosts';

/**
 * Answers one policy keeps per kind of host (an IP's, a name's). A few hundred bytes each: a sandbox that floods
 * distinct targets holds at most about two megabytes here before its memos start over.
 */
export const DECISION_MEMO_LIMIT = 4096;

interface Entry {
  readonly rule: RuleId;
  readonly index: number;
  readonly text: string;
  readonly pattern: HostPattern;
  /** Ports the entry covers; `null` means every port (a denied entry without `:port`). */
  readonly ports: ReadonlySet<number> | null;
}

function coversPort(entry: Entry, port: number): boolean {
  return entry.ports === null || entry.ports.has(port);
}

function lowest(a: Entry | null, b: Entry): Entry {
  return a === null || b.index < a.index ? b : a;
}

function pushTo<K>(map: Map<K, Entry[]>, key: K, entry: Entry): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [entry]);
  else list.push(entry);
}

/** A list of entries indexed for lookup: exact names, wildcard suffixes, IPs and CIDRs. */
class EntryIndex {
  private readonly exact = new Map<string, Entry[]>();
  private readonly wildcard = new Map<string, Entry[]>();
  /** IP and CIDR entries; few in practice, and each check is a few integer compares. */
  private readonly addresses: Entry[] = [];
  readonly entries: readonly Entry[];

  constructor(list: ListName, raws: readonly string[], portsWithoutEntryPort: ReadonlySet<number> | null) {
    const entries: Entry[] = [];
    raws.forEach((raw, index) => {
      const parsed = parseHostPattern(raw);
      if (!parsed.ok) throw new Error(`${list}[${index}] "${raw}" is invalid: ${parsed.error}`);
      const pattern = parsed.pattern;
      const ports = pattern.port === null ? portsWithoutEntryPort : new Set([pattern.port]);
      const entry: Entry = { rule: `${list}[${index}]`, index, text: patternToString(pattern), pattern, ports };
      entries.push(entry);
      switch (pattern.kind) {
        case 'exact':
          pushTo(this.exact, pattern.name, entry);
          break;
        case 'wildcard':
          pushTo(this.wildcard, pattern.suffix, entry);
          break;
        case 'ip':
        case 'cidr':
          this.addresses.push(entry);
          break;
      }
    });
    this.entries = entries;
  }

  /** Calls `visit` for every name entry matching `name`: exact, then `*.suffix` for each proper suffix. */
  forEachNameEntry(name: string, visit: (entry: Entry) => void): void {
    this.exact.get(name)?.forEach(visit);
    if (this.wildcard.size === 0) return;
    // Only suffixes after a dot: the apex itself is never looked up, so `*.x.test` cannot match `x.test`.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      this.wildcard.get(name.slice(dot + 1))?.forEach(visit);
    }
  }

  /** Calls `visit` for every IP/CIDR entry containing any of `forms`. */
  forEachAddressEntry(forms: readonly IpAddress[], visit: (entry: Entry) => void): void {
    for (const entry of this.addresses) {
      const pattern = entry.pattern;
      for (const ip of forms) {
        const hit =
          pattern.kind === 'ip' ? ipEquals(pattern.ip, ip) : pattern.kind === 'cidr' && cidrContains(pattern.cidr, ip);
        if (hit) {
          visit(entry);
          break;
        }
      }
    }
  }

  /** The lowest-index entry that matches the host and covers the port, and all host matches (for messages). */
  match(host: Host, forms: readonly IpAddress[], port: number | null): { hit: Entry | null; hostMatches: Entry[] } {
    let hit: Entry | null = null;
    const hostMatches: Entry[] = [];
    const visit = (entry: Entry): void => {
      hostMatches.push(entry);
      if (port === null ? entry.ports === null : coversPort(entry, port)) hit = lowest(hit, entry);
    };
    if (host.kind === 'name') this.forEachNameEntry(host.name, visit);
    else this.forEachAddressEntry(forms, visit);
    return { hit, hostMatches };
  }

  hasExactIp(forms: readonly IpAddress[]): boolean {
    for (const entry of this.addresses) {
      const pattern = entry.pattern;
      if (pattern.kind === 'ip' && forms.some((ip) => ipEquals(pattern.ip, ip))) return true;
    }
    return false;
  }

  /** Every port an entry names explicitly or through the defaults. */
  ports(): number[] {
    const ports = new Set<number>();
    for (const entry of this.entries) entry.ports?.forEach((port) => ports.add(port));
    return [...ports];
  }
}

function allow(rule: RuleId, reason: string): Allow {
  return { allow: true, rule, reason };
}

function deny(rule: RuleId, reason: string): Deny {
  return { allow: false, rule, reason };
}

function viaNote(classification: Classification): string {
  return classification.via === undefined ? 'always denied' : `${classification.via}; always denied`;
}

/** Forms of an address that allow-side entries are matched against: itself, and the IPv4 a mapped form dials. */
function allowForms(ip: IpAddress): IpAddress[] {
  const unmapped = unmapIpv4(ip);
  return unmapped === null ? [ip] : [ip, unmapped];
}

/** Deny-side forms: every IPv4 the address may lead to, so no embedding slips past a denied entry. */
function denyForms(ip: IpAddress): IpAddress[] {
  return [ip, ...embeddedIpv4s(ip)];
}

function portList(entries: readonly Entry[], defaultPorts: readonly number[]): string {
  const ports = new Set<number>();
  for (const entry of entries) (entry.ports ?? new Set(defaultPorts)).forEach((port) => ports.add(port));
  return [...ports].sort((a, b) => a - b).join(', ');
}

/**
 * How `CompiledPolicy.checkAddress` words a refusal: a literal the client sent may be named; an address the
 * gateway resolved must not be (it would map the inside network for a probing sandbox).
 */
interface Subject {
  /** `10.1.2.3 is` / `db.test resolves to` / `the answer is` */
  readonly phrase: string;
  readonly revealsAddress: boolean;
}

class CompiledPolicy implements Policy {
  private readonly allowed: EntryIndex;
  private readonly denied: EntryIndex;
  private readonly selfAddresses: readonly IpAddress[];
  private readonly listenerPorts: ReadonlySet<number>;
  private readonly allowAll: boolean;
  private readonly defaultPorts: readonly number[];
  /** Ports `decideName` tries: any of them being allowed makes the name resolvable. */
  private readonly candidatePorts: readonly number[];
  /** Stage 1's answers so far (`decision-memo.ts`). */
  private readonly ipDecisions = new DecisionMemo<Decision>(DECISION_MEMO_LIMIT);
  private readonly nameDecisions = new DecisionMemo<Decision>(DECISION_MEMO_LIMIT);

  constructor(cfg: PolicyConfig) {
    this.defaultPorts = [...cfg.defaultPorts];
    this.allowed = new EntryIndex('allowed_hosts', cfg.allowedHosts, new Set(cfg.defaultPorts));
    this.denied = new EntryIndex('denied_hosts', cfg.deniedHosts, null);
    this.selfAddresses = cfg.selfAddresses.map((text, index) => {
      const ip = parseIp(text);
      if (ip === null) throw new Error(`selfAddresses[${index}] "${text}" is not an IP address`);
      return unmapIpv4(ip) ?? ip;
    });
    this.listenerPorts = new Set(cfg.listenerPorts);
    this.allowAll = cfg.networkPolicy === 'allow-all';

    const named = new Set([...cfg.defaultPorts, ...this.allowed.ports(), ...this.denied.ports()]);
    const candidates = [...named];
    if (this.allowAll) {
      // Under allow-all, any port no denied entry names is allowed; one such port stands for all of them.
      let free = 1;
      while (named.has(free)) free++;
      candidates.push(free);
    }
    this.candidatePorts = candidates;
  }

  /**
   * Stage 1, the requested host and port. Rules, first match wins:
   *
   * IP literal:
   *  1. built-in non-liftable class (loopback, unspecified, link-local, cloud metadata, multicast, broadcast,
   *     reserved; also inside any IPv4-in-IPv6 embedding) → deny `builtin.<class>`;
   *  2. a self address on a listener port → deny `builtin.gateway-listener` (always: proxy loop);
   *  3. a self address → deny `builtin.host-address`, unless an allowed entry is that exact IP (not a CIDR);
   *  4. a denied_hosts IP/CIDR entry contains it (an entry with a port denies only that port; embedded IPv4 forms
   *     count) → deny `denied_hosts[i]`;
   *  5. a liftable private class → deny `builtin.private`, unless an allowed IP/CIDR entry contains it;
   *  6. an allowed IP/CIDR entry contains it and covers the port → allow `allowed_hosts[i]`;
   *  7. `network_policy: allow-all` and a public, non-self address → allow `allow-all` on any port;
   *  8. otherwise deny `port` if an allowed entry matched the host but not the port, else `network_policy`.
   *  Wildcards never match IP literals.
   *
   * Name:
   *  1. a cloud metadata name → deny `builtin.cloud-metadata`; `localhost`, `*.localhost` → `builtin.loopback`;
   *  2. a denied_hosts exact or wildcard entry matches (port-aware) → deny `denied_hosts[i]`: deny always wins;
   *  3. an allowed exact or wildcard entry matches and covers the port → allow `allowed_hosts[i]`;
   *  4. `network_policy: allow-all` → allow `allow-all`;
   *  5. otherwise deny `port` if an allowed entry matched the name but not the port, else `network_policy`.
   *
   * When several entries match, the lowest index is reported.
   */
  decide(host: Host, port: number): Decision {
    // Two memos: a name's text never collides with an address's that way.
    const memo = host.kind === 'ip' ? this.ipDecisions : this.nameDecisions;
    const text = host.kind === 'ip' ? host.ip.text : host.name;
    const known = memo.get(text, port);
    if (known !== undefined) return known;
    const decision = host.kind === 'ip' ? this.decideIp(host, port) : this.decideHostName(host, port);
    memo.set(text, port, decision);
    return decision;
  }

  private decideIp(host: HostIp, port: number): Decision {
    const ip = host.ip;
    const classification = classifyAddress(ip);
    const subject: Subject = { phrase: `${ip.text} is`, revealsAddress: true };
    const refused = this.checkAddress(ip, classification, port, subject);
    if (refused !== null) return refused;

    const { hit, hostMatches } = this.allowed.match(host, allowForms(ip), port);
    if (hit !== null) return allow(hit.rule, `${ip.text} port ${port} is allowed by ${hit.rule} (${hit.text})`);
    if (this.allowAll && classification.cls === 'public' && !this.isSelf(ip)) {
      return allow('allow-all', `${ip.text} is a public address and network_policy is allow-all`);
    }
    return this.notAllowed(ip.text, port, hostMatches);
  }

  private decideHostName(host: HostName, port: number): Decision {
    const name = host.name;
    const builtin = builtinNameDenial(name);
    if (builtin !== null) return builtin;

    const denied = this.denied.match(host, [], port).hit;
    if (denied !== null) return deny(denied.rule, `${name} is denied by ${denied.rule} (${denied.text})`);

    const { hit, hostMatches } = this.allowed.match(host, [], port);
    if (hit !== null) return allow(hit.rule, `${name} port ${port} is allowed by ${hit.rule} (${hit.text})`);
    if (this.allowAll) return allow('allow-all', `network_policy is allow-all and ${name} is not denied`);
    return this.notAllowed(name, port, hostMatches);
  }

  private notAllowed(hostText: string, port: number, hostMatches: readonly Entry[]): Deny {
    if (hostMatches.length === 0) return deny('network_policy', `${hostText} is not in sandbox.allowed_hosts`);
    const noun = hostMatches.length === 1 ? 'entry allows' : 'entries allow';
    return deny('port', `port ${port} is not allowed for ${hostText} (${noun} ${portList(hostMatches, this.defaultPorts)})`);
  }

  private isSelf(ip: IpAddress): boolean {
    return this.selfAddresses.length > 0 && denyForms(ip).some((form) => this.selfAddresses.some((self) => ipEquals(self, form)));
  }

  /**
   * The per-address rules shared by literals, resolved addresses and DNS answers (stage 1 steps 1-5, stage 2).
   * `port` null (a DNS answer) skips the listener check and only port-less denied entries apply.
   */
  private checkAddress(ip: IpAddress, classification: Classification, port: number | null, subject: Subject): Deny | null {
    const named = subject.revealsAddress ? `${ip.text}` : 'the address';
    if (classification.liftable === 'never' && classification.cls !== 'public') {
      return deny(classification.rule, `${subject.phrase} ${withArticle(classification.cls)} address (${viaNote(classification)})`);
    }
    const forms = allowForms(ip);
    if (this.isSelf(ip)) {
      if (port !== null && this.listenerPorts.has(port)) {
        return deny(
          'builtin.gateway-listener',
          `${subject.phrase} a clawbox listener on port ${port} (always denied: it would loop through the gateway)`,
        );
      }
      if (!this.allowed.hasExactIp(forms)) {
        return deny(
          'builtin.host-address',
          `${subject.phrase} an address of the gateway host; only an allowed_hosts entry naming ${named} exactly allows it`,
        );
      }
    }
    const denied = this.denied.match({ kind: 'ip', ip }, denyForms(ip), port).hit;
    if (denied !== null) {
      const entry = subject.revealsAddress ? `${denied.rule} (${denied.text})` : denied.rule;
      return deny(denied.rule, `${subject.phrase} denied by ${entry}`);
    }
    if (classification.cls === 'private') {
      const lifted = this.allowed.match({ kind: 'ip', ip }, forms, null).hostMatches.length > 0;
      if (!lifted) {
        return deny(
          'builtin.private',
          `${subject.phrase} a private address${classification.via === undefined ? '' : ` (${classification.via})`}; ` +
            `allow it with an IP or CIDR entry in sandbox.allowed_hosts`,
        );
      }
    }
    return null;
  }

  /**
   * Stage 2, after the gateway resolved a name itself:
   *  1. stage 1 (`decide`) on the name and port must allow;
   *  2. no addresses → deny `builtin.invalid-host`;
   *  3. every address must pass: non-liftable built-in class → deny the whole name with that rule; self address
   *     on a listener port → `builtin.gateway-listener`; self address without an exact allowed IP entry →
   *     `builtin.host-address`; a denied_hosts IP/CIDR entry (port-aware) → `denied_hosts[i]`; private without
   *     an allowed IP/CIDR entry containing it (port ignored for lifting) → `builtin.private`;
   *  4. allow with the stage 1 rule, dialing the first IPv4 address (else the first address).
   * Reasons name the class ("resolves to a cloud metadata address"), never the resolved address.
   */
  decideResolved(name: string, port: number, addresses: readonly IpAddress[]): ResolvedDecision {
    const parsed = parseHost(name);
    if (!parsed.ok) return deny('builtin.invalid-host', `${JSON.stringify(name)}: ${parsed.error}`);
    const stage1 = this.decide(parsed.host, port);
    if (!stage1.allow) return stage1;
    if (parsed.host.kind === 'ip') return { ...stage1, dial: parsed.host.ip };

    const hostText = parsed.host.name;
    if (addresses.length === 0) return deny('builtin.invalid-host', `${hostText} did not resolve to any address`);
    const subject: Subject = { phrase: `${hostText} resolves to`, revealsAddress: false };
    for (const ip of addresses) {
      const refused = this.checkAddress(ip, classifyAddress(ip), port, subject);
      if (refused !== null) return refused;
    }
    const dial = addresses.find((ip) => ip.family === 4) ?? (addresses[0]);
    return { ...stage1, dial };
  }

  /**
   * DNS channel: the name may be resolved when `decide` allows it on some port: the default ports, every port
   * an entry names, and under allow-all one port no denied entry names. When none allows, the most specific
   * refusal is returned (a built-in or denied_hosts rule before `network_policy`/`port`).
   */
  decideName(name: string): Decision {
    const parsed = parseHost(name);
    if (!parsed.ok) return deny('builtin.invalid-host', `${JSON.stringify(name)}: ${parsed.error}`);
    let refusal: Deny | null = null;
    for (const port of this.candidatePorts) {
      const decision = this.decide(parsed.host, port);
      if (decision.allow) return decision;
      if (refusal === null || (isFallbackRule(refusal.rule) && !isFallbackRule(decision.rule))) refusal = decision;
    }
    return refusal ?? deny('network_policy', `${hostToString(parsed.host)} is not in sandbox.allowed_hosts`);
  }

  /**
   * DNS channel: may this address be handed out as an answer for an allowed name? Stage 2's per-address rules
   * without a port (only port-less denied entries apply). An allowed answer reports the allowed entry that lifts
   * it, else `network_policy` (the name's own decision is what allowed the query).
   */
  decideAnswer(ip: IpAddress): Decision {
    const classification = classifyAddress(ip);
    const refused = this.checkAddress(ip, classification, null, { phrase: 'the answer is', revealsAddress: false });
    if (refused !== null) return refused;
    const lifting = this.allowed.match({ kind: 'ip', ip }, allowForms(ip), null).hostMatches[0];
    if (lifting !== undefined) return allow(lifting.rule, `the answer is covered by ${lifting.rule}`);
    return allow('network_policy', `the answer is ${withArticle(classification.cls)} address`);
  }
}

function isFallbackRule(rule: RuleId): boolean {
  return rule === 'network_policy' || rule === 'port';
}

function builtinNameDenial(name: string): Deny | null {
  if (METADATA_NAMES.has(name)) return deny('builtin.cloud-metadata', `${name} is a cloud metadata name (always denied)`);
  if (LOOPBACK_NAMES.has(name) || name.endsWith('.localhost')) {
    return deny('builtin.loopback', `${name} is a loopback name (always denied)`);
  }
  return null;
}

/** Compiles a config; throws an Error naming `allowed_hosts[i]` / `denied_hosts[i]` and the entry if one is invalid. */
export function compilePolicy(cfg: PolicyConfig): Policy {
  return new CompiledPolicy(cfg);
}

/** Canonical form of a client address, so `::ffff:172.17.0.2` (dual-stack sockets) finds `172.17.0.2`. */
function clientKey(client: string): string {
  const ip = parseIp(client);
  if (ip === null) return client;
  return (unmapIpv4(ip) ?? ip).text;
}

/** One policy for every client, with per-sandbox overrides keyed by client address. */
export class StaticPolicyTable implements PolicyTable {
  private readonly perClient = new Map<string, Policy>();

  constructor(private readonly defaultPolicy: Policy) {}

  forClient(client: string): Policy {
    return this.perClient.get(client) ?? this.perClient.get(clientKey(client)) ?? this.defaultPolicy;
  }

  set(client: string, policy: Policy): void {
    this.perClient.set(clientKey(client), policy);
  }

  delete(client: string): boolean {
    return this.perClient.delete(clientKey(client));
  }
}
