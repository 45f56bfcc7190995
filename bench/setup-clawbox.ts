/**
 * clawbox made ready in the tree the bench runs from, before anything is measured: `scripts/setup.sh`, the script a
 * user runs (the Docker engine installed and started, npm packages, the build, the images; each step skipped when
 * already done). So `npm run bench` works on a fresh machine as it does here, and never measures a dist/ older than
 * the sources beside it. Its output goes to stderr with the bench's progress: stdout is the table's.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './lib/exec.js';

const SETUP = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'setup.sh');
/** A fresh machine downloads the Docker engine and debootstraps two images; far less than this. */
const SETUP_LIMIT_MS = 15 * 60_000;

export function setUpClawbox(): void {
  progress('setting up clawbox: scripts/setup.sh (Docker engine, build, images; what is done already is skipped)');
  const r = spawnSync('bash', [SETUP], { stdio: ['ignore', 2, 2], timeout: SETUP_LIMIT_MS });
  if (r.error) throw new Error(`scripts/setup.sh did not finish: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`scripts/setup.sh failed (${r.signal ?? `exit ${String(r.status)}`}); its output above says where`);
}
