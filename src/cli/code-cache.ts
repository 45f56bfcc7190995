/**
 * Runs the CLI bundle (dist/bundle/clawbox.cjs, made by scripts/bundle-cli.ts) from a V8 code cache, for the
 * `clawbox` executable (through its launcher, launch.ts): a fresh `clawbox run` otherwise spends most of its start
 * resolving and compiling modules.
 *
 * The cache is what V8 compiled in an earlier run, written when that run exited. It sits beside the bundle when
 * that directory is writable (whoever can write there can change the bundle itself), else in the user's own
 * cache directory, and only if no one else can write there: cached code is code that runs.
 */
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import vm from 'node:vm';
import { writeWhole } from '../write-whole.js';

/** How the bundle was compiled: from the cache, or anew (no cache yet, or V8 refused it: other V8 or flags). */
export type CacheUse = 'used' | 'absent' | 'rejected' | 'off';

export interface LaunchedBundle {
  readonly cache: CacheUse;
  /** Writes what V8 has compiled so far for the next run; false when there is nowhere safe to write it. */
  saveCache(): boolean;
}

const CACHE_SUFFIX = '.v8cache';

/**
 * The cache file for this bundle as built, for this Node, and for one command: a cache holds what its run
 * compiled, so `clawbox --help` run first must not leave `clawbox run` a cache of almost nothing. A rebuilt bundle
 * gets new names: V8 checks its own version and flags, but of the source only the length.
 */
export function cacheFileName(bundle: string, command: string): string {
  const kind = /^[a-z]{1,16}$/.test(command) ? command : 'other';
  return `clawbox-${kind}-${buildKey(bundle)}${CACHE_SUFFIX}`;
}

/** The bundle as built, for this Node: what a cache of anything the bundle's code computed is valid for. */
export function buildKey(bundle: string): string {
  const st = statSync(bundle);
  return `${process.version}-${process.arch}-${st.size}-${Math.trunc(st.mtimeMs)}-${st.ino}`;
}

/** Beside the bundle if writable, else $XDG_CACHE_HOME/clawbox (default ~/.cache/clawbox) if it is ours alone. */
export function cacheDirFor(bundle: string): string | null {
  const beside = dirname(bundle);
  try {
    accessSync(beside, constants.W_OK);
    return beside;
  } catch {
    // not ours to write: try the user's cache directory
  }
  try {
    const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'clawbox');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    return st.uid === process.getuid?.() && (st.mode & 0o022) === 0 ? dir : null;
  } catch {
    return null;
  }
}

/**
 * Runs a CommonJS bundle as the main module, compiled from `cacheDir`'s cache for `command` when there is a
 * usable one.
 */
export function launchBundle(bundle: string, cacheDir: string | null, command: string): LaunchedBundle {
  const cachePath = cacheDir === null ? null : join(cacheDir, cacheFileName(bundle, command));
  let cachedData: Buffer | undefined;
  if (cachePath !== null) {
    try {
      cachedData = readFileSync(cachePath);
    } catch {
      cachedData = undefined; // none yet
    }
  }
  // A shebang line is not JavaScript inside the module wrapper. The bundle is ASCII (esbuild escapes the rest,
  // scripts/bundle-cli.ts), so latin1 reads it exactly, and faster than UTF-8's decoder.
  const source = readFileSync(bundle, 'latin1').replace(/^#!.*/, '');
  const script = new vm.Script(Module.wrap(source), {
    filename: bundle,
    ...(cachedData ? { cachedData } : {}),
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const cache: CacheUse = cachePath === null ? 'off' : cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';

  const main = new Module(bundle);
  main.filename = bundle;
  main.loaded = true;
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  wrapper.call(main.exports, main.exports, createRequire(bundle), main, bundle, dirname(bundle));

  return {
    cache,
    saveCache(): boolean {
      if (cachePath === null || cacheDir === null) return false;
      if (!writeWhole(cachePath, script.createCachedData())) return false;
      try {
        const current = `-${buildKey(bundle)}${CACHE_SUFFIX}`;
        for (const name of readdirSync(cacheDir)) {
          if (name.startsWith('clawbox-') && name.endsWith(CACHE_SUFFIX) && !name.endsWith(current)) unlinkSync(join(cacheDir, name)); // earlier builds
        }
      } catch {
        // an earlier build's cache left behind is only disk space
      }
      return true;
    },
  };
}
