/**
 * `npm run bench`: clawbox's gateway against direct (the physical limit), squid, tinyproxy, dante, proxy-chain,
 * sandbox-runtime, dnsmasq and unbound, in one run, on this machine only (upstreams on 198.18.0.0/15 loopback
 * aliases).
 *
 *   npm run bench                 everything (11.5-14 min here; BENCH_QUICK=1 for a ~3 min smoke run;
 *                                 BENCH_CLAWBOX_WORKERS=N runs clawbox with --workers N)
 *   npm run bench -- policy       only the pure policy decision cost
 *   npm run bench -- profile      only clawbox's tunnel rate under node --cpu-prof, with a summary
 *   npm run bench -- bulk         only the bulk scenario, for direct and the TCP proxies (no DNS peers)
 *   npm run bench -- http         only the plain HTTP scenario, likewise
 *   npm run bench -- rate         only tunnel rate and low-load latency, likewise (the per-connection path)
 *
 * Every mode but policy first runs scripts/setup.sh (the Docker engine, the build, the images; skipped where done),
 * so the run measures this tree's code on a fresh machine too.
 * Progress goes to stderr, the table to stdout, everything measured to bench/results/<timestamp>.json.
 * Everything started is stopped, and aliases and temp dirs removed, on exit, error and Ctrl-C.
 */
import { chmodSync, closeSync, openSync, readSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNative } from './build.js';
import { setUpClawbox } from './setup-clawbox.js';
import { cleanupNow, installCleanupHandlers, onCleanup } from './lib/cleanup.js';
import { progress } from './lib/exec.js';
import { DNS_STUB } from './lib/addresses.js';
import { paramsFor, type BenchParams, type Failed, type Row, type Target } from './model.js';
import { installPeers } from './peers/install.js';
import { clawboxWorkers, startClawbox } from './peers/clawbox.js';
import { startSquid } from './peers/squid.js';
import { startTinyproxy } from './peers/tinyproxy.js';
import { startDante } from './peers/dante.js';
import { startNodeFloor } from './peers/node-floor.js';
import { startProxyChain } from './peers/proxy-chain.js';
import { startSandboxRuntime } from './peers/sandbox-runtime.js';
import { startDnsmasq, startUnbound } from './peers/resolvers.js';
import type { PeerContext, RunningPeer } from './peers/types.js';
import { policyBench } from './policy.js';
import { renderProfile, summariseGcTrace, summariseProfile, type ProfileSummary, type YoungGeneration } from './profile.js';
import { bulk, bulkLabels } from './scenarios/bulk.js';
import { dnsScenario, type DnsTarget } from './scenarios/dns.js';
import { plainHttp } from './scenarios/http.js';
import { idleCapacity } from './scenarios/idle.js';
import { lowLoadLatency } from './scenarios/latency.js';
import { sandboxStart } from './scenarios/sandbox-start.js';
import { rateRounds, tunnelRate } from './scenarios/tunnel-rate.js';
import { renderTable } from './table.js';
import { startUpstreams, type Upstreams } from './upstreams.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');

type NotStarted = Failed & { readonly name: string };
type Started = RunningPeer | NotStarted;
function failedPeer(p: Started): p is NotStarted {
  return 'failed' in p;
}

async function start(name: string, unavailable: string | undefined, fn: () => Promise<RunningPeer>): Promise<Started> {
  if (unavailable !== undefined) return { name, failed: unavailable };
  try {
    const peer = await fn();
    progress(`${name} up (pid ${peer.child.pid})`);
    return peer;
  } catch (err) {
    const failed = (err instanceof Error ? err.message : String(err)).split('\n')[0].slice(0, 200);
    progress(`${name} did not start: ${failed}`);
    return { name, failed };
  }
}

function tcpTarget(label: string, peer: Started, kind: 'http' | 'socks'): Target {
  if (failedPeer(peer)) return { label, proto: kind === 'http' ? 'connect' : 'socks', na: peer.failed };
  const proxy = kind === 'http' ? peer.http : peer.socks;
  return { label, proto: kind === 'http' ? 'connect' : 'socks', proxy: proxy!, pid: peer.child.pid, exitReason: peer.child.exitReason };
}

