/**
 * Latency at low load: one client, sequential tunnels (tunnel + 64-byte echo + close), nothing else running. Besides
 * the whole tunnel, its two parts: setup (the proxy's reply to CONNECT or SOCKS5: its decision, audit line and
 * dial) and exchange (the echo through the open tunnel: its data path). The direct column has no setup.
 */
import { progress } from '../lib/exec.js';
import { ECHO, PAYLOAD, hostPort } from '../lib/addresses.js';
import type { BenchParams, ScenarioResult, Target } from '../model.js';
import { cellsOf, describe, forEachTarget, measure } from './common.js';

function msOrNull(us: number | null): number | null {
  return us === null ? null : us / 1000;
}

export async function lowLoadLatency(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const got = await forEachTarget('latency', targets, async (t) => {
    const m = await measure(t, { mode: 'rate', target: hostPort(ECHO), options: { conc: 1, count: p.latencyCount, payload: PAYLOAD } }, 120_000);
    progress(`latency ${describe(t.label, m.result)}`);
    if (m.result.ok < p.latencyCount * 0.99) throw new Error(`only ${m.result.ok} of ${p.latencyCount} tunnels worked`);
    return m.result;
  });
  const scenario = 'latency, 1 client';
  return {
    rows: [
      { scenario, metric: 'p50', unit: 'ms', better: 'lower', cells: cellsOf(targets, got, (r) => r.p50_us / 1000) },
      { scenario, metric: 'p99', unit: 'ms', better: 'lower', cells: cellsOf(targets, got, (r) => r.p99_us / 1000) },
      { scenario, metric: 'max', unit: 'ms', better: 'lower', cells: cellsOf(targets, got, (r) => r.max_us / 1000) },
      { scenario, metric: 'setup p50 (to the proxy reply)', unit: 'ms', better: 'lower', cells: cellsOf(targets, got, (r) => msOrNull(r.setup_p50_us)) },
      { scenario, metric: 'exchange p50 (echo through the tunnel)', unit: 'ms', better: 'lower', cells: cellsOf(targets, got, (r) => msOrNull(r.exchange_p50_us)) },
    ],
    raw: Object.fromEntries(got),
  };
}
