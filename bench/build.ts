/** Builds the C load generator and upstreams into bench/.build (gcc -O2); installs gcc first when missing. */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failure, ok, progress, run, which } from './lib/exec.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = join(HERE, '.build');
export const LOADGEN = join(BUILD_DIR, 'loadgen');
export const UPSTREAMS = join(BUILD_DIR, 'upstreams');

export function buildNative(): void {
  if (which('gcc') === null) {
    progress('installing gcc');
    const r = run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'gcc', 'libc6-dev'], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeoutMs: 300_000,
    });
    if (!ok(r)) throw new Error(`cannot install gcc: ${failure(r)}`);
  }
  mkdirSync(BUILD_DIR, { recursive: true });
  for (const [src, out] of [['loadgen.c', LOADGEN], ['upstreams.c', UPSTREAMS]] as const) {
    const r = run('gcc', ['-O2', '-Wall', '-Wextra', '-o', out, join(HERE, src)], { timeoutMs: 120_000 });
    if (!ok(r)) throw new Error(`gcc ${src}: ${failure(r)}`);
  }
}
