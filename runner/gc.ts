import { readdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { ignoringGone } from './docker-client.js';
import { DEFAULT_STATE_DIR, EGRESS_NETWORK, SANDBOX_NETWORK } from './environment.js';
import { POOL_ROLES, sweepPoolEntries, WarmPool } from './pool.js';
import { removeAllRules } from './firewall.js';
import { containerNameOf, removeIdleGateways } from './gateway-container.js';
import { LABEL_OWNER_HOST, LABEL_OWNER_PID, labelFilter } from './labels.js';
import { isRefillHelper, processAlive } from './process-alive.js';
import { poolDir, RUNNER_PID_FILE, RUNNER_SOCKET_FILE } from './state-dir.js';

/**
 * Removes sandboxes whose runner is gone (crashed, killed with SIGKILL): their owner pid on this host no longer
 * exists. Runs before a run creates a sandbox and in every pool refill (`sweepLeftoversOnce`), so a crash never
 * leaves a sandbox behind for long.
 */
export async function sweepLeftovers(docker: Dockerode): Promise<string[]> {
  const containers = await docker.listContainers({ all: true, filters: labelFilter('sandbox') });
  const removed: string[] = [];
  for (const info of containers) {
    const pid = Number(info.Labels[LABEL_OWNER_PID]);
    // Only this host's runners can be checked for life; another host's sandboxes are its own business.
    if (info.Labels[LABEL_OWNER_HOST] !== hostname()) continue;
    if (Number.isInteger(pid) && processAlive(pid)) continue;
    await ignoringGone(() => docker.getContainer(info.Id).remove({ force: true, v: true }));
    removed.push(info.Id.slice(0, 12));
  }
  return removed;
}

let lastSweep = 0;

/**
 * `sweepLeftovers` and the sweeps of the pool and of the network holders, at most every 30 s per process (listing
 * containers is not free): before a run creates a sandbox, and in each pool refill.
 */
export async function sweepLeftoversOnce(docker: Dockerode, stateDir: string): Promise<void> {
  if (Date.now() - lastSweep < 30_000) return;
  lastSweep = Date.now();
  await sweepLeftovers(docker);
  await sweepPoolEntries(docker, stateDir);
}

export interface GcReport {
  readonly sandboxes: string[];
  /** Gateway containers removed: those that served nobody, or with `all` every one. */
  readonly gateways: string[];
  readonly networks: string[];
  readonly firewallRules: number;
  /** Resident runners told to stop (`all` only): their pids. */
  readonly runners: number[];
}

/**
 * `clawbox gc`: leftover sandboxes and gateways that serve nobody always; with `all`, also every gateway, the
 * networks and the firewall rules (the next run recreates them).
 */
export async function collectGarbage(docker: Dockerode, all: boolean, stateDir = DEFAULT_STATE_DIR): Promise<GcReport> {
  const sandboxes = [...(await sweepLeftovers(docker)), ...(await sweepPoolEntries(docker, stateDir))];
  if (!all) {
    const idle = await removeIdleGateways(docker, stateDir, SANDBOX_NETWORK);
    return { sandboxes, gateways: idle.map((g) => g.name), networks: [], firewallRules: 0, runners: [] };
  }
  // First, so that no runner refills the pool being emptied below; a run one is serving still ends as usual.
  const runners = stopResidentRunners(stateDir);
  for (const role of POOL_ROLES) sandboxes.push(...(await new WarmPool(docker, stateDir, role).removeAll()));
  const running = await docker.listContainers({ all: true, filters: labelFilter('sandbox') });
  if (running.length > 0) {
    throw new Error(`${running.length} sandbox(es) of live runners are still running; stop them first or run 'clawbox gc' without --all`);
  }
  const gateways: string[] = [];
  for (const info of await docker.listContainers({ all: true, filters: labelFilter('gateway') })) {
    await ignoringGone(() => docker.getContainer(info.Id).remove({ force: true }));
    gateways.push(containerNameOf(info));
  }
  const networks: string[] = [];
  for (const name of [SANDBOX_NETWORK, EGRESS_NETWORK]) {
    const found = await docker.getNetwork(name).inspect().catch(() => null);
    if (!found) continue;
    await ignoringGone(() => docker.getNetwork(name).remove());
    networks.push(name);
  }
  const firewallRules = await removeAllRules();
  return { sandboxes, gateways, networks, firewallRules, runners };
}

/**
 * SIGTERM to every resident runner of this state directory (src/cli/resident-runner.ts), found by its socket
 * (also one a newer runner replaced in the pid file); the pid files go, and the sockets of runners that died.
 */
export function stopResidentRunners(stateDir: string = DEFAULT_STATE_DIR): number[] {
  let names: string[];
  try {
    names = readdirSync(poolDir(stateDir));
  } catch {
    return []; // no pool directory: no runner ever ran
  }
  const stopped: number[] = [];
  for (const name of names) {
    const file = join(poolDir(stateDir), name);
    const pid = Number(RUNNER_SOCKET_FILE.exec(name)?.[1]);
    if (RUNNER_PID_FILE.test(name)) rmSync(file, { force: true });
    else if (pid > 0 && isRefillHelper(pid)) {
      process.kill(pid, 'SIGTERM');
      stopped.push(pid);
    } else if (pid > 0) rmSync(file, { force: true });
  }
  return stopped;
}

