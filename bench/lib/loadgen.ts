/** Runs bench/.build/loadgen and parses its JSON lines (see loadgen.c for the modes). */
import { spawn } from 'node:child_process';
import { LOADGEN } from '../build.js';
import { onCleanup } from './cleanup.js';

export interface LoadgenResult {
  readonly phase: 'done' | 'open' | 'check';
  readonly mode: string;
  readonly ok: number;
  readonly elapsed_s: number;
  readonly per_s: number;
  readonly bytes: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly max_us: number;
  /** Rate mode through a proxy: from the TCP connect to the proxy until its CONNECT or SOCKS5 reply (null direct). */
  readonly setup_p50_us: number | null;
  readonly setup_p99_us: number | null;
  /** Rate mode: from the open tunnel until the payload's echo is back (the data path, there and back). */
  readonly exchange_p50_us: number | null;
  readonly exchange_p99_us: number | null;
  readonly cpu_s: number;
  /** Share of one core the load generator used: near 1.0 means it, not the target, may be the limit. */
  readonly cpu_share: number;
  readonly open: number;
  readonly errors: { readonly connect: number; readonly reply: number; readonly data: number; readonly timeout: number };
}

export type Proto = 'direct' | 'connect' | 'socks';

export interface LoadgenArgs {
  readonly mode: 'rate' | 'bulk' | 'http' | 'idle';
  readonly proto: Proto;
  readonly proxy?: string;
  readonly target: string;
  readonly options: Readonly<Record<string, number>>;
}

function isResult(v: unknown): v is LoadgenResult {
  return typeof v === 'object' && v !== null && 'phase' in v && 'ok' in v && 'errors' in v;
}

export function errorsOf(r: LoadgenResult): number {
  return r.errors.connect + r.errors.reply + r.errors.data + r.errors.timeout;
}

/**
 * Runs one load; `onOpen` (idle mode) is called when all tunnels are open and the loadgen is holding them; the
 * check starts when it resolves. Killed after `limitMs` whatever happens.
 */
export function runLoadgen(args: LoadgenArgs, limitMs: number, onOpen?: (open: LoadgenResult) => Promise<void>): Promise<LoadgenResult[]> {
  const argv = [args.mode, `proto=${args.proto}`, `target=${args.target}`];
  if (args.proxy) argv.push(`proxy=${args.proxy}`);
  for (const [k, v] of Object.entries(args.options)) argv.push(`${k}=${v}`);
  return new Promise((resolve, reject) => {
    const proc = spawn(LOADGEN, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const pid = proc.pid ?? -1;
    let exited = false;
    onCleanup(`loadgen ${pid}`, () => {
      if (!exited && pid > 0) proc.kill('SIGKILL');
    });
    const results: LoadgenResult[] = [];
    let stderr = '';
    let partial = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (c: string) => {
      stderr = (stderr + c).slice(-2000);
    });
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const parsed: unknown = JSON.parse(line);
        if (!isResult(parsed)) continue;
        results.push(parsed);
        if (parsed.phase === 'open') {
          const go = (): void => {
            if (!exited) proc.stdin.write('\n');
          };
          if (onOpen) onOpen(parsed).then(go, go);
          else go();
        }
      }
    });
    proc.stdin.on('error', () => undefined);
    proc.once('exit', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      if (results.length > 0 && code === 0) resolve(results);
      else reject(new Error(`loadgen ${argv.join(' ')}: ${signal ?? `exit ${String(code)}`} ${stderr.trim().split('\n').at(-1) ?? ''}`));
    });
  });
}
