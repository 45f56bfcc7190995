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
 * Creates a sandbox container of `shape` at a free address of the sandbox network. The address is chosen here,
 * not by Docker at start, so that the gateway can be told about the sandbox before anything in it runs.
 *
 * `labelsOnceAddressed` adds labels computed after the address was found free: the network lists only running
 * containers, so by then the address's last holder had stopped and sends nothing more (the pool's kernel log
 * bookmark, labels.ts).
 */
export async function createSandbox(
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
    try {
      const container = await docker.createContainer({
        ...shape,
        Labels: { ...shape.Labels, ...labels, ...late, [LABEL_GATEWAY_IP]: network.gatewayIp },
        NetworkingConfig: { EndpointsConfig: { [network.name]: { IPAMConfig: { IPv4Address: ip } } } },
      });
      return { container, ip };
    } catch (err) {
      if (!isAddressConflict(err)) throw err;
    }
  }
  throw new ClawboxError('SANDBOX_FAILED', 'could not find a free sandbox address after 5 tries');
}

/**
 * `createSandbox`, then its start. The engine holds a container's address only from its start, so two runners that
 * found the same address free both create, and the later start fails ("Address already in use"): that container is
 * removed and made again at another address. A started sandbox waits in its launcher for its message, so nothing
 * of its tool runs before the caller has registered it with the gateway.
 */
export async function createStartedSandbox(
  docker: Dockerode,
  network: SandboxNetwork,
  shape: Dockerode.ContainerCreateOptions,
  labels: Record<string, string>,
  labelsOnceAddressed?: (ip: string) => Promise<Readonly<Record<string, string>>>,
): Promise<{ container: Dockerode.Container; ip: string }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const created = await createSandbox(docker, network, shape, labels, labelsOnceAddressed);
    try {
      await created.container.start();
      return created;
    } catch (err) {
      await ignoringGone(() => created.container.remove({ force: true, v: true }));
      if (!isAddressConflict(err)) throw err;
    }
  }
  throw new ClawboxError('SANDBOX_FAILED', 'could not start a sandbox at a free address after 5 tries');
}
