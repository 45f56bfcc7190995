import type Dockerode from 'dockerode';
import { ClawboxError } from '../src/errors.js';
import { ignoringGone } from './docker-client.js';
import { freeSandboxIp, isAddressConflict } from './ip-allocator.js';
import { LABEL_GATEWAY_IP } from './labels.js';

/** The sandbox network as a container needs it: its name, and the gateway's address (which fixes the subnet). */
export interface SandboxNetwork {
  readonly name: string;
  readonly gatewayIp: string;
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
 *
 * `labelsOnceAddressed` adds labels computed after the address was found free: the network lists only running
 * containers, so by then the address's last holder had stopped and sends nothing more (the kernel log bookmark,
 * labels.ts).
 */
export async function createStartedSandbox(
  docker: Dockerode,
  network: SandboxNetwork,
  shape: Dockerode.ContainerCreateOptions,
  labels: Record<string, string>,
  labelsOnceAddressed: (ip: string) => Promise<Readonly<Record<string, string>>> = () => Promise.resolve({}),
): Promise<{ container: Dockerode.Container; ip: string }> {
  const prefix = network.gatewayIp.split('.').slice(0, 3).join('.');
  for (let attempt = 0; attempt < 5; attempt++) {
    const ip = await freeSandboxIp(docker, network.name, prefix);
    const late = await labelsOnceAddressed(ip);
    let created: Dockerode.Container | null = null;
    try {
      const container = await docker.createContainer({
        ...shape,
        Labels: { ...shape.Labels, ...labels, ...late, [LABEL_GATEWAY_IP]: network.gatewayIp },
        NetworkingConfig: { EndpointsConfig: { [network.name]: { IPAMConfig: { IPv4Address: ip } } } },
      });
      created = container;
      await container.start();
      return { container, ip };
    } catch (err) {
      const failed = created;
      if (failed !== null) await ignoringGone(() => failed.remove({ force: true, v: true }));
      if (!isAddressConflict(err)) throw err;
    }
  }
  throw new ClawboxError('SANDBOX_FAILED', 'could not start a sandbox at a free address after 5 tries');
}
