/**
 * Topping the warm pool up after a sandbox was taken. A library caller (a long-lived platform) refills in its own
 * process. The CLI hands the refill to a detached clawbox process, so that `clawbox run` exits when its tool is
 * done instead of waiting for the next sandbox to start (a Docker start, about 250 ms here).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { childProcess } from './child-process.js';
import { KernelLogCursor } from './direct-attempts.js';
import { sweepLeftoversOnce } from './gc.js';
import { LABEL_POOL_EXPIRES, LABEL_POOL_KERNEL_LOG, LABEL_POOL_KEY, labelsFor } from './labels.js';
import { poolDir, WarmPool, type PoolRole } from './pool.js';
import { processAlive } from './process-alive.js';
import { createStartedSandbox, type SandboxNetwork } from './sandbox-container.js';

/** What one kind of entry is topped up to: `size` of `shape`, waiting under `key`. */
interface Entries {
  readonly key: string;
  readonly shape: Dockerode.ContainerCreateOptions;
  readonly size: number;
}

/** Everything a refill needs, as JSON: what a detached helper is given on its stdin. */
export interface RefillJob {
  readonly stateDir: string;
  readonly key: string;
  readonly shape: Dockerode.ContainerCreateOptions;
  readonly network: SandboxNetwork;
  readonly size: number;
  readonly idleTimeoutMs: number;
  /** How long the detached helper then stays up as a resident runner (src/cli/resident-runner.ts); 0: it exits. */
  readonly runnerIdleMs: number;
  /** Network holders to keep ready beside the pool (network-holder.ts), waiting as long as its sandboxes; none if absent. */
  readonly holders?: Entries;
}

/**
 * Tops the pool up to `size` ready sandboxes for `key` (created, started, waiting in the launcher), then the network
 * holders to theirs. Crash leftovers are swept first: a run that takes a pooled sandbox leaves that to its refill.
 */
export async function refillPool(docker: Dockerode, job: RefillJob): Promise<void> {
  await sweepLeftoversOnce(docker, job.stateDir);
  await topUp(docker, job, 'pool', job);
  if (job.holders !== undefined) await topUp(docker, job, 'holder', job.holders);
}

async function topUp(docker: Dockerode, job: RefillJob, role: PoolRole, { key, shape, size }: Entries): Promise<void> {
  if (size <= 0) return;
  const missing = size - (await new WarmPool(docker, job.stateDir, role).available(key));
  for (let i = 0; i < missing; i++) {
    await createStartedSandbox(
      docker,
      job.network,
      shape,
      labelsFor(role, { [LABEL_POOL_KEY]: key, [LABEL_POOL_EXPIRES]: String(Date.now() + job.idleTimeoutMs) }),
      {
        labelsOnceAddressed: async (): Promise<Readonly<Record<string, string>>> => {
          const bookmark = await KernelLogCursor.bookmarkNow();
          return bookmark === null ? {} : { [LABEL_POOL_KERNEL_LOG]: bookmark };
        },
      },
    );
  }
}

/**
 * While a detached helper works, a marker named by its pid sits in the pool's directory. The parent writes it
 * (so it exists before the parent exits), the helper removes it when done; a marker whose pid is gone is stale.
 */
const MARKER = /^refill-(\d+)\.pid$/;
export const markerPath = (stateDir: string, pid: number): string => join(poolDir(stateDir), `refill-${pid}.pid`);

/**
 * Starts `clawbox pool-refill` (`entry` is the CLI script this process runs) detached, hands it the job on its
 * stdin, and resolves once the job is handed over: the caller may then exit.
 */
export function startDetachedRefill(job: RefillJob, entry: string): Promise<void> {
  const { spawn } = childProcess();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry, 'pool-refill'], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    child.once('error', () => resolve()); // no helper: the next run starts cold and refills then
    if (child.pid !== undefined) {
      mkdirSync(poolDir(job.stateDir), { recursive: true, mode: 0o700 });
      writeFileSync(markerPath(job.stateDir, child.pid), String(child.pid));
    }
    child.stdin?.once('error', () => resolve());
    child.stdin?.end(JSON.stringify(job), () => resolve());
    child.unref();
  });
}

/** The helper's side: the refill, then its marker goes. */
export async function runRefillJob(docker: Dockerode, job: RefillJob): Promise<void> {
  try {
    await refillPool(docker, job);
  } finally {
    rmSync(markerPath(job.stateDir, process.pid), { force: true });
  }
}

/** Waits until no detached refill helper is at work (stale markers are removed), for at most `limitMs`. */
export async function waitForRefillHelpers(stateDir: string, limitMs = 60_000): Promise<void> {
  const until = Date.now() + limitMs;
  while (refillHelpersWorking(stateDir) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 25));
}

/** Whether a detached refill helper is at work now; the markers of helpers that died are removed on the way. */
export function refillHelpersWorking(stateDir: string): boolean {
  let names: string[];
  try {
    names = readdirSync(poolDir(stateDir));
  } catch {
    return false; // no pool directory: no helper ever ran
  }
  let working = false;
  for (const name of names) {
    const pid = MARKER.exec(name)?.[1];
    if (pid === undefined) continue;
    if (processAlive(Number(pid))) working = true;
    else rmSync(markerPath(stateDir, Number(pid)), { force: true });
  }
  return working;
}
