/**
 * What this host's kernel and Docker daemon can actually enforce. Docker itself silently drops several limits it
 * cannot apply (blkio weight, swap limit) with only a daemon-side warning, so clawbox asks up front and refuses a
 * config that relies on one, instead of running a sandbox weaker than the config says.
 */
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type Dockerode from 'dockerode';

/** One enforcement feature: whether it works here and, when not, a one-line reason a human can act on. */
export interface Support {
  readonly supported: boolean;
  readonly reason: string;
}

export interface BlockDevice {
  /** The device node Docker's Blkio*Device options take, e.g. /dev/vda. */
  readonly path: string;
  readonly major: number;
  readonly minor: number;
}

export interface HostSupport {
  readonly cgroupVersion: 1 | 2;
  readonly storageDriver: string;
  readonly backingFilesystem: string;
  readonly dockerRootDir: string;
  readonly seccomp: Support;
  readonly apparmor: Support;
  readonly selinux: Support;
  /** `--storage-opt size=` (sandbox.resource_limits.disk). */
  readonly diskQuota: Support;
  /** BlkioWeight (sandbox.resource_limits.disk_io_weight). */
  readonly blkioWeight: Support;
  /** BlkioDeviceRead/WriteIOps (sandbox.resource_limits.disk_iops), on `device` (backing Docker's data root). */
  readonly iopsThrottle: Support & { readonly device: BlockDevice | null };
  /** CPUs the container cgroups may use (sandbox.resource_limits.cpuset must be a subset). */
  readonly cpuset: Support & { readonly cpus: readonly number[] };
  readonly swapLimit: Support;
  readonly memoryLimit: Support;
  readonly pidsLimit: Support;
  readonly cpuQuota: Support;
  readonly cpuShares: Support;
  /** Docker's --init binary (tini as docker-init), which reaps zombies as PID 1. */
  readonly init: Support;
  readonly memTotal: number;
  readonly ncpu: number;
}

export interface ProbeOptions {
  /** Prefix for /sys and /proc reads, for tests; default ''. */
  readonly fsRoot?: string;
}

/** `docker info`, as the daemon sends it. */
export type DockerInfo = Record<string, unknown>;

const yes = (reason = 'supported'): Support => ({ supported: true, reason });
const no = (reason: string): Support => ({ supported: false, reason });

export async function probeHost(docker: Pick<Dockerode, 'info'>, options: ProbeOptions = {}): Promise<HostSupport> {
  const info = (await docker.info()) as DockerInfo;
  return probeFromInfo(info, options.fsRoot ?? '');
}

