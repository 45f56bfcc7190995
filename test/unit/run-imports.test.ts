import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * Every module and package reached from `entries` through static imports (the ones the CLI bundle evaluates as soon
 * as the module that has them is): what a command's start pays for, whatever its path then is. Dynamic imports,
 * which the bundle runs only when reached, are not followed.
 */
async function staticallyReached(entries: readonly string[]): Promise<Set<string>> {
  const { metafile } = await build({
    entryPoints: [...entries],
    absWorkingDir: ROOT, // the metafile's paths are then relative to the repository
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    write: false,
    metafile: true,
    outdir: join(ROOT, 'dist', 'unused'),
    logLevel: 'silent',
  });
  const inputs: Metafile['inputs'] = metafile.inputs;
  const reached = new Set<string>();
  const visit = (path: string): void => {
    if (reached.has(path)) return;
    reached.add(path);
    for (const imported of inputs[path]?.imports ?? []) {
      if (imported.kind === 'import-statement' || imported.kind === 'require-call') visit(imported.path);
    }
  };
  for (const entry of entries) visit(entry);
  return reached;
}

describe('what `clawbox run` loads as it starts', () => {
  it('reaches neither the config schema (zod) nor the YAML parser: a config found in the cache needs neither', async () => {
    // src/cli/main.ts loads the command's module when it is asked for (a dynamic import): both are roots.
    const reached = await staticallyReached(['src/cli/main.ts', 'src/cli/run-command.ts']);
    assert.ok(reached.has('runner/sandbox.ts') && reached.has('src/cli/config-cache.ts'), 'the walk reaches the runner and the config cache');
    const costly = [...reached].filter((p) => /^src\/config\/(schema|load|suggest)\.ts$/.test(p) || p === 'zod' || p === 'yaml');
    // Once (60761bb), a constant imported from the schema's module put the schema's construction, about 10 ms, back
    // into every run.
    assert.deepEqual(costly, []);
  });
});
