/**
 * HOOK, not implemented yet: sandbox start latency. Another engineer fills this in. It is to measure, p50/p99
 * over 50 runs each, with the same image, network and limits:
 *   - `clawbox run -- true` (the CLI, end to end),
 *   - the library's `runSandbox` cold, and from a warm pool,
 *   - plain `docker run --rm` (the baseline the others are divided by).
 * Return rows with `baseline: 'docker run'` cells keyed by the labels below; the table prints them like every
 * other scenario (ratios to the baseline, clawbox ÷ peer), and n/a cells with their reason.
 */
import { na, type BenchParams, type Row, type ScenarioResult } from '../model.js';

export const SANDBOX_START_LABELS = ['docker run', 'clawbox run', 'runSandbox cold', 'runSandbox warm'] as const;

export interface SandboxStartContext {
  readonly params: BenchParams;
  /** Private temp dir (removed at exit). */
  readonly dir: string;
}

export function sandboxStart(_ctx: SandboxStartContext): Promise<ScenarioResult> {
  const reason = 'skipped: bench/scenarios/sandbox-start.ts not implemented yet';
  const cells = Object.fromEntries(SANDBOX_START_LABELS.map((l) => [l, na(reason)]));
  const row = (metric: string): Row => ({ scenario: 'sandbox start, 50 runs', metric, unit: 'ms', better: 'lower', baseline: 'docker run', cells });
  return Promise.resolve({ rows: [row('p50'), row('p99')], raw: { skipped: reason } });
}
