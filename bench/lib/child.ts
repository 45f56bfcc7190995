/**
 * Long-lived children (peers, upstreams, the clawbox gateway). Each is registered for cleanup at spawn, so a
 * crash or Ctrl-C of the bench kills it; stop() asks with SIGTERM and escalates to SIGKILL after a bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { onCleanup } from './cleanup.js';
import { processTree } from './procfs.js';

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** null while running, else why it ended ("exit 1: <last stderr line>"). */
  readonly exitReason: () => string | null;
  /** Last lines of stderr+stdout, for error messages. */
  readonly tail: () => string;
  /** Resolves when a line of output matches (or rejects when the child exits or the time is up). */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<string>;
  stop(timeoutMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** Raise RLIMIT_NOFILE of the child (prlimit execs the command, so the pid is the command's own). */
  readonly nofile?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Every line of stdout and stderr, as it comes. */
  readonly onLine?: (line: string) => void;
}

export function spawnChild(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const argv = opts.nofile ? ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--', cmd, ...args] : [cmd, ...args];
  const proc: ChildProcess = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  const lines: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  let exit: string | null = null;
  const onLine = (line: string): void => {
    opts.onLine?.(line);
    lines.push(line);
    if (lines.length > 40) lines.shift();
    for (const w of waiters) {
      if (w.pattern.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };
  for (const stream of [proc.stdout, proc.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) onLine(line);
    });
  }
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      exit = `${signal ? `killed by ${signal}` : `exit ${String(code)}`}: ${lines.filter((l) => l.trim() !== '').at(-1) ?? ''}`.slice(0, 200);
      resolve();
    });
    proc.once('error', (err) => {
      exit = `spawn failed: ${err.message}`;
      resolve();
    });
  });
  const pid = proc.pid ?? -1;
  // The whole tree: dante's mother forks children that must not outlive the bench.
  const killTree = (): void => {
    if (pid <= 0) return;
    for (const p of processTree(pid).reverse()) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  onCleanup(`child ${name}`, () => {
    if (exit === null) killTree();
  });

  return {
    name,
    pid,
    exitReason: () => exit,
    tail: () => lines.slice(-8).join('\n'),
    waitForOutput(pattern, timeoutMs) {
      const hit = lines.find((l) => pattern.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise<string>((resolve, reject) => {
        const waiter = { pattern, resolve: (line: string) => { clearTimeout(timer); resolve(line); } };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`${name}: no output matching ${String(pattern)} after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then(() => {
          if (waiters.delete(waiter)) {
            clearTimeout(timer);
            reject(new Error(`${name} ${exit ?? 'exited'}`));
          }
        });
      });
    },
    async stop(timeoutMs = 5000) {
      if (exit !== null || pid <= 0) return;
      const tree = processTree(pid);
      proc.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
      if (!killed) {
        killTree();
        await exited;
      }
      // Children that outlived their parent (forked workers) are killed by the pids seen before the stop.
      for (const p of tree.slice(1)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone, as expected
        }
      }
    },
  };
}
