import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigCache, loadConfigCached } from '../../src/cli/config-cache.js';
import { DEFAULT_CONFIG_PATH, parseConfig } from '../../src/config/load.js';
import { ClawboxError } from '../../src/errors.js';

const ONE = 'sandbox:\n  timeout: 5\n  allowed_hosts: [api.example.com]\n';
const TWO = 'sandbox:\n  timeout: 7\n';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'clawbox-config-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const entries = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('clawbox-config-')).sort();

describe('ConfigCache', () => {
  it('gives back, frozen, the config kept for the same text, and nothing for another text', (t) => {
    const cache = new ConfigCache(tempDir(t), 'build-a');
    assert.equal(cache.get(ONE), null);
    cache.put(ONE, parseConfig(ONE));
    const kept = cache.get(ONE);
    assert.deepEqual(kept, parseConfig(ONE));
    assert.ok(Object.isFrozen(kept?.sandbox.resource_limits), 'as frozen as a parsed config');
    assert.equal(cache.get(TWO), null);
    assert.equal(cache.get(`${ONE} `), null, 'any change to the text is another entry');
  });

  it('keeps entries per build: another build sees none, and its first entry removes the old build\'s', (t) => {
    const dir = tempDir(t);
    new ConfigCache(dir, 'build-a').put(ONE, parseConfig(ONE));
    const rebuilt = new ConfigCache(dir, 'build-b');
    assert.equal(rebuilt.get(ONE), null);
    rebuilt.put(TWO, parseConfig(TWO));
    assert.equal(entries(dir).length, 1);
    assert.match(entries(dir)[0], /^clawbox-config-build-b-[0-9a-f]{64}\.json$/);
  });

  it('keeps the 32 entries written last', (t) => {
    const dir = tempDir(t);
    const cache = new ConfigCache(dir, 'build-a');
    const texts = Array.from({ length: 34 }, (_, i) => `sandbox:\n  timeout: ${i + 1}\n`);
    const seen = new Set<string>();
    texts.forEach((text, i) => {
      cache.put(text, parseConfig(text));
      // Written a second apart, oldest first, whatever the file system's clock granularity.
      for (const name of entries(dir).filter((n) => !seen.has(n))) {
        utimesSync(join(dir, name), 1_000_000 + i, 1_000_000 + i);
        seen.add(name);
      }
    });
    assert.equal(entries(dir).length, 32);
    assert.equal(cache.get(texts[0]), null);
    assert.equal(cache.get(texts[1]), null);
    assert.deepEqual(cache.get(texts[2]), parseConfig(texts[2]));
    assert.deepEqual(cache.get(texts[33]), parseConfig(texts[33]));
  });

  it('treats a damaged entry as none', (t) => {
    const dir = tempDir(t);
    const cache = new ConfigCache(dir, 'build-a');
    cache.put(ONE, parseConfig(ONE));
    for (const damage of ['{"sandbox": {', 'null', '']) {
      writeFileSync(join(dir, entries(dir)[0]), damage);
      assert.equal(cache.get(ONE), null, JSON.stringify(damage));
    }
  });

  it('is the bundle\'s only: none for modules outside it', (t) => {
    const dir = tempDir(t);
    assert.equal(ConfigCache.ofBundle(pathToFileURL(join(dir, 'config-cache.js')).href), null);
    writeFileSync(join(dir, 'clawbox.cjs'), '// a bundle\n');
    assert.ok(ConfigCache.ofBundle(pathToFileURL(join(dir, 'clawbox.cjs')).href) instanceof ConfigCache);
  });
});

describe('loadConfigCached', () => {
  it('parses a config it has not seen and keeps it; a kept one is read, not parsed', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'config.yml');
    writeFileSync(file, ONE);
    const cache = new ConfigCache(dir, 'build-a');
    const first = await loadConfigCached(file, cache);
    assert.deepEqual(first, { path: file, config: parseConfig(ONE), text: ONE });
    assert.equal(entries(dir).length, 1);

    // Plant another config under ONE's text: what comes back is the kept entry, so nothing was parsed.
    cache.put(ONE, parseConfig(TWO));
    assert.equal((await loadConfigCached(file, cache)).config.sandbox.timeout, 7000);
    // A changed file is its own entry, parsed anew.
    writeFileSync(file, TWO.replace('7', '9'));
    assert.equal((await loadConfigCached(file, cache)).config.sandbox.timeout, 9000);
  });

  it('keeps no config that fails the schema, and reports it as loadConfig does', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'config.yml');
    writeFileSync(file, 'sandbox:\n  timout: 5\n');
    const cache = new ConfigCache(dir, 'build-a');
    await assert.rejects(loadConfigCached(file, cache), (err: unknown) => err instanceof ClawboxError && err.code === 'CONFIG_INVALID' && /timout/.test(err.details.join('\n')));
    assert.deepEqual(entries(dir), []);
    await assert.rejects(loadConfigCached(join(dir, 'nope.yml'), cache), (err: unknown) => err instanceof ClawboxError && err.code === 'CONFIG_NOT_FOUND');
  });

  it('gives the secure defaults when there is no file, kept like any other text', async (t) => {
    if (existsSync(DEFAULT_CONFIG_PATH)) {
      t.skip(`${DEFAULT_CONFIG_PATH} exists on this host`);
      return;
    }
    const cache = new ConfigCache(tempDir(t), 'build-a');
    assert.deepEqual(await loadConfigCached(undefined, cache, {}), { path: null, config: parseConfig(''), text: '' });
    cache.put('', parseConfig(TWO));
    assert.equal((await loadConfigCached(undefined, cache, {})).config.sandbox.timeout, 7000);
  });
});

describe('clawbox run (the bundle) and its config cache', () => {
  const ROOT = join(import.meta.dirname, '..', '..');
  const keptFor = (text: string): string[] =>
    readdirSync(join(ROOT, 'dist', 'bundle')).filter((n) => n.startsWith('clawbox-config-') && n.endsWith(`-${createHash('sha256').update(text).digest('hex')}.json`));

  it('refuses a config that fails the schema at every run, naming the key and line, and keeps nothing of it', (t) => {
    const dir = tempDir(t);
    const text = `sandbox:\n  timout: 5 # ${randomUUID()}\n`;
    writeFileSync(join(dir, 'bad.yml'), text);
    for (let i = 0; i < 2; i++) {
      const run = spawnSync(join(ROOT, 'bin', 'clawbox'), ['run', '--config', join(dir, 'bad.yml'), '--', 'true'], { encoding: 'utf8' });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /sandbox\.timout \(line 2\): unknown key; did you mean 'timeout'\?/);
    }
    assert.deepEqual(keptFor(text), []);
  });
});

