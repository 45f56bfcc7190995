/**
 * The one place where a sandbox config becomes a Docker container: every isolation key of `sandbox:` maps onto
 * the Docker API here, and a key this host cannot enforce is a problem (or, when named in accept_degraded, a
 * warning) instead of being silently dropped the way Docker drops it. Pure: host facts come in as HostSupport, the
 * seccomp profile as JSON, mounts already checked by runner/mounts.ts.
 *
 * Decisions worth knowing:
 * - Capabilities: always CapDrop ['ALL'] and CapAdd = keep_capabilities. A drop_capabilities list without 'ALL' does
 *   not re-open Docker's default set: whatever is not kept is dropped either way, and the list only matters as a
 *   contradiction check (a name both kept and dropped is a problem). Docker sets no ambient capabilities, so a kept
 *   capability is effective only when sandbox.user is root ('0'); for a non-root user it stays in the bounding set
 *   only, and a warning says so.
 * - Memory swap: without memory_swap, MemorySwap = Memory (no swap at all) where the host accounts swap, so the
 *   memory limit is a real limit rather than "memory plus as much swap again" (Docker's default).
 * - Blocked paths are host paths; the enforcement is runner/mounts.ts refusing any mount that touches one. In
 *   addition, blocked directories that could exist in the image (e.g. /root, /home, /var/log) are covered by an empty
 *   read-only tmpfs so the sandbox's view matches the config; /proc, /sys, /dev, /etc, /run and /tmp are not masked
 *   since the container's own copies of those are needed (and hold no host data).
 * - Mounts use the Mounts API, not Binds: Binds silently creates a missing source directory on the host (as root)
 *   and cannot carry ':' in a path; a bind mount in Mounts fails instead.
 * - With a read-only root the writable places are /tmp (a noexec tmpfs, HOME=/tmp) and /dev/shm; no /run tmpfs,
 *   since the non-root user could not write the image's root-owned /run anyway.
 */
import { posix } from 'node:path';
import type Dockerode from 'dockerode';
import type { DEGRADABLE, SandboxConfig } from '../src/config/schema.js';
import { formatCpuList, parseCpuList, type HostSupport, type Support } from './host-support.js';
import type { ResolvedMount } from './mounts.js';

export interface SpecOptions {
  readonly image: string;
  readonly cmd: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly name?: string;
  readonly networkMode: string;
  readonly dns?: readonly string[];
  /** The profile from runner/seccomp.ts, as JSON. */
  readonly seccompJson: string;
  /** config.mounts after resolveMounts(): real source paths, same order. Required when config.mounts is not empty. */
  readonly mounts?: readonly ResolvedMount[];
}

export type SpecResult =
  | { readonly spec: Dockerode.ContainerCreateOptions; readonly warnings: readonly string[] }
  | { readonly problems: readonly string[] };

type Degradable = (typeof DEGRADABLE)[number];

// Docker 20.10 knows CgroupnsMode; @types/dockerode does not yet.
type HostConfig = Dockerode.HostConfig & { CgroupnsMode?: 'private' | 'host' };

export const DEFAULT_USER = '65534:65534';
const SHM_SIZE = 16 * 1024 * 1024;
/** Masks are empty; a few KiB is enough for the mount to exist and nothing more. */
const MASK_TMPFS = 'ro,size=4k,mode=0555,noexec,nosuid,nodev';
const NEVER_MASKED = ['/proc', '/sys', '/dev', '/etc', '/run', '/var/run', '/tmp'] as const;
const LIMITS = 'sandbox.resource_limits';

/**
 * Every sandbox's host name: a fixed one, since the host's is nobody's business inside it. A network holder
 * (network-holder.ts) carries it for the sandbox that joins it.
 */
export const SANDBOX_HOSTNAME = 'sandbox';