/** The probe's logic given `docker info` output; separate so it can be tested without a daemon. */
export function probeFromInfo(info: DockerInfo, fsRoot: string): HostSupport {
  const fsPath = (p: string): string => `${fsRoot}${p}`;
  const cgroupVersion = str(info.CgroupVersion) === '2' ? 2 : 1;
  const securityOptions = Array.isArray(info.SecurityOptions) ? info.SecurityOptions.map(String) : [];
  const hasSecurity = (name: string): boolean => securityOptions.some((o) => o.split(',').includes(`name=${name}`));
  const driverStatus = new Map<string, string>(
    (Array.isArray(info.DriverStatus) ? (info.DriverStatus as unknown[]) : [])
      .filter((pair): pair is [string, string] => Array.isArray(pair) && pair.length === 2)
      .map(([k, v]) => [String(k), String(v)]),
  );
  const storageDriver = str(info.Driver);
  const backingFilesystem = driverStatus.get('Backing Filesystem') ?? 'unknown';
  const dockerRootDir = str(info.DockerRootDir) || '/var/lib/docker';

  const apparmorEnabled = readTrim(fsPath('/sys/module/apparmor/parameters/enabled')) === 'Y';
  const apparmor = !hasSecurity('apparmor')
    ? no('the Docker daemon reports no AppArmor support; the kernel has no AppArmor or it is disabled')
    : apparmorEnabled
      ? yes()
      : no('AppArmor is not enabled in this kernel; /sys/module/apparmor/parameters/enabled is not Y');

  const cgroup = (p: string): string => fsPath(join('/sys/fs/cgroup', p));
  const blkioWeight =
    cgroupVersion === 1
      ? existsSync(cgroup('blkio/blkio.weight')) || existsSync(cgroup('blkio/blkio.bfq.weight'))
        ? yes()
        : no('the blkio cgroup has no blkio.weight or blkio.bfq.weight file; I/O weights need the BFQ scheduler on the disk')
      : existsSync(cgroup('io.weight')) || existsSync(cgroup('io.bfq.weight')) || controllerListed(cgroup('cgroup.subtree_control'), 'io')
        ? yes()
        : no('the cgroup v2 io controller is not enabled, so I/O weights cannot be set');

  const throttleFile = cgroupVersion === 1 ? cgroup('blkio/blkio.throttle.read_iops_device') : null;
  const throttleKernel =
    throttleFile !== null ? existsSync(throttleFile) : controllerListed(cgroup('cgroup.subtree_control'), 'io');
  const device = dataRootDevice(dockerRootDir, fsRoot);
  const iopsThrottle = !throttleKernel
    ? { ...no('the kernel has no block I/O throttling, blkio.throttle.* or io.max, in this cgroup hierarchy'), device }
    : device === null
      ? { ...no(`the Docker data root ${dockerRootDir} is not on a plain block device, so there is no device to throttle`), device }
      : { ...yes(`throttled on ${device.path}, device ${device.major}:${device.minor}, the disk of ${dockerRootDir}`), device };

  const cpusetFile = cgroupVersion === 1 ? cgroup('cpuset/cpuset.cpus') : cgroup('cpuset.cpus.effective');
  const cpus = parseCpuList(readTrim(cpusetFile) ?? '');
  const cpuset =
    info.CPUSet === false
      ? { ...no('the Docker daemon reports no cpuset cgroup support'), cpus }
      : cpus.length === 0
        ? { ...no(`cannot read the CPUs available to containers from ${cpusetFile}`), cpus }
        : { ...yes(`CPUs ${formatCpuList(cpus)} are available`), cpus };

  return {
    cgroupVersion,
    storageDriver,
    backingFilesystem,
    dockerRootDir,
    seccomp: hasSecurity('seccomp') ? yes() : no('the Docker daemon reports no seccomp support; the kernel or the daemon is built without it'),
    apparmor,
    selinux: hasSecurity('selinux')
      ? yes()
      : no('the Docker daemon reports no SELinux support; SELinux is off in the kernel or the daemon runs without --selinux-enabled'),
    diskQuota: diskQuotaSupport(storageDriver, backingFilesystem),
    blkioWeight,
    iopsThrottle,
    cpuset,
    swapLimit: flag(info.SwapLimit, 'the kernel does not account swap, so swap cannot be limited; boot with swapaccount=1'),
    memoryLimit: flag(info.MemoryLimit, 'the memory cgroup controller is not available'),
    pidsLimit: flag(info.PidsLimit, 'the pids cgroup controller is not available'),
    cpuQuota: flag(info.CpuCfsQuota, 'the kernel has no CFS bandwidth control, cpu.cfs_quota_us'),
    cpuShares: flag(info.CPUShares, 'the cpu cgroup controller has no shares'),
    init: initSupport(str(info.InitBinary)),
    memTotal: typeof info.MemTotal === 'number' ? info.MemTotal : 0,
    ncpu: typeof info.NCPU === 'number' ? info.NCPU : 0,
  };
}

function diskQuotaSupport(driver: string, backing: string): Support {
  // Docker's overlay2 implements storage-opt size with XFS project quotas only; other drivers with their own
  // quota support are listed so the message stays correct on them.
  if (driver === 'overlay2') {
    return backing === 'xfs'
      ? yes('overlay2 on xfs, which needs the pquota mount option or Docker refuses the container')
      : no(`overlay2 on ${backing === 'extfs' ? 'ext4' : backing} has no project quotas; a disk quota needs overlay2 on xfs mounted with pquota`);
  }
  if (driver === 'btrfs' || driver === 'zfs' || driver === 'devicemapper' || driver === 'windowsfilter') return yes(`${driver} supports per-container size`);
  return no(`the ${driver || 'unknown'} storage driver cannot limit a container's disk size`);
}