/** Newline-terminated lines, read in 1 MiB pieces: clawbox's trail passes V8's 512 MiB string limit in a full run. */
function countLines(file: string): number | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    let lines = 0;
    for (let n = readSync(fd, buffer); n > 0; n = readSync(fd, buffer)) {
      for (let at = buffer.indexOf(10); at >= 0 && at < n; at = buffer.indexOf(10, at + 1)) lines += 1;
    }
    return lines;
  } finally {
    closeSync(fd);
  }
}

/** Runs clawbox once more under --cpu-prof for one tunnel-rate round and summarises the profile. */
async function profileClawbox(ctx: PeerContext, p: BenchParams): Promise<ProfileSummary | Failed> {
  const dir = join(ctx.dir, 'cpu-prof');
  mkdirSync(dir, { recursive: true });
  const gcLines: string[] = [];
  const peer = await start('clawbox (profiled)', undefined, () =>
    startClawbox({
      ...ctx,
      cpuProfileDir: dir,
      gcTrace: (line) => {
        if (line.includes(' gc=')) gcLines.push(line);
      },
    }),
  );
  if (failedPeer(peer)) return { failed: peer.failed };
  let young: YoungGeneration | null = null;
  try {
    const started = gcLines.length; // the gateway's own start is not a tunnel's
    const rate = (await rateRounds([tcpTarget('clawbox', peer, 'http')], { ...p, rateRoundS: p.rateRoundS * 2 }, 1)).get('clawbox');
    if (rate !== undefined && !('failed' in rate)) young = summariseGcTrace(gcLines.slice(started), rate.ok + (rate.warmUp?.result.ok ?? 0));
  } finally {
    await peer.child.stop(15_000); // SIGTERM: clawbox exits cleanly and node writes the profile
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) return { failed: 'node wrote no .cpuprofile' };
  const summary = summariseProfile(join(dir, file));
  return young === null ? summary : { ...summary, young };
}

function writeResults(doc: Record<string, unknown>): string {
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}

