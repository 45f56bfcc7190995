/**
 * Latency at low load: one client, sequential tunnels (tunnel + 64-byte echo + close), nothing else running. Besides
 * the whole tunnel, its two parts: setup (the proxy's reply to CONNECT or SOCKS5: its decision, audit line and
 * dial) and exchange (the echo through the open tunnel: its data path). The direct column has no setup.
 *
 * Each target runs `latencyRounds` rounds of `latencyCount` tunnels, interleaved (every target's first round, then
 * every target's second, in reverse order, and so on), and each figure is the median of its rounds. One round's p99
 * and max follow what the two shared cores were doing in that second: the same build measured p99 from 0.99 to
 * 3.4 ms in rounds a minute apart (bench/README.md), so a single round ranked targets by the moment they ran.
 */
import { progress } from '../lib/exec.js';
import { percentile } from '../lib/stats.js';
import { ECHO, PAYLOAD, hostPort } from '../lib/addresses.js';
import type { LoadgenResult } from '../lib/loadgen.js';
import type { BenchParams, Failed, ScenarioResult, Target } from '../model.js';
import { cellsOf, describe, interleavedRounds, measure } from './common.js';

/** The median of a target's rounds, each figure on its own (the round with the median p99 need not have the median max). */
export interface LatencyFigures {
  readonly p50_us: number;
  readonly p99_us: number;
  readonly max_us: number;
  readonly setup_p50_us: number | null;
  readonly exchange_p50_us: number | null;
  readonly rounds: readonly LoadgenResult[];
}

function medianOrNull(values: readonly (number | null)[]): number | null {
  return values.some((v) => v === null) ? null : percentile(values as number[], 50);
}

function figuresOf(rounds: readonly LoadgenResult[]): LatencyFigures {
  return {
    p50_us: percentile(rounds.map((r) => r.p50_us), 50),
    p99_us: percentile(rounds.map((r) => r.p99_us), 50),
    max_us: percentile(rounds.map((r) => r.max_us), 50),
    setup_p50_us: medianOrNull(rounds.map((r) => r.setup_p50_us)),
    exchange_p50_us: medianOrNull(rounds.map((r) => r.exchange_p50_us)),
    rounds,
  };
}

function msOrNull(us: number | null): number | null {
  return us === null ? null : us / 1000;
}

export async function lowLoadLatency(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const { results, failed } = await interleavedRounds('latency', targets, p.latencyRounds, async (t, round) => {
    const m = await measure(t, { mode: 'rate', target: hostPort(ECHO), options: { conc: 1, count: p.latencyCount, payload: PAYLOAD } }, 120_000);
    progress(`latency round ${round + 1} ${describe(t.label, m.result)} max ${(m.result.max_us / 1000).toFixed(2)} ms`);
    if (m.result.ok < p.latencyCount * 0.99) throw new Error(`only ${m.result.ok} of ${p.latencyCount} tunnels worked`);
    return m.result;
  });
  const figures = new Map<string, LatencyFigures | Failed>(failed);
  for (const [label, rs] of results) figures.set(label, figuresOf(rs));
  const scenario = 'latency, 1 client';
  return {
    rows: [
      { scenario, metric: 'p50', unit: 'ms', better: 'lower', cells: cellsOf(targets, figures, (r) => r.p50_us / 1000) },
      { scenario, metric: 'p99', unit: 'ms', better: 'lower', cells: cellsOf(targets, figures, (r) => r.p99_us / 1000) },
      { scenario, metric: 'max', unit: 'ms', better: 'lower', cells: cellsOf(targets, figures, (r) => r.max_us / 1000) },
      { scenario, metric: 'setup p50 (to the proxy reply)', unit: 'ms', better: 'lower', cells: cellsOf(targets, figures, (r) => msOrNull(r.setup_p50_us)) },
      { scenario, metric: 'exchange p50 (echo through the tunnel)', unit: 'ms', better: 'lower', cells: cellsOf(targets, figures, (r) => msOrNull(r.exchange_p50_us)) },
    ],
    raw: Object.fromEntries(figures),
  };
}
