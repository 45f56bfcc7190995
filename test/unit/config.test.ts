import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ClawboxError } from '../../src/errors.js';
import { parseCpus, parseCpuset, parseDuration, parseDurationOrOff, parseListenAddress, parseSize } from '../../src/config/units.js';

const SEED_PATH = join(import.meta.dirname, '../fixtures/seed-config.yml');
const GiB = 1024 ** 3;

/** The detail lines of the ClawboxError that parsing `text` throws. */
function errorsOf(text: string): string[] {
  try {
    parseConfig(text, 'test.yml');
  } catch (err) {
    assert.ok(err instanceof ClawboxError, String(err));
    return [...err.details];
  }
  assert.fail('config was accepted');
}

describe('the seed document as one config file', () => {
  it('loads every step into one typed object with units parsed', () => {
    const { sandbox } = loadConfig(SEED_PATH).config;
    assert.equal(sandbox.timeout, 300_000);
    assert.deepEqual(sandbox.resource_limits, {
      memory: 2 * GiB,
      memory_swap: 2.5 * GiB,
      memory_reservation: GiB,
      cpus: 1e9,
      cpu_shares: 1024,
      cpuset: '0,1',
      disk: 5 * GiB,
      disk_iops: 1000,
      disk_io_weight: 500,
      pids: 256,
    });
    assert.deepEqual(sandbox.allowed_hosts, ['api.example.com', 'data.example.com']);
    assert.deepEqual(sandbox.drop_capabilities, ['SYS_ADMIN', 'SYS_BOOT', 'NET_ADMIN', 'SYS_MODULE', 'IPC_LOCK']);
    assert.deepEqual(sandbox.keep_capabilities, ['NET_BIND_SERVICE', 'CHOWN']);
    assert.deepEqual(sandbox.mounts[0], { source: '/home/user/openclaw/tmp', target: '/tmp', mode: 'rw' });
    assert.equal(sandbox.tmpfs_size, 100 * 1024 ** 2);
    assert.deepEqual(sandbox.blocked_syscalls, ['ptrace', 'kexec_load', 'reboot']);
    assert.equal(sandbox.logging.max_output_size, 10 * 1024 ** 2);
    assert.equal(sandbox.logging.level, 'debug');
    assert.equal(sandbox.selinux_label, 'system_u:system_r:container_t:s0');
    assert.ok(Object.isFrozen(sandbox.resource_limits), 'the parsed config is frozen');
  });

  it('gives secure defaults when there is no file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-config-'));
    const source = loadConfig(undefined, { HOME: dir });
    const { sandbox } = source.config;
    assert.equal(sandbox.network_policy, 'deny-by-default');
    assert.deepEqual(sandbox.allowed_hosts, []);
    assert.deepEqual(sandbox.drop_capabilities, ['ALL']);
    assert.equal(sandbox.readonly_root, true);
    assert.equal(sandbox.writable_tmpfs, true);
    assert.equal(sandbox.resource_limits.memory, 2 * GiB);
    assert.equal(sandbox.resource_limits.pids, 256);
    assert.equal(sandbox.timeout, 300_000);
    assert.equal(sandbox.user, '65534:65534');
    assert.ok(sandbox.blocked_paths.includes('/var/run/docker.sock'));
    assert.equal(sandbox.pool.size, 0);
    assert.equal(sandbox.pool.runner_idle_timeout, 0, 'no pool, no resident runner');
    assert.equal(sandbox.pool.network_holders, 0, 'no network holder unless asked for');
  });

  it('keeps a resident runner as long as the pool or the network holders when there are any, unless told otherwise', () => {
    const runnerOf = (pool: string): number => parseConfig(`sandbox:\n  pool:\n${pool}`, 'test.yml').sandbox.pool.runner_idle_timeout;
    assert.equal(runnerOf('    size: 1\n'), 300_000, "the pool's default idle_timeout");
    assert.equal(runnerOf('    size: 2\n    idle_timeout: 30s\n'), 30_000);
    assert.equal(runnerOf('    size: 2\n    runner_idle_timeout: 2m\n'), 120_000);
    for (const none of ['off', 'OFF', '0', 0, '0s']) {
      assert.equal(runnerOf(`    size: 2\n    runner_idle_timeout: ${JSON.stringify(none)}\n`), 0, String(none));
    }
    assert.equal(runnerOf('    size: 0\n'), 0);
    assert.equal(runnerOf('    network_holders: 1\n'), 300_000, 'network holders keep one as a pool does');
    assert.equal(runnerOf('    network_holders: 1\n    runner_idle_timeout: off\n'), 0);
    assert.equal(runnerOf('    size: 0\n    runner_idle_timeout: 60s\n'), 60_000, 'asked for without a pool');
  });

  it("reads gateway.exit_when_unused as milliseconds, 0 for 'off', unset when not given, and names a bad value", () => {
    const exitOf = (value: string | null): number | undefined =>
      parseConfig(`sandbox:\n  gateway:\n${value === null ? '    idle_timeout: 5m\n' : `    exit_when_unused: ${value}\n`}`, 'test.yml').sandbox.gateway.exit_when_unused;
    assert.equal(exitOf(null), undefined, 'the context decides: the runner 10 minutes, clawbox proxy never');
    assert.equal(exitOf('10m'), 600_000);
    assert.equal(exitOf('90'), 90_000, 'plain numbers are seconds');
    assert.equal(exitOf('off'), 0);
    assert.equal(exitOf('0'), 0);
    assert.throws(
      () => exitOf('soon'),
      (err: unknown) => err instanceof ClawboxError && /sandbox\.gateway\.exit_when_unused \(line 3\): expected .*'off'.*got 'soon'/.test(err.message + (err.details ?? []).join('\n')),
    );
  });
});

