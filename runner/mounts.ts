/**
 * The gate for `sandbox.mounts`: the only way host files reach a sandbox. Every source is resolved to its real path
 * first (so a symlink cannot smuggle a blocked directory in under another name) and refused when it touches a
 * blocked path, an SSH key directory, the Docker socket or `/`. This check, not anything inside the container, is
 * what keeps `sandbox.blocked_paths` out: blocked paths are host paths, and a container only ever sees the host
 * files that are bind-mounted into it.
 */
import { lstatSync, readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import type { SandboxConfig } from '../src/config/schema.js';

type MountConfig = SandboxConfig['mounts'][number];

export interface MountProblem {
  readonly index: number;
  readonly source: string;
  readonly target: string;
  readonly message: string;
}

export interface ResolvedMount {
  /** The real path of the configured source (symlinks resolved): what is bind-mounted. */
  readonly source: string;
  readonly target: string;
  readonly mode: 'ro' | 'rw';
}

export interface MountCheckOptions {
  /** Most directory entries examined per mount when looking for .ssh or the Docker socket below a source. */
  readonly walkLimit?: number;
  /** Docker socket paths; any socket that is (or is a hard link to) one of them is refused. */
  readonly dockerSockets?: readonly string[];
}

export const DOCKER_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'] as const;
const FORBIDDEN_TARGETS = ['/proc', '/sys', '/dev'] as const;
const DEFAULT_WALK_LIMIT = 20_000;

/** The problems of `mounts` against `blockedPaths`; empty when every mount may be used. */
export function checkMounts(
  mounts: readonly MountConfig[],
  blockedPaths: readonly string[],
  options: MountCheckOptions = {},
): MountProblem[] {
  const result = resolveMounts(mounts, blockedPaths, options);
  return 'problems' in result ? [...result.problems] : [];
}

/** Like checkMounts, but on success returns the mounts with real source paths, ready for containerSpec. */
export function resolveMounts(
  mounts: readonly MountConfig[],
  blockedPaths: readonly string[],
  options: MountCheckOptions = {},
): { readonly mounts: readonly ResolvedMount[] } | { readonly problems: readonly MountProblem[] } {
  const blocked = blockedPaths.flatMap((p) => blockedForms(p));
  const sockets = socketIdentities(options.dockerSockets ?? DOCKER_SOCKETS);
  const walkLimit = options.walkLimit ?? DEFAULT_WALK_LIMIT;
  const problems: MountProblem[] = [];
  const resolved: ResolvedMount[] = [];
  const seenTargets = new Map<string, number>();

  mounts.forEach((mount, index) => {
    const problem = (text: string): void => {
      problems.push({ index, source: mount.source, target: mount.target, message: `sandbox.mounts[${index}]: ${text}` });
    };
    const targetProblem = checkTarget(mount.target);
    if (targetProblem !== null) problem(`target ${mount.target} ${targetProblem}`);
    const earlier = seenTargets.get(mount.target);
    if (earlier !== undefined) problem(`target ${mount.target} is already used by sandbox.mounts[${earlier}]`);
    else seenTargets.set(mount.target, index);

    let real: string;
    try {
      real = realpathSync(mount.source);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problem(
        code === 'ENOENT'
          ? `source ${mount.source} does not exist (target ${mount.target})`
          : `cannot resolve source ${mount.source}: ${code ?? String(err)} (target ${mount.target})`,
      );
      return;
    }
    const shown = real === mount.source ? mount.source : `${mount.source} (real path ${real})`;
    const before = problems.length;
    for (const text of sourceProblems(real, blocked, sockets, walkLimit)) problem(`${shown} ${text} (target ${mount.target})`);
    if (problems.length === before && targetProblem === null) resolved.push({ source: real, target: mount.target, mode: mount.mode });
  });
  return problems.length > 0 ? { problems } : { mounts: resolved };
}

/** Why `target` cannot be a mount point inside the container, or null. */
export function checkTarget(target: string): string | null {
  if (!target.startsWith('/')) return 'must be an absolute path';
  if (posix.normalize(target) !== target || (target.length > 1 && target.endsWith('/'))) {
    return `is not normalised (write ${posix.normalize(target).replace(/(.)\/$/, '$1')})`;
  }
  if (target === '/') return 'would replace the container root';
  if (target.includes(':') || target.includes(',')) return "contains ':' or ',' which Docker's bind syntax cannot carry";
  for (const f of FORBIDDEN_TARGETS) {
    if (target === f || target.startsWith(`${f}/`)) return `is inside ${f}, which the kernel and Docker own`;
  }
  return null;
}

interface Blocked {
  /** The blocked path as configured, for messages. */
  readonly configured: string;
  /** The form compared against real source paths. */
  readonly path: string;
}

/** A blocked path and, when it is (or lies under) a symlink, its real path too: /var/run/docker.sock → /run/…. */
function blockedForms(configured: string): Blocked[] {
  const forms: Blocked[] = [{ configured, path: posix.normalize(configured) }];
  try {
    const real = realpathSync(configured);
    if (real !== forms[0]?.path) forms.push({ configured, path: real });
  } catch {
    // A blocked path that does not exist on this host cannot be the real path of anything, in its literal form.
  }
  return forms;
}

function within(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

interface Identity {
  readonly dev: number;
  readonly ino: number;
}

function socketIdentities(paths: readonly string[]): Identity[] {
  const ids: Identity[] = [];
  for (const p of paths) {
    try {
      const st = statSync(p);
      if (st.isSocket()) ids.push({ dev: st.dev, ino: st.ino });
    } catch {
      // No daemon socket at this path on this host.
    }
  }
  return ids;
}

function isDockerSocket(st: Stats, sockets: readonly Identity[]): boolean {
  return st.isSocket() && sockets.some((s) => s.dev === st.dev && s.ino === st.ino);
}

function sourceProblems(real: string, blocked: readonly Blocked[], sockets: readonly Identity[], walkLimit: number): string[] {
  if (real === '/') return ['is the host root /, which contains every blocked path'];
  const out: string[] = [];
  if ((DOCKER_SOCKETS as readonly string[]).includes(real)) out.push('is the Docker socket, which would give the sandbox control of the host');
  else {
    try {
      if (isDockerSocket(statSync(real), sockets)) out.push('is the Docker socket (a link to it), which would give the sandbox control of the host');
    } catch {
      // Vanished between realpath and stat: the bind would fail anyway.
    }
  }
  const seen = new Set<string>();
  for (const b of blocked) {
    if (seen.has(b.configured)) continue;
    if (real === b.path) out.push(`is blocked path ${b.configured}`);
    else if (within(real, b.path)) out.push(`lies inside blocked path ${b.configured}`);
    else if (within(b.path, real)) out.push(`contains blocked path ${b.configured}`);
    else continue;
    seen.add(b.configured);
  }
  if (real.split('/').includes('.ssh')) out.push('is inside a .ssh directory (SSH keys)');
  else out.push(...walkProblems(real, sockets, walkLimit));
  return out;
}

/**
 * Looks below a directory source for .ssh directories and Docker sockets, without following symlinks: a symlink
 * inside a bind mount resolves inside the container, so it cannot reach host files. Bounded, and a source too big
 * to check is refused rather than trusted.
 */
function walkProblems(root: string, sockets: readonly Identity[], limit: number): string[] {
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch {
    return [];
  }
  if (!rootStat.isDirectory()) return [];
  const queue: string[] = [root];
  let examined = 0;
  while (queue.length > 0) {
    const dir = queue.shift() as string;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // Unreadable here is unreadable for the container's non-root user too.
    }
    for (const entry of entries) {
      if (++examined > limit) {
        return [`has more than ${limit} entries to check for .ssh directories and sockets; mount a narrower directory`];
      }
      const full = `${dir}/${entry.name}`;
      if (entry.name === '.ssh') return [`contains a .ssh directory at ${full} (SSH keys)`];
      if (entry.isSocket()) {
        try {
          if (isDockerSocket(lstatSync(full), sockets)) return [`contains the Docker socket at ${full}`];
        } catch {
          // Gone since readdir.
        }
      }
      if (entry.isDirectory()) queue.push(full);
    }
  }
  return [];
}
