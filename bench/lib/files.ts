import { chmodSync, writeFileSync } from 'node:fs';

/** An empty log file that peers running as nobody/proxy can append to (writeFileSync's mode is masked by umask). */
export function writableLog(path: string): string {
  writeFileSync(path, '');
  chmodSync(path, 0o666);
  return path;
}
