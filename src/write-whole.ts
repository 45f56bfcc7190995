import { renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Writes a file (mode 0600) so that readers see the old content or the whole new one, never a part: state records
 * and the CLI's code cache. Never throws; false when the file could not be written. Each of these files is an
 * optimisation, and without it the next process does the work again.
 */
export function writeWhole(path: string, data: string | Uint8Array): boolean {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, data, { mode: 0o600 });
    renameSync(temporary, path);
    return true;
  } catch {
    rmSync(temporary, { force: true });
    return false;
  }
}
