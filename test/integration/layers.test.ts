/**
 * Every isolation layer of containerSpec, observed from INSIDE a real container on this host. Each test is built so
 * that it fails when its layer is missing from the spec (the comment on each says how). Containers run with
 * NetworkMode 'none', are labelled dev.clawbox.test=1 and are removed in t.after even when a test fails.
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Dockerode from 'dockerode';
import { parseConfig } from '../../src/config/load.js';
import { buildImages, SANDBOX_IMAGE } from '../../runner/images.js';
import { probeHost, type HostSupport } from '../../runner/host-support.js';
import { resolveMounts } from '../../runner/mounts.js';
import { seccompProfile } from '../../runner/seccomp.js';
import { containerSpec, type SpecResult } from '../../runner/spec.js';

const docker = new Dockerode();
const SUITE_LABEL = 'dev.clawbox.test.suite';
const LABELS = { 'dev.clawbox.test': '1', [SUITE_LABEL]: 'layers' };
let host: HostSupport;
let scratch = '';

interface Run {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly oomKilled: boolean;
}

function specFor(yaml: string, script = 'true'): SpecResult {
  const config = parseConfig(yaml ? `sandbox:\n${yaml}` : '').sandbox;
  const seccomp = seccompProfile(config);
  if ('problems' in seccomp) return { problems: seccomp.problems };
  const mounts = resolveMounts(config.mounts, config.blocked_paths);
  if ('problems' in mounts) return { problems: mounts.problems.map((p) => p.message) };
  return containerSpec(
    config,
    { image: SANDBOX_IMAGE, cmd: ['bash', '-c', script], env: {}, labels: LABELS, networkMode: 'none', seccompJson: seccomp.json, mounts: mounts.mounts },
    host,
  );
}

/** Runs `script` with bash in a sandbox made from `yaml` (lines under `sandbox:`), returning its output. */
async function run(t: TestContext, yaml: string, script: string, timeoutMs = 30_000): Promise<Run> {
  const result = specFor(yaml, script);
  if ('problems' in result) assert.fail(`spec problems: ${result.problems.join('\n')}`);
  const container = await docker.createContainer(result.spec);
  t.after(() => container.remove({ force: true }).catch(() => undefined));
  const stream = await container.attach({ stream: true, stdout: true, stderr: true });
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  err.on('data', (c: Buffer) => (stderr += c.toString()));
  // dockerode types `modem` as any; this is the one method used.
  const modem = container.modem as { demuxStream(s: NodeJS.ReadableStream, o: NodeJS.WritableStream, e: NodeJS.WritableStream): void };
  modem.demuxStream(stream, out, err);
  const ended = new Promise<void>((resolve) => stream.on('end', resolve));
  await container.start();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const waited = await Promise.race([container.wait() as Promise<{ StatusCode: number }>, timedOut]);
  clearTimeout(timer);
  if (waited === 'timeout') {
    await container.kill().catch(() => undefined);
    assert.fail(`container did not finish within ${timeoutMs} ms; stdout so far: ${stdout}`);
  }
  await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 2000))]);
  const state = (await container.inspect()).State;
  return { exitCode: waited.StatusCode, stdout, stderr, oomKilled: state.OOMKilled };
}

function statusField(stdout: string, field: string): string {
  const match = new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(stdout);
  assert.ok(match, `no ${field} in:\n${stdout}`);
  return match[1];
}

