/**
 * The warm pool: sandboxes created and started ahead of time, waiting in the launcher for their one command.
 * Docker is the pool's only state (labelled containers), so pooled sandboxes outlive the process that made them
 * and any runner on this host can take one; a lock file per container (O_EXCL) makes taking atomic.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { ignoringGone } from './docker-client.js';
import { LABEL_POOL_EXPIRES, LABEL_POOL_KERNEL_LOG, LABEL_POOL_KEY, labelFilter } from './labels.js';
import { processAlive } from './process-alive.js';
import { poolDir } from './state-dir.js';

export interface PooledSandbox {
  readonly container: Dockerode.Container;
  readonly ip: string;
  /** Where the kernel log stood just before the sandbox was created (labels.ts, LABEL_POOL_KERNEL_LOG). */
  readonly kernelLogBookmark: string | undefined;
}

export { poolDir } from './state-dir.js';

/** The engine's states of a container that will not run again by itself. */
const STOPPED = new Set(['exited', 'dead']);

/** The kinds of entries kept this way: pooled sandboxes and network holders. */
export const POOL_ROLES = ['pool', 'holder'] as const;
export type PoolRole = (typeof POOL_ROLES)[number];

/** `sweep` for the pool and the network holders alike; their short ids. */
export async function sweepPoolEntries(docker: Dockerode, stateDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const role of POOL_ROLES) removed.push(...(await new WarmPool(docker, stateDir, role).sweep()));
  return removed;
}

export class WarmPool {
  private readonly lockDir: string;

  constructor(
    private readonly docker: Dockerode,
    stateDir: string,
    private readonly role: PoolRole = 'pool',
  ) {
    this.lockDir = poolDir(stateDir);
    mkdirSync(this.lockDir, { recursive: true, mode: 0o700 });
  }

  /** Claims a ready sandbox for `key`, or null when none is ready (the caller starts one cold). */
  async take(key: string): Promise<PooledSandbox | null> {
    const now = Date.now();
    for (const info of await this.ready(key)) {
      if (Number(info.Labels[LABEL_POOL_EXPIRES]) <= now) continue;
      if (!this.lock(info.Id)) continue;
      const ip = Object.values(info.NetworkSettings.Networks)[0]?.IPAddress ?? '';
      return { container: this.docker.getContainer(info.Id), ip, kernelLogBookmark: info.Labels[LABEL_POOL_KERNEL_LOG] };
    }
    return null;
  }

  /** How many unclaimed, unexpired sandboxes wait for `key`. */
  async available(key: string): Promise<number> {
    const now = Date.now();
    return (await this.ready(key)).filter((i) => Number(i.Labels[LABEL_POOL_EXPIRES]) > now && !this.isLocked(i.Id)).length;
  }

  /** Removes every entry of this kind, taken or not (`clawbox gc --all`). Returns their short ids. */
  async removeAll(): Promise<string[]> {
    const removed: string[] = [];
    for (const info of await this.docker.listContainers({ all: true, filters: labelFilter(this.role) })) {
      await this.discard(info.Id);
      removed.push(info.Id.slice(0, 12));
    }
    return removed;
  }

  /** Removes an entry that was taken (or never used) and its lock. */
  async discard(id: string): Promise<void> {
    await ignoringGone(() => this.docker.getContainer(id).remove({ force: true, v: true }));
    rmSync(this.lockPath(id), { force: true });
  }

  /**
   * Removes entries that expired, that stopped, or whose taker died mid-run (its pid is in the lock). One being
   * started (created, its start not yet done) is left alone until it expires.
   * Returns their short ids.
   */
  async sweep(): Promise<string[]> {
    const now = Date.now();
    const removed: string[] = [];
    for (const info of await this.docker.listContainers({ all: true, filters: labelFilter(this.role) })) {
      const taker = this.taker(info.Id);
      // Not 'created': a refill's entry is listed so between its create and its start, and one whose start never
      // came goes when it expires.
      const stale =
        taker === null
          ? STOPPED.has(info.State) || Number(info.Labels[LABEL_POOL_EXPIRES]) <= now // exited on its own, or unused too long
          : !processAlive(taker); // its taker died mid-run
      if (!stale) continue;
      if (taker === null && !this.lock(info.Id)) continue; // someone took it this instant
      await this.discard(info.Id);
      removed.push(info.Id.slice(0, 12));
    }
    return removed;
  }

  private async ready(key: string): Promise<Dockerode.ContainerInfo[]> {
    const filters = labelFilter(this.role);
    filters.label.push(`${LABEL_POOL_KEY}=${key}`);
    const list = await this.docker.listContainers({ filters: { ...filters, status: ['running'] } });
    return list.sort((a, b) => a.Created - b.Created);
  }

  private lockPath(id: string): string {
    return join(this.lockDir, `${id}.lock`);
  }

  private lock(id: string): boolean {
    try {
      writeFileSync(this.lockPath(id), String(process.pid), { flag: 'wx' });
      return true;
    } catch {
      return false;
    }
  }

  private isLocked(id: string): boolean {
    return this.taker(id) !== null;
  }

  private taker(id: string): number | null {
    try {
      const pid = Number(readFileSync(this.lockPath(id), 'utf8'));
      return Number.isInteger(pid) ? pid : null;
    } catch {
      return null;
    }
  }
}
