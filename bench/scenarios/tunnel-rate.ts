/**
 * Tunnel rate: 64 clients each loop {tunnel, 64-byte echo, close}. Two rounds per target, the second in reverse
 * order, so drift on this shared machine (±15 %) spreads over all targets instead of favouring the first.
 * Each target's first round comes right after a short untimed round of the same load: a gateway serves for hours,
 * and without it the first round measured whatever state the previous scenario or target left: in runs KK / LL
 * clawbox's first round cost 287 / 350 µs of CPU per tunnel against 230 / 198 µs in its second (the excess user
 * time: a JIT not yet warm on this path), dante's 417 / 408 against 327 / 369 (the excess kernel time), squid's
 * 238 / 235 against 227 / 228. The warm-up's own CPU per tunnel stays in the table.
 */
import { progress } from '../lib/exec.js';
import { ECHO, PAYLOAD, hostPort } from '../lib/addresses.js';
import type { BenchParams, Failed, ScenarioResult, Target } from '../model.js';
import { cellsOf, describe, interleavedRounds, measure, type Measured } from './common.js';

export interface RateTotals {
  readonly ok: number;
  readonly elapsed: number;
  readonly proxyCpu: number | null;
  readonly proxySys: number | null;
  readonly p50: number;
  readonly p99: number;
  readonly loadgenShare: number;
  readonly errors: number;
  readonly rounds: readonly Measured[];
  /** The untimed round before the first, for its cold cost; null where there was none. */
  readonly warmUp: Measured | null;
}

export async function rateRounds(targets: readonly Target[], p: BenchParams, rounds = 2): Promise<Map<string, RateTotals | Failed>> {
  const warmUps = new Map<string, Measured>();
  const load = (t: Target, seconds: number): Promise<Measured> =>
    measure(t, { mode: 'rate', target: hostPort(ECHO), options: { conc: p.rateConc, duration: seconds, payload: PAYLOAD } }, (seconds + 40) * 1000);
  const { results, failed } = await interleavedRounds('tunnel rate', targets, rounds, async (t, round) => {
    if (round === 0 && p.rateWarmUpS > 0) {
      const w = await load(t, p.rateWarmUpS);
      progress(`tunnel rate warm-up ${describe(t.label, w.result)}`);
      warmUps.set(t.label, w);
    }
    const m = await load(t, p.rateRoundS);
    progress(`tunnel rate round ${round + 1} ${describe(t.label, m.result)}`);
    return m;
  });
  const out = new Map<string, RateTotals | Failed>(failed);
  for (const [label, ms] of results) {
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
      warmUp: warmUps.get(label) ?? null,
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
      { scenario, metric: 'proxy CPU per tunnel, warm-up (untimed)', unit: 'us', better: 'lower', cells: cellsOf(targets, totals, (r) => (r.warmUp === null || r.warmUp.proxyCpu === null ? null : (r.warmUp.proxyCpu / r.warmUp.result.ok) * 1e6)) },
      { scenario, metric: 'kernel share of proxy CPU', unit: 'share', better: 'none', cells: cellsOf(targets, totals, (r) => (r.proxyCpu === null || r.proxySys === null || r.proxyCpu === 0 ? null : r.proxySys / r.proxyCpu)) },
      { scenario, metric: 'failed tunnels', unit: 'fraction', better: 'lower', cells: cellsOf(targets, totals, (r) => r.errors / Math.max(1, r.ok + r.errors)) },
      { scenario, metric: 'loadgen CPU share', unit: 'share', better: 'none', cells: cellsOf(targets, totals, (r) => r.loadgenShare) },
    ],
    raw: Object.fromEntries(totals),
  };
}