before(async () => {
  await buildImages({ images: ['sandbox'], docker });
  host = await probeHost(docker);
  scratch = mkdtempSync(join(tmpdir(), 'clawbox-layers-'));
  chmodSync(scratch, 0o755);
  // Leftovers of an earlier run that was killed before its t.after hooks ran.
  const stale = await docker.listContainers({ all: true, filters: { label: [`${SUITE_LABEL}=layers`] } });
  await Promise.all(stale.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
});

after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

void describe('resource limits', () => {
  void it('memory: an allocation above the limit is OOM-killed', async (t) => {
    // Without Memory (and MemorySwap = Memory) the 200 MiB allocation succeeds and the exit code is 0.
    const r = await run(t, "  resource_limits: { memory: '64m' }", `cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; python3 -c 'b = b"x" * (200 * 1024 * 1024); print("allocated")'`);
    assert.equal(r.oomKilled, true, `not OOM-killed: ${r.stdout} ${r.stderr}`);
    assert.notEqual(r.exitCode, 0);
    assert.doesNotMatch(r.stdout, /allocated/);
    assert.deepEqual(r.stdout.trim().split('\n').slice(0, 2), [String(64 * 2 ** 20), String(64 * 2 ** 20)]);
  });

  void it('memory_swap and memory_reservation reach the memory cgroup', async (t) => {
    const r = await run(
      t,
      "  resource_limits: { memory: '64m', memory_swap: '96m', memory_reservation: '32m' }",
      'cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes',
    );
    assert.deepEqual(r.stdout.trim().split('\n'), [String(96 * 2 ** 20), String(32 * 2 ** 20)]);
  });

  void it('pids: forking stops with EAGAIN at the limit', async (t) => {
    // Without PidsLimit all 100 forks succeed and the script prints "forked 100".
    const script = `python3 - <<'EOF'
import os, time, errno
n = 0
try:
    for _ in range(100):
        pid = os.fork()
        if pid == 0:
            time.sleep(20); os._exit(0)
        n += 1
    print("forked", n)
except OSError as e:
    print("stopped", n, errno.errorcode[e.errno])
print("pids.max", open("/sys/fs/cgroup/pids/pids.max").read().strip(), flush=True)
os._exit(0)  # without waiting for the sleeping children; the container ends with its main process
EOF`;
    const r = await run(t, '  resource_limits: { pids: 16 }', script);
    const m = /stopped (\d+) EAGAIN/.exec(r.stdout);
    assert.ok(m, `fork did not fail with EAGAIN: ${r.stdout} ${r.stderr}`);
    assert.ok(Number(m[1]) < 16, `forked ${m[1]} children under a limit of 16`);
    assert.match(r.stdout, /pids\.max 16/);
  });

  void it('cpus: the CFS quota is cpus × period', async (t) => {
    // Without NanoCpus the quota is -1 (unlimited).
    const r = await run(t, "  resource_limits: { cpus: '0.5' }", 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us');
    const [quota, period] = r.stdout.trim().split('\n').map(Number);
    assert.equal(quota, (period ?? 0) / 2);
  });

  void it('cpu_shares: the cpu cgroup carries the weight', async (t) => {
    // Without CpuShares the value is the default 1024.
    const r = await run(t, '  resource_limits: { cpu_shares: 512 }', 'cat /sys/fs/cgroup/cpu/cpu.shares');
    assert.equal(r.stdout.trim(), '512');
  });

  void it('cpuset: the container may run on the named CPU only', async (t) => {
    const last = host.cpuset.cpus.at(-1) ?? 0;
    // Without CpusetCpus the container gets every host CPU (here more than one, or the same single CPU).
    const r = await run(t, `  resource_limits: { cpuset: '${last}' }`, 'cat /sys/fs/cgroup/cpuset/cpuset.cpus; nproc');
    assert.deepEqual(r.stdout.trim().split('\n'), [String(last), '1']);
  });

  void it('disk_iops: read and write IOPS are throttled on the data-root disk', async (t) => {
    if (!host.iopsThrottle.supported) return t.skip('no IOPS throttling here');
    const device = host.iopsThrottle.device;
    assert.ok(device);
    const r = await run(t, '  resource_limits: { disk_iops: 1000 }', 'cat /sys/fs/cgroup/blkio/blkio.throttle.read_iops_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device');
    assert.deepEqual(r.stdout.trim().split('\n'), [`${device.major}:${device.minor} 1000`, `${device.major}:${device.minor} 1000`]);
  });

  void it('limits the host cannot enforce are refused, or run degraded when accepted', async (t) => {
    const unsupported = (
      [
        ['disk', "disk: '1gb'", host.diskQuota.supported],
        ['disk_io_weight', 'disk_io_weight: 500', host.blkioWeight.supported],
      ] as const
    ).filter(([, , supported]) => !supported);
    if (unsupported.length === 0) return t.skip('this host enforces disk and disk_io_weight');
    for (const [key, line] of unsupported) {
      const refused = specFor(`  resource_limits: { ${line} }`);
      assert.ok('problems' in refused);
      assert.match(refused.problems.join(), new RegExp(`^sandbox\\.resource_limits\\.${key}: this host cannot enforce .*add '${key}' to sandbox\\.accept_degraded`));
    }
    const yaml = `  resource_limits: { ${unsupported.map(([, line]) => line).join(', ')} }\n  accept_degraded: [${unsupported.map(([k]) => k).join(', ')}]`;
    const degraded = specFor(yaml);
    assert.ok('spec' in degraded);
    assert.equal(degraded.warnings.length, unsupported.length);
    const r = await run(t, yaml, 'echo started');
    assert.equal(r.stdout.trim(), 'started');
  });
});

void describe('privileges', () => {
  void it('capabilities: none at all by default', async (t) => {
    // Without CapDrop ALL the bounding set holds Docker's default capabilities.
    const r = await run(t, '', 'grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status');
    for (const field of ['CapEff', 'CapPrm', 'CapBnd']) assert.equal(BigInt(`0x${statusField(r.stdout, field)}`), 0n, field);
  });

  void it('capabilities: even root cannot chown without CHOWN', async (t) => {
    // Without CapDrop ALL root keeps Docker's default CAP_CHOWN and the chown succeeds.
    const r = await run(t, "  user: '0:0'", 'touch /tmp/f && chown 1:1 /tmp/f; echo "rc=$?"; grep ^CapEff /proc/self/status');
    assert.match(r.stdout, /rc=1/);
    assert.match(r.stderr, /Operation not permitted/);
    assert.equal(BigInt(`0x${statusField(r.stdout, 'CapEff')}`), 0n);
  });

  void it('capabilities: kept ones are effective for root (NET_BIND_SERVICE bit 10, CHOWN bit 0)', async (t) => {
    // Without CapAdd the effective set is 0, chown fails and binding port 80 is refused.
    const r = await run(
      t,
      "  user: '0:0'\n  keep_capabilities: [NET_BIND_SERVICE, CHOWN]",
      `grep ^CapEff /proc/self/status; touch /tmp/f && chown 1:1 /tmp/f && echo chowned; python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 80)); print("bound 80")'`,
    );
    const eff = BigInt(`0x${statusField(r.stdout, 'CapEff')}`);
    assert.equal(eff, (1n << 10n) | (1n << 0n));
    assert.match(r.stdout, /chowned/);
    assert.match(r.stdout, /bound 80/);
  });

  void it('capabilities: a non-root user gets none even when kept (bounding set only)', async (t) => {
    const r = await run(t, '  keep_capabilities: [NET_BIND_SERVICE]', 'grep -E "^Cap(Eff|Bnd)" /proc/self/status');
    assert.equal(BigInt(`0x${statusField(r.stdout, 'CapEff')}`), 0n);
    assert.equal(BigInt(`0x${statusField(r.stdout, 'CapBnd')}`), 1n << 10n);
  });

  void it('no-new-privileges is set', async (t) => {
    const r = await run(t, '', 'grep ^NoNewPrivs /proc/self/status');
    assert.equal(statusField(r.stdout, 'NoNewPrivs'), '1');
  });

  void it('user: runs as the configured non-root uid:gid (65534 by default)', async (t) => {
    // The image's own USER is 65534 too, so a custom uid shows that the spec's User is applied.
    const byDefault = await run(t, '', 'id -u; id -g');
    assert.deepEqual(byDefault.stdout.trim().split('\n'), ['65534', '65534']);
    const custom = await run(t, "  user: '1234:2345'", 'id -u; id -g');
    assert.deepEqual(custom.stdout.trim().split('\n'), ['1234', '2345']);
  });
});

void describe('seccomp', () => {
  const ptraceAndMkdir = `python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, call in (("ptrace", lambda: libc.ptrace(0, 0, 0, 0)), ("mkdir", lambda: libc.mkdir(b"/tmp/d", 0o755))):
    rc = call()
    print(name, "ok" if rc == 0 else os.strerror(ctypes.get_errno()))
'; grep ^Seccomp: /proc/self/status`;

  void it('a blocked syscall fails with EPERM while others work', async (t) => {
    // Without the merged profile Docker's built-in default allows ptrace(PTRACE_TRACEME).
    const r = await run(t, '  blocked_syscalls: [ptrace]', ptraceAndMkdir);
    assert.match(r.stdout, /^ptrace Operation not permitted$/m);
    assert.match(r.stdout, /^mkdir ok$/m);
    assert.equal(statusField(r.stdout, 'Seccomp'), '2');
  });

  void it('the same syscall works when not blocked (so EPERM above is the filter)', async (t) => {
    const r = await run(t, '', ptraceAndMkdir);
    assert.match(r.stdout, /^ptrace ok$/m);
    assert.equal(statusField(r.stdout, 'Seccomp'), '2');
  });

  void it('the default profile denies what Docker denies (unshare without CAP_SYS_ADMIN)', async (t) => {
    const r = await run(t, "  user: '0:0'", `python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.unshare(0x00020000)
print("unshare", "ok" if rc == 0 else os.strerror(ctypes.get_errno()))'`);
    assert.match(r.stdout, /^unshare Operation not permitted$/m);
  });
});

void describe('filesystem', () => {
  void it('read-only root: writing /etc fails with EROFS, even as root', async (t) => {
    // Root is used so that the failure cannot be a permission error; with readonly_root false the write succeeds.
    const r = await run(t, "  user: '0:0'", 'touch /etc/x; echo "rc=$?"');
    assert.match(r.stderr, /Read-only file system/);
    assert.match(r.stdout, /rc=1/);
    const writable = await run(t, "  user: '0:0'\n  readonly_root: false", 'touch /etc/x && echo wrote');
    assert.match(writable.stdout, /wrote/);
  });

  void it('tmpfs: /tmp is writable, sized by tmpfs_size and noexec', async (t) => {
    // Without the /tmp tmpfs, /tmp is the read-only root: the first write fails and there is no tmpfs line.
    const script = [
      'echo data > /tmp/file && echo wrote',
      "grep ' /tmp ' /proc/mounts",
      'printf "#!/bin/sh\\necho ran\\n" > /tmp/x.sh && chmod +x /tmp/x.sh; /tmp/x.sh; echo "exec_rc=$?"',
      'head -c 12M /dev/zero > /tmp/big; echo "big_rc=$?"',
      'echo "HOME=$HOME"',
    ].join('; ');
    const r = await run(t, "  tmpfs_size: '8m'", script);
    assert.match(r.stdout, /^wrote$/m);
    assert.match(r.stdout, /^tmpfs \/tmp tmpfs rw,nosuid,nodev,noexec,\S*size=8192k/m);
    assert.match(r.stdout, /exec_rc=126/);
    assert.doesNotMatch(r.stdout, /^ran$/m);
    assert.match(r.stdout, /big_rc=1/);
    assert.match(r.stderr, /No space left on device/);
    assert.match(r.stdout, /HOME=\/tmp/);
  });

  void it('mounts: ro cannot be written, rw writes reach the host', async (t) => {
    const ro = join(scratch, 'ro');
    const rw = join(scratch, 'rw');
    mkdirSync(ro);
    mkdirSync(rw);
    chmodSync(ro, 0o777); // writable on the host: only the ro mount can stop the write
    chmodSync(rw, 0o777);
    writeFileSync(join(ro, 'in.txt'), 'from host\n');
    const yaml = `  mounts:\n    - { source: ${ro}, target: /data, mode: ro }\n    - { source: ${rw}, target: /out, mode: rw }`;
    const r = await run(t, yaml, 'cat /data/in.txt; echo x > /data/new; echo "ro_rc=$?"; echo from-sandbox > /out/result.txt && echo wrote');
    assert.match(r.stdout, /from host/);
    assert.match(r.stdout, /ro_rc=1/);
    assert.match(r.stderr, /Read-only file system/);
    assert.match(r.stdout, /wrote/);
    assert.equal(readFileSync(join(rw, 'result.txt'), 'utf8'), 'from-sandbox\n');
  });

  void it('mounts touching a blocked path are refused before any container exists', () => {
    const result = specFor('  mounts:\n    - { source: /etc, target: /hostetc }');
    assert.ok('problems' in result);
    assert.match(result.problems.join(), /sandbox\.mounts\[0\]: \/etc contains blocked path \/etc\/passwd \(target \/hostetc\)/);
  });

  void it('host files stay invisible: no marker, a different /etc/passwd, an empty read-only /root', async (t) => {
    const marker = join(scratch, `marker-${process.pid}`);
    writeFileSync(marker, 'host secret\n');
    // Masking /root with an empty tmpfs hides the image's dotfiles; without it /root lists .bashrc and .profile.
    const r = await run(
      t,
      '',
      `test -e ${marker} && echo MARKER-VISIBLE; grep -rl "host secret" / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -1; echo "root:[$(ls -A /root)]"; grep " /root " /proc/mounts; cat /etc/passwd`,
    );
    assert.doesNotMatch(r.stdout, /MARKER-VISIBLE/);
    assert.doesNotMatch(r.stdout, /marker-/);
    assert.match(r.stdout, /^root:\[\]$/m);
    assert.match(r.stdout, /^tmpfs \/root tmpfs ro,/m);
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const inside = r.stdout.slice(r.stdout.indexOf('root:x:'));
    assert.notEqual(inside.trim(), hostPasswd.trim());
    const hostOnly = hostPasswd.split('\n').filter((l) => l && !inside.includes(l));
    assert.ok(hostOnly.length > 0, 'the host has users the image lacks, so the comparison means something');
  });
});

void describe('processes', () => {
  void it('init: PID 1 is docker-init and reaps orphaned zombies', async (t) => {
    // Without Init, python is PID 1, never waits for the orphan, and the orphan stays a zombie.
    const script = `python3 - <<'EOF'
import os, time
print("pid1", open("/proc/1/cmdline").read().split("\\0")[0])
child = os.fork()
if child == 0:
    if os.fork() == 0:
        time.sleep(0.3); os._exit(0)   # the orphan: reparented to PID 1 when its parent exits
    os._exit(0)
os.waitpid(child, 0)
time.sleep(1.5)
zombies = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            zombies.append(p)
print("zombies", len(zombies))
EOF`;
    const r = await run(t, '', script);
    assert.match(r.stdout, /^pid1 \/sbin\/docker-init$/m);
    assert.match(r.stdout, /^zombies 0$/m);
  });

  void it('ps shows only the sandbox processes; the cgroup namespace is private', async (t) => {
    const r = await run(t, '', 'ps -eo pid,comm --no-headers; cat /proc/self/cgroup >&2');
    const procs = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[1]);
    // With the host's cgroup namespace, these paths would name /docker/<container id>.
    assert.doesNotMatch(r.stderr, /docker/);
    assert.match(r.stderr, /:memory:\/$/m);
    assert.ok(procs.length <= 4, `unexpected processes: ${procs.join(', ')}`);
    for (const hostOnly of ['dockerd', 'containerd', 'systemd', 'sshd', 'node']) assert.ok(!procs.includes(hostOnly), hostOnly);
    assert.equal(procs[0], 'docker-init');
  });
});

void describe('LSMs on this host', () => {
  const lsm = "  apparmor_profile: docker-default\n  selinux_label: 'system_u:system_r:container_t:s0'";

  void it('AppArmor and SELinux requests are refused where the host lacks them, naming the key', (t) => {
    if (host.apparmor.supported || host.selinux.supported) return t.skip('this host has an LSM');
    const result = specFor(lsm);
    assert.ok('problems' in result);
    assert.equal(result.problems.length, 2);
    assert.match(result.problems[0] ?? '', /^sandbox\.apparmor_profile: this host cannot enforce AppArmor profile 'docker-default' \(.+\); remove the key or add 'apparmor_profile' to sandbox\.accept_degraded$/);
    assert.match(result.problems[1] ?? '', /^sandbox\.selinux_label: this host cannot enforce SELinux label .+ add 'selinux_label' to sandbox\.accept_degraded$/);
  });

  void it('with accept_degraded they become warnings and the sandbox runs without them', async (t) => {
    if (host.apparmor.supported || host.selinux.supported) return t.skip('this host has an LSM');
    const yaml = `${lsm}\n  accept_degraded: [apparmor_profile, selinux_label]`;
    const result = specFor(yaml);
    assert.ok('spec' in result);
    assert.equal(result.warnings.length, 2);
    assert.match(result.warnings.join('\n'), /sandbox\.apparmor_profile: not enforced/);
    const r = await run(t, yaml, 'echo started');
    assert.equal(r.stdout.trim(), 'started');
  });
});