export function containerSpec(config: SandboxConfig, opts: SpecOptions, host: HostSupport): SpecResult {
  const problems: string[] = [];
  const warnings: string[] = [];
  const accepted = new Set<string>(config.accept_degraded);
  const limits = config.resource_limits;

  /** A key the host cannot enforce: a problem, or a warning and `false` (omit it) when the user accepted that. */
  const enforceable = (key: Degradable, path: string, what: string, support: Support): boolean => {
    if (support.supported) return true;
    if (accepted.has(key)) {
      warnings.push(`${path}: not enforced, this host cannot enforce ${what} (${support.reason}); running without it because '${key}' is in sandbox.accept_degraded`);
    } else {
      problems.push(`${path}: this host cannot enforce ${what} (${support.reason}); remove the key or add '${key}' to sandbox.accept_degraded`);
    }
    return false;
  };
  /** A layer clawbox never runs without. */
  const required = (path: string, what: string, support: Support): void => {
    if (!support.supported) problems.push(`${path}: this host cannot enforce ${what} (${support.reason}); clawbox does not run sandboxes without it`);
  };

  const hostConfig: HostConfig = {
    NetworkMode: opts.networkMode,
    Privileged: false,
    AutoRemove: false,
    Init: true,
    IpcMode: 'private',
    CgroupnsMode: 'private',
    ReadonlyRootfs: config.readonly_root,
    Devices: [],
    ShmSize: SHM_SIZE,
    // The kernel may pipe core dumps to a host program; a sandbox has nothing to dump.
    Ulimits: [{ Name: 'core', Soft: 0, Hard: 0 }],
    // Under host memory pressure, the sandbox goes before the host's own processes.
    OomScoreAdj: 500,
    // The runner streams output itself via attach; the log file is only a bounded copy for post-mortems.
    LogConfig: { Type: 'json-file', Config: { 'max-size': String(config.logging.max_output_size), 'max-file': '1' } },
  };
  if (opts.dns !== undefined) hostConfig.Dns = [...opts.dns];
  required('sandbox', 'an init process that reaps zombies as PID 1', host.init);

  // Memory.
  required(`${LIMITS}.memory`, 'a memory limit', host.memoryLimit);
  hostConfig.Memory = limits.memory;
  if (limits.memory_swap !== undefined) {
    if (limits.memory_swap < limits.memory) {
      problems.push(
        `${LIMITS}.memory_swap: ${limits.memory_swap} bytes is less than memory (${limits.memory} bytes); memory_swap is memory plus swap (Docker's meaning), so set it to at least memory, or equal to memory for no swap`,
      );
    } else if (enforceable('memory_swap', `${LIMITS}.memory_swap`, 'a swap limit', host.swapLimit)) {
      hostConfig.MemorySwap = limits.memory_swap;
    }
  } else if (host.swapLimit.supported) {
    hostConfig.MemorySwap = limits.memory;
  }
  if (limits.memory_reservation !== undefined) {
    if (limits.memory_reservation >= limits.memory) {
      problems.push(
        `${LIMITS}.memory_reservation: ${limits.memory_reservation} bytes must be below memory (${limits.memory} bytes); it is the soft limit reclaimed towards under memory pressure`,
      );
    } else {
      hostConfig.MemoryReservation = limits.memory_reservation;
    }
  }

  // CPU.
  required(`${LIMITS}.cpus`, 'a CPU quota', host.cpuQuota);
  if (host.ncpu > 0 && limits.cpus > host.ncpu * 1e9) {
    problems.push(`${LIMITS}.cpus: ${limits.cpus / 1e9} CPUs requested but this host has ${host.ncpu}; lower the value`);
  }
  hostConfig.NanoCpus = limits.cpus;
  if (limits.cpu_shares !== undefined) {
    required(`${LIMITS}.cpu_shares`, 'CPU shares', host.cpuShares);
    hostConfig.CpuShares = limits.cpu_shares;
  }
  if (limits.cpuset !== undefined) {
    const wanted = parseCpuList(limits.cpuset);
    const missing = wanted.filter((c) => !host.cpuset.cpus.includes(c));
    const support: Support = !host.cpuset.supported
      ? host.cpuset
      : missing.length > 0
        ? { supported: false, reason: `CPU ${formatCpuList(missing)} is not among this host's CPUs ${formatCpuList(host.cpuset.cpus)}` }
        : host.cpuset;
    if (enforceable('cpuset', `${LIMITS}.cpuset`, `cpuset ${limits.cpuset}`, support)) hostConfig.CpusetCpus = limits.cpuset;
  }

  // Processes.
  required(`${LIMITS}.pids`, 'a process limit', host.pidsLimit);
  hostConfig.PidsLimit = limits.pids;

  // Disk.
  if (limits.disk !== undefined && enforceable('disk', `${LIMITS}.disk`, 'a disk quota', host.diskQuota)) {
    hostConfig.StorageOpt = { size: String(limits.disk) };
  }
  if (limits.disk_iops !== undefined && enforceable('disk_iops', `${LIMITS}.disk_iops`, 'an I/O operations limit', host.iopsThrottle)) {
    const device = host.iopsThrottle.device;
    if (device !== null) {
      hostConfig.BlkioDeviceReadIOps = [{ Path: device.path, Rate: limits.disk_iops }];
      hostConfig.BlkioDeviceWriteIOps = [{ Path: device.path, Rate: limits.disk_iops }];
    }
  }
  if (limits.disk_io_weight !== undefined && enforceable('disk_io_weight', `${LIMITS}.disk_io_weight`, 'an I/O weight', host.blkioWeight)) {
    hostConfig.BlkioWeight = limits.disk_io_weight;
  }

  // Capabilities.
  const kept = config.keep_capabilities.filter((c) => c !== 'ALL');
  if (config.keep_capabilities.includes('ALL')) {
    problems.push("sandbox.keep_capabilities: 'ALL' would give the sandbox every capability; list the few capabilities the tools need");
  }
  const dropped = new Set(config.drop_capabilities.filter((c) => c !== 'ALL'));
  for (const cap of kept.filter((c) => dropped.has(c))) {
    problems.push(`sandbox.keep_capabilities: ${cap} is also in sandbox.drop_capabilities; remove it from one of the two lists`);
  }
  hostConfig.CapDrop = ['ALL'];
  hostConfig.CapAdd = [...new Set(kept)].sort();
  const user = config.user || DEFAULT_USER;
  const uid = user.split(':')[0];
  if (kept.length > 0 && uid !== '0') {
    warnings.push(
      `sandbox.keep_capabilities: ${kept.join(', ')} will not be effective for sandbox.user ${user}; Docker gives kept capabilities to root only (no ambient capabilities), so a non-root tool gets none`,
    );
  }

  // Security options.
  required('sandbox.seccomp_profile', 'a seccomp filter', host.seccomp);
  const securityOpt = ['no-new-privileges:true', `seccomp=${opts.seccompJson}`];
  if (config.apparmor_profile !== undefined) {
    if (config.apparmor_profile === 'unconfined') {
      problems.push("sandbox.apparmor_profile: 'unconfined' turns AppArmor off; name a profile such as 'docker-default' or remove the key");
    } else if (enforceable('apparmor_profile', 'sandbox.apparmor_profile', `AppArmor profile '${config.apparmor_profile}'`, host.apparmor)) {
      securityOpt.push(`apparmor=${config.apparmor_profile}`);
    }
  }
  if (config.selinux_label !== undefined) {
    const label = selinuxLabelOptions(config.selinux_label);
    if (label === null) {
      problems.push(
        `sandbox.selinux_label: expected user:role:type[:level] like 'system_u:system_r:container_t:s0', got '${config.selinux_label}'`,
      );
    } else if (enforceable('selinux_label', 'sandbox.selinux_label', `SELinux label '${config.selinux_label}'`, host.selinux)) {
      securityOpt.push(...label);
    }
  }
  hostConfig.SecurityOpt = securityOpt;

  // Filesystem.
  const mounts = opts.mounts ?? [];
  checkResolvedMounts(config.mounts, mounts);
  hostConfig.Mounts = mounts.map((m) => ({
    Type: 'bind' as const,
    Source: m.source,
    Target: m.target,
    ReadOnly: m.mode === 'ro',
  }));
  const targets = mounts.map((m) => m.target);
  const tmpfs: Record<string, string> = {};
  if (config.writable_tmpfs) {
    if (targets.some((t) => t === '/tmp')) {
      warnings.push('sandbox.writable_tmpfs: /tmp is a mount target in sandbox.mounts, so /tmp is that mount instead of a tmpfs');
    } else {
      tmpfs['/tmp'] = `rw,size=${config.tmpfs_size},mode=1777,noexec,nosuid,nodev`;
    }
  }
  for (const path of maskedPaths(config.blocked_paths, targets)) tmpfs[path] = MASK_TMPFS;
  hostConfig.Tmpfs = tmpfs;

  if (problems.length > 0) return { problems };

  const env = { HOME: '/tmp', ...opts.env };
  const spec: Dockerode.ContainerCreateOptions = {
    Image: opts.image,
    Cmd: [...opts.cmd],
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Labels: { ...opts.labels },
    User: user,
    Hostname: SANDBOX_HOSTNAME,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    OpenStdin: false,
    NetworkDisabled: opts.networkMode === 'none',
    HostConfig: hostConfig,
  };
  if (opts.name !== undefined) spec.name = opts.name;
  return { spec, warnings };
}