const SCENARIO_NOTES = (p: BenchParams): Record<string, string> => ({
  'tunnel rate': `${p.rateConc} clients loop {CONNECT (SOCKS5 for dante and the -socks targets) + 64 B echo + close}, 2 rounds × ${p.rateRoundS} s, 2nd reversed, each target's first after ${p.rateWarmUpS} s of the same load untimed`,
  'latency, 1 client': `${p.latencyCount} sequential tunnels, ${p.latencyRounds} rounds interleaved (every 2nd reversed), the median of the rounds' figures`,
  ...Object.fromEntries(bulkLabels(p).map((label) => [`bulk ${label}`, `${p.bulkRounds} transfers per target interleaved (every 2nd reversed): MB/s of the median one, CPU per GB over all`])),
  'plain HTTP': `absolute-URI GET, keep-alive, ${p.httpConc} clients, 2 rounds × ${p.httpRoundS} s, 2nd reversed, each target's first after ${p.httpWarmUpS} s of the same load untimed`,
  [`idle, ${p.idleTunnels} tunnels`]: 'opened 256 at a time, held, then each must still echo 64 B; PSS/RSS delta of the process tree ÷ tunnels; a -socks target runs second in its HTTP target\'s process (heap already grown)',
  'DNS (UDP, allowed names)': `dnsperf ${p.dnsSeconds} s, 100 outstanding, 1000 names cached after the first pass; "direct" = the C stub all resolvers forward to`,
  'policy (pure, no I/O)': 'in-process, median of 5 timed runs',
});

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'all';
  if (!['all', 'policy', 'profile', 'sandbox', 'bulk', 'http', 'rate', 'idle', 'dns'].includes(mode)) throw new Error(`unknown mode '${mode}' (all | policy | profile | sandbox | bulk | http | rate | idle | dns)`);
  clawboxWorkers(); // a bad BENCH_CLAWBOX_WORKERS stops the run before anything starts
  const quick = process.env.BENCH_QUICK === '1';
  const p = paramsFor(quick);
  const t0 = Date.now();

  if (mode === 'policy') {
    const r = policyBench();
    process.stdout.write(`${renderTable(r.rows, { title: 'clawbox policy decision cost', notes: [], scenarios: SCENARIO_NOTES(p) })}\n`);
    progress(`results: ${writeResults({ mode, policy: r.raw })}`);
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('the bench needs root: it adds loopback aliases and installs peers');
  setUpClawbox();
  installCleanupHandlers();
  const dir = mkdtempSync(join(tmpdir(), 'clawbox-bench-'));
  chmodSync(dir, 0o777); // squid, tinyproxy, dante and dnsmasq drop to unprivileged users and still write logs here
  onCleanup('temp dir', () => rmSync(dir, { recursive: true, force: true }));
  if (mode === 'sandbox') {
    const r = await sandboxStart({ params: p, dir });
    process.stdout.write(`${renderTable(r.rows, { title: 'clawbox sandbox start', notes: [], scenarios: SCENARIO_NOTES(p) })}\n`);
    progress(`results: ${writeResults({ mode, quick, sandbox: r.raw, rows: r.rows })}`);
    return;
  }
  progress(`${quick ? 'quick' : 'full'} run; temp dir ${dir}`);

  const onlyTcp = mode === 'bulk' || mode === 'http' || mode === 'rate' || mode === 'idle';
  const installed = mode === 'all' || mode === 'dns' || onlyTcp ? installPeers() : { unavailable: {}, npmPeerDirs: {} };
  buildNative();
  const ctx: PeerContext = { dir, npmPeerDirs: installed.npmPeerDirs };
  const upstreams: Upstreams = await startUpstreams();
  progress('upstreams up (echo, source, http, dns stub)');

  if (mode === 'profile') {
    const prof = await profileClawbox({ ...ctx }, p);
    process.stdout.write(`${'failed' in prof ? `profile failed: ${prof.failed}` : renderProfile(prof)}\n`);
    progress(`results: ${writeResults({ mode, profile: prof })}`);
    return;
  }

  const u = installed.unavailable;
  const peers: Started[] = [];
  peers.push(await start('clawbox', undefined, () => startClawbox(ctx)));
  // The single-scenario selectors are for iterating on one path: TCP peers play no part in DNS, nor resolvers in TCP.
  if (mode !== 'dns') {
    peers.push(await start('squid', u.squid, () => startSquid(ctx)));
    peers.push(await start('tinyproxy', u.tinyproxy, () => startTinyproxy(ctx)));
    peers.push(await start('dante', u['dante-server'], () => startDante(ctx)));
    peers.push(await start('proxy-chain', u['proxy-chain'], () => startProxyChain(ctx)));
    peers.push(await start('sandbox-runtime', u['@anthropic-ai/sandbox-runtime'], () => startSandboxRuntime(ctx)));
    peers.push(await start('node-floor', undefined, () => startNodeFloor(ctx)));
  }
  if (!onlyTcp) {
    peers.push(await start('dnsmasq', u.dnsmasq, () => startDnsmasq(ctx)));
    peers.push(await start('unbound', u.unbound, () => startUnbound(ctx)));
  }
  const peer = (name: string): Started => peers.find((x) => x.name === name)!;
  const clawbox = peer('clawbox');
  const dnsTarget = (label: string, s: Started): DnsTarget =>
    failedPeer(s) ? { label, host: '127.0.0.1', port: 0, na: s.failed } : { label, host: '127.0.0.1', port: s.dnsPort!, pid: s.child.pid };
  const dnsTargets = (): DnsTarget[] => [
    u.dnsperf ? { label: 'direct', host: DNS_STUB.host, port: DNS_STUB.port, na: u.dnsperf } : { label: 'direct', host: DNS_STUB.host, port: DNS_STUB.port, pid: upstreams.dns.pid },
    ...[dnsTarget('clawbox', clawbox), dnsTarget('dnsmasq', peer('dnsmasq')), dnsTarget('unbound', peer('unbound'))].map((t) =>
      u.dnsperf && t.na === undefined ? { ...t, na: `dnsperf: ${u.dnsperf}` } : t,
    ),
  ];
  if (mode === 'dns') {
    const targets = dnsTargets();
    await scenarioOnly('dns', () => dnsScenario(targets, p, dir), peers, targets, p, t0);
    return;
  }

  const direct: Target = { label: 'direct', proto: 'direct' };
  const tunnelTargets: Target[] = [
    direct,
    tcpTarget('clawbox', clawbox, 'http'),
    tcpTarget('clawbox-socks', clawbox, 'socks'),
    tcpTarget('squid', peer('squid'), 'http'),
    tcpTarget('tinyproxy', peer('tinyproxy'), 'http'),
    tcpTarget('dante', peer('dante'), 'socks'),
    tcpTarget('proxy-chain', peer('proxy-chain'), 'http'),
    tcpTarget('sandbox-runtime', peer('sandbox-runtime'), 'http'),
    tcpTarget('sandbox-runtime-socks', peer('sandbox-runtime'), 'socks'),
    tcpTarget('node-floor', peer('node-floor'), 'http'),
  ];
  // node-floor speaks CONNECT only.
  const httpTargets = tunnelTargets.filter((t) => t.proto !== 'socks' && t.label !== 'node-floor');
  if (mode === 'bulk') {
    await scenarioOnly('bulk', () => bulk(tunnelTargets, p), peers, tunnelTargets, p, t0);
    return;
  }
  if (mode === 'idle') {
    await scenarioOnly('idle', () => idleCapacity(tunnelTargets, p), peers, tunnelTargets, p, t0);
    return;
  }
  if (mode === 'http') {
    await scenarioOnly('http', () => plainHttp(httpTargets, p), peers, httpTargets, p, t0);
    return;
  }
  if (mode === 'rate') {
    const both = async (): Promise<{ rows: Row[]; raw: unknown }> => {
      const rate = await tunnelRate(tunnelTargets, p);
      const latency = await lowLoadLatency([...tunnelTargets].reverse(), p);
      return { rows: [...rate.rows, ...latency.rows], raw: { 'tunnel rate': rate.raw, latency: latency.raw } };
    };
    await scenarioOnly('rate', both, peers, tunnelTargets, p, t0);
    return;
  }
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  const step = async (name: string, fn: () => Promise<{ rows: Row[]; raw: unknown }>): Promise<void> => {
    progress(`== ${name}`);
    try {
      const r = await fn();
      rows.push(...r.rows);
      raw[name] = r.raw;
    } catch (err) {
      progress(`${name} failed as a whole: ${err instanceof Error ? err.message : String(err)}`);
      raw[name] = { failed: String(err) };
    }
  };
  // Idle first, on fresh processes (see scenarios/idle.ts); then the others, alternating target order.
  await step('idle', () => idleCapacity(tunnelTargets, p));
  await step('tunnel rate', () => tunnelRate(tunnelTargets, p));
  await step('latency', () => lowLoadLatency([...tunnelTargets].reverse(), p).then((r) => ({ ...r, rows: r.rows.map(reorder(tunnelTargets)) })));
  await step('bulk', () => bulk(tunnelTargets, p).then((r) => ({ ...r, rows: r.rows.map(reorder(tunnelTargets)) })));
  await step('plain HTTP', () => plainHttp(httpTargets, p));
  await step('dns', () => dnsScenario(dnsTargets(), p, dir));
  await step('sandbox start', () => sandboxStart({ params: p, dir }));
  await step('policy', () => Promise.resolve(policyBench()));

  const logLines = Object.fromEntries(peers.filter((x) => !failedPeer(x)).map((x) => [x.name, countLines((x as RunningPeer).logFile)]));
  const alive = peers.filter((x): x is RunningPeer => !failedPeer(x));
  for (const x of alive) {
    const dead = x.child.exitReason();
    if (dead !== null) progress(`${x.name} had exited during the run: ${dead}`);
  }
  await Promise.all(alive.map((x) => x.child.stop()));

  let profile: ProfileSummary | Failed | null = null;
  if (process.env.BENCH_PROFILE !== '0' && !failedPeer(clawbox)) {
    progress('== clawbox CPU profile (tunnel rate, one round)');
    profile = await profileClawbox(ctx, p);
  }
  await Promise.all(Object.values(upstreams).map((c: Upstreams['echo']) => c.stop()));

  const took = (Date.now() - t0) / 1000;
  const header = {
    title: `clawbox bench — ${new Date().toISOString()}, ${quick ? 'QUICK' : 'full'} run, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, took ${Math.floor(took / 60)}m${Math.round(took % 60)}s`,
    notes: [
      '(x×) = ÷ direct (the load generator straight to the C upstream: the physical limit); "clawbox ÷ peer" follows each row.',
      '↑ higher is better, ↓ lower is better. This machine has 2 shared cores and absolute figures drift ±15 %: quote ratios.',
      'Proxy CPU is utime+stime of the proxy\'s whole process tree (/proc), reaped children included, over the run; memory is PSS/RSS of the tree.',
      `Each runs with its default process model: clawbox ${clawboxWorkers() === null ? `one worker per core (${cpus().length})` : `${clawboxWorkers()} worker(s) (BENCH_CLAWBOX_WORKERS; its default is one per core)`}, squid and unbound one worker, dnsmasq and tinyproxy as packaged, dante its child processes, proxy-chain and sandbox-runtime one Node process.`,
      `node-floor is a reference, not a peer: the least a Node.js CONNECT proxy does (one worker per core, a stream pipe each way, a log line per close; no policy, no audit before the dial, no time-outs). clawbox ÷ node-floor is the cost of clawbox's own work.`,
      `Log lines written (every peer logs each connection): ${Object.entries(logLines).map(([k, v]) => `${k} ${v ?? 'no log file'}`).join(', ')}.`,
      ...peers.filter(failedPeer).map((x) => `${x.name}: n/a (${x.failed})`),
    ],
    scenarios: SCENARIO_NOTES(p),
  };
  let table = renderTable(rows, header);
  if (profile !== null) table += `\n\n${'failed' in profile ? `clawbox CPU profile: n/a (${profile.failed})` : renderProfile(profile)}`;
  process.stdout.write(`${table}\n`);
  const file = writeResults({ mode, quick, params: p, took_s: took, started: new Date(t0).toISOString(), log_lines: logLines, peers: peers.map((x) => (failedPeer(x) ? x : { name: x.name, pid: x.child.pid, http: x.http, socks: x.socks, dns: x.dnsPort })), rows, raw, profile, table });
  progress(`results: ${file}; took ${took.toFixed(0)} s`);
}

