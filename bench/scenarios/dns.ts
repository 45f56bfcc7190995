/**
 * DNS: dnsperf (one client, 100 queries outstanding, -v so each answer's latency is printed) against each
 * resolver for allowed names. All resolvers forward to the same C stub, which is measured directly too.
 * Names repeat (1,000 distinct), so after the first pass every resolver answers from its cache: that is the
 * steady state of a sandbox that keeps asking for the same API hosts.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { progress } from '../lib/exec.js';
import { DNS_ZONE } from '../lib/addresses.js';
import { onCleanup } from '../lib/cleanup.js';
import { cpuSeconds } from '../lib/procfs.js';
import { sleep } from '../lib/net.js';
import type { BenchParams, ScenarioResult } from '../model.js';
import { cellsOf, forEachTarget } from './common.js';

export interface DnsTarget {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly pid?: number;
  readonly na?: string;
}

interface DnsResult {
  readonly qps: number;
  readonly completed: number;
  readonly lost: number;
  readonly notNoerror: number;
  readonly p50: number;
  readonly p99: number;
  readonly resolverCpu: number | null;
  /** dnsperf's own CPU over the run's wall time: near 1.0 means dnsperf was the limit. */
  readonly dnsperfShare: number;
}

const CLK_TCK = 100;

/** Runs dnsperf under sh, which prints its own /proc stat after waiting: cutime+cstime is dnsperf's CPU. */
function dnsperf(args: readonly string[], outFile: string, limitMs: number): Promise<{ cpu: number; summary: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn('sh', ['-c', 'dnsperf "$@" > "$OUT"; rc=$?; cat /proc/$$/stat; exit $rc', 'sh', ...args], {
      env: { ...process.env, OUT: outFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let done = false;
    onCleanup('dnsperf', () => {
      if (!done) proc.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-1000)));
    const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs);
    proc.once('exit', (code) => {
      done = true;
      clearTimeout(timer);
      const stat = stdout.slice(stdout.lastIndexOf(')') + 2).split(' ');
      if (code !== 0) return reject(new Error(`dnsperf exit ${String(code)}: ${stderr.trim().split('\n').at(-1) ?? ''}`));
      // After the command name, field 16/17 (cutime/cstime) are indexes 13/14.
      resolve({ cpu: (Number(stat[13]) + Number(stat[14])) / CLK_TCK, summary: readFileSync(outFile, 'utf8') });
    });
  });
}

function parse(text: string, seconds: number): Omit<DnsResult, 'resolverCpu' | 'dnsperfShare'> {
  const latencies: number[] = [];
  let notNoerror = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('> ')) continue;
    const parts = line.split(' ');
    if (parts[1] !== 'NOERROR') notNoerror += 1;
    latencies.push(Number(parts.at(-1)));
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(text)?.[1] ?? latencies.length / seconds);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(text)?.[1] ?? 0);
  return { qps, completed: latencies.length, lost, notNoerror, p50: at(0.5) * 1000, p99: at(0.99) * 1000 };
}

export async function dnsScenario(targets: readonly DnsTarget[], p: BenchParams, dir: string): Promise<ScenarioResult> {
  const queries = join(dir, 'dns-queries.txt');
  writeFileSync(queries, Array.from({ length: 1000 }, (_, i) => `h${i}.${DNS_ZONE} A\n`).join(''));
  const byLabel = new Map(targets.map((t) => [t.label, t]));
  const got = await forEachTarget('dns', targets.map((t) => ({ ...t, proto: 'direct' as const })), async (col) => {
    const t = byLabel.get(col.label)!;
    const before = t.pid ? cpuSeconds(t.pid) : 0;
    const out = join(dir, `dnsperf-${t.label}.txt`);
    const run = await dnsperf(['-s', t.host, '-p', String(t.port), '-d', queries, '-l', String(p.dnsSeconds), '-c', '1', '-q', '100', '-v'], out, (p.dnsSeconds + 40) * 1000);
    const resolverCpu = t.pid ? cpuSeconds(t.pid) - before : null;
    const parsed = parse(run.summary, p.dnsSeconds);
    if (parsed.completed === 0) throw new Error('no query answered');
    const result: DnsResult = { ...parsed, resolverCpu, dnsperfShare: run.cpu / p.dnsSeconds };
    progress(`dns ${t.label}: ${Math.round(result.qps)} q/s p50 ${result.p50.toFixed(3)} ms p99 ${result.p99.toFixed(3)} ms lost ${result.lost} non-NOERROR ${result.notNoerror} dnsperf cpu ${(result.dnsperfShare * 100).toFixed(0)}%`);
    await sleep(300);
    return result;
  });
  const cols = targets.map((t) => ({ ...t, proto: 'direct' as const }));
  const scenario = 'DNS (UDP, allowed names)';
  return {
    rows: [
      { scenario, metric: 'queries/s', unit: 'count/s', better: 'higher', cells: cellsOf(cols, got, (r) => r.qps) },
      { scenario, metric: 'p50 latency', unit: 'ms', better: 'lower', cells: cellsOf(cols, got, (r) => r.p50) },
      { scenario, metric: 'p99 latency', unit: 'ms', better: 'lower', cells: cellsOf(cols, got, (r) => r.p99) },
      { scenario, metric: 'resolver CPU per query', unit: 'us', better: 'lower', cells: cellsOf(cols, got, (r) => (r.resolverCpu === null ? null : (r.resolverCpu / r.completed) * 1e6)) },
      { scenario, metric: 'lost or not NOERROR', unit: 'fraction', better: 'lower', cells: cellsOf(cols, got, (r) => (r.lost + r.notNoerror) / Math.max(1, r.completed + r.lost)) },
      { scenario, metric: 'dnsperf CPU share', unit: 'share', better: 'none', cells: cellsOf(cols, got, (r) => r.dnsperfShare) },
    ],
    raw: Object.fromEntries(got),
  };
}
