/**
 * Pure decision cost, no I/O: `compilePolicy` with 500 allowed entries, µs per `decide`, and ns per
 * `classifyAddress`. Replaces the two timing assertions removed from the unit tests (timing asserts flake on a
 * shared 2-core machine); their old budgets are printed next to the figures for reference.
 *
 * Run alone: `npm run bench -- policy`.
 */
import { classifyAddress } from '../src/net/classify.js';
import { parseHost } from '../src/net/host.js';
import { parseIp } from '../src/net/ip.js';
import type { Host, IpAddress } from '../src/net/types.js';
import { compilePolicy } from '../src/policy/policy.js';
import { val, type Row, type ScenarioResult } from './model.js';

const ROUNDS = 50_000;

function host(raw: string): Host {
  const parsed = parseHost(raw);
  if (!parsed.ok) throw new Error(`${raw}: ${parsed.error}`);
  return parsed.host;
}

/** Median of 5 timed runs of `fn` over `rounds`, in ns per call (the median drops a run hit by a GC or the scheduler). */
function nsPerCall(calls: number, fn: () => void): number {
  const samples: number[] = [];
  for (let run = 0; run < 5; run += 1) {
    const start = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - start) / calls);
  }
  return samples.sort((a, b) => a - b)[2];
}

export function policyBench(): ScenarioResult {
  // The same shape as the removed unit test: 500 entries, half exact names, half wildcards.
  const allowedHosts = Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? `host${i}.test` : `*.zone${i}.test`));
  const compileStart = process.hrtime.bigint();
  const policy = compilePolicy({
    networkPolicy: 'deny-by-default',
    allowedHosts,
    deniedHosts: ['*.bad.test', '10.0.0.0/8'],
    defaultPorts: [80, 443],
    selfAddresses: ['192.168.65.2'],
    listenerPorts: [3128, 1080, 5353],
  });
  const compileMs = Number(process.hrtime.bigint() - compileStart) / 1e6;

  const cases: ReadonlyArray<[string, Host]> = [
    ['wildcard hit (a.b.zone499.test)', host('a.b.zone499.test')],
    ['exact hit (host250.test)', host('host250.test')],
    ['miss (nope.example.test)', host('nope.example.test')],
    ['public IP (8.8.8.8)', host('8.8.8.8')],
  ];
  const cells: Record<string, ReturnType<typeof val>> = {};
  let sink = 0; // keeps the JIT from dropping calls whose result is unused
  for (const [label, h] of cases) {
    for (let i = 0; i < 10_000; i += 1) sink += policy.decide(h, 443).allow ? 1 : 0; // warm-up
    cells[label] = val(nsPerCall(ROUNDS, () => {
      for (let i = 0; i < ROUNDS; i += 1) sink += policy.decide(h, 443).allow ? 1 : 0;
    }) / 1000);
  }
  const mixed = cases.map(([, h]) => h);
  cells['mixed (old unit test: budget 10 µs)'] = val(nsPerCall(ROUNDS * mixed.length, () => {
    for (let i = 0; i < ROUNDS; i += 1) for (const h of mixed) sink += policy.decide(h, 443).allow ? 1 : 0;
  }) / 1000);

  const ips: IpAddress[] = ['127.0.0.1', '169.254.169.254', '10.0.0.1', '198.18.0.1', '8.8.8.8', '::ffff:127.0.0.1', '2606:4700:4700::1111', 'fd12:3456::1']
    .map((t) => parseIp(t)!);
  const classifyNs = nsPerCall(ROUNDS * ips.length, () => {
    for (let i = 0; i < ROUNDS; i += 1) for (const ip of ips) sink += classifyAddress(ip).cls === 'public' ? 1 : 0;
  });

  const scenario = 'policy (pure, no I/O)';
  const rows: Row[] = [
    { scenario, metric: 'decide, 500 entries', unit: 'us', better: 'none', cells },
    { scenario, metric: 'classifyAddress (old budget 5000 ns)', unit: 'us', better: 'none', cells: { '8 IPs mixed': val(classifyNs / 1000) } },
    { scenario, metric: 'compilePolicy, 500 entries', unit: 'ms', better: 'none', cells: { once: val(compileMs) } },
  ];
  return { rows, raw: { decide_us: Object.fromEntries(Object.entries(cells).map(([k, c]) => [k, 'value' in c ? c.value : null])), classify_ns: classifyNs, compile_ms: compileMs, sink } };
}
