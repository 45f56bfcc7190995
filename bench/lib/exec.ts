/** Small wrappers over child_process for one-shot commands whose output we need (never for long-lived peers). */
import { spawnSync } from 'node:child_process';

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly error?: string;
}

/** Runs a command to completion with a hard time bound, so a hung installer or compiler cannot stall the bench. */
export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    env: opts.env ?? process.env,
    input: opts.input,
    maxBuffer: 64 * 1024 * 1024,
  });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    ...(r.error ? { error: r.error.message } : {}),
  };
}

export function ok(r: RunResult): boolean {
  return r.status === 0 && r.error === undefined;
}

/** The last meaningful line of a failed command, short enough for a table cell. */
export function failure(r: RunResult): string {
  const text = (r.error ?? `${r.stderr}\n${r.stdout}`).trim().split('\n').filter((l) => l.trim() !== '');
  return (text.at(-1) ?? `exit ${String(r.status)}`).slice(0, 160);
}

export function which(bin: string): string | null {
  const r = run('sh', ['-c', `command -v ${bin}`], { timeoutMs: 5000 });
  const path = r.stdout.trim();
  return ok(r) && path !== '' ? path : null;
}

export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
