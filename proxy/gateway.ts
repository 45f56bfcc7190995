import { readFileSync } from 'node:fs';
import { endianness, networkInterfaces } from 'node:os';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { createAuditSink } from '../src/audit/sink.js';
import type { AuditSink } from '../src/audit/types.js';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError } from '../src/errors.js';
import { parseHost } from '../src/net/host.js';
import { compilePolicy } from '../src/policy/policy.js';
import type { PolicyConfig } from '../src/policy/config.js';
import type { Policy, PolicyTable } from '../src/policy/types.js';
import { createConnector } from './connector.js';
import { createControlServer } from './control-server.js';
import { SandboxRegistry, type SandboxRegistration, type SandboxTraffic } from './sandbox-registry.js';
import { createDnsServer } from './dns-server.js';
import { createHttpProxyServer } from './http-proxy.js';
import { UpstreamResolver } from './resolver.js';
import { createSocks5Server } from './socks5.js';
import type { Resolver } from './types.js';

export interface GatewayOptions {
  readonly config: SandboxConfig;
  readonly log: Logger;
  /** Defaults to `logging.audit_trail` (or stdout when unset). */
  readonly audit?: AuditSink;
  readonly resolver?: Resolver;
  /** Unix socket on which the runner registers sandboxes (`proxy/control-server.ts`). */
  readonly controlSocket?: string;
}

export interface GatewayAddresses {
  readonly http: AddressInfo;
  readonly socks: AddressInfo;
  readonly dns: AddressInfo;
}

