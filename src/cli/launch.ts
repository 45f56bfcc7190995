#!/usr/bin/env node
/**
 * The `clawbox` executable: the CLI bundle from its code cache (code-cache.ts), or, in a build without a bundle
 * (tsc only), the CLI's modules as they are.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDirFor, launchBundle } from './code-cache.js';

const bundle = join(import.meta.dirname, '..', '..', 'bundle', 'clawbox.cjs');
if (existsSync(bundle)) {
  const launched = launchBundle(bundle, cacheDirFor(bundle), process.argv[2] ?? '');
  if (launched.cache !== 'used') process.once('exit', () => launched.saveCache());
} else {
  await import('./main.js');
}