describe('where the config comes from', () => {
  it('prefers --config, then CLAWBOX_CONFIG, and refuses a named file that is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clawbox-config-'));
    const viaEnv = join(dir, 'env.yml');
    writeFileSync(viaEnv, 'sandbox:\n  timeout: 5\n');
    assert.equal(loadConfig(undefined, { CLAWBOX_CONFIG: viaEnv }).config.sandbox.timeout, 5000);
    assert.equal(loadConfig(SEED_PATH, { CLAWBOX_CONFIG: viaEnv }).config.sandbox.timeout, 300_000);
    assert.throws(() => loadConfig(join(dir, 'nope.yml')), (err: unknown) => err instanceof ClawboxError && err.code === 'CONFIG_NOT_FOUND' && /nope\.yml/.test(err.message));
    assert.throws(() => loadConfig(undefined, { CLAWBOX_CONFIG: join(dir, 'nope.yml') }), /nope\.yml/);
  });

  it('keeps the config text for the runner\'s digest', () => {
    assert.equal(loadConfig(SEED_PATH).text, readFileSync(SEED_PATH, 'utf8'));
  });
});

describe('config errors name the key path and line', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['a bad size', 'sandbox:\n  resource_limits:\n    memory: lots\n', /^sandbox\.resource_limits\.memory \(line 3\): expected a size like '2gb'.*got 'lots'$/],
    ['a typo at the top', 'sandbox:\n  timout: 3\n', /^sandbox\.timout \(line 2\): unknown key; did you mean 'timeout'\?$/],
    ['a typo deep down', 'sandbox:\n  logging:\n    levle: debug\n', /^sandbox\.logging\.levle \(line 3\): unknown key; did you mean 'level'\?$/],
    ['a key with no near match', 'sandbox:\n  frobnicate: 1\n', /^sandbox\.frobnicate \(line 2\): unknown key; known keys here: enabled, engine,/],
    ['a typo inside a list item', 'sandbox:\n  mounts:\n    - source: /a\n      target: /b\n      mdoe: ro\n', /^sandbox\.mounts\[0\]\.mdoe \(line 5\): unknown key; did you mean 'mode'\?$/],
    ['a wrong type', 'sandbox:\n  readonly_root: "yes"\n', /^sandbox\.readonly_root \(line 2\): expected true or false, got 'yes'$/],
    ['a string for a list', 'sandbox:\n  allowed_hosts: api.test\n', /^sandbox\.allowed_hosts \(line 2\): expected a list, got 'api\.test'$/],
    ['an unknown mode', 'sandbox:\n  network_policy: open\n', /^sandbox\.network_policy \(line 2\): expected one of 'deny-by-default', 'allow-all', got 'open'$/],
    ['a too broad wildcard', 'sandbox:\n  allowed_hosts:\n    - ok.test\n    - "*.com"\n', /^sandbox\.allowed_hosts\[1\] \(line 4\): .*too broad/],
    ['a bare star', 'sandbox:\n  allowed_hosts: ["*"]\n', /^sandbox\.allowed_hosts\[0\] \(line 2\): /],
    ['a CIDR with host bits', 'sandbox:\n  denied_hosts: ["10.1.0.0/8"]\n', /^sandbox\.denied_hosts\[0\] \(line 2\): .*use 10\.0\.0\.0\/8/],
    ['an unknown capability', 'sandbox:\n  keep_capabilities: [CAP_FLY]\n', /^sandbox\.keep_capabilities\[0\] \(line 2\): expected a Linux capability/],
    ['a relative mount path', 'sandbox:\n  mounts:\n    - source: data\n      target: /data\n', /^sandbox\.mounts\[0\]\.source \(line 3\): expected an absolute path/],
    ['a bad timeout', 'sandbox:\n  timeout: soon\n', /^sandbox\.timeout \(line 2\): expected seconds like 300/],
    ['a bad cpuset', 'sandbox:\n  resource_limits:\n    cpuset: "3-1"\n', /^sandbox\.resource_limits\.cpuset \(line 3\): expected a rising CPU range/],
    ['an out-of-range weight', 'sandbox:\n  resource_limits:\n    disk_io_weight: 5000\n', /^sandbox\.resource_limits\.disk_io_weight \(line 3\): expected a whole number from 10 to 1000/],
    ['another engine', 'sandbox:\n  engine: podman\n', /^sandbox\.engine \(line 2\): expected 'docker'/],
    ['a bad listen address', 'sandbox:\n  gateway:\n    http: "nowhere"\n', /^sandbox\.gateway\.http \(line 3\): expected HOST:PORT/],
    ['a resident runner kept for a bad time', 'sandbox:\n  pool:\n    runner_idle_timeout: soon\n', /^sandbox\.pool\.runner_idle_timeout \(line 3\): expected seconds like 300, a duration like '5m' or '30s', or 0 or 'off' for none, got 'soon'$/],
    ['too many network holders', 'sandbox:\n  pool:\n    network_holders: 33\n', /^sandbox\.pool\.network_holders \(line 3\): expected a whole number from 0 to 32, got 33$/],
    ['a pool of no number', 'sandbox:\n  pool:\n    size: many\n', /^sandbox\.pool\.size \(line 3\): expected a whole number like '2', got 'many'$/],
    ['a typo in the pool', 'sandbox:\n  pool:\n    sise: 1\n', /^sandbox\.pool\.sise \(line 3\): unknown key; did you mean 'size'\?$/],
    ['a duplicate key', 'sandbox:\n  timeout: 1\n  timeout: 2\n', /^test\.yml \(line 3\): Map keys must be unique/],
    ['broken YAML', 'sandbox: [\n', /^test\.yml \(line \d\): /],
    ['an unknown top-level key', 'sandbx:\n  timeout: 1\n', /^sandbx \(line 1\): unknown key; did you mean 'sandbox'\?$/],
  ];
  for (const [name, text, expected] of cases) {
    it(`reports ${name}`, () => {
      const errors = errorsOf(text);
      assert.ok(errors.some((e) => expected.test(e)), `expected ${String(expected)} in ${JSON.stringify(errors)}`);
    });
  }

  it('reports every problem at once, in line order', () => {
    const errors = errorsOf('sandbox:\n  timout: 3\n  resource_limits:\n    memory: lots\n  readonly_root: 7\n');
    assert.equal(errors.length, 3);
    assert.deepEqual(errors.map((e) => Number(/line (\d+)/.exec(e)?.[1])), [2, 4, 5]);
  });
});

