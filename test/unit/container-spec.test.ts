import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type Dockerode from 'dockerode';
import { parseConfig } from '../../src/config/load.js';
import type { SandboxConfig } from '../../src/config/schema.js';
import type { HostSupport, Support } from '../../runner/host-support.js';
import { containerSpec, maskedPaths, selinuxLabelOptions, type SpecOptions } from '../../runner/spec.js';
import type { ResolvedMount } from '../../runner/mounts.js';

const yes: Support = { supported: true, reason: 'supported' };
const no = (reason: string): Support => ({ supported: false, reason });

/** A host that enforces everything. */
const FULL: HostSupport = {
  cgroupVersion: 1,
  storageDriver: 'overlay2',
  backingFilesystem: 'xfs',
  dockerRootDir: '/var/lib/docker',
  seccomp: yes,
  apparmor: yes,
  selinux: yes,
  diskQuota: yes,
  blkioWeight: yes,
  iopsThrottle: { ...yes, device: { path: '/dev/vda', major: 254, minor: 0 } },
  cpuset: { ...yes, cpus: [0, 1] },
  swapLimit: yes,
  memoryLimit: yes,
  pidsLimit: yes,
  cpuQuota: yes,
  cpuShares: yes,
  init: yes,
  memTotal: 8 * 2 ** 30,
  ncpu: 2,
};

/** Like this test machine: no LSMs, ext4, no BFQ. */
const LIMITED: HostSupport = {
  ...FULL,
  backingFilesystem: 'extfs',
  apparmor: no('the Docker daemon reports no AppArmor support'),
  selinux: no('the Docker daemon reports no SELinux support'),
  diskQuota: no('overlay2 on ext4 has no project quotas'),
  blkioWeight: no('no blkio weight file'),
  iopsThrottle: { ...no('no throttling'), device: null },
};

const OPTS: SpecOptions = {
  image: 'openclaw-sandbox:latest',
  cmd: ['true'],
  env: { FOO: 'bar' },
  labels: { 'dev.clawbox.test': '1' },
  networkMode: 'none',
  seccompJson: '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}',
};

function sandbox(yaml: string): SandboxConfig {
  return parseConfig(yaml ? `sandbox:\n${yaml}` : '').sandbox;
}

function spec(config: SandboxConfig, host: HostSupport = FULL, opts: Partial<SpecOptions> = {}) {
  const result = containerSpec(config, { ...OPTS, ...opts }, host);
  if ('problems' in result) assert.fail(`unexpected problems: ${result.problems.join('\n')}`);
  return { hc: result.spec.HostConfig as Dockerode.HostConfig & { CgroupnsMode?: string }, spec: result.spec, warnings: result.warnings };
}

function problems(config: SandboxConfig, host: HostSupport = FULL, opts: Partial<SpecOptions> = {}): readonly string[] {
  const result = containerSpec(config, { ...OPTS, ...opts }, host);
  assert.ok('problems' in result, 'expected problems, got a spec');
  return result.problems;
}

