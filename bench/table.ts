/**
 * The one results table: a line per metric with every target's figure and its ratio to the row's baseline
 * (direct, the physical limit, unless the row names another), then clawbox ÷ each peer. Ratios are the figures
 * to quote: on this shared 2-core machine absolute numbers drift ±15 % from run to run.
 */
import type { Cell, Row, Unit } from './model.js';

function fmt(value: number, unit: Unit): string {
  const num = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));
  switch (unit) {
    case 'count/s':
      return value >= 1000 ? `${num(value / 1000)}k` : value.toFixed(0);
    case 'ms':
      return `${num(value)} ms`;
    case 'us':
      return `${num(value)} µs`;
    case 'MB/s':
      return `${value.toFixed(0)} MB/s`;
    case 's/GB':
      return `${num(value)} s/GB`;
    case 'KB':
      return `${num(value)} KB`;
    case 'share':
      return `${(value * 100).toFixed(0)}%`;
    case 'fraction':
      return value === 0 ? '0%' : value === 1 ? '100%' : `${(value * 100).toPrecision(3)}%`;
  }
}

const ratio = (r: number): string => `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(2) : r.toPrecision(2)}×`;

function cellText(label: string, cell: Cell | undefined, row: Row, base: Cell | undefined, isBase: boolean, seen: Set<string>): string {
  if (cell === undefined) return `${label} —`;
  if ('na' in cell) {
    // The reason once per scenario; the scenario's other rows just say n/a.
    if (seen.has(`${label}\0${cell.na}`)) return `${label} n/a`;
    seen.add(`${label}\0${cell.na}`);
    return `${label} n/a (${cell.na.length > 90 ? `${cell.na.slice(0, 87)}...` : cell.na})`;
  }
  const text = `${label} ${fmt(cell.value, row.unit)}`;
  if (isBase || row.better === 'none' || row.unit === 'fraction' || base === undefined || 'na' in base || base.value === 0) return text;
  return `${text} (${ratio(cell.value / base.value)})`;
}

/** clawbox ÷ peer for each peer; SOCKS peers are compared with clawbox's SOCKS listener. */
const COUNTERPART: Readonly<Record<string, string>> = { dante: 'clawbox-socks', 'sandbox-runtime-socks': 'clawbox-socks' };

function versusPeers(row: Row, baseline: string): string | null {
  if (row.better === 'none' || row.unit === 'fraction') return null;
  const parts: string[] = [];
  for (const [label, cell] of Object.entries(row.cells)) {
    if (label === baseline || label.startsWith('clawbox') || 'na' in cell) continue;
    const ours = row.cells[COUNTERPART[label] ?? 'clawbox'] ?? row.cells.clawbox;
    if (ours === undefined || 'na' in ours || cell.value === 0) continue;
    const name = COUNTERPART[label] && row.cells[COUNTERPART[label]] ? COUNTERPART[label] : 'clawbox';
    parts.push(`${name} ÷ ${label} ${ratio(ours.value / cell.value)}`);
  }
  return parts.length > 0 ? `      ${parts.join('   ')}` : null;
}

export interface TableHeader {
  readonly title: string;
  readonly notes: readonly string[];
  /** Scenario name → one-line description of what it ran. */
  readonly scenarios: Readonly<Record<string, string>>;
}

export function renderTable(rows: readonly Row[], header: TableHeader): string {
  const out: string[] = [header.title, ...header.notes.map((n) => `  ${n}`), ''];
  const width = Math.max(...rows.map((r) => r.metric.length + 2)) + 1;
  let scenario = '';
  let seen = new Set<string>();
  for (const row of rows) {
    if (row.scenario !== scenario) {
      scenario = row.scenario;
      seen = new Set<string>();
      const what = header.scenarios[scenario];
      out.push(`[${scenario}]${what ? ` ${what}` : ''}`);
    }
    const baseline = row.baseline ?? 'direct';
    const base = row.cells[baseline];
    const arrow = row.better === 'higher' ? ' ↑' : row.better === 'lower' ? ' ↓' : '';
    const cells = Object.entries(row.cells).map(([label, cell]) => cellText(label, cell, row, base, label === baseline, seen));
    out.push(`  ${(row.metric + arrow).padEnd(width)}${cells.join('  |  ')}`);
    const versus = versusPeers(row, baseline);
    if (versus !== null) out.push(versus);
  }
  return out.join('\n');
}
