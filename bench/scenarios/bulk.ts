/**
 * Bulk: M tunnels each download B bytes from the byte source; MB/s (10^6 B) and proxy CPU seconds per GB.
 *
 * Each kind of transfer runs `bulkRounds` times per target, interleaved (every target's first, then every target's
 * second in reverse order, and so on). A 2 GiB transfer takes 0.4-4 s here, so a single one measured the second it
 * ran in: in run EEE the direct transfer itself reached 2.7 GB/s against 4.4-5.0 in the runs around it, and clawbox's
 * 0.99x squid's there was 1.16-1.85x in the seven runs before and after. Throughput is the median transfer's; CPU per
 * GB is over all of a target's transfers.
 */
import { progress } from '../lib/exec.js';
import { SOURCE, hostPort } from '../lib/addresses.js';
import { percentile } from '../lib/stats.js';
import type { BenchParams, Failed, Row, ScenarioResult, Target } from '../model.js';
import { cellsOf, interleavedRounds, measure, type Measured } from './common.js';

interface BulkFigures {
  readonly mbps: number;
  /** null for direct, which has no proxy process. */
  readonly cpuPerGb: number | null;
  readonly loadgenShare: number;
  readonly transfers: readonly Measured[];
}

const mbpsOf = (m: Measured): number => m.result.bytes / m.result.elapsed_s / 1e6;

function figuresOf(transfers: readonly Measured[]): BulkFigures {
  const sum = (f: (m: Measured) => number): number => transfers.reduce((s, m) => s + f(m), 0);
  const gb = sum((m) => m.result.bytes) / 1e9;
  return {
    mbps: percentile(transfers.map(mbpsOf), 50),
    cpuPerGb: transfers[0].proxyCpu === null ? null : sum((m) => m.proxyCpu ?? 0) / gb,
    loadgenShare: sum((m) => m.result.cpu_s) / sum((m) => m.result.elapsed_s),
    transfers,
  };
}

async function bulkRounds(targets: readonly Target[], rounds: number, streams: number, bytes: number, label: string): Promise<{ rows: Row[]; raw: unknown }> {
  const { results, failed } = await interleavedRounds(`bulk ${label}`, targets, rounds, async (t, round) => {
    const m = await measure(t, { mode: 'bulk', target: hostPort(SOURCE), options: { streams, bytes } }, 620_000);
    const want = streams * bytes;
    if (m.result.bytes !== want) throw new Error(`got ${m.result.bytes} of ${want} bytes (${JSON.stringify(m.result.errors)})`);
    progress(`bulk ${label} round ${round + 1} ${t.label}: ${mbpsOf(m).toFixed(0)} MB/s in ${m.result.elapsed_s.toFixed(2)} s, proxy cpu ${m.proxyCpu?.toFixed(2) ?? '-'} s, loadgen cpu ${(m.result.cpu_share * 100).toFixed(0)}%`);
    return m;
  });
  const figures = new Map<string, BulkFigures | Failed>(failed);
  for (const [name, ms] of results) figures.set(name, figuresOf(ms));
  const scenario = `bulk ${label}`;
  return {
    rows: [
      { scenario, metric: 'throughput', unit: 'MB/s', better: 'higher', cells: cellsOf(targets, figures, (f) => f.mbps) },
      { scenario, metric: 'proxy CPU per GB', unit: 's/GB', better: 'lower', cells: cellsOf(targets, figures, (f) => f.cpuPerGb) },
      { scenario, metric: 'loadgen CPU share', unit: 'share', better: 'none', cells: cellsOf(targets, figures, (f) => f.loadgenShare) },
    ],
    raw: Object.fromEntries(figures),
  };
}

const sizeText = (b: number): string => (b >= 1024 ** 3 ? `${b / 1024 ** 3} GiB` : `${b / 1024 ** 2} MiB`);

/** The two kinds' labels ("1 × 2 GiB", "8 × 256 MiB"); each scenario is named `bulk <label>`. */
export function bulkLabels(p: BenchParams): readonly [single: string, multi: string] {
  return [`1 × ${sizeText(p.bulkSingleBytes)}`, `${p.bulkMultiStreams} × ${sizeText(p.bulkMultiBytes)}`];
}

export async function bulk(targets: readonly Target[], p: BenchParams): Promise<ScenarioResult> {
  const [singleLabel, multiLabel] = bulkLabels(p);
  const one = await bulkRounds(targets, p.bulkRounds, 1, p.bulkSingleBytes, singleLabel);
  // The other kind starts from the other end: drift spreads over targets.
  const many = await bulkRounds([...targets].reverse(), p.bulkRounds, p.bulkMultiStreams, p.bulkMultiBytes, multiLabel);
  return { rows: [...one.rows, ...many.rows], raw: { single: one.raw, multi: many.raw } };
}
