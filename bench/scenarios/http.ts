/**
 * Plain HTTP: absolute-URI GETs with keep-alive, 64 clients; two rounds per target, the second reversed.
 *
 * Each target's first round comes right after a short untimed round of the same load, as for the tunnel rate: a
 * gateway serves for hours. Without it the first round measured a path the process had not run yet: in two runs of
 * `npm run bench -- http` clawbox's p99 was 12.0 and 9.2 ms in its first round, 6.2 and 6.8 in its second (squid's
 * 5.7 and 5.5, then 5.6 and 5.2). The untimed round's own rate and p99 stay in the table.
 */
import { progress } from '../lib/exec.js';
import { HTTP, hostPort } from '../lib/addresses.js';
import type { BenchParams, Failed, ScenarioResult, Target } from '../model.js';
import { cellsOf, describe, interleavedRounds, measure, type Measured } from './common.js';

export async function plainHttp(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const warmUps = new Map<string, Measured>();
  const load = (t: Target, seconds: number): Promise<Measured> =>
    measure(t, { mode: 'http', target: hostPort(HTTP), options: { conc: p.httpConc, duration: seconds } }, (seconds + 40) * 1000);
  const { results, failed } = await interleavedRounds('http', targets, 2, async (t, round) => {
    if (round === 0 && p.httpWarmUpS > 0) {
      const w = await load(t, p.httpWarmUpS);
      progress(`http warm-up ${describe(t.label, w.result)}`);
      warmUps.set(t.label, w);
    }
    const m = await load(t, p.httpRoundS);
    progress(`http round ${round + 1} ${describe(t.label, m.result)}`);
    if (m.result.ok === 0) throw new Error(`no request succeeded ${JSON.stringify(m.result.errors)}`);
    return m;
  });
  type Totals = { ok: number; elapsed: number; cpu: number | null; p99: number; share: number; errors: number; warmUp: Measured | null };
  const totals = new Map<string, Totals | Failed>(failed);
  for (const [label, ms] of results) {
    const sum = (f: (m: Measured) => number): number => ms.reduce((s, m) => s + f(m), 0);
    const elapsed = sum((m) => m.result.elapsed_s);
    totals.set(label, {
      ok: sum((m) => m.result.ok),
      elapsed,
      cpu: ms[0].proxyCpu === null ? null : sum((m) => m.proxyCpu ?? 0),
      p99: sum((m) => m.result.p99_us) / ms.length,
      share: sum((m) => m.result.cpu_s) / elapsed,
      errors: sum((m) => m.result.errors.connect + m.result.errors.reply + m.result.errors.data + m.result.errors.timeout),
      warmUp: warmUps.get(label) ?? null,
    });
  }
  const scenario = 'plain HTTP';
  return {
    rows: [
      { scenario, metric: 'requests/s', unit: 'count/s', better: 'higher', cells: cellsOf(targets, totals, (r) => r.ok / r.elapsed) },
      { scenario, metric: 'p99 latency', unit: 'ms', better: 'lower', cells: cellsOf(targets, totals, (r) => r.p99 / 1000) },
      { scenario, metric: 'requests/s, warm-up (untimed)', unit: 'count/s', better: 'higher', cells: cellsOf(targets, totals, (r) => (r.warmUp === null ? null : r.warmUp.result.per_s)) },
      { scenario, metric: 'p99 latency, warm-up (untimed)', unit: 'ms', better: 'lower', cells: cellsOf(targets, totals, (r) => (r.warmUp === null ? null : r.warmUp.result.p99_us / 1000)) },
      { scenario, metric: 'proxy CPU per request', unit: 'us', better: 'lower', cells: cellsOf(targets, totals, (r) => (r.cpu === null ? null : (r.cpu / r.ok) * 1e6)) },
      { scenario, metric: 'failed requests', unit: 'fraction', better: 'lower', cells: cellsOf(targets, totals, (r) => r.errors / Math.max(1, r.ok + r.errors)) },
      { scenario, metric: 'loadgen CPU share', unit: 'share', better: 'none', cells: cellsOf(targets, totals, (r) => r.share) },
    ],
    raw: Object.fromEntries(totals),
  };
}