/** Docker's `label=` options for an SELinux context, or null when it is not user:role:type[:level]. */
export function selinuxLabelOptions(label: string): string[] | null {
  const parts = label.split(':');
  if (parts.length < 3 || parts.slice(0, 3).some((p) => !/^[A-Za-z0-9_.-]+$/.test(p))) return null;
  const [user, role, type] = parts;
  const level = parts.slice(3).join(':');
  const opts = [`label=user:${user}`, `label=role:${role}`, `label=type:${type}`];
  if (level !== '') opts.push(`label=level:${level}`);
  return opts;
}

/** Blocked paths worth covering with an empty tmpfs inside the container (see the module comment). */
export function maskedPaths(blockedPaths: readonly string[], mountTargets: readonly string[]): string[] {
  const inside = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);
  return [...new Set(blockedPaths.map((p) => posix.normalize(p)))].filter(
    (p) =>
      p !== '/' &&
      !NEVER_MASKED.some((n) => inside(p, n)) &&
      // A mount at or below a masked directory would need a mount point inside a read-only tmpfs; a mount above it
      // would hide the mask. runner/mounts.ts refuses such mounts; this keeps the spec valid regardless.
      !mountTargets.some((t) => inside(t, p) || inside(p, t)),
  );
}

/** A programming error, not a config problem: the caller must pass resolveMounts() output for config.mounts. */
function checkResolvedMounts(configured: SandboxConfig['mounts'], resolved: readonly ResolvedMount[]): void {
  const same =
    configured.length === resolved.length &&
    configured.every((m, i) => resolved[i]?.target === m.target && resolved[i]?.mode === m.mode);
  if (!same) throw new Error('containerSpec: opts.mounts must be resolveMounts(config.mounts, …).mounts, in the same order');
}
