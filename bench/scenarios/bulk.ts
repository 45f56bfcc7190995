/** Bulk: M tunnels each download B bytes from the byte source; MB/s (10^6 B) and proxy CPU seconds per GB. */
import { progress } from '../lib/exec.js';
import { SOURCE, hostPort } from '../lib/addresses.js';
import type { BenchParams, Row, ScenarioResult, Target } from '../model.js';
import { cellsOf, forEachTarget, measure } from './common.js';

async function bulkOnce(targets: readonly Target[], streams: number, bytes: number, label: string): Promise<{ rows: Row[]; raw: unknown }> {
  const got = await forEachTarget(`bulk ${label}`, targets, async (t) => {
    const m = await measure(t, { mode: 'bulk', target: hostPort(SOURCE), options: { streams, bytes } }, 620_000);
    const want = streams * bytes;
    if (m.result.bytes !== want) throw new Error(`got ${m.result.bytes} of ${want} bytes (${JSON.stringify(m.result.errors)})`);
    const mbps = m.result.bytes / m.result.elapsed_s / 1e6;
    progress(`bulk ${label} ${t.label}: ${mbps.toFixed(0)} MB/s in ${m.result.elapsed_s.toFixed(2)} s, proxy cpu ${m.proxyCpu?.toFixed(2) ?? '-'} s, loadgen cpu ${(m.result.cpu_share * 100).toFixed(0)}%`);
    return m;
  });
  const scenario = `bulk ${label}`;
  return {
    rows: [
      { scenario, metric: 'throughput', unit: 'MB/s', better: 'higher', cells: cellsOf(targets, got, (m) => m.result.bytes / m.result.elapsed_s / 1e6) },
      { scenario, metric: 'proxy CPU per GB', unit: 's/GB', better: 'lower', cells: cellsOf(targets, got, (m) => (m.proxyCpu === null ? null : m.proxyCpu / (m.result.bytes / 1e9))) },
      { scenario, metric: 'loadgen CPU share', unit: 'share', better: 'none', cells: cellsOf(targets, got, (m) => m.result.cpu_share) },
    ],
    raw: Object.fromEntries(got),
  };
}

export async function bulk(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const gib = (b: number): string => (b >= 1024 ** 3 ? `${b / 1024 ** 3} GiB` : `${b / 1024 ** 2} MiB`);
  const one = await bulkOnce(targets, 1, p.bulkSingleBytes, `1 × ${gib(p.bulkSingleBytes)}`);
  // Reverse order for the second run: drift spreads over targets.
  const many = await bulkOnce([...targets].reverse(), p.bulkMultiStreams, p.bulkMultiBytes, `${p.bulkMultiStreams} × ${gib(p.bulkMultiBytes)}`);
  return { rows: [...one.rows, ...many.rows], raw: { single: one.raw, multi: many.raw } };
}
