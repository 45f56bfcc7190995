import { readFileSync } from 'node:fs';

/** Whether a process of this host still exists (EPERM: it exists but is not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` is a `clawbox pool-refill` (a helper's, or a resident runner's, pid may have gone to another process since). */
export function isRefillHelper(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('pool-refill');
  } catch {
    return false;
  }
}
