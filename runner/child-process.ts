/**
 * node:child_process, loaded on first use. A `clawbox run` spawns nothing on its usual path (gcc for a missing
 * launcher, iptables when its environment is checked again, a detached pool refill), and loading the module was
 * about 1.5 ms of every start of the CLI (README, "Start time"). `require`, not `import()`: the CLI bundle runs as a
 * vm.Script, where a dynamic import goes through an experimental loader hook that prints a warning.
 */
import type * as ChildProcessModule from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let loaded: typeof ChildProcessModule | null = null;

export const childProcess = (): typeof ChildProcessModule => (loaded ??= require('node:child_process') as typeof ChildProcessModule);

/** `execFile`, promised: its stdout and stderr, or the error, carrying them. */
export function runFile(file: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    childProcess().execFile(file, args, (err, stdout, stderr) => {
      if (err === null) return resolve({ stdout, stderr });
      const failure: Error = Object.assign(err, { stdout, stderr });
      reject(failure);
    });
  });
}