void describe('containerSpec defaults', () => {
  const { hc, spec: s, warnings } = spec(sandbox(''));
  void it('has no warnings', () => assert.deepEqual(warnings, []));
  void it('drops every capability and adds none', () => {
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.deepEqual(hc.CapAdd, []);
  });
  void it('sets no-new-privileges and the given seccomp profile', () => {
    assert.ok((hc.SecurityOpt as string[]).includes('no-new-privileges:true'));
    assert.ok((hc.SecurityOpt as string[]).includes(`seccomp=${OPTS.seccompJson}`));
  });
  void it('runs as nobody with HOME=/tmp', () => {
    assert.equal(s.User, '65534:65534');
    assert.ok(s.Env?.includes('HOME=/tmp'));
    assert.ok(s.Env?.includes('FOO=bar'));
  });
  void it('is read-only with a noexec /tmp tmpfs of tmpfs_size', () => {
    assert.equal(hc.ReadonlyRootfs, true);
    assert.equal(hc.Tmpfs?.['/tmp'], `rw,size=${100 * 1024 * 1024},mode=1777,noexec,nosuid,nodev`);
  });
  void it('masks blocked directories but not /proc, /sys or files under /etc', () => {
    assert.deepEqual(Object.keys(hc.Tmpfs ?? {}).sort(), ['/.ssh', '/home', '/root', '/tmp', '/var/log']);
  });
  void it('limits memory without swap, cpus and pids', () => {
    assert.equal(hc.Memory, 2 * 2 ** 30);
    assert.equal(hc.MemorySwap, 2 * 2 ** 30);
    assert.equal(hc.NanoCpus, 1e9);
    assert.equal(hc.PidsLimit, 256);
  });
  void it('isolates IPC and cgroups, uses an init, no privileges or devices', () => {
    assert.equal(hc.Init, true);
    assert.equal(hc.IpcMode, 'private');
    assert.equal(hc.CgroupnsMode, 'private');
    assert.equal(hc.Privileged, false);
    assert.deepEqual(hc.Devices, []);
    assert.equal(hc.PidMode, undefined);
    assert.equal(hc.AutoRemove, false);
    assert.equal(hc.NetworkMode, 'none');
    assert.equal(s.Hostname, 'sandbox');
  });
  void it('caps the log file at logging.max_output_size', () => {
    assert.deepEqual(hc.LogConfig, { Type: 'json-file', Config: { 'max-size': String(10 * 1024 * 1024), 'max-file': '1' } });
  });
  void it('passes image, cmd and labels through', () => {
    assert.equal(s.Image, OPTS.image);
    assert.deepEqual(s.Cmd, ['true']);
    assert.deepEqual(s.Labels, OPTS.labels);
  });
});

