import type { AddressInfo, Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { createAuditSink } from '../src/audit/sink.js';
import type { AuditSink } from '../src/audit/types.js';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError } from '../src/errors.js';
import { createConnector } from './connector.js';
import { createControlServer, unusedExit } from './control-server.js';
import { GatewayPolicies } from './gateway-policies.js';
import { SandboxRegistry, type SandboxRegistration, type SandboxTraffic } from './sandbox-registry.js';
import { createDnsServer } from './dns-server.js';
import { tcpRelay, tcpRelayOf, type TcpRelay, type TcpRelayKind } from './tcp-relay.js';
import { datagramIoOf, type DatagramIoKind } from './udp-batch.js';
import { createHttpProxyServer } from './http-proxy.js';
import { OpenConnections } from './open-connections.js';
import { UpstreamResolver } from './resolver.js';
import { createSocks5Server } from './socks5.js';
import type { ConnectionSteer, Resolver } from './types.js';

export interface GatewayOptions {
  readonly config: SandboxConfig;
  readonly log: Logger;
  /** Defaults to `logging.audit_trail` (or stdout when unset). */
  readonly audit?: AuditSink;
  readonly resolver?: Resolver;
  /** Unix socket on which the runner registers sandboxes (`proxy/control-server.ts`). */
  readonly controlSocket?: string;
  /** Called once no runner has been connected to the control socket for `gateway.exit_when_unused` (if set). */
  readonly onUnused?: () => void;
  /** Sandboxes and host addresses in force before the first connection (a cluster worker started late). */
  readonly sandboxes?: readonly SandboxRegistration[];
  readonly hostAddresses?: readonly string[];
  /**
   * A cluster worker's say over each connection its TCP fronts accept, before anything is read: true when it
   * handed the connection to another worker. `busy` counts this process's open connections that are not idle
   * (`busyConnections`), this one included.
   */
  readonly steer?: (front: TcpFront, socket: Socket, busy: number) => boolean;
  /** Told the busy connections whenever they may have changed (a cluster worker publishes them to the others). */
  readonly publishBusy?: (busy: number) => void;
  /** How tunnels reach their upstream; by default `CLAWBOX_TCP_RELAY`'s choice (the native relay where built). */
  readonly tcpRelay?: TcpRelayKind;
}

/** The gateway's TCP fronts, the ones a cluster steers (DNS over UDP is the lead's where it is batched). */
export type TcpFront = 'http' | 'socks';

export interface GatewayAddresses {
  readonly http: AddressInfo;
  readonly socks: AddressInfo;
  readonly dns: AddressInfo;
}

