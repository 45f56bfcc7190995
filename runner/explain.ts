/**
 * The seed document's Troubleshooting section, built in: each abnormal end says what happened and which key
 * to change.
 */
function size(bytes: number): string {
  const gb = bytes / 1024 ** 3;
  if (gb >= 1) return `${Number.isInteger(gb) ? gb : gb.toFixed(2)}gb`;
  return `${Math.round(bytes / 1024 ** 2)}m`;
}

export function explainOom(memoryLimit: number): string {
  return `killed: out of memory at ${size(memoryLimit)}; raise sandbox.resource_limits.memory (or reduce the data the tool loads)`;
}

export function explainTimeout(timeoutMs: number): string {
  return `killed: ran longer than sandbox.timeout (${timeoutMs / 1000} s); raise sandbox.timeout or the tool's sandbox.tools.<name>.timeout`;
}

export function explainDenied(hosts: readonly string[]): string {
  const shown = hosts.slice(0, 5).join(', ');
  return `network: ${shown}${hosts.length > 5 ? ` and ${hosts.length - 5} more` : ''} ${hosts.length === 1 ? 'is' : 'are'} not in sandbox.allowed_hosts; add ${hosts.length === 1 ? 'it' : 'them'} (or use clawbox run --allow-host HOST) if the tool needs ${hosts.length === 1 ? 'it' : 'them'}`;
}

export interface MountAccess {
  readonly index: number;
  readonly source: string;
  readonly target: string;
  readonly mode: 'ro' | 'rw';
}

/**
 * "Tool cannot access required files": checked before the run from the host path's owner and mode bits against
 * the sandbox user, so the user learns the mount, its mode, the owner and the fix instead of a bare EACCES.
 */
export function mountAccessWarnings(mounts: readonly MountAccess[], user: string, stat: (path: string) => { uid: number; gid: number; mode: number }): string[] {
  const [uid = 65534, gid = uid] = user.split(':').map(Number);
  const warnings: string[] = [];
  for (const mount of mounts) {
    let info: { uid: number; gid: number; mode: number };
    try {
      info = stat(mount.source);
    } catch {
      continue;
    }
    const bits = uid === 0 ? 7 : info.uid === uid ? (info.mode >> 6) & 7 : info.gid === gid ? (info.mode >> 3) & 7 : info.mode & 7;
    const isDir = (info.mode & 0o170000) === 0o040000;
    const needs = (mount.mode === 'rw' ? 2 : 0) | 4 | (isDir ? 1 : 0);
    if ((bits & needs) === needs) continue;
    warnings.push(
      `sandbox.mounts[${mount.index}]: ${mount.source} → ${mount.target} (${mount.mode}) is owned by ${info.uid}:${info.gid} with mode ` +
        `${(info.mode & 0o777).toString(8).padStart(4, '0')}; the sandbox runs as ${uid}:${gid} and will get "permission denied" ` +
        `${mount.mode === 'rw' ? 'reading or writing' : 'reading'} it. Fix: chown/chmod the host path, or set sandbox.user`,
    );
  }
  return warnings;
}
