/**
 * CPU and memory of a process tree from /proc. Multi-process proxies (dante forks negotiator, request and io
 * children) are measured as the sum over the tree, so they are compared on the same footing as one process.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) is 100 on every Linux/x86-64 build Debian ships

interface StatLine {
  readonly ppid: number;
  readonly ticks: number;
  readonly sysTicks: number;
}

function readStat(pid: number): StatLine | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17 (reaped children).
    const sys = Number(fields[12]) + Number(fields[14]);
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[13]) + sys, sysTicks: sys };
  } catch {
    return null;
  }
}

/** `root` and every live descendant. */
export function processTree(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) parents.set(Number(entry), stat.ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i += 1) {
    for (const [pid, ppid] of parents) if (ppid === tree[i]) tree.push(pid);
  }
  return tree;
}

/**
 * CPU seconds (user + system) of the tree, counting each process's reaped children (cutime, cstime): dante's
 * children come and go during a scenario, and without them a child that exited took its CPU time out of the sum
 * (dante once showed a negative CPU per GB). A child that exits but is not yet reaped is still in the tree.
 */
export function cpuSeconds(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + (readStat(pid)?.ticks ?? 0), 0) / CLK_TCK;
}

/** CPU seconds of the tree in the kernel (stime) alone: how much of the proxy's cost is syscalls and TCP. */
export function sysSeconds(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + (readStat(pid)?.sysTicks ?? 0), 0) / CLK_TCK;
}

export interface Memory {
  /** Sum of RSS over the tree, bytes (counts shared pages once per process). */
  readonly rss: number;
  /** Sum of PSS over the tree, bytes: shared pages split between sharers, so forked trees are not overcounted. */
  readonly pss: number;
}

function rollupField(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

export function memory(root: number): Memory {
  let rss = 0;
  let pss = 0;
  for (const pid of processTree(root)) {
    try {
      const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      rss += rollupField(text, 'Rss');
      pss += rollupField(text, 'Pss');
    } catch {
      // exited meanwhile
    }
  }
  return { rss, pss };
}
