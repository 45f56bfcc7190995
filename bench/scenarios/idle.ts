/**
 * Idle capacity: open N tunnels, hold them, measure the proxy's memory, then check every one still echoes.
 * Memory is PSS summed over the process tree (a forked proxy is not counted once per child); the delta from
 * just before the tunnels opened, divided by the tunnels open. Runs first, on fresh processes, so heap grown
 * by earlier scenarios cannot hide the growth.
 */
import { progress } from '../lib/exec.js';
import { ECHO, PAYLOAD, hostPort } from '../lib/addresses.js';
import { runLoadgen, type LoadgenResult } from '../lib/loadgen.js';
import { memory, type Memory } from '../lib/procfs.js';
import { sleep } from '../lib/net.js';
import { na, type BenchParams, type Cell, type ScenarioResult, type Target } from '../model.js';
import { cellsOf, forEachTarget } from './common.js';

interface IdleResult {
  readonly before: Memory;
  readonly held: Memory;
  readonly open: LoadgenResult;
  readonly check: LoadgenResult;
}

export async function idleCapacity(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const proxied = targets.filter((t) => t.pid !== undefined || t.na !== undefined);
  const got = await forEachTarget('idle', proxied, async (t): Promise<IdleResult> => {
    const pid = t.pid!;
    const before = memory(pid);
    let held: Memory = before;
    const results = await runLoadgen(
      { mode: 'idle', proto: t.proto, ...(t.proxy ? { proxy: t.proxy } : {}), target: hostPort(ECHO), options: { count: p.idleTunnels, payload: PAYLOAD, hold: 60 } },
      300_000,
      async () => {
        await sleep(1500); // let the proxy settle (lazy allocations, log flushes)
        held = memory(pid);
      },
    );
    const open = results.find((r) => r.phase === 'open');
    const check = results.find((r) => r.phase === 'check');
    if (!open || !check) throw new Error('loadgen did not report both phases');
    progress(`idle ${t.label}: ${open.open}/${p.idleTunnels} open in ${open.elapsed_s.toFixed(1)} s, PSS +${((held.pss - before.pss) / 1024 / 1024).toFixed(1)} MiB, RSS +${((held.rss - before.rss) / 1024 / 1024).toFixed(1)} MiB, ${check.ok} still echo`);
    await sleep(1000);
    return { before, held, open, check };
  });
  const scenario = `idle, ${p.idleTunnels} tunnels`;
  const perTunnel = (r: IdleResult, delta: number): number | Cell | null => memoryPerTunnel(delta, r.open.open);
  return {
    rows: [
      { scenario, metric: 'memory per tunnel (PSS)', unit: 'KB', better: 'lower', cells: cellsOf(proxied, got, (r) => perTunnel(r, r.held.pss - r.before.pss)) },
      { scenario, metric: 'memory per tunnel (RSS)', unit: 'KB', better: 'lower', cells: cellsOf(proxied, got, (r) => perTunnel(r, r.held.rss - r.before.rss)) },
      { scenario, metric: 'tunnels opened', unit: 'fraction', better: 'higher', cells: cellsOf(proxied, got, (r) => r.open.open / p.idleTunnels) },
      { scenario, metric: 'still echoing after hold', unit: 'fraction', better: 'higher', cells: cellsOf(proxied, got, (r) => r.check.ok / p.idleTunnels) },
    ],
    raw: Object.fromEntries(got),
  };
}

/**
 * KB per held tunnel from the process tree's growth over the hold. A second target in one process (a -socks one)
 * can find memory its first target's hold left and free it while it holds its own: growth of zero or less says
 * nothing per tunnel, and a ratio of it would read as a win, so the cell says why it has no figure.
 */
export function memoryPerTunnel(deltaBytes: number, tunnels: number): number | Cell | null {
  if (tunnels === 0) return null;
  if (deltaBytes <= 0) return na(`the process's memory fell by ${(-deltaBytes / 2 ** 20).toFixed(1)} MiB during the hold (what its first target's hold left, freed)`);
  return deltaBytes / tunnels / 1024;
}