function initSupport(binary: string): Support {
  const name = binary || 'docker-init';
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').concat(['/usr/libexec/docker', '/usr/lib/docker']);
  const found = name.startsWith('/') ? existsSync(name) : dirs.some((d) => existsSync(join(d, name)));
  return found ? yes(`${name} reaps zombies as PID 1`) : no(`the Docker init binary ${name} is not installed; on Debian the tini package provides docker-init`);
}

function flag(value: unknown, reason: string): Support {
  return value === false ? no(reason) : yes();
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

function controllerListed(file: string, controller: string): boolean {
  return (readTrim(file) ?? '').split(/\s+/).includes(controller);
}

/**
 * The whole disk under Docker's data root: blkio throttling applies to disks, not partitions, and Docker takes a
 * device node path. null for filesystems without a real block device (tmpfs, overlay-on-overlay, btrfs subvolumes).
 */
export function dataRootDevice(dockerRootDir: string, fsRoot = ''): BlockDevice | null {
  let dev: number;
  try {
    dev = statSync(`${fsRoot}${dockerRootDir}`).dev;
  } catch {
    return null;
  }
  // Linux dev_t encoding (new_decode_dev): major in bits 8-19, minor in bits 0-7 and 20-31.
  let major = (dev >> 8) & 0xfff;
  let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const sysDev = (ma: number, mi: number): string => `${fsRoot}/sys/dev/block/${ma}:${mi}`;
  if (!existsSync(sysDev(major, minor))) return null;
  if (existsSync(join(sysDev(major, minor), 'partition'))) {
    // /sys/dev/block/M:m links to …/vda/vda1 for a partition; the parent directory is the disk.
    const parentDev = readTrim(join(sysDev(major, minor), '..', 'dev'));
    const match = parentDev === null ? null : /^(\d+):(\d+)$/.exec(parentDev);
    if (match === null) return null;
    major = Number(match[1]);
    minor = Number(match[2]);
  }
  const uevent = readTrim(join(sysDev(major, minor), 'uevent')) ?? '';
  const devname = /^DEVNAME=(.+)$/m.exec(uevent)?.[1] ?? basenameOfLink(sysDev(major, minor));
  if (devname === null) return null;
  const path = `/dev/${devname}`;
  return existsSync(`${fsRoot}${path}`) ? { path, major, minor } : null;
}

function basenameOfLink(path: string): string | null {
  try {
    return basename(readlinkSync(path));
  } catch {
    return null;
  }
}

/** '0-2,5' → [0,1,2,5]. */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [lo, hi] = part.split('-').map(Number);
    if (lo === undefined || !Number.isInteger(lo)) continue;
    const end = hi !== undefined && Number.isInteger(hi) ? hi : lo;
    for (let c = lo; c <= end && c - lo < 4096; c++) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

export function formatCpuList(cpus: readonly number[]): string {
  return cpus.join(',');
}

/** One line per feature, for `clawbox doctor`-style output. */
export function describeHostSupport(host: HostSupport): string[] {
  const rows: [string, Support][] = [
    ['seccomp', host.seccomp],
    ['apparmor', host.apparmor],
    ['selinux', host.selinux],
    ['disk quota', host.diskQuota],
    ['blkio weight', host.blkioWeight],
    ['iops throttle', host.iopsThrottle],
    ['cpuset', host.cpuset],
    ['swap limit', host.swapLimit],
    ['memory limit', host.memoryLimit],
    ['pids limit', host.pidsLimit],
    ['cpu quota', host.cpuQuota],
    ['cpu shares', host.cpuShares],
    ['init', host.init],
  ];
  return [
    `cgroup v${host.cgroupVersion}, ${host.storageDriver} on ${host.backingFilesystem}, ${host.ncpu} CPUs, ${host.memTotal} bytes of memory`,
    ...rows.map(([name, s]) => `${s.supported ? 'yes' : 'no '} ${name}: ${s.reason}`),
  ];
}
