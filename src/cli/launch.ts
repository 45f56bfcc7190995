/**
 * The bundle's launcher: dist/bundle/launch.cjs, which scripts/bundle-cli.ts builds from this file beside the bundle
 * and bin/clawbox runs. It runs the CLI bundle (clawbox.cjs, beside it) from its code cache (code-cache.ts).
 *
 * It is CommonJS, as the bundle is: an ES module as the main script starts Node's ES module loader first, about
 * 5 ms of every command measured here. tsc does not build it (tsconfig.build.json): as an ES module beside the
 * CLI's modules it would have no bundle beside it.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDirFor, launchBundle } from './code-cache.js';

const bundle = join(dirname(fileURLToPath(import.meta.url)), 'clawbox.cjs');
const launched = launchBundle(bundle, cacheDirFor(bundle), process.argv[2] ?? '');
if (launched.cache !== 'used') process.once('exit', () => launched.saveCache());
