import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDirFor, cacheFileName } from '../../src/cli/code-cache.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** A bundle that prints a mark: each launch must run it, whether compiled from cache or not. */
function writeBundle(dir: string, text: string): string {
  const file = join(dir, 'clawbox.cjs');
  writeFileSync(file, `#!/usr/bin/env node\nconsole.log(JSON.stringify([${JSON.stringify(text)}, __filename, typeof require]));\n`);
  return file;
}

const caches = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.v8cache'));

/**
 * One launch in a fresh process, as the `clawbox` executable does it (V8 keeps what it compiled for the life of a
 * process, so a second launch in this one would not read the file). Returns the bundle's output, how it was
 * compiled, and whether the cache was saved.
 */
function launch(bundle: string, cacheDir: string | null, command = 'run'): { printed: unknown; cache: string; saved: boolean } {
  const script = `import { launchBundle } from ${JSON.stringify(join(ROOT, 'dist/src/cli/code-cache.js'))};
const launched = launchBundle(${JSON.stringify(bundle)}, ${JSON.stringify(cacheDir)}, ${JSON.stringify(command)});
console.log(JSON.stringify({ cache: launched.cache, saved: launched.saveCache() }));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const [printed, result] = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown);
  return { printed, ...(result as { cache: string; saved: boolean }) };
}

describe('launchBundle', () => {
  it('compiles anew and saves, then runs from the cache; a damaged cache is refused and rewritten', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bundle = writeBundle(dir, 'one');

    // Ran as a CommonJS module, its shebang line and all.
    assert.deepEqual(launch(bundle, dir), { printed: ['one', bundle, 'function'], cache: 'absent', saved: true });
    assert.deepEqual(caches(dir), [cacheFileName(bundle, 'run')]);
    assert.equal(launch(bundle, dir).cache, 'used');

    writeFileSync(join(dir, cacheFileName(bundle, 'run')), Buffer.alloc(4096, 7));
    assert.deepEqual(launch(bundle, dir), { printed: ['one', bundle, 'function'], cache: 'rejected', saved: true });
    assert.equal(launch(bundle, dir).cache, 'used');
  });

  it('a rebuilt bundle gets a cache of its own, and saving it removes the old one', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bundle = writeBundle(dir, 'old');
    launch(bundle, dir);
    const oldName = cacheFileName(bundle, 'run');
    // Same length, other content: V8 alone would take the old cache, as it checks only the source's length.
    writeBundle(dir, 'new');
    utimesSync(bundle, new Date(), new Date(Date.now() + 5000));
    assert.notEqual(cacheFileName(bundle, 'run'), oldName);
    assert.deepEqual(launch(bundle, dir), { printed: ['new', bundle, 'function'], cache: 'absent', saved: true });
    assert.deepEqual(caches(dir), [cacheFileName(bundle, 'run')]);
  });

  it('keeps one cache per command, and a rebuild drops them all', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bundle = writeBundle(dir, 'one');
    assert.equal(launch(bundle, dir, 'help').cache, 'absent');
    assert.equal(launch(bundle, dir, 'run').cache, 'absent');
    assert.equal(launch(bundle, dir, '../../etc/x').cache, 'absent');
    assert.deepEqual(caches(dir).sort(), [cacheFileName(bundle, 'help'), cacheFileName(bundle, 'other'), cacheFileName(bundle, 'run')].sort());
    assert.equal(cacheFileName(bundle, '../../etc/x'), cacheFileName(bundle, 'other'));
    assert.equal(launch(bundle, dir, 'run').cache, 'used');
    writeBundle(dir, 'two');
    utimesSync(bundle, new Date(), new Date(Date.now() + 5000));
    launch(bundle, dir, 'run');
    assert.deepEqual(caches(dir), [cacheFileName(bundle, 'run')]);
  });

  it('without a cache directory the bundle runs and nothing is written', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bundle = writeBundle(dir, 'off');
    assert.deepEqual(launch(bundle, null), { printed: ['off', bundle, 'function'], cache: 'off', saved: false });
    assert.deepEqual(caches(dir), []);
  });
});

describe('cacheDirFor', () => {
  it('is the bundle directory when it is writable', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    assert.equal(cacheDirFor(writeBundle(dir, 'x')), dir);
  });

  // As root every directory is writable: the other cases run as nobody, in a child process.
  it("falls back to the user's own cache directory, and refuses one that others can write", { skip: process.getuid?.() !== 0 && 'needs root to run as nobody' }, (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const bundleDir = join(dir, 'dist');
    mkdirSync(bundleDir);
    const bundle = writeBundle(bundleDir, 'x'); // root's, not writable by nobody
    chmodSync(dir, 0o755);
    const home = join(dir, 'home');
    mkdirSync(home);
    chmodSync(home, 0o777);
    const shared = join(dir, 'shared');
    mkdirSync(join(shared, 'clawbox'), { recursive: true });
    chmodSync(join(shared, 'clawbox'), 0o777); // anyone may write here: no cache
    const probe = (xdg: string): string => {
      const run = spawnSync(
        process.execPath,
        ['--input-type=module', '-e', `import { cacheDirFor } from ${JSON.stringify(join(ROOT, 'dist/src/cli/code-cache.js'))}; console.log(JSON.stringify(cacheDirFor(${JSON.stringify(bundle)})));`],
        { uid: 65534, gid: 65534, env: { PATH: process.env.PATH, HOME: home, XDG_CACHE_HOME: xdg }, encoding: 'utf8' },
      );
      assert.equal(run.status, 0, run.stderr);
      return JSON.parse(run.stdout) as string;
    };
    assert.equal(probe(join(home, '.cache')), join(home, '.cache', 'clawbox'));
    assert.ok(existsSync(join(home, '.cache', 'clawbox')));
    assert.equal(probe(shared), null);
  });
});
