/**
 * The gateway containers: one per set of gateway settings (its config text and image), each at its own address on
 * the sandbox network. Runs whose settings differ get a gateway each instead of restarting one gateway under each
 * other's sandboxes; runs with the same settings share one.
 */
import { statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type Dockerode from 'dockerode';
import { GATEWAY_COMMAND_LINE_V8_FLAGS } from '../proxy/heap-tuning.js';
import { ClawboxError } from '../src/errors.js';
import { ignoringGone } from './docker-client.js';
import { GatewayControl } from './gateway-control.js';
import { GATEWAY_IMAGE } from './images.js';
import { isAddressConflict } from './ip-allocator.js';
import { LABEL_GATEWAY_IP, labelFilter, labelsFor } from './labels.js';

export const GATEWAY_DIGEST_LABEL = 'dev.clawbox.gateway-digest';
/** The gateway's listeners inside its container. */
export const GATEWAY_PORTS = { http: 3128, socks: 1080, dns: 53 } as const;
/**
 * Gateway addresses are .2 to .7 of the sandbox subnet: the /29 the firewall lets sandboxes reach (.0 is the
 * network, .1 the host, whose input from the bridge is dropped). Sandboxes take .10 and up.
 */
const GATEWAY_HOSTS = [2, 3, 4, 5, 6, 7] as const;
export const gatewayBlock = (prefix: string): string => `${prefix}.0/29`;
/** A gateway nobody has asked for this long, and that no container uses, may give its address to another. */
const IDLE_BEFORE_EVICTION_MS = 60_000;
/** A gateway created this recently and not yet started is another runner's start in progress. */
const STARTING_MS = 15_000;

export const gatewayContainerName = (digest: string): string => `clawbox-gateway-${digest}`;

/** A listed container's name as `docker ps` shows it (the API puts a slash before it). */
export const containerNameOf = (info: Dockerode.ContainerInfo): string => (info.Names[0] ?? info.Id).replace(/^\//, '');

/** Where one gateway's config, control socket and resolv.conf live on the host. */
export function gatewayDir(stateDir: string, digest: string): string {
  return join(stateDir, 'gateway', digest);
}
export const controlSocketOf = (dir: string): string => join(dir, 'control', 'control.sock');

/**
 * Marks the gateway as asked for now: its address is not given away while runs keep asking for it. Best effort: a
 * gateway without a mark is only given away when all addresses are held and no container uses it.
 */
export function markGatewayUsed(dir: string): void {
  const stamp = join(dir, 'used');
  const now = new Date();
  try {
    utimesSync(stamp, now, now);
  } catch {
    try {
      writeFileSync(stamp, '');
    } catch {
      // the state directory went away under us; the next full check makes it again
    }
  }
}

export interface GatewaySpec {
  readonly stateDir: string;
  readonly digest: string;
  readonly auditTrail: string;
  readonly sandboxNetwork: string;
  readonly egressNetwork: string;
  /** The sandbox subnet's first three octets. */
  readonly prefix: string;
}

/**
 * The address of the running gateway for `spec.digest`, starting it if needed. Another runner starting the same
 * gateway at the same moment is waited for; an address taken at the same moment by another gateway is retried.
 */
export async function ensureGatewayContainer(docker: Dockerode, spec: GatewaySpec, progress: (step: string) => void): Promise<string> {
  const name = gatewayContainerName(spec.digest);
  for (let attempt = 0; attempt < 50; attempt++) {
    const existing = await docker.getContainer(name).inspect().catch(() => null);
    if (existing?.State.Running && existing.Config.Labels[GATEWAY_DIGEST_LABEL] === spec.digest) {
      const ip = addressOn(existing, spec.sandboxNetwork);
      if (ip !== null) return ip;
    }
    if (existing && existing.State.Status === 'created' && Date.now() - Date.parse(existing.Created) < STARTING_MS) {
      await new Promise((resolve) => setTimeout(resolve, 200)); // another runner is starting it right now
      continue;
    }
    const restarted = existing && (await restartInPlace(docker, existing, spec, progress));
    if (restarted) return restarted;
    if (existing) {
      // Stopped, crashed past its restart policy, or half made by a runner that died: start it afresh.
      progress('gateway: restarting');
      await ignoringGone(() => docker.getContainer(name).remove({ force: true }));
    } else {
      progress('gateway: starting');
    }
    const ip = await freeGatewayAddress(docker, spec);
    try {
      await startGatewayContainer(docker, name, ip, spec);
      return ip;
    } catch (err) {
      // 409: another runner is creating this gateway right now; the next look finds it. An address conflict:
      // another gateway took the address since we looked; the next look picks another.
      if ((err as { statusCode?: number }).statusCode !== 409 && !isAddressConflict(err)) throw err;
    }
  }
  throw new ClawboxError('SANDBOX_FAILED', `the gateway container ${name} could not be started (see 'docker ps -a')`);
}

/**
 * A gateway that exited by itself (`exit_when_unused`: status 0, so its restart policy left it stopped) starts
 * again where it was: its address is the one pooled sandboxes were made with (their resolv.conf, their proxy
 * variables). Null when that cannot be: another gateway took the address meanwhile, or the container is not one
 * that exited cleanly; the caller then makes it afresh.
 */
async function restartInPlace(
  docker: Dockerode,
  existing: Dockerode.ContainerInspectInfo,
  spec: GatewaySpec,
  progress: (step: string) => void,
): Promise<string | null> {
  const ip = addressOn(existing, spec.sandboxNetwork);
  if (existing.State.Status !== 'exited' || existing.State.ExitCode !== 0 || existing.Config.Labels[GATEWAY_DIGEST_LABEL] !== spec.digest || !ip) {
    return null;
  }
  progress('gateway: starting again');
  try {
    await docker.getContainer(existing.Id).start();
    return ip;
  } catch (err) {
    // 304: started by another runner just now. Anything else (the address taken): made afresh by the caller.
    return (err as { statusCode?: number }).statusCode === 304 ? ip : null;
  }
}

type Endpoints = Readonly<Record<string, { IPAddress?: string; IPAMConfig?: { IPv4Address?: string } | null } | undefined>> | undefined;

/** The address on `network` that a container asked for (kept while it is stopped), else its current one; '' for none. */
function endpointAddress(networks: Endpoints, network: string): string {
  const endpoint = networks?.[network];
  return endpoint?.IPAMConfig?.IPv4Address || endpoint?.IPAddress || '';
}

const listedAddressOn = (info: Dockerode.ContainerInfo, network: string): string => endpointAddress(info.NetworkSettings?.Networks, network);

/** The container's address on `network`, or null before it has one. */
export function addressOn(info: Dockerode.ContainerInspectInfo, network: string): string | null {
  const ip = endpointAddress(info.NetworkSettings.Networks, network);
  return ip === '' ? null : ip;
}

/** A gateway address no container holds; when all are held, one whose gateway serves nobody is freed. */
async function freeGatewayAddress(docker: Dockerode, spec: GatewaySpec): Promise<string> {
  const [info, gateways] = await Promise.all([
    docker.getNetwork(spec.sandboxNetwork).inspect() as Promise<{ Containers?: Record<string, { IPv4Address?: string }> }>,
    docker.listContainers({ all: true, filters: labelFilter('gateway') }),
  ]);
  const held = new Set(Object.values(info.Containers ?? {}).map((c) => (c.IPv4Address ?? '').split('/')[0]));
  // A gateway that exited unused keeps its address for when it starts again (its pooled sandboxes use it).
  for (const gateway of gateways) held.add(listedAddressOn(gateway, spec.sandboxNetwork));
  const free = GATEWAY_HOSTS.map((host) => `${spec.prefix}.${host}`).filter((ip) => !held.has(ip));
  // Random among the free ones, so two runners starting different gateways at once rarely pick the same.
  if (free.length > 0) return free[Math.floor(Math.random() * free.length)];

  const [freed] = await removeIdleGateways(docker, spec.stateDir, spec.sandboxNetwork, 1);
  if (freed !== undefined) return freed.ip;
  throw new ClawboxError('SANDBOX_FAILED', `all ${GATEWAY_HOSTS.length} gateway addresses are held by gateways that are in use`, {
    details: [
      'each set of gateway settings (sandbox.logging, sandbox.gateway) in use at once gets its own gateway',
      "runs with the same settings share one; 'clawbox gc --all' removes them all once no sandbox runs",
    ],
  });
}

/**
 * Removes up to `limit` gateways that serve nobody: no sandbox or pool entry names their address, and no run has
 * asked for them for IDLE_BEFORE_EVICTION_MS. `clawbox gc` removes them all; a new gateway frees one address.
 */
export async function removeIdleGateways(
  docker: Dockerode,
  stateDir: string,
  sandboxNetwork: string,
  limit = Infinity,
): Promise<{ readonly name: string; readonly ip: string }[]> {
  const removed: { name: string; ip: string }[] = [];
  for (const gateway of await docker.listContainers({ all: true, filters: labelFilter('gateway') })) {
    if (removed.length >= limit) break;
    const ip = listedAddressOn(gateway, sandboxNetwork);
    if (!(await servesNobody(docker, gateway, ip, stateDir))) continue;
    await ignoringGone(() => docker.getContainer(gateway.Id).remove({ force: true }));
    removed.push({ name: containerNameOf(gateway), ip });
  }
  return removed;
}

async function servesNobody(docker: Dockerode, gateway: Dockerode.ContainerInfo, ip: string, stateDir: string): Promise<boolean> {
  if (ip !== '') {
    const users = await docker.listContainers({ all: true, filters: { label: [`${LABEL_GATEWAY_IP}=${ip}`] } });
    if (users.length > 0) return false;
  }
  const digest = gateway.Labels[GATEWAY_DIGEST_LABEL];
  if (digest === undefined) return true;
  try {
    return Date.now() - statSync(join(gatewayDir(stateDir, digest), 'used')).mtimeMs > IDLE_BEFORE_EVICTION_MS;
  } catch {
    return true; // never asked for from this state directory
  }
}

async function startGatewayContainer(docker: Dockerode, name: string, ip: string, spec: GatewaySpec): Promise<void> {
  const auditDir = dirname(spec.auditTrail);
  const dir = gatewayDir(spec.stateDir, spec.digest);
  const container = await docker.createContainer({
    name,
    Image: GATEWAY_IMAGE,
    Entrypoint: ['/usr/local/bin/node', ...GATEWAY_COMMAND_LINE_V8_FLAGS, '/opt/clawbox/dist/src/cli/main.js'],
    // Root in the container but with no capability at all: it may write the root-owned control and audit
    // directories mounted in, nothing more. Port 53 is bound thanks to the namespaced sysctl below.
    User: '0:0',
    Cmd: [
      'proxy',
      '--config', '/etc/clawbox/config.yml',
      '--http', `0.0.0.0:${GATEWAY_PORTS.http}`,
      '--socks', `0.0.0.0:${GATEWAY_PORTS.socks}`,
      '--dns', `0.0.0.0:${GATEWAY_PORTS.dns}`,
      '--control', '/run/clawbox/control.sock',
    ],
    Labels: labelsFor('gateway', { [GATEWAY_DIGEST_LABEL]: spec.digest }),
    HostConfig: {
      NetworkMode: spec.egressNetwork,
      Binds: [
        `${join(dir, 'config.yml')}:/etc/clawbox/config.yml:ro`,
        `${join(dir, 'control')}:/run/clawbox:rw`,
        `${auditDir}:${auditDir}:rw`,
      ],
      // A crash is restarted; a clean exit (exit_when_unused) is not: the next run starts it again (restartInPlace).
      RestartPolicy: { Name: 'on-failure' },
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      Sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
      SecurityOpt: ['no-new-privileges:true'],
      Memory: 512 * 1024 * 1024,
      PidsLimit: 256,
      Init: true,
    },
  });
  try {
    await docker.getNetwork(spec.sandboxNetwork).connect({ Container: container.id, EndpointConfig: { IPAMConfig: { IPv4Address: ip } } });
    await container.start();
  } catch (err) {
    await ignoringGone(() => container.remove({ force: true }));
    throw err;
  }
}

/**
 * The gateway's control connection, once it answers (its process takes a moment to listen after the start); null
 * when the container stopped meanwhile: one found running as it was exiting, unused (`exit_when_unused`), which the
 * caller starts again.
 */
export async function waitForControl(docker: Dockerode, dir: string, containerName: string): Promise<GatewayControl | null> {
  const path = controlSocketOf(dir);
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const control = await GatewayControl.open(path);
      await control.ping();
      return control;
    } catch (err) {
      lastError = err;
      if (attempt % 5 === 4) {
        const info = await docker.getContainer(containerName).inspect().catch(() => null);
        if (info?.State.Running !== true) return null;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new ClawboxError(
    'SANDBOX_FAILED',
    `the gateway container did not come up (control socket ${path}: ${(lastError as Error).message}); see 'docker logs ${containerName}'`,
  );
}
