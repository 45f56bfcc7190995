import type Dockerode from 'dockerode';
import { ClawboxError } from '../src/errors.js';
import { createContainer, ignoringGone } from './docker-client.js';
import { freeSandboxIp, isAddressConflict, type NetworkMembers } from './ip-allocator.js';
import { LABEL_GATEWAY_IP, LABEL_NETWORK_HOLDER } from './labels.js';
import { joinedShape } from './network-holder.js';
import type { PooledSandbox } from './pool.js';

/** The sandbox network as a container needs it: its name, and the gateway's address (which fixes the subnet). */
export interface SandboxNetwork {
  readonly name: string;
  readonly gatewayIp: string;
}

/** What a caller adds to `createStartedSandbox` between finding an address free and starting the container. */
export interface CreateHooks {
  /**
   * Labels computed after the address was found free: the network lists only running containers, so by then the
   * address's last holder had stopped and sends nothing more (the pool's kernel log bookmark, labels.ts).
   */
  readonly labelsOnceAddressed?: (ip: string) => Promise<Readonly<Record<string, string>>>;
  /**
   * Work with the same condition that the container's labels need not carry (a cold run's own kernel log bookmark):
   * it runs while the engine creates the container, and the start waits for it.
   */
  readonly whileCreating?: (ip: string) => Promise<void>;
  /**
   * The network's members as read already (a cold run asks for them beside its first requests; null if that read
   * failed): the first address is picked from them. A retry after an address conflict reads them again.
   */
  readonly membersNow?: Promise<NetworkMembers | null>;
}

/**
 * Creates and starts a sandbox container of `shape` at a free address of the sandbox network. The address is
 * chosen here, not by Docker at start, so that the gateway can be told about the sandbox before anything in it
 * runs: a started sandbox waits in its launcher for its message, so nothing of its tool runs before the caller has
 * registered it.
 *
 * The engine holds an address only from a container's start, so two runners can find the same address free: the
 * later create or start fails with an address conflict, and that container is removed and made again at another
 * address.
 */
export async function createStartedSandbox(
  docker: Dockerode,
  network: SandboxNetwork,
  shape: Dockerode.ContainerCreateOptions,
  labels: Record<string, string>,
  hooks: CreateHooks = {},
): Promise<{ container: Dockerode.Container; ip: string }> {
  const prefix = network.gatewayIp.split('.').slice(0, 3).join('.');
  for (let attempt = 0; attempt < 5; attempt++) {
    const members = attempt === 0 ? hooks.membersNow : undefined;
    const ip = await freeSandboxIp(docker, network.name, prefix, members);
    const late = (await hooks.labelsOnceAddressed?.(ip)) ?? {};
    let created: Dockerode.Container | null = null;
    try {
      const creating = createContainer(docker, {
        ...shape,
        Labels: { ...shape.Labels, ...labels, ...late, [LABEL_GATEWAY_IP]: network.gatewayIp },
        NetworkingConfig: { EndpointsConfig: { [network.name]: { IPAMConfig: { IPv4Address: ip } } } },
      });
      const [made, beside] = await Promise.allSettled([creating, hooks.whileCreating?.(ip)]);
      if (made.status === 'rejected') throw made.reason;
      created = made.value;
      if (beside.status === 'rejected') throw beside.reason;
      await created.start();
      return { container: created, ip };
    } catch (err) {
      const failed = created;
      if (failed !== null) await ignoringGone(() => failed.remove({ force: true, v: true }));
      if (!isAddressConflict(err)) throw err;
    }
  }
  throw new ClawboxError('SANDBOX_FAILED', 'could not start a sandbox at a free address after 5 tries');
}

/**
 * Creates and starts a sandbox of `shape` in the network namespace of `holder` (network-holder.ts), at the holder's
 * address. Like `createStartedSandbox`, the started sandbox waits in its launcher; a failure removes it. Null when
 * the holder stopped or went after it was taken (`clawbox gc --all`, a killed process): the caller starts one cold.
 */
export async function createJoinedSandbox(
  docker: Dockerode,
  network: SandboxNetwork,
  holder: PooledSandbox,
  shape: Dockerode.ContainerCreateOptions,
  labels: Record<string, string>,
): Promise<{ container: Dockerode.Container; ip: string } | null> {
  let created: Dockerode.Container | null = null;
  try {
    const joined = joinedShape(shape, holder.container.id);
    created = await createContainer(docker, {
      ...joined,
      Labels: { ...joined.Labels, ...labels, [LABEL_GATEWAY_IP]: network.gatewayIp, [LABEL_NETWORK_HOLDER]: holder.container.id },
    });
    await created.start();
    return { container: created, ip: holder.ip };
  } catch (err) {
    const failed = created;
    if (failed !== null) await ignoringGone(() => failed.remove({ force: true, v: true }));
    const holderRuns = await holder.container.inspect().then(
      (info) => info.State.Running,
      () => false,
    );
    if (!holderRuns) return null;
    throw err;
  }
}
