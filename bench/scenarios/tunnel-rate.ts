/**
 * Tunnel rate: 64 clients each loop {tunnel, 64-byte echo, close}. Two rounds per target, the second in reverse
 * order, so drift on this shared machine (±15 %) spreads over all targets instead of favouring the first.
 */
import { progress } from '../lib/exec.js';
import { ECHO, PAYLOAD, hostPort } from '../lib/addresses.js';
import type { BenchParams, Failed, ScenarioResult, Target } from '../model.js';
import { cellsOf, describe, forEachTarget, measure, type Measured } from './common.js';

export interface RateTotals {
  readonly ok: number;
  readonly elapsed: number;
  readonly proxyCpu: number | null;
  readonly proxySys: number | null;
  readonly p50: number;
  readonly p99: number;
  readonly loadgenShare: number;
  readonly errors: number;
  readonly rounds: Measured[];
}

export async function rateRounds(targets: readonly Target[], p: BenchParams, rounds = 2): Promise<Map<string, RateTotals | Failed>> {
  const perTarget = new Map<string, Measured[]>();
  const failed = new Map<string, Failed>();
  for (let round = 0; round < rounds; round += 1) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    const got = await forEachTarget('tunnel rate', order.filter((t) => !failed.has(t.label)), async (t) => {
      const m = await measure(t, { mode: 'rate', target: hostPort(ECHO), options: { conc: p.rateConc, duration: p.rateRoundS, payload: PAYLOAD } }, (p.rateRoundS + 40) * 1000);
      progress(`tunnel rate round ${round + 1} ${describe(t.label, m.result)}`);
      return m;
    });
    for (const [label, m] of got) {
      if ('failed' in m) failed.set(label, m);
      else perTarget.set(label, [...(perTarget.get(label) ?? []), m]);
    }
  }
  const out = new Map<string, RateTotals | Failed>(failed);
  for (const [label, ms] of perTarget) {
    if (failed.has(label)) continue;
    const sum = (f: (m: Measured) => number): number => ms.reduce((s, m) => s + f(m), 0);
    const elapsed = sum((m) => m.result.elapsed_s);
    out.set(label, {
      ok: sum((m) => m.result.ok),
      elapsed,
      proxyCpu: ms[0].proxyCpu === null ? null : sum((m) => m.proxyCpu ?? 0),
      proxySys: ms[0].proxySys === null ? null : sum((m) => m.proxySys ?? 0),
      p50: sum((m) => m.result.p50_us) / ms.length,
      p99: sum((m) => m.result.p99_us) / ms.length,
      loadgenShare: sum((m) => m.result.cpu_s) / elapsed,
      errors: sum((m) => m.result.errors.connect + m.result.errors.reply + m.result.errors.data + m.result.errors.timeout),
      rounds: ms,
    });
  }
  return out;
}

export async function tunnelRate(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const totals = await rateRounds(targets, p);
  const scenario = 'tunnel rate';
  return {
    rows: [
      { scenario, metric: 'tunnels/s', unit: 'count/s', better: 'higher', cells: cellsOf(targets, totals, (r) => r.ok / r.elapsed) },
      { scenario, metric: 'p50 latency', unit: 'ms', better: 'lower', cells: cellsOf(targets, totals, (r) => r.p50 / 1000) },
      { scenario, metric: 'p99 latency', unit: 'ms', better: 'lower', cells: cellsOf(targets, totals, (r) => r.p99 / 1000) },
      { scenario, metric: 'proxy CPU per tunnel', unit: 'us', better: 'lower', cells: cellsOf(targets, totals, (r) => (r.proxyCpu === null ? null : (r.proxyCpu / r.ok) * 1e6)) },
      { scenario, metric: 'kernel share of proxy CPU', unit: 'share', better: 'none', cells: cellsOf(targets, totals, (r) => (r.proxyCpu === null || r.proxySys === null || r.proxyCpu === 0 ? null : r.proxySys / r.proxyCpu)) },
      { scenario, metric: 'failed tunnels', unit: 'fraction', better: 'lower', cells: cellsOf(targets, totals, (r) => r.errors / Math.max(1, r.ok + r.errors)) },
      { scenario, metric: 'loadgen CPU share', unit: 'share', better: 'none', cells: cellsOf(targets, totals, (r) => r.loadgenShare) },
    ],
    raw: Object.fromEntries(totals),
  };
}
