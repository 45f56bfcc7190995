/**
 * The launcher (images/launcher/launch.c) is every sandbox's main process: it waits for the command on stdin and
 * execs it. Cold and pooled sandboxes run tools the same way, so a tool cannot tell them apart.
 * It is a static binary, bind-mounted read-only, so it works with any image.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { ClawboxError } from '../src/errors.js';
import { runFile as run } from './child-process.js';
import { clawboxRoot, DEFAULT_CACHE_DIR } from './images.js';

/** Where the launcher appears inside the sandbox. */
export const LAUNCHER_PATH = '/.clawbox/launch';
const MAGIC = 0x31425843;

let built: Promise<string> | null = null;

/** Compiles the launcher once per source version (gcc -static); returns the host path of the binary. */
export function ensureLauncher(cacheDir = DEFAULT_CACHE_DIR): Promise<string> {
  built ??= (async () => {
    const source = join(clawboxRoot(), 'images', 'launcher', 'launch.c');
    const digest = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
    const binary = join(cacheDir, `launch-${digest}`);
    if (existsSync(binary)) return binary;
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${binary}.${process.pid}.tmp`;
    try {
      await run('gcc', ['-static', '-Os', '-s', '-Wall', '-Wextra', '-o', partial, source]);
    } catch (err) {
      throw new ClawboxError('SANDBOX_FAILED', `cannot build the sandbox launcher with gcc (${(err as Error).message.split('\n')[0]}); install gcc and libc6-dev (scripts/setup.sh does)`, { cause: err });
    }
    renameSync(partial, binary); // atomic: concurrent builders never see a half-written binary
    return binary;
  })();
  built.catch(() => {
    built = null;
  });
  return built;
}

/** The one message the launcher reads: argv and extra environment, length-prefixed (see launch.c). */
export function launchMessage(argv: readonly string[], env: Readonly<Record<string, string>>): Buffer {
  const strings = (items: readonly string[]): Buffer[] => [
    u32(items.length),
    ...items.flatMap((item) => {
      if (item.includes('\0')) throw new ClawboxError('CLI_USAGE', `a command argument or environment value contains a NUL byte: ${JSON.stringify(item.slice(0, 40))}`);
      const bytes = Buffer.from(item, 'utf8');
      return [u32(bytes.length), bytes];
    }),
  ];
  const envEntries = Object.entries(env).map(([key, value]) => {
    if (key.length === 0 || key.includes('=')) throw new ClawboxError('CLI_USAGE', `invalid environment variable name ${JSON.stringify(key)}`);
    return `${key}=${value}`;
  });
  return Buffer.concat([u32(MAGIC), ...strings(argv), ...strings(envEntries)]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
