/**
 * The bundle's launcher: dist/bundle/launch.cjs, which scripts/bundle-cli.ts builds from this file beside the bundle
 * and bin/clawbox runs. It runs the CLI bundle (clawbox.cjs, beside it) from its code cache (code-cache.ts).
 * A `clawbox run` goes first to a resident runner when one serves this build (runner-client.ts): then the bundle
 * is not loaded at all. CLAWBOX_RUNNER=off skips the runner.
 *
 * It is CommonJS, as the bundle is: an ES module as the main script starts Node's ES module loader first, about
 * 5 ms of every command measured here. tsc does not build it (tsconfig.build.json): as an ES module beside the
 * CLI's modules it would have no bundle beside it.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_STATE_DIR } from '../../runner/state-dir.js';
import { cacheDirFor, launchBundle } from './code-cache.js';
import { runThroughResidentRunner } from './runner-client.js';
import { runnerPidFile } from './runner-protocol.js';

const bundle = join(dirname(fileURLToPath(import.meta.url)), 'clawbox.cjs');

function launch(): void {
  const launched = launchBundle(bundle, cacheDirFor(bundle), process.argv[2] ?? '');
  if (launched.cache !== 'used') process.once('exit', () => launched.saveCache());
}

if (process.argv[2] === 'run' && process.env.CLAWBOX_RUNNER !== 'off') {
  const request = { args: process.argv.slice(3), cwd: process.cwd(), configEnv: process.env.CLAWBOX_CONFIG ?? null };
  void runThroughResidentRunner(runnerPidFile(DEFAULT_STATE_DIR, bundle), request).then((outcome) => {
    if (outcome.served) process.exitCode = outcome.exitCode;
    else launch();
  });
} else {
  launch();
}