/** `npm run bench -- bulk | http | rate | idle | dns`: one scenario alone, same table and results file as the full run. */
async function scenarioOnly(
  mode: 'bulk' | 'http' | 'rate' | 'idle' | 'dns',
  scenario: () => Promise<{ rows: Row[]; raw: unknown }>,
  peers: readonly Started[],
  targets: readonly { readonly label: string }[],
  p: BenchParams,
  t0: number,
): Promise<void> {
  progress(`== ${mode}`);
  const r = await scenario();
  const rows = r.rows.map(reorder(targets));
  const alive = peers.filter((x): x is RunningPeer => !failedPeer(x));
  for (const x of alive) {
    const dead = x.child.exitReason();
    if (dead !== null) progress(`${x.name} had exited during the run: ${dead}`);
  }
  const took = (Date.now() - t0) / 1000;
  const table = renderTable(rows, {
    title: `clawbox bench (${mode} only) — ${new Date().toISOString()}, ${p.quick ? 'QUICK' : 'full'} run, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, took ${Math.round(took)}s`,
    notes: [
      '(x×) = ÷ direct (the physical limit); "clawbox ÷ peer" follows each row. Figures drift ±15 % between runs: quote ratios.',
      "Proxy CPU is utime+stime of the proxy's whole process tree (/proc), reaped children included, over the run.",
      ...(clawboxWorkers() === null ? [] : [`clawbox ran with --workers ${clawboxWorkers()} (BENCH_CLAWBOX_WORKERS), not its default of one per core.`]),
      ...peers.filter(failedPeer).map((x) => `${x.name}: n/a (${x.failed})`),
    ],
    scenarios: {},
  });
  process.stdout.write(`${table}\n`);
  await Promise.all(alive.map((x) => x.child.stop()));
  progress(`results: ${writeResults({ mode, quick: p.quick, params: p, took_s: took, rows, raw: r.raw, table })}`);
}

/** Scenarios that ran targets in reverse print them in the usual column order. */
function reorder(targets: readonly { readonly label: string }[]): (row: Row) => Row {
  return (row) => ({ ...row, cells: Object.fromEntries(targets.filter((t) => t.label in row.cells).map((t) => [t.label, row.cells[t.label]])) });
}

main().then(
  () => {
    cleanupNow();
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupNow();
    process.exit(1);
  },
);