describe('units', () => {
  it('parses sizes the way Docker does (binary multiples)', () => {
    const table: Array<[unknown, number]> = [
      ['2gb', 2 * GiB], ['2.5gb', 2.5 * GiB], ['100m', 100 * 1024 ** 2], ['10mb', 10 * 1024 ** 2],
      ['512k', 512 * 1024], ['1G', GiB], ['1 GiB', GiB], [4096, 4096], ['7', 7],
    ];
    for (const [raw, bytes] of table) assert.deepEqual(parseSize(raw), { ok: true, value: bytes }, String(raw));
    for (const raw of ['lots', '-1m', '0', '2pb', '', '1.2.3g', null, true]) assert.equal(parseSize(raw).ok, false, String(raw));
  });

  it('parses CPUs, CPU sets and durations', () => {
    assert.deepEqual(parseCpus('0.5'), { ok: true, value: 5e8 });
    assert.deepEqual(parseCpus(2), { ok: true, value: 2e9 });
    assert.equal(parseCpus('0').ok, false);
    assert.equal(parseCpus('one').ok, false);
    assert.deepEqual(parseCpuset('0, 1'), { ok: true, value: '0,1' });
    assert.deepEqual(parseCpuset('0-3,6'), { ok: true, value: '0-3,6' });
    assert.equal(parseCpuset('a').ok, false);
    assert.deepEqual(parseDuration(300), { ok: true, value: 300_000 });
    assert.deepEqual(parseDuration('5m'), { ok: true, value: 300_000 });
    assert.deepEqual(parseDuration('250ms'), { ok: true, value: 250 });
    assert.equal(parseDuration('0s').ok, false);
    assert.deepEqual(parseDurationOrOff('off'), { ok: true, value: 0 });
    assert.deepEqual(parseDurationOrOff('0ms'), { ok: true, value: 0 });
    assert.deepEqual(parseDurationOrOff('90s'), { ok: true, value: 90_000 });
    assert.equal(parseDurationOrOff('never').ok, false);
    assert.equal(parseDurationOrOff(true).ok, false);
  });

  it('parses listen addresses', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:3128'), { ok: true, value: { host: '127.0.0.1', port: 3128 } });
    assert.deepEqual(parseListenAddress('[::1]:53'), { ok: true, value: { host: '::1', port: 53 } });
    assert.deepEqual(parseListenAddress(':8080'), { ok: true, value: { host: '0.0.0.0', port: 8080 } });
    assert.deepEqual(parseListenAddress('10.0.0.1', 53), { ok: true, value: { host: '10.0.0.1', port: 53 } });
    for (const raw of ['10.0.0.1', 'a b:1', '1.2.3.4:99999', 5]) assert.equal(parseListenAddress(raw).ok, false, String(raw));
  });
});