export interface RunningGateway {
  readonly addresses: GatewayAddresses;
  /** The table the gateway decides with; the runner adds per-sandbox policies to it. */
  readonly policies: SwappablePolicyTable;
  /** Swaps in the policy of a new config (listeners and the audit destination stay as they are). */
  reload(config: SandboxConfig): void;
  /** Gives one sandbox (by its address) its own policy: the config's lists plus the registration's. */
  registerSandbox(registration: SandboxRegistration): void;
  /** Drops a sandbox's policy and returns what it did. */
  unregisterSandbox(client: string): SandboxTraffic;
  /** Stops accepting, closes every open connection after `graceMs`, closes the audit trail. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The default policy plus per-client (per-sandbox) policies. A reload swaps the default; every connection keeps
 * the policy it was decided with.
 */
export class SwappablePolicyTable implements PolicyTable {
  private fallback: Policy;
  private readonly byClient = new Map<string, Policy>();
  constructor(initial: Policy) {
    this.fallback = initial;
  }
  forClient(client: string): Policy {
    return this.byClient.get(client) ?? this.fallback;
  }
  replaceDefault(policy: Policy): void {
    this.fallback = policy;
  }
  setClient(client: string, policy: Policy): void {
    this.byClient.set(client, policy);
  }
  deleteClient(client: string): void {
    this.byClient.delete(client);
  }
}

/**
 * The host's and the gateway's own addresses: a sandbox must not reach services of the machine it runs on.
 * Link-local addresses are left out: they are denied by a built-in rule anyway, and every container start adds
 * one (a veth interface), which would make the list change all the time.
 */
export function localAddresses(extra: readonly string[] = []): string[] {
  const found = Object.values(networkInterfaces())
    .flat()
    .flatMap((info) => (info && !info.address.toLowerCase().startsWith('fe80:') ? [info.address] : []));
  const texts = [...found, ...defaultRouters(), ...extra].flatMap((raw) => {
    const parsed = parseHost(raw, { brackets: 'forbidden' });
    return parsed.ok && parsed.host.kind === 'ip' ? [parsed.host.ip.text] : [];
  });
  return [...new Set(texts)].sort();
}

/**
 * IPv4 default routers from /proc/net/route. Inside a container the default router is the host's bridge address,
 * which a gateway in a container cannot otherwise know is the host (docker-compose.yml runs it so).
 */
export function defaultRouters(routeTable = '/proc/net/route'): string[] {
  let text: string;
  try {
    text = readFileSync(routeTable, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === '00000000' && /^[0-9A-F]{8}$/i.test(fields[2] ?? '') && fields[2] !== '00000000')
    .map((fields) => {
      // The kernel prints the address as a host-order integer in hex.
      const bytes = [...Buffer.from(fields[2]!, 'hex')];
      return (endianness() === 'LE' ? bytes.reverse() : bytes).join('.');
    });
}

export function policyConfigOf(config: SandboxConfig, listenerPorts: readonly number[]): PolicyConfig {
  return {
    networkPolicy: config.network_policy,
    allowedHosts: config.allowed_hosts,
    deniedHosts: config.denied_hosts,
    defaultPorts: config.gateway.default_ports,
    selfAddresses: localAddresses(config.gateway.host_addresses),
    listenerPorts,
  };
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { config, log } = options;
  const gw = config.gateway;
  const configuredPorts = [gw.http.port, gw.socks.port, gw.dns.port].filter((p) => p !== 0);
  const policies = new SwappablePolicyTable(compilePolicy(policyConfigOf(config, configuredPorts)));
  const trail =
    options.audit ??
    createAuditSink({
      destination: config.logging.audit_trail ?? 1,
      level: config.logging.level,
      enabled: config.logging.enabled,
    });
  const registry = new SandboxRegistry();
  const audit = registry.auditThrough(trail);
  const resolver =
    options.resolver ??
    (gw.upstream_dns ? new UpstreamResolver(gw.upstream_dns) : UpstreamResolver.fromResolvConf());
  const connector = createConnector({
    policies,
    resolver,
    audit,
    connectTimeoutMs: gw.connect_timeout,
    idleTimeoutMs: gw.idle_timeout,
  });

  const http = createHttpProxyServer({
    connector,
    audit,
    log,
    maxHeaderSize: gw.max_header_size,
    handshakeTimeoutMs: gw.handshake_timeout,
    idleTimeoutMs: gw.idle_timeout,
  });
  const socks = createSocks5Server({ connector, audit, log, handshakeTimeoutMs: gw.handshake_timeout });
  const dns = createDnsServer({ policies, resolver, audit, log, host: gw.dns.host, port: gw.dns.port });
  const openSockets = new Set<Socket>();
  for (const server of [http, socks]) track(server, openSockets);

  let dnsAddress: AddressInfo;
  let httpAddress: AddressInfo;
  let socksAddress: AddressInfo;
  try {
    httpAddress = await listen(http, gw.http.host, gw.http.port, 'sandbox.gateway.http');
    socksAddress = await listen(socks, gw.socks.host, gw.socks.port, 'sandbox.gateway.socks');
    dnsAddress = (await dns.listen()).udp;
  } catch (err) {
    http.close();
    socks.close();
    await dns.close().catch(() => undefined);
    resolver.close();
    if (!options.audit) await trail.close();
    throw err instanceof ClawboxError
      ? err
      : new ClawboxError('LISTEN_FAILED', `cannot listen on sandbox.gateway.dns ${gw.dns.host}:${gw.dns.port}: ${String(err)}`, { cause: err });
  }
  const listenerPorts = [httpAddress.port, socksAddress.port, dnsAddress.port];
  let current = config;
  const registrations = new Map<string, SandboxRegistration>();
  const sandboxPolicy = (base: SandboxConfig, registration: SandboxRegistration): Policy =>
    compilePolicy(
      policyConfigOf(
        {
          ...base,
          network_policy: registration.network_policy ?? base.network_policy,
          allowed_hosts: [...base.allowed_hosts, ...registration.allowed_hosts],
          denied_hosts: [...base.denied_hosts, ...registration.denied_hosts],
          gateway: { ...base.gateway, default_ports: [...(registration.default_ports ?? base.gateway.default_ports)] },
        },
        listenerPorts,
      ),
    );
  policies.replaceDefault(compilePolicy(policyConfigOf(config, listenerPorts)));
  log.debug({ listenerPorts }, 'gateway policy compiled');

  const registerSandbox = (registration: SandboxRegistration): void => {
    const client = parseHost(registration.client, { brackets: 'forbidden' });
    if (!client.ok || client.host.kind !== 'ip') throw new Error(`sandbox client ${JSON.stringify(registration.client)} is not an IP address`);
    const canonical = { ...registration, client: client.host.ip.text };
    policies.setClient(canonical.client, sandboxPolicy(current, canonical));
    registrations.set(canonical.client, canonical);
    registry.add(canonical);
  };
  const unregisterSandbox = (client: string): SandboxTraffic => {
    policies.deleteClient(client);
    registrations.delete(client);
    return registry.remove(client);
  };
  const control = options.controlSocket
    ? await createControlServer(options.controlSocket, { register: registerSandbox, unregister: unregisterSandbox }, log)
    : null;

  let closing: Promise<void> | null = null;
  return {
    addresses: { http: httpAddress, socks: socksAddress, dns: dnsAddress },
    policies,
    reload(next: SandboxConfig): void {
      const fallback = compilePolicy(policyConfigOf(next, listenerPorts));
      const perSandbox = [...registrations.values()].map((r) => [r.client, sandboxPolicy(next, r)] as const);
      policies.replaceDefault(fallback);
      for (const [client, policy] of perSandbox) policies.setClient(client, policy);
      current = next;
    },
    registerSandbox,
    unregisterSandbox,
    close(graceMs = 2000): Promise<void> {
      closing ??= (async () => {
        const stopped = Promise.all([closeServer(http), closeServer(socks), dns.close(), control ? closeServer(control) : undefined]);
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
        await Promise.race([stopped, deadline]);
        if (openSockets.size > 0) log.info({ open: openSockets.size }, 'closing connections still open at shutdown');
        for (const socket of openSockets) socket.destroy();
        await stopped;
        resolver.close();
        if (!options.audit) await trail.close();
      })();
      return closing;
    },
  };
}

function track(server: Server, sockets: Set<Socket>): void {
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
}

function listen(server: Server, host: string, port: number, key: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ClawboxError('LISTEN_FAILED', `cannot listen on ${key} ${host}:${port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
