import { renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Writes a state file (mode 0600) so that readers see the old content or the whole new one, never a part. Never
 * throws: a state file is an optimisation, and without it the next process does the work again.
 */
export function writeStateFile(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, text, { mode: 0o600 });
    renameSync(temporary, path);
  } catch {
    rmSync(temporary, { force: true });
  }
}
