/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, and per origin (clawbox's own
 * code, pino, node internals, GC, idle), so "where is clawbox slow" has an answer in the table output.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  readonly total_ms: number;
  readonly top: ReadonlyArray<{ readonly fn: string; readonly where: string; readonly self_ms: number; readonly pct: number }>;
  readonly by_origin: Readonly<Record<string, number>>;
  readonly young?: YoungGeneration;
}

function origin(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') return functionName.startsWith('(') ? functionName : '(native/builtin)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return dep[1];
  if (url.includes('/dist/')) return `clawbox ${url.slice(url.indexOf('/dist/') + 6).split('/').slice(0, -1).join('/')}`;
  return url;
}

export function summariseProfile(file: string, topN = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, { fn: string; where: string; us: number }>();
  const byOrigin = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node) return;
    total += dt;
    const f = node.callFrame;
    const short = f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
    const key = `${f.functionName}|${f.url}|${f.lineNumber}`;
    const entry = selfUs.get(key) ?? { fn: f.functionName || '(anonymous)', where: f.url ? `${short}:${f.lineNumber + 1}` : '', us: 0 };
    entry.us += dt;
    selfUs.set(key, entry);
    const o = origin(f);
    byOrigin.set(o, (byOrigin.get(o) ?? 0) + dt);
  });
  const top = [...selfUs.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ fn: e.fn, where: e.where, self_ms: e.us / 1000, pct: (e.us / total) * 100 }));
  const origins = Object.fromEntries([...byOrigin.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, (v / total) * 100]));
  return { total_ms: total / 1000, top, by_origin: origins };
}

/**
 * The young generation during the profiled round, from V8's `--trace-gc-nvp` lines: how much of each tunnel's
 * garbage outlived a scavenge (copied to the old generation, to be freed only by a full collection) and what the
 * scavenges cost. A table keyed per connection, rebuilt as entries come and go, once drove this to 2.5–4.5 KB per
 * tunnel and 6–8 ms pauses (bench/README.md, *Tunnels promoted by their own bookkeeping*).
 */
export interface YoungGeneration {
  readonly scavenges: number;
  readonly pause_ms_mean: number;
  readonly promoted_bytes_per_tunnel: number;
  readonly full_collections: number;
}

export function summariseGcTrace(lines: readonly string[], tunnels: number): YoungGeneration | null {
  const number = (line: string, key: string): number => Number(new RegExp(`\\b${key}=([0-9.]+)`).exec(line)?.[1] ?? 0);
  const scavenges = lines.filter((l) => / gc=s /.test(l));
  if (scavenges.length === 0 || tunnels === 0) return null;
  return {
    scavenges: scavenges.length,
    pause_ms_mean: scavenges.reduce((sum, l) => sum + number(l, 'pause'), 0) / scavenges.length,
    promoted_bytes_per_tunnel: scavenges.reduce((sum, l) => sum + number(l, 'promoted'), 0) / tunnels,
    full_collections: lines.filter((l) => / gc=mc /.test(l)).length,
  };
}

export function renderProfile(s: ProfileSummary): string {
  const lines = [`clawbox CPU profile during tunnel rate (node --cpu-prof, ${(s.total_ms / 1000).toFixed(1)} s sampled):`, '  self time by origin:'];
  for (const [o, pct] of Object.entries(s.by_origin).slice(0, 12)) lines.push(`    ${pct.toFixed(1).padStart(5)}%  ${o}`);
  lines.push('  top functions by self time:');
  for (const t of s.top) lines.push(`    ${t.pct.toFixed(1).padStart(5)}%  ${t.fn}  ${t.where}`);
  const y = s.young;
  if (y) {
    lines.push(
      `  young generation (--trace-gc-nvp, the same round): ${y.scavenges} scavenges, ${y.pause_ms_mean.toFixed(2)} ms each on average, ` +
        `${Math.round(y.promoted_bytes_per_tunnel)} bytes promoted per tunnel, ${y.full_collections} full collections`,
    );
  }
  return lines.join('\n');
}
