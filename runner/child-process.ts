/**
 * node:child_process, loaded on first use. A `clawbox run` spawns nothing on its usual path (gcc for a missing
 * launcher, iptables when its environment is checked again, a detached pool refill), and loading the module was
 * about 1.5 ms of every start of the CLI (README, "Start time"). `require`, not `import()`: the CLI bundle runs as a
 * vm.Script, where a dynamic import goes through an experimental loader hook that prints a warning.
 */
import type * as ChildProcessModule from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';

const require = createRequire(import.meta.url);

/** The module; Node's module cache keeps it after the first call. */
export const childProcess = (): typeof ChildProcessModule => require('node:child_process') as typeof ChildProcessModule;

/** `execFile`, promised as `promisify(execFile)` is: its stdout and stderr, or an error carrying them. */
export const runFile = (file: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> =>
  promisify(childProcess().execFile)(file, args);
