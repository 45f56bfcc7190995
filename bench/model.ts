/** What scenarios measure and the table prints. */
import type { Proto } from './lib/loadgen.js';

/** One column of the table: the physical limit ("direct"), clawbox, or a peer. */
export interface Target {
  readonly label: string;
  readonly proto: Proto;
  readonly proxy?: string;
  /** Root pid of the proxy's process tree (CPU and memory are summed over it). */
  readonly pid?: number;
  /** null while the proxy runs, else why it exited (a crashed proxy turns into n/a, not into zeros). */
  readonly exitReason?: () => string | null;
  /** Set when the target could not start: its cells print as "n/a (reason)". */
  readonly na?: string;
}

/** A target that failed during a scenario. */
export interface Failed {
  readonly failed: string;
}

export type Cell = { readonly value: number } | { readonly na: string };

export type Unit = 'count/s' | 'ms' | 'us' | 'MB/s' | 's/GB' | 'KB' | 'share' | 'fraction';

export interface Row {
  readonly scenario: string;
  readonly metric: string;
  readonly unit: Unit;
  /** Which way is better; 'none' rows get no ratios (e.g. the load generator's own CPU share). */
  readonly better: 'higher' | 'lower' | 'none';
  /** The label ratios are taken to; default 'direct' (the physical limit). */
  readonly baseline?: string;
  readonly cells: Readonly<Record<string, Cell>>;
}

export interface ScenarioResult {
  readonly rows: Row[];
  /** Raw measurements for the JSON file. */
  readonly raw: unknown;
}

export const na = (reason: string): Cell => ({ na: reason });
export const val = (value: number): Cell => ({ value });

export interface BenchParams {
  readonly quick: boolean;
  /** tunnel rate: seconds per round; two rounds per target, the second in reverse order. */
  readonly rateRoundS: number;
  /** tunnel rate: seconds of the same load, untimed, just before each target's first round. */
  readonly rateWarmUpS: number;
  readonly rateConc: number;
  readonly latencyCount: number;
  /** latency: rounds of `latencyCount` tunnels per target, interleaved; each figure is the median round's. */
  readonly latencyRounds: number;
  readonly bulkSingleBytes: number;
  readonly bulkMultiStreams: number;
  readonly bulkMultiBytes: number;
  /** bulk: transfers per target of each kind, interleaved; throughput is the median transfer's. */
  readonly bulkRounds: number;
  /** plain HTTP: seconds per round; two rounds per target, the second in reverse order. */
  readonly httpRoundS: number;
  /** plain HTTP: seconds of the same load, untimed, just before each target's first round (as for the tunnel rate). */
  readonly httpWarmUpS: number;
  readonly httpConc: number;
  readonly idleTunnels: number;
  readonly dnsSeconds: number;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export function paramsFor(quick: boolean): BenchParams {
  return quick
    ? { quick, rateRoundS: 1.5, rateWarmUpS: 0.5, rateConc: 64, latencyCount: 500, latencyRounds: 1, bulkSingleBytes: 256 * MiB, bulkMultiStreams: 8, bulkMultiBytes: 32 * MiB,
        bulkRounds: 1, httpRoundS: 1.5, httpWarmUpS: 0.5, httpConc: 64, idleTunnels: 2000, dnsSeconds: 3 }
    : { quick, rateRoundS: 5, rateWarmUpS: 1, rateConc: 64, latencyCount: 2000, latencyRounds: 5, bulkSingleBytes: 2 * GiB, bulkMultiStreams: 8, bulkMultiBytes: 256 * MiB,
        bulkRounds: 3, httpRoundS: 5, httpWarmUpS: 1, httpConc: 64, idleTunnels: 9000, dnsSeconds: 10 };
}
