/** Helpers shared by the TCP scenarios: run a load against a target and measure the proxy's CPU around it. */
import { cpuSeconds, sysSeconds } from '../lib/procfs.js';
import { progress } from '../lib/exec.js';
import { errorsOf, runLoadgen, type LoadgenArgs, type LoadgenResult } from '../lib/loadgen.js';
import { sleep } from '../lib/net.js';
import { na, val, type Cell, type Failed, type Target } from '../model.js';

export interface Measured {
  readonly result: LoadgenResult;
  /** CPU seconds the proxy's process tree used during the load; null for direct. */
  readonly proxyCpu: number | null;
  /** The kernel's part of proxyCpu (stime). */
  readonly proxySys: number | null;
}

export async function measure(target: Target, args: Omit<LoadgenArgs, 'proto' | 'proxy'>, limitMs: number): Promise<Measured> {
  const before = target.pid ? cpuSeconds(target.pid) : 0;
  const sysBefore = target.pid ? sysSeconds(target.pid) : 0;
  const results = await runLoadgen({ ...args, proto: target.proto, ...(target.proxy ? { proxy: target.proxy } : {}) }, limitMs);
  const proxyCpu = target.pid ? cpuSeconds(target.pid) - before : null;
  const proxySys = target.pid ? sysSeconds(target.pid) - sysBefore : null;
  const result = results.at(-1)!;
  const dead = target.exitReason?.() ?? null;
  if (dead !== null) throw new Error(`proxy exited: ${dead}`);
  if (result.ok === 0) throw new Error(`nothing worked: ${JSON.stringify(result.errors)}`);
  // Let sockets of the previous run drain, so runs do not overlap in the kernel.
  await sleep(300);
  return { result, proxyCpu, proxySys };
}

/** Runs `fn` for each usable target, in order, turning a failure into an n/a cell instead of an abort. */
export async function forEachTarget<T>(
  scenario: string,
  targets: readonly Target[],
  fn: (t: Target) => Promise<T>,
): Promise<Map<string, T | Failed>> {
  const out = new Map<string, T | Failed>();
  for (const t of targets) {
    if (t.na !== undefined) continue;
    try {
      out.set(t.label, await fn(t));
    } catch (err) {
      const failed = (err instanceof Error ? err.message : String(err)).slice(0, 160);
      progress(`${scenario} ${t.label}: failed: ${failed}`);
      out.set(t.label, { failed });
    }
  }
  return out;
}

/**
 * Runs `rounds` rounds over the targets, interleaved: every target's first, then every target's second in reverse
 * order, and so on, so that drift on this shared machine spreads over all of them. A target that fails is left out
 * of the rounds after.
 */
export async function interleavedRounds<T>(
  scenario: string,
  targets: readonly Target[],
  rounds: number,
  run: (t: Target, round: number) => Promise<T>,
): Promise<{ readonly results: ReadonlyMap<string, readonly T[]>; readonly failed: ReadonlyMap<string, Failed> }> {
  const results = new Map<string, T[]>();
  const failed = new Map<string, Failed>();
  for (let round = 0; round < rounds; round += 1) {
    const order = (round % 2 === 0 ? targets : [...targets].reverse()).filter((t) => !failed.has(t.label));
    const got = await forEachTarget(scenario, order, (t) => run(t, round));
    for (const [label, r] of got) {
      if (isFailed(r)) failed.set(label, r);
      else results.set(label, [...(results.get(label) ?? []), r]);
    }
  }
  for (const label of failed.keys()) results.delete(label);
  return { results, failed };
}

export function isFailed(v: unknown): v is Failed {
  return typeof v === 'object' && v !== null && 'failed' in v;
}

/**
 * Cells for one metric: n/a for targets that did not start or failed, else what `pick` gives: a figure, an n/a cell
 * with its own reason, or null for no cell (it prints as "—").
 */
export function cellsOf<T>(targets: readonly Target[], results: ReadonlyMap<string, T | Failed>, pick: (r: T) => number | Cell | null): Record<string, Cell> {
  const cells: Record<string, Cell> = {};
  for (const t of targets) {
    const r = results.get(t.label);
    if (t.na !== undefined) cells[t.label] = na(t.na);
    else if (r === undefined) cells[t.label] = na('not run');
    else if (isFailed(r)) cells[t.label] = na(r.failed);
    else {
      const v = pick(r);
      if (typeof v === 'number') cells[t.label] = val(v);
      else if (v !== null) cells[t.label] = v;
    }
  }
  return cells;
}

export function describe(label: string, r: LoadgenResult): string {
  const errs = errorsOf(r);
  return `${label}: ok ${r.ok} in ${r.elapsed_s.toFixed(1)} s (${Math.round(r.per_s)}/s) p50 ${(r.p50_us / 1000).toFixed(2)} ms p99 ${(r.p99_us / 1000).toFixed(2)} ms${errs ? ` errors ${JSON.stringify(r.errors)}` : ''} loadgen cpu ${(r.cpu_share * 100).toFixed(0)}%`;
}
