import type Dockerode from 'dockerode';

/**
 * Picks an unused address for a new sandbox so the gateway can be told who it is before it starts. Random
 * within .10–.250 so concurrent runners rarely collide; a collision fails the create, and the caller retries.
 */
export async function freeSandboxIp(docker: Dockerode, network: string, subnetPrefix: string): Promise<string> {
  const info = (await docker.getNetwork(network).inspect()) as { Containers?: Record<string, { IPv4Address?: string }> };
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
