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

export function renderProfile(s: ProfileSummary): string {
  const lines = [`clawbox CPU profile during tunnel rate (node --cpu-prof, ${(s.total_ms / 1000).toFixed(1)} s sampled):`, '  self time by origin:'];
  for (const [o, pct] of Object.entries(s.by_origin).slice(0, 12)) lines.push(`    ${pct.toFixed(1).padStart(5)}%  ${o}`);
  lines.push('  top functions by self time:');
  for (const t of s.top) lines.push(`    ${t.pct.toFixed(1).padStart(5)}%  ${t.fn}  ${t.where}`);
  return lines.join('\n');
}
