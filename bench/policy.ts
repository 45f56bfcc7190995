/**
 * Pure decision cost, no I/O: `compilePolicy` with 500 allowed entries, µs per `decide` (asked again, when the
 * policy's memo answers, and asked first), and ns per `classifyAddress`. Replaces the two timing assertions removed
 * from the unit tests (timing asserts flake on a shared 2-core machine); their old budgets are printed next to the
 * figures for reference.
 *
 * Run alone: `npm run bench -- policy`.
 */
import { classifyAddress } from '../src/net/classify.js';
import { parseHost } from '../src/net/host.js';
import { parseIp } from '../src/net/ip.js';
import type { Host, IpAddress } from '../src/net/types.js';
import type { PolicyConfig } from '../src/policy/config.js';
import { compilePolicy } from '../src/policy/policy.js';
import { val, type Row, type ScenarioResult } from './model.js';

const ROUNDS = 50_000;
/** Decisions made anew per timed run (a multiple of 250). */
const FIRST_ASKS = 10_000;

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
  const policyConfig: PolicyConfig = {
    networkPolicy: 'deny-by-default',
    allowedHosts,
    deniedHosts: ['*.bad.test', '10.0.0.0/8'],
    defaultPorts: [80, 443],
    selfAddresses: ['192.168.65.2'],
    listenerPorts: [3128, 1080, 5353],
  };
  const compileStart = process.hrtime.bigint();
  const policy = compilePolicy(policyConfig);
  const compileMs = Number(process.hrtime.bigint() - compileStart) / 1e6;

  // Each case as a family of hosts: its first member asked over and over (what a tool's repeated calls meet: the
  // policy's memo answers), and FIRST_ASKS members asked once each of policies compiled for the run, so that no
  // answer is in a memo (the exact-name family has 250 members: each policy is asked them once).
  const cases: ReadonlyArray<[string, (i: number) => string]> = [
    ['wildcard hit (a.b.zone499.test)', (i) => `a${i}.b.zone499.test`],
    ['exact hit (host250.test)', (i) => `host${(250 + i * 2) % 500}.test`],
    ['miss (nope.example.test)', (i) => `nope${i}.example.test`],
    ['public IP (8.8.8.8)', (i) => `8.8.${8 + (i >> 8)}.${(8 + i) & 255}`],
  ];
  const cells: Record<string, ReturnType<typeof val>> = {};
  const firstAsks: Record<string, ReturnType<typeof val>> = {};
  let sink = 0; // keeps the JIT from dropping calls whose result is unused
  for (const [label, member] of cases) {
    const h = host(member(0));
    for (let i = 0; i < 10_000; i += 1) sink += policy.decide(h, 443).allow ? 1 : 0; // warm-up
    cells[label] = val(nsPerCall(ROUNDS, () => {
      for (let i = 0; i < ROUNDS; i += 1) sink += policy.decide(h, 443).allow ? 1 : 0;
    }) / 1000);
    const hosts = Array.from({ length: FIRST_ASKS }, (_, i) => host(member(i)));
    const samples: number[] = [];
    for (let run = 0; run < 5; run += 1) {
      const policies = Array.from({ length: FIRST_ASKS / 250 }, () => compilePolicy(policyConfig));
      const start = process.hrtime.bigint();
      for (let i = 0; i < FIRST_ASKS; i += 1) sink += policies[Math.floor(i / 250)].decide(hosts[i], 443).allow ? 1 : 0;
      samples.push(Number(process.hrtime.bigint() - start) / FIRST_ASKS);
    }
    firstAsks[label] = val(samples.sort((a, b) => a - b)[2] / 1000);
  }
  const mixed = cases.map(([, member]) => host(member(0)));
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
    { scenario, metric: 'decide, 500 entries, asked again (the memo answers)', unit: 'us', better: 'none', cells },
    { scenario, metric: 'decide, 500 entries, first ask', unit: 'us', better: 'none', cells: firstAsks },
    { scenario, metric: 'classifyAddress (old budget 5000 ns)', unit: 'us', better: 'none', cells: { '8 IPs mixed': val(classifyNs / 1000) } },
    { scenario, metric: 'compilePolicy, 500 entries', unit: 'ms', better: 'none', cells: { once: val(compileMs) } },
  ];
  const valuesOf = (row: Record<string, ReturnType<typeof val>>): Record<string, number | null> =>
    Object.fromEntries(Object.entries(row).map(([k, c]) => [k, 'value' in c ? c.value : null]));
  return { rows, raw: { decide_us: valuesOf(cells), decide_first_us: valuesOf(firstAsks), classify_ns: classifyNs, compile_ms: compileMs, sink } };
}