void describe('containerSpec resource limits', () => {
  void it('maps memory_swap and memory_reservation', () => {
    const { hc } = spec(sandbox("  resource_limits: { memory: '1gb', memory_swap: '1.5gb', memory_reservation: '512m' }"));
    assert.equal(hc.MemorySwap, 1.5 * 2 ** 30);
    assert.equal(hc.MemoryReservation, 512 * 2 ** 20);
  });
  void it('refuses memory_swap below memory', () => {
    const p = problems(sandbox("  resource_limits: { memory: '1gb', memory_swap: '512m' }"));
    assert.match(p.join('\n'), /^sandbox\.resource_limits\.memory_swap: .* less than memory/m);
  });
  void it('refuses memory_reservation at or above memory', () => {
    const p = problems(sandbox("  resource_limits: { memory: '1gb', memory_reservation: '1gb' }"));
    assert.match(p.join('\n'), /^sandbox\.resource_limits\.memory_reservation: .* below memory/m);
  });
  void it('refuses memory_swap on a host without swap accounting unless degraded', () => {
    const host = { ...FULL, swapLimit: no('no swap accounting') };
    assert.match(problems(sandbox("  resource_limits: { memory_swap: '3gb' }"), host).join(), /memory_swap.*accept_degraded/);
    const { hc, warnings } = spec(sandbox("  resource_limits: { memory_swap: '3gb' }\n  accept_degraded: [memory_swap]"), host);
    assert.equal(hc.MemorySwap, undefined);
    assert.equal(warnings.length, 1);
  });
  void it('maps cpus, cpu_shares and cpuset', () => {
    const { hc } = spec(sandbox("  resource_limits: { cpus: '0.5', cpu_shares: 512, cpuset: '1' }"));
    assert.equal(hc.NanoCpus, 5e8);
    assert.equal(hc.CpuShares, 512);
    assert.equal(hc.CpusetCpus, '1');
  });
  void it('refuses more cpus than the host has', () => {
    assert.match(problems(sandbox("  resource_limits: { cpus: '4' }")).join(), /^sandbox\.resource_limits\.cpus: 4 CPUs requested but this host has 2/);
  });
  void it('refuses a cpuset naming a CPU the host lacks unless degraded', () => {
    assert.match(problems(sandbox("  resource_limits: { cpuset: '0-3' }")).join(), /cpuset: .*CPU 2,3 is not among this host's CPUs 0,1.*accept_degraded/);
    const { hc, warnings } = spec(sandbox("  resource_limits: { cpuset: '0-3' }\n  accept_degraded: [cpuset]"));
    assert.equal(hc.CpusetCpus, undefined);
    assert.match(warnings.join(), /not enforced/);
  });
  void it('maps disk, disk_iops and disk_io_weight where supported', () => {
    const { hc } = spec(sandbox("  resource_limits: { disk: '5gb', disk_iops: 1000, disk_io_weight: 500 }"));
    assert.deepEqual(hc.StorageOpt, { size: String(5 * 2 ** 30) });
    assert.deepEqual(hc.BlkioDeviceReadIOps, [{ Path: '/dev/vda', Rate: 1000 }]);
    assert.deepEqual(hc.BlkioDeviceWriteIOps, [{ Path: '/dev/vda', Rate: 1000 }]);
    assert.equal(hc.BlkioWeight, 500);
  });
  void it('refuses disk limits the host cannot enforce, naming the key and the fix', () => {
    const p = problems(sandbox("  resource_limits: { disk: '5gb', disk_iops: 1000, disk_io_weight: 500 }"), LIMITED);
    assert.deepEqual(p, [
      "sandbox.resource_limits.disk: this host cannot enforce a disk quota (overlay2 on ext4 has no project quotas); remove the key or add 'disk' to sandbox.accept_degraded",
      "sandbox.resource_limits.disk_iops: this host cannot enforce an I/O operations limit (no throttling); remove the key or add 'disk_iops' to sandbox.accept_degraded",
      "sandbox.resource_limits.disk_io_weight: this host cannot enforce an I/O weight (no blkio weight file); remove the key or add 'disk_io_weight' to sandbox.accept_degraded",
    ]);
  });
  void it('runs without accepted degraded disk limits, with warnings', () => {
    const { hc, warnings } = spec(
      sandbox("  resource_limits: { disk: '5gb', disk_iops: 1000, disk_io_weight: 500 }\n  accept_degraded: [disk, disk_iops, disk_io_weight]"),
      LIMITED,
    );
    assert.equal(hc.StorageOpt, undefined);
    assert.equal(hc.BlkioDeviceReadIOps, undefined);
    assert.equal(hc.BlkioWeight, undefined);
    assert.equal(warnings.length, 3);
  });
  void it('refuses to run without a layer clawbox always needs', () => {
    assert.match(problems(sandbox(''), { ...FULL, pidsLimit: no('no pids cgroup') }).join(), /^sandbox\.resource_limits\.pids: .*no pids cgroup/);
    assert.match(problems(sandbox(''), { ...FULL, seccomp: no('no seccomp') }).join(), /sandbox\.seccomp_profile: .*no seccomp/);
    assert.match(problems(sandbox(''), { ...FULL, init: no('no docker-init') }).join(), /no docker-init/);
  });
});

void describe('containerSpec capabilities', () => {
  void it('adds only kept capabilities on top of dropping all', () => {
    const { hc } = spec(sandbox("  user: '0'\n  keep_capabilities: [CAP_NET_BIND_SERVICE, chown]"));
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.deepEqual(hc.CapAdd, ['CHOWN', 'NET_BIND_SERVICE']);
  });
  void it('still drops everything when drop_capabilities lists names without ALL', () => {
    const { hc } = spec(sandbox("  user: '0'\n  drop_capabilities: [SYS_ADMIN, NET_ADMIN]\n  keep_capabilities: [NET_BIND_SERVICE]"));
    assert.deepEqual(hc.CapDrop, ['ALL']);
    assert.deepEqual(hc.CapAdd, ['NET_BIND_SERVICE']);
  });
  void it('refuses a capability both kept and dropped, and keeping ALL', () => {
    assert.match(problems(sandbox('  drop_capabilities: [CHOWN]\n  keep_capabilities: [CHOWN]')).join(), /CHOWN is also in sandbox\.drop_capabilities/);
    assert.match(problems(sandbox('  keep_capabilities: [ALL]')).join(), /^sandbox\.keep_capabilities: 'ALL'/);
  });
  void it('warns that kept capabilities do nothing for a non-root user', () => {
    const { warnings } = spec(sandbox('  keep_capabilities: [NET_BIND_SERVICE]'));
    assert.match(warnings.join(), /not be effective for sandbox\.user 65534:65534/);
  });
});

void describe('containerSpec LSMs', () => {
  const lsm = "  apparmor_profile: docker-default\n  selinux_label: 'system_u:system_r:container_t:s0'";
  void it('passes AppArmor and SELinux options where the host has them', () => {
    const opts = spec(sandbox(lsm)).hc.SecurityOpt as string[];
    assert.ok(opts.includes('apparmor=docker-default'));
    assert.deepEqual(opts.filter((o) => o.startsWith('label=')), [
      'label=user:system_u', 'label=role:system_r', 'label=type:container_t', 'label=level:s0',
    ]);
  });
  void it('refuses them on a host without the LSM, naming the key', () => {
    const p = problems(sandbox(lsm), LIMITED);
    assert.equal(p.length, 2);
    assert.match(p[0] ?? '', /^sandbox\.apparmor_profile: this host cannot enforce AppArmor profile 'docker-default' .*add 'apparmor_profile' to sandbox\.accept_degraded/);
    assert.match(p[1] ?? '', /^sandbox\.selinux_label: this host cannot enforce SELinux label .*add 'selinux_label' to sandbox\.accept_degraded/);
  });
  void it('omits them with a warning when accepted as degraded', () => {
    const { hc, warnings } = spec(sandbox(`${lsm}\n  accept_degraded: [apparmor_profile, selinux_label]`), LIMITED);
    assert.equal((hc.SecurityOpt as string[]).filter((o) => o.startsWith('apparmor') || o.startsWith('label')).length, 0);
    assert.equal(warnings.length, 2);
  });
  void it('refuses apparmor unconfined and malformed labels', () => {
    assert.match(problems(sandbox('  apparmor_profile: unconfined')).join(), /'unconfined' turns AppArmor off/);
    assert.match(problems(sandbox("  selinux_label: 'container_t'")).join(), /expected user:role:type/);
    assert.equal(selinuxLabelOptions('u:r:t:s0:c1,c2')?.at(-1), 'label=level:s0:c1,c2');
  });
});

void describe('containerSpec filesystem', () => {
  const mounted: ResolvedMount[] = [
    { source: '/srv/data', target: '/data', mode: 'ro' },
    { source: '/srv/out', target: '/out', mode: 'rw' },
  ];
  const withMounts = sandbox(
    '  mounts:\n    - { source: /x/data, target: /data }\n    - { source: /x/out, target: /out, mode: rw }',
  );
  void it('bind-mounts the resolved sources with their modes', () => {
    const { hc } = spec(withMounts, FULL, { mounts: mounted });
    assert.deepEqual(hc.Mounts, [
      { Type: 'bind', Source: '/srv/data', Target: '/data', ReadOnly: true },
      { Type: 'bind', Source: '/srv/out', Target: '/out', ReadOnly: false },
    ]);
    assert.equal(hc.Binds, undefined);
  });
  void it('throws when mounts were not resolved first', () => {
    assert.throws(() => containerSpec(withMounts, OPTS, FULL), /resolveMounts/);
  });
  void it('lets a mount at /tmp replace the tmpfs, with a warning', () => {
    const cfg = sandbox('  mounts:\n    - { source: /x, target: /tmp, mode: rw }');
    const { hc, warnings } = spec(cfg, FULL, { mounts: [{ source: '/x', target: '/tmp', mode: 'rw' }] });
    assert.equal(hc.Tmpfs?.['/tmp'], undefined);
    assert.match(warnings.join(), /writable_tmpfs/);
  });
  void it('has no /tmp tmpfs and a writable root when asked', () => {
    const { hc } = spec(sandbox('  writable_tmpfs: false\n  readonly_root: false'));
    assert.equal(hc.Tmpfs?.['/tmp'], undefined);
    assert.equal(hc.ReadonlyRootfs, false);
  });
  void it('does not mask a blocked path holding a mount target', () => {
    assert.deepEqual(maskedPaths(['/home', '/root', '/proc', '/etc/passwd', '/'], ['/home/agent']), ['/root']);
  });
  void it('passes dns and name', () => {
    const { spec: s, hc } = spec(sandbox(''), FULL, { dns: ['10.0.0.1'], name: 'clawbox-x', networkMode: 'clawbox-net' });
    assert.deepEqual(hc.Dns, ['10.0.0.1']);
    assert.equal(s.name, 'clawbox-x');
    assert.equal(hc.NetworkMode, 'clawbox-net');
  });
});
