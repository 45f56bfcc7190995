import type { SandboxConfig } from '../src/config/schema.js';
import { parseHost } from '../src/net/host.js';
import { compilePolicy } from '../src/policy/policy.js';
import type { PolicyConfig } from '../src/policy/config.js';
import type { Policy, PolicyTable } from '../src/policy/types.js';
import { localAddresses } from './local-addresses.js';
import type { SandboxRegistration } from './sandbox-registry.js';

/**
 * Every policy the gateway decides with: the config's (for clients nobody registered) and one per registered
 * sandbox (the config's lists plus the sandbox's). Anything that changes an input (a reload, the host's
 * addresses, the listeners' ports) recompiles them all before swapping any in, so a bad input changes nothing;
 * each connection keeps the policy it was decided with.
 */
export class GatewayPolicies implements PolicyTable {
  private base: SandboxConfig;
  private listenerPorts: readonly number[];
  private hostAddresses: readonly string[] = [];
  private fallback: Policy;
  private readonly sandboxes = new Map<string, { readonly registration: SandboxRegistration; readonly policy: Policy }>();

  constructor(base: SandboxConfig, listenerPorts: readonly number[]) {
    this.base = base;
    this.listenerPorts = listenerPorts;
    this.fallback = this.compile(base);
  }

  forClient(client: string): Policy {
    return this.sandboxes.get(client)?.policy ?? this.fallback;
  }

  /** A new config from a reload; throws (changing nothing) when an entry is invalid. */
  reload(base: SandboxConfig): void {
    this.recompile({ base });
  }

  /**
   * The host's addresses as the runner sees them (a gateway in a container cannot list them itself). False when
   * they are the ones the policies have: each run's runner sends them, and they seldom change, so nothing is
   * recompiled then (every policy, in every worker: most of a warm start's wait for its gateway).
   */
  setHostAddresses(addresses: readonly string[]): boolean {
    const canonical = addresses.map((raw) => {
      const parsed = parseHost(raw, { brackets: 'forbidden' });
      if (!parsed.ok || parsed.host.kind !== 'ip') throw new Error(`host address ${JSON.stringify(raw)} is not an IP address`);
      return parsed.host.ip.text;
    });
    if (canonical.length === this.hostAddresses.length && canonical.every((ip, i) => ip === this.hostAddresses[i])) return false;
    this.recompile({ hostAddresses: canonical });
    return true;
  }

  setListenerPorts(ports: readonly number[]): void {
    this.recompile({ listenerPorts: ports });
  }

  /** Returns the registration with its client address in canonical form. */
  register(registration: SandboxRegistration): SandboxRegistration {
    const client = parseHost(registration.client, { brackets: 'forbidden' });
    if (!client.ok || client.host.kind !== 'ip') throw new Error(`sandbox client ${JSON.stringify(registration.client)} is not an IP address`);
    const canonical = { ...registration, client: client.host.ip.text };
    this.sandboxes.set(canonical.client, { registration: canonical, policy: this.compile(this.base, canonical) });
    return canonical;
  }

  unregister(client: string): void {
    this.sandboxes.delete(client);
  }

  private recompile(change: { base?: SandboxConfig; hostAddresses?: readonly string[]; listenerPorts?: readonly number[] }): void {
    const previous = { base: this.base, hostAddresses: this.hostAddresses, listenerPorts: this.listenerPorts };
    Object.assign(this, change);
    try {
      const fallback = this.compile(this.base);
      const sandboxes = [...this.sandboxes.values()].map(({ registration }) => ({ registration, policy: this.compile(this.base, registration) }));
      this.fallback = fallback;
      for (const entry of sandboxes) this.sandboxes.set(entry.registration.client, entry);
    } catch (err) {
      Object.assign(this, previous);
      throw err;
    }
  }

  private compile(base: SandboxConfig, registration?: SandboxRegistration): Policy {
    const config: PolicyConfig = {
      networkPolicy: registration?.network_policy ?? base.network_policy,
      allowedHosts: [...base.allowed_hosts, ...(registration?.allowed_hosts ?? [])],
      deniedHosts: [...base.denied_hosts, ...(registration?.denied_hosts ?? [])],
      defaultPorts: registration?.default_ports ?? base.gateway.default_ports,
      selfAddresses: localAddresses([...base.gateway.host_addresses, ...this.hostAddresses]),
      listenerPorts: this.listenerPorts,
    };
    return compilePolicy(config);
  }
}
