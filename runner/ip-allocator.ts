import type Dockerode from 'dockerode';

/** A network's inspect, as far as the address choice reads it: its running members and their addresses. */
export interface NetworkMembers {
  readonly Containers?: Readonly<Record<string, { readonly IPv4Address?: string }>>;
}

export const networkMembers = (docker: Dockerode, network: string): Promise<NetworkMembers> => docker.getNetwork(network).inspect();

/**
 * Picks an unused address for a new sandbox so the gateway can be told who it is before it starts. Random
 * within .10–.250 so concurrent runners rarely collide; a collision fails the create, and the caller retries.
 * `membersNow`, when it is given and holds an inspect, spares the round trip; null reads the network now.
 */
export async function freeSandboxIp(docker: Dockerode, network: string, subnetPrefix: string, membersNow?: Promise<NetworkMembers | null>): Promise<string> {
  const info = (await membersNow) ?? (await networkMembers(docker, network));
  const used = new Set(Object.values(info.Containers ?? {}).map((c) => (c.IPv4Address ?? '').split('/')[0]));
  const free: string[] = [];
  for (let host = 10; host <= 250; host++) {
    const ip = `${subnetPrefix}.${host}`;
    if (!used.has(ip)) free.push(ip);
  }
  if (free.length === 0) throw new Error(`no free address left on ${network}: 241 sandboxes are running`);
  return free[Math.floor(Math.random() * free.length)];
}

export function isAddressConflict(err: unknown): boolean {
  return /address already in use|already allocated/i.test((err as Error).message ?? '');
}