export interface RunningGateway {
  readonly addresses: GatewayAddresses;
  /** How the DNS front reads and answers UDP: in batches, or through node:dgram (and its log says why). */
  readonly dnsIo: DatagramIoKind;
  /** How CONNECT and SOCKS5 tunnels reach their upstream: the native relay, or node:net (and its log says why). */
  readonly tcpRelay: TcpRelayKind;
  /** The table the gateway decides with; the runner adds per-sandbox policies to it. */
  readonly policies: GatewayPolicies;
  /** Swaps in the policy of a new config (listeners and the audit destination stay as they are). */
  reload(config: SandboxConfig): void;
  /** Gives one sandbox (by its address) its own policy: the config's lists plus the registration's. */
  registerSandbox(registration: SandboxRegistration): void;
  /** The host's addresses, denied unless allowed exactly (the runner sends them: a container cannot see them). */
  setHostAddresses(addresses: readonly string[]): void;
  /** Drops a sandbox's policy and returns what it did. */
  unregisterSandbox(client: string): SandboxTraffic;
  /**
   * Open connections (the TCP fronts', and the control socket's in one process) less the idle ones, for the
   * cluster's accept steering; idle as of the last `sampleActivity`.
   */
  readonly busyConnections: number;
  /** Looks at which open connections moved bytes since the last call (a pass over all of them). */
  sampleActivity(): void;
  /** Starts or stops accepting on the TCP fronts, keeping every open connection (a cluster's standby worker). */
  setAccepting(accepting: boolean): Promise<void>;
  /** Serves a connection another worker accepted and handed over. */
  adopt(front: TcpFront, socket: Socket): void;
  /**
   * Stops or resumes reading DNS queries over UDP (a cluster's standby: with batched reads, one reader per shared
   * socket measured cheaper per query than two, `proxy/udp-batch.ts`). Answers to queries read go out either way.
   */
  setDnsReading(on: boolean): void;
  /** Stops accepting, closes every open connection after `graceMs`, closes the audit trail. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { config, log } = options;
  const gw = config.gateway;
  // The environment's choices first: a bad value is refused before anything is opened.
  const relayKind = options.tcpRelay ?? tcpRelayOf(process.env.CLAWBOX_TCP_RELAY);
  const datagramIo = datagramIoOf(process.env.CLAWBOX_DNS_IO);
  const configuredPorts = [gw.http.port, gw.socks.port, gw.dns.port].filter((p) => p !== 0);
  const policies = new GatewayPolicies(config, configuredPorts);
  const trail =
    options.audit ??
    createAuditSink({
      destination: config.logging.audit_trail ?? 1,
      level: config.logging.level,
      enabled: config.logging.enabled,
      onWriteError: (err) => log.error({ err: (err as NodeJS.ErrnoException).code ?? err.message }, 'audit trail write failed; connections are refused until it works'),
    });
  const registry = new SandboxRegistry();
  const audit = registry.auditThrough(trail);
  if (options.hostAddresses && options.hostAddresses.length > 0) policies.setHostAddresses(options.hostAddresses);
  for (const sandbox of options.sandboxes ?? []) registry.add(policies.register(sandbox));
  const resolver =
    options.resolver ??
    (gw.upstream_dns ? new UpstreamResolver(gw.upstream_dns) : UpstreamResolver.fromResolvConf());
  const relay = nativeRelayUnless(relayKind, log);
  const connector = createConnector({
    policies,
    resolver,
    audit,
    connectTimeoutMs: gw.connect_timeout,
    idleTimeoutMs: gw.idle_timeout,
    tcpRelay: relay,
  });

  const openSockets = new OpenConnections(relay === null ? undefined : (socket) => relay.bytesMovedBy(socket), options.publishBusy);
  const steer = options.steer;
  // A connection another worker handed over (`adopt`) is served here, never steered again: the lead can get one of
  // its own back from the primary when no standby is left, and would otherwise pass it round again.
  let adopting = false;
  const steerFor = (front: TcpFront): { steer?: ConnectionSteer } =>
    steer
      ? {
          steer: (socket: Socket) => {
            if (adopting || !steer(front, socket, openSockets.busy + 1)) return false;
            openSockets.leaving(socket);
            return true;
          },
        }
      : {};
  const frontOptions = { connector, audit, log, handshakeTimeoutMs: gw.handshake_timeout };
  const httpFront = createHttpProxyServer({
    ...frontOptions,
    maxHeaderSize: gw.max_header_size,
    idleTimeoutMs: gw.idle_timeout,
    ...steerFor('http'),
  });
  const http = httpFront.server;
  const socks = createSocks5Server({ ...frontOptions, ...steerFor('socks') });
  const dns = createDnsServer({ policies, resolver, audit, log, host: gw.dns.host, port: gw.dns.port, datagramIo });
  for (const server of [http, socks]) openSockets.track(server);

  let dnsAddress: AddressInfo;
  let dnsIo: DatagramIoKind;
  let httpAddress: AddressInfo;
  let socksAddress: AddressInfo;
  try {
    httpAddress = await listen(http, gw.http.host, gw.http.port, 'sandbox.gateway.http');
    socksAddress = await listen(socks, gw.socks.host, gw.socks.port, 'sandbox.gateway.socks');
    ({ udp: dnsAddress, io: dnsIo } = await dns.listen());
  } catch (err) {
    http.close();
    socks.close();
    httpFront.dispose();
    await dns.close().catch(() => undefined);
    resolver.close();
    if (!options.audit) await trail.close();
    throw err instanceof ClawboxError
      ? err
      : new ClawboxError('LISTEN_FAILED', `cannot listen on sandbox.gateway.dns ${gw.dns.host}:${gw.dns.port}: ${String(err)}`, { cause: err });
  }
  policies.setListenerPorts([httpAddress.port, socksAddress.port, dnsAddress.port]);

  const registerSandbox = (registration: SandboxRegistration): void => {
    registry.add(policies.register(registration));
  };
  const unregisterSandbox = (client: string): SandboxTraffic => {
    policies.unregister(client);
    return registry.remove(client);
  };
  const setHostAddresses = (addresses: readonly string[]): void => {
    policies.setHostAddresses(addresses);
  };
  const control = options.controlSocket
    ? await createControlServer(
        options.controlSocket,
        { register: registerSandbox, unregister: unregisterSandbox, setHostAddresses },
        log,
        unusedExit(gw.exit_when_unused, options.onUnused),
      )
    : null;
  // Runners' control connections are closed with the rest at shutdown: that is how a runner learns the gateway went.
  if (control) openSockets.track(control);

  const fronts = [
    { server: http, at: gw.http, key: 'sandbox.gateway.http' },
    { server: socks, at: gw.socks, key: 'sandbox.gateway.socks' },
  ] as const;
  let closing: Promise<void> | null = null;
  return {
    addresses: { http: httpAddress, socks: socksAddress, dns: dnsAddress },
    dnsIo,
    tcpRelay: relay === null ? 'node' : 'native',
    get busyConnections(): number {
      return openSockets.busy;
    },
    sampleActivity: () => openSockets.sampleActivity(),
    async setAccepting(accepting: boolean): Promise<void> {
      for (const { server, at, key } of fronts) {
        if (closing || server.listening === accepting) continue;
        // As first listened: a cluster worker gets the primary's shared socket back by these arguments.
        if (accepting) await listen(server, at.host, at.port, key);
        else server.close();
      }
    },
    setDnsReading: (on: boolean) => dns.setUdpReading(on),
    adopt(front: TcpFront, socket: Socket): void {
      if (closing) {
        socket.destroy();
        return;
      }
      adopting = true; // the front's connection handler runs within this emit
      try {
        (front === 'http' ? http : socks).emit('connection', socket);
      } finally {
        adopting = false;
      }
    },
    policies,
    reload: (next: SandboxConfig) => policies.reload(next),
    registerSandbox,
    setHostAddresses,
    unregisterSandbox,
    close(graceMs = 2000): Promise<void> {
      closing ??= (async () => {
        const stopped = Promise.all([closeServer(http), closeServer(socks), dns.close(), control ? closeServer(control) : undefined]);
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
        await Promise.race([stopped, deadline]);
        if (openSockets.size > 0) log.info({ open: openSockets.size }, 'closing connections still open at shutdown');
        openSockets.destroyAll();
        await stopped;
        httpFront.dispose();
        resolver.close();
        if (!options.audit) await trail.close();
      })();
      return closing;
    },
  };
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

/** The native relay where wanted and available; null (node:net) otherwise, with the reason in the log. */
function nativeRelayUnless(prefer: TcpRelayKind, log: Logger): TcpRelay | null {
  if (prefer === 'node') return null;
  const relay = tcpRelay();
  if (typeof relay !== 'string') return relay;
  log.warn({ why: relay }, 'tunnels: relayed through node:net, not natively');
  return null;
}
