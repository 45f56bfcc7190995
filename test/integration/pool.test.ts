/**
 * The warm pool: sandboxes started ahead of time, one per tool call. A pooled sandbox must be indistinguishable
 * from a cold one to the tool, and carry nothing from any earlier tool.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { runSandbox, settleBackground, type RunOptions, type RunResult } from '../../runner/sandbox.js';
import { closeEnvironments, DEFAULT_STATE_DIR, EGRESS_NETWORK, ensureEnvironment, SANDBOX_NETWORK } from '../../runner/environment.js';
import { addressOn } from '../../runner/gateway-container.js';
import { LABEL_NETWORK_HOLDER, LABEL_POOL_EXPIRES, LABEL_POOL_KERNEL_LOG, LABEL_POOL_KEY, labelFilter, labelsFor } from '../../runner/labels.js';
import { WarmPool } from '../../runner/pool.js';
import { isRefillHelper } from '../../runner/process-alive.js';
import { createJoinedSandbox, createStartedSandbox } from '../../runner/sandbox-container.js';
import { ignoringGone } from '../../runner/docker-client.js';
import type { DecisionEvent } from '../../src/audit/types.js';
import { TextCollector } from '../../runner/output.js';
import { crashLeftover } from '../fixtures/leftovers.js';
import { startSandboxWorld, UPSTREAM_IP, type SandboxWorld } from '../fixtures/sandbox-env.js';

const docker = new Dockerode();
let world: SandboxWorld;

async function emptyPool(): Promise<void> {
  for (const role of ['pool', 'holder'] as const) {
    for (const info of await docker.listContainers({ all: true, filters: labelFilter(role) })) {
      await docker.getContainer(info.Id).remove({ force: true });
    }
  }
}

before(async () => {
  // Pooled sandboxes and network holders of the same shape left by anything earlier (a benchmark, say) would be
  // handed out here.
  await emptyPool();
  world = await startSandboxWorld();
});
after(async () => {
  await settleBackground();
  execFileSync(process.execPath, [`${import.meta.dirname}/../../dist/src/cli/main.js`, 'gc']);
  await emptyPool();
  await closeEnvironments();
  await world?.close();
});

async function run(command: string, yaml: string, extra: Partial<RunOptions> = {}): Promise<{ result: RunResult; stdout: string }> {
  const { config, text } = world.config(yaml);
  const stdout = new TextCollector();
  const result = await runSandbox({ config, configText: text, command: ['sh', '-c', command], stdout, stderr: null, ...extra });
  await settleBackground();
  return { result, stdout: stdout.text };
}

async function pooled(): Promise<number> {
  return (await docker.listContainers({ filters: labelFilter('pool') })).length;
}

async function holders(): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ filters: labelFilter('holder') });
}

const exists = (id: string): Promise<boolean> =>
  docker
    .getContainer(id)
    .inspect()
    .then(
      () => true,
      (err: { statusCode?: number }) => {
        if (err.statusCode === 404) return false;
        throw err;
      },
    );

// What a tool can observe about its sandbox: processes, identity, limits, mounts, environment, filesystem.
const PROBE = [
  'echo "== ps"; ps -eo pid,ppid,user,args --no-headers',
  'echo "== id"; id',
  'echo "== status"; grep -E "^(Cap|NoNewPrivs|Seccomp)" /proc/self/status',
  'echo "== limits"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us',
  // The root's overlay layer paths differ between any two containers, cold or not; everything else must match.
  'echo "== mounts"; cut -d" " -f2-4 /proc/self/mounts | sed "s/lowerdir=[^ ]*//" | sort',
  'echo "== env"; env | grep -v "^HOSTNAME=" | sort',
  'echo "== tmp"; ls -A /tmp',
  'echo "== stdin"; readlink /proc/self/fd/0',
  'echo "== init"; tr "\\0" " " < /proc/1/cmdline',
].join('; ');

/**
 * The tool's PID number varies between any two starts, cold or warm (6 to 9 here: Docker's own set-up processes take
 * the first numbers), so PIDs are compared by position, parents included. ps pads its columns to the widest number,
 * so the padding goes too: a tool at PID 9 whose ps is PID 10 is not a difference.
 */
function positional(text: string): string {
  const numbers = new Map<string, string>();
  // Spaces only, within a line: the limits below are numbers alone on their lines, compared as they are.
  return text.replace(/^[ \t]*(\d+)[ \t]+(\d+)[ \t]+/gm, (_m, pid: string, ppid: string) => {
    for (const n of [pid, ppid]) if (!numbers.has(n)) numbers.set(n, n === '0' || n === '1' ? n : `P${numbers.size}`);
    return `${numbers.get(pid)} ${numbers.get(ppid)} `;
  });
}

describe('the warm pool', () => {
  const POOL = 'pool:\n  size: 2\n  idle_timeout: 5m';
  // The CLI's own path: without a resident runner, which a config with a pool keeps unless it says otherwise
  // (resident-runner.test.ts tests that one).
  const CLI_POOL = 'pool:\n  size: 1\n  idle_timeout: 5m\n  runner_idle_timeout: off';

  it('serves later calls from sandboxes started ahead of time', async () => {
    const first = await run('true', POOL);
    assert.equal(first.result.warm, false, 'an empty pool means a cold start');
    assert.equal(await pooled(), 2, 'the pool is filled to its size');
    const second = await run('echo warm', POOL);
    assert.equal(second.result.warm, true);
    assert.equal(second.stdout, 'warm\n');
    assert.equal(second.result.exit_code, 0);
    assert.equal(await pooled(), 2, 'and topped up again');
  });

  it('gives the tool exactly what a cold sandbox gives it', async () => {
    await run('true', POOL); // sandboxes of this shape wait, whichever test ran before
    const cold = await run(PROBE, '');
    const warm = await run(PROBE, POOL);
    assert.equal(cold.result.warm, false);
    assert.equal(warm.result.warm, true);
    assert.equal(positional(warm.stdout), positional(cold.stdout));
    assert.match(cold.stdout, /^\s+1\s+0 nobody\s+\/sbin\/docker-init -- \/.clawbox\/launch$/m);
  });

  it('leaves nothing of one tool for the next: no file, no process', async () => {
    const first = await run('echo secret > /tmp/left-behind; (sleep 300 &) ; echo done', POOL);
    assert.equal(first.stdout, 'done\n');
    const second = await run('ls -A /tmp; ps -eo args --no-headers | grep -c "[s]leep 300" || true', POOL);
    assert.equal(second.result.warm, true);
    assert.equal(second.stdout, '0\n', 'no file in /tmp and no sleep from the earlier tool');
    assert.notEqual(second.result.sandbox, first.result.sandbox);
  });

  it('records a pooled sandbox\'s attempts past the gateway, read from where the log stood at its creation', async () => {
    await run('true', POOL); // the pool holds sandboxes made by this build, each with its kernel log bookmark
    const [entry] = await docker.listContainers({ filters: labelFilter('pool') });
    assert.match(entry?.Labels[LABEL_POOL_KERNEL_LOG] ?? '', /^[0-9a-f-]{36}:\d+$/, 'a pool entry carries its bookmark');
    const { result, stdout } = await run(`curl -sS -m 3 --noproxy '*' http://${UPSTREAM_IP}/ >/dev/null 2>&1; echo direct=$?`, POOL);
    assert.equal(result.warm, true);
    assert.match(stdout, /^direct=[1-9]\d*$/m, 'the direct attempt failed');
    const direct = world
      .auditLines()
      .filter((e): e is DecisionEvent => e.event === 'decision' && e.sandbox === result.sandbox && e.channel === 'direct');
    assert.deepEqual(
      direct.map((e) => [e.host, e.port, e.rule]),
      [[UPSTREAM_IP, 80, 'builtin.direct-connection']],
    );
  });

  it('labels a sandbox with what is read once its address is chosen (where the pool keeps its bookmark)', async () => {
    const env = await ensureEnvironment(docker, world.config('').config);
    const seen: string[] = [];
    const { container, ip } = await createStartedSandbox(
      docker,
      env.network,
      { Image: 'openclaw-sandbox:latest', Cmd: ['true'], HostConfig: { NetworkMode: env.network.name } },
      labelsFor('sandbox'),
      {
        labelsOnceAddressed: (chosen) => {
          seen.push(chosen);
          return Promise.resolve({ 'dev.clawbox.test-late': `read for ${chosen}` });
        },
      },
    );
    try {
      const info = await container.inspect();
      assert.deepEqual(seen, [ip], 'read once, for the address the container got');
      assert.equal(info.NetworkSettings.Networks[env.network.name]?.IPAMConfig?.IPv4Address, ip);
      assert.equal(info.Config.Labels['dev.clawbox.test-late'], `read for ${ip}`);
    } finally {
      await container.remove({ force: true });
    }
  });

  it('starts a sandbox at another address when another container took its address between create and start', async () => {
    const env = await ensureEnvironment(docker, world.config('').config);
    const shape = { Image: 'openclaw-sandbox:latest', Cmd: ['sleep', '30'], HostConfig: { NetworkMode: env.network.name } };
    const chosen: string[] = [];
    let rival: Dockerode.Container | null = null;
    try {
      // The first address found free goes, before its create, to a rival that starts at once: as when two runners
      // find the same address free and the other one starts first.
      const { container, ip } = await createStartedSandbox(docker, env.network, shape, labelsFor('sandbox'), {
        labelsOnceAddressed: async (address) => {
          chosen.push(address);
          if (rival === null) {
            rival = await docker.createContainer({
              ...shape,
              Labels: labelsFor('sandbox'),
              NetworkingConfig: { EndpointsConfig: { [env.network.name]: { IPAMConfig: { IPv4Address: address } } } },
            });
            await rival.start();
          }
          return {};
        },
      });
      try {
        assert.equal(chosen.length, 2, 'a second address was chosen');
        assert.notEqual(ip, chosen[0]);
        assert.equal(ip, chosen[1]);
        const info = await container.inspect();
        assert.equal(info.State.Running, true);
        assert.equal(info.NetworkSettings.Networks[env.network.name]?.IPAddress, ip);
        // The container that could not start is gone: only the rival and this one hold the test's shape.
        const left = await docker.listContainers({ all: true, filters: { ...labelFilter('sandbox'), network: [env.network.name] } });
        assert.deepEqual(left.map((c) => c.Id).filter((id) => id !== rival?.id && id !== container.id), []);
      } finally {
        await container.remove({ force: true });
      }
    } finally {
      await (rival as Dockerode.Container | null)?.remove({ force: true });
    }
  });

  it('keeps pools apart per config: another shape starts cold', async () => {
    const other = await run('true', `${POOL}\nresource_limits:\n  memory: 256m`);
    assert.equal(other.result.warm, false);
  });

  it('through the CLI: the run exits as soon as its tool is done, and a detached helper refills the pool', async () => {
    await emptyPool();
    const { path } = world.config(CLI_POOL);
    const launcher = join(import.meta.dirname, '../../bin/clawbox');
    const cli = (): RunResult => {
      const out = execFileSync(launcher, ['run', '--config', path, '--json', '--', 'true'], { stdio: ['ignore', 'pipe', 'ignore'] });
      return JSON.parse(out.toString()) as RunResult;
    };
    // The helpers at work now: their markers, each naming a live `clawbox pool-refill` process.
    const helpers = (): string[] =>
      readdirSync(join(DEFAULT_STATE_DIR, 'pool'))
        .filter((name) => /^refill-\d+\.pid$/.test(name))
        .filter((name) => isRefillHelper(Number(name.slice(7, -4))));

    assert.equal(cli().warm, false, 'an empty pool means a cold start');
    // The bundle kept the parsed config for the next run (src/cli/config-cache.ts).
    const digest = createHash('sha256').update(readFileSync(path, 'utf8')).digest('hex');
    const bundleDir = join(import.meta.dirname, '../../dist/bundle');
    assert.equal(readdirSync(bundleDir).filter((n) => n.startsWith('clawbox-config-') && n.endsWith(`-${digest}.json`)).length, 1);
    // A Docker start takes hundreds of milliseconds, a Node start alone tens: the helper is still at work.
    assert.equal(helpers().length, 1, 'the run left its refill to a helper');
    await settleBackground();
    assert.deepEqual(helpers(), []);
    assert.equal(await pooled(), 1, 'the helper filled the pool');
    assert.equal(cli().warm, true);
    await settleBackground();
    assert.equal(await pooled(), 1, 'and topped it up again');
  });

  describe('crash leftovers (a sandbox whose runner died)', () => {
    const CLI = join(import.meta.dirname, '../../bin/clawbox');

    /**
     * `clawbox run` of a tool that prints a line, then sleeps 3 s (its stdin is /dev/null: the launcher's, see
     * `sandbox.ts`): `whileRunning` runs once the line arrives, while the tool runs. Resolves with whether the run
     * was warm.
     */
    async function runCli(yamlPath: string, whileRunning: () => Promise<void>): Promise<boolean> {
      // With --json the run record is on stdout and the tool's output on stderr.
      const child = spawn(CLI, ['run', '--config', yamlPath, '--json', '--', 'sh', '-c', 'echo started; sleep 3'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let record = '';
      let toolOutput = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (record += chunk));
      child.stderr.setEncoding('utf8');
      const exited = once(child, 'close') as Promise<[number]>;
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (chunk: string) => {
          toolOutput += chunk;
          if (toolOutput.includes('started\n')) resolve();
        });
        child.once('exit', () => reject(new Error(`clawbox run ended before its tool started: ${toolOutput}`)));
      });
      await whileRunning();
      const [code] = await exited;
      assert.equal(code, 0);
      return (JSON.parse(record) as RunResult).warm;
    }

    it('a run without a pool sweeps them beside creating its sandbox, and exits only once they are gone', async () => {
      const { path } = world.config('pool:\n  size: 0');
      const { container: leftover } = await crashLeftover(docker);
      // The sweep goes out with the run's first requests and is not waited for before the create (a leftover that
      // runs holds its address, which is then not picked); the CLI waits for it before it exits.
      const warm = await runCli(path, () => Promise.resolve());
      assert.equal(warm, false);
      assert.equal(await exists(leftover.id), false, 'gone once the run exited');
    });

    it('a warm run leaves them to its refill: the tool starts first', async () => {
      await emptyPool();
      const { path } = world.config(CLI_POOL);
      await runCli(path, () => Promise.resolve());
      await settleBackground();
      assert.equal(await pooled(), 1);
      const { container: leftover } = await crashLeftover(docker);
      const warm = await runCli(path, async () => assert.equal(await exists(leftover.id), true, 'the warm run did not wait for a sweep'));
      assert.equal(warm, true);
      await settleBackground();
      assert.equal(await exists(leftover.id), false, 'the refill swept it');
      assert.equal(await pooled(), 1);
    });
  });

  it('removes pooled sandboxes unused past idle_timeout', async () => {
    await emptyPool();
    const SHORT = 'pool:\n  size: 1\n  idle_timeout: 1s';
    await run('true', SHORT);
    assert.equal(await pooled(), 1);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const late = await run('true', SHORT);
    assert.equal(late.result.warm, false, 'an expired sandbox is not handed out');
    // The late run may have swept the expired one itself (a run sweeps at most every 30 s per process); the one its
    // refill left expires too, and gc removes every expired one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const out = execFileSync(process.execPath, [`${import.meta.dirname}/../../dist/src/cli/main.js`, 'gc']).toString();
    assert.match(out, /sandboxes removed: [0-9a-f]{12}/);
    assert.equal(await pooled(), 0);
  });
});

describe('network holders (pool.network_holders)', () => {
  const HOLD = 'pool:\n  network_holders: 1\n  idle_timeout: 5m';
  const CLI = join(import.meta.dirname, '../../bin/clawbox');
  // The network as the tool sees it, its own address as ME (a cold and a held sandbox have different ones; the
  // word boundaries keep a longer address, the gateway's at .25x say, from matching a sandbox's at .25).
  const NET_PROBE = [
    `me=$(ip -o -4 addr show eth0 | awk '{print $4}' | cut -d/ -f1)`,
    `{ echo "== net"; hostname; cat /etc/hosts /etc/resolv.conf; ls /sys/class/net; ip -4 -o addr | awk '{print $2, $4}'; ip route; env | grep -i _proxy= | sort; } | sed "s/\\b$me\\b/ME/g"`,
  ].join('; ');

  /** The one holder waiting now (after a run with HOLD and its refill), and its address. */
  async function waitingHolder(): Promise<{ id: string; ip: string; info: Dockerode.ContainerInfo }> {
    const waiting = await holders();
    assert.equal(waiting.length, 1, 'one holder waits');
    const [info] = waiting;
    return { id: info.Id, ip: Object.values(info.NetworkSettings.Networks)[0]?.IPAddress ?? '', info };
  }

  it("starts a sandbox that the pool has nothing for in a waiting holder's namespace, and removes the holder with it", async () => {
    await emptyPool();
    const first = await run('true', HOLD);
    assert.equal(first.result.warm, false);
    const holder = await waitingHolder();
    assert.match(holder.ip, /^\d+\.\d+\.\d+\.\d+$/);
    const { result, stdout } = await run(
      [
        `ip -o -4 addr show eth0 | awk '{print $4}'`,
        'curl -s -m 10 -o /dev/null -w "allowed=%{http_code}\\n" http://allowed.test/',
        'curl -s -m 10 -o /dev/null -w "denied=%{http_code}\\n" http://denied.test/',
      ].join('; '),
      HOLD,
    );
    assert.equal(result.warm, false, 'not a pooled sandbox');
    assert.match(stdout, new RegExp(`^${holder.ip.replaceAll('.', '\\.')}/\\d+\\nallowed=200\\ndenied=403\\n$`), "at the holder's address, through the gateway");
    const decisions = world.auditLines().filter((e): e is DecisionEvent => e.event === 'decision' && e.sandbox === result.sandbox);
    assert.deepEqual(
      decisions.map((e) => [e.host, e.decision, e.client]),
      [
        ['allowed.test', 'allow', holder.ip],
        ['denied.test', 'deny', holder.ip],
      ],
      'the gateway knew the sandbox at that address',
    );
    assert.equal(await exists(holder.id), false, 'the holder went with its sandbox');
    const next = await waitingHolder();
    assert.notEqual(next.id, holder.id, 'and another waits');
  });

  it('holds its address with no capability, privilege or writable root, nothing running but the waiting launcher', async () => {
    await emptyPool();
    await run('true', HOLD);
    const holder = await waitingHolder();
    const info = await docker.getContainer(holder.id).inspect();
    assert.equal(info.Config.User, '65534:65534');
    assert.equal(info.Config.Hostname, 'sandbox');
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.equal(info.HostConfig.Privileged, false);
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges:true']);
    // The engine needs the PID column to pick the container's processes out of the host's.
    const top = (await docker.getContainer(holder.id).top({ ps_args: '-o pid,user,args' })) as { Processes: string[][] };
    assert.deepEqual(
      top.Processes.map((p) => p.slice(1).join(' ')),
      ['nobody /sbin/docker-init -- /.clawbox/launch', 'nobody /.clawbox/launch'],
    );
  });

  it('gives the tool exactly what a cold sandbox gives it', async () => {
    await emptyPool();
    await run('true', HOLD);
    const holder = await waitingHolder();
    const cold = await run(`${PROBE}; ${NET_PROBE}`, '');
    const held = await run(`${PROBE}; ${NET_PROBE}`, HOLD);
    assert.equal(await exists(holder.id), false, 'the second run was held');
    assert.match(cold.stdout, /== net\nsandbox\n/);
    assert.equal(positional(held.stdout), positional(cold.stdout));
  });

  it("records a held sandbox's attempts past the gateway, read from where the log stood at the holder's creation", async () => {
    await emptyPool();
    await run('true', HOLD);
    const holder = await waitingHolder();
    assert.match(holder.info.Labels[LABEL_POOL_KERNEL_LOG] ?? '', /^[0-9a-f-]{36}:\d+$/, 'a holder carries its bookmark');
    const { result, stdout } = await run(`curl -sS -m 3 --noproxy '*' http://${UPSTREAM_IP}/ >/dev/null 2>&1; echo direct=$?`, HOLD);
    assert.equal(await exists(holder.id), false, 'the run was held');
    assert.match(stdout, /^direct=[1-9]\d*$/m, 'the direct attempt failed');
    const direct = world
      .auditLines()
      .filter((e): e is DecisionEvent => e.event === 'decision' && e.sandbox === result.sandbox && e.channel === 'direct');
    assert.deepEqual(
      direct.map((e) => [e.client, e.host, e.port, e.rule]),
      [[holder.ip, UPSTREAM_IP, 80, 'builtin.direct-connection']],
    );
  });

  it('joins no holder that stopped or went: the run starts its sandbox cold instead', async () => {
    const env = await ensureEnvironment(docker, world.config('').config);
    const shape = { Image: 'openclaw-sandbox:latest', Cmd: ['sleep', '30'], HostConfig: { NetworkMode: env.network.name } };
    const holder = await docker.createContainer({ ...shape, Labels: labelsFor('holder') });
    const taken = { container: holder, ip: '', kernelLogBookmark: undefined };
    const join = (image: string): ReturnType<typeof createJoinedSandbox> => createJoinedSandbox(docker, env.network, taken, { ...shape, Image: image }, labelsFor('sandbox'));
    try {
      await holder.start();
      await assert.rejects(join('clawbox-test-no-such-image:latest'), /no such image/i, "with the holder running, the engine's refusal is the run's error");
      await holder.stop({ t: 0 });
      assert.equal(await join('openclaw-sandbox:latest'), null, 'stopped');
      await holder.remove({ force: true });
      assert.equal(await join('openclaw-sandbox:latest'), null, 'gone');
      const attempts = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NETWORK_HOLDER}=${holder.id}`] } });
      assert.deepEqual(attempts, [], 'no container is left of the attempts');
    } finally {
      await ignoringGone(() => holder.remove({ force: true }));
    }
  });

  it('removes a holder taken by a run that fails before its sandbox exists', async () => {
    await emptyPool();
    await run('true', HOLD);
    const holder = await waitingHolder();
    // With a pool, a run checks its image once the pool had nothing for it: after it took the holder.
    await assert.rejects(run('true', `pool:\n  size: 1\n  network_holders: 1\ndefault_image: clawbox-test-no-such-image:latest`), /clawbox-test-no-such-image:latest does not exist locally/);
    assert.equal(await exists(holder.id), false);
    assert.deepEqual(
      readdirSync(join(DEFAULT_STATE_DIR, 'pool')).filter((name) => name.startsWith(holder.id)),
      [],
      'nor is its lock left',
    );
  });

  it('through the CLI: a detached helper makes the next holder, and a run killed mid-tool leaves nothing after gc', async () => {
    await emptyPool();
    // The CLI's own path: without the resident runner that a config with holders keeps by default (which would
    // serve the second run and stop its tool itself when its client is killed: resident-runner.test.ts).
    const { path } = world.config(`${HOLD}\n  runner_idle_timeout: off`);
    execFileSync(CLI, ['run', '--config', path, '--', 'true'], { stdio: 'ignore' });
    await settleBackground();
    const holder = await waitingHolder();
    const child = spawn(CLI, ['run', '--config', path, '--', 'sh', '-c', 'echo started; sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = once(child, 'exit');
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        if (chunk.includes('started')) resolve();
      });
      child.once('exit', () => reject(new Error('clawbox run ended before its tool started')));
    });
    const [sandbox] = await docker.listContainers({ filters: { label: [`${LABEL_NETWORK_HOLDER}=${holder.id}`] } });
    assert.ok(sandbox !== undefined, 'the run is in the holder');
    child.kill('SIGKILL');
    await exited;
    execFileSync(process.execPath, [`${import.meta.dirname}/../../dist/src/cli/main.js`, 'gc']);
    assert.equal(await exists(sandbox.Id), false, 'its sandbox is swept');
    assert.equal(await exists(holder.id), false, 'and so is its holder, whose taker died');
  });

  it('sweeps an entry that stopped or expired, not one that is being started', async () => {
    await emptyPool();
    const entry = async (expiresInMs: number): Promise<Dockerode.Container> =>
      docker.createContainer({
        Image: 'openclaw-sandbox:latest',
        Cmd: ['true'],
        Labels: labelsFor('holder', { [LABEL_POOL_KEY]: 'test-sweep', [LABEL_POOL_EXPIRES]: String(Date.now() + expiresInMs) }),
        HostConfig: { NetworkMode: 'none' },
      });
    // A refill lists its entry as 'created' between the create and the start: a sweep then must not take it.
    const starting = await entry(60_000);
    const stopped = await entry(60_000);
    await stopped.start();
    await stopped.wait();
    const expired = await entry(-1);
    try {
      const removed = await new WarmPool(docker, DEFAULT_STATE_DIR, 'holder').sweep();
      assert.deepEqual(removed.sort(), [stopped.id.slice(0, 12), expired.id.slice(0, 12)].sort());
      assert.equal(await exists(starting.id), true);
    } finally {
      for (const c of [starting, stopped, expired]) await ignoringGone(() => c.remove({ force: true }));
    }
  });

  it('removes holders unused past idle_timeout', async () => {
    await emptyPool();
    await run('true', 'pool:\n  network_holders: 1\n  idle_timeout: 1s');
    const holder = await waitingHolder();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const out = execFileSync(process.execPath, [`${import.meta.dirname}/../../dist/src/cli/main.js`, 'gc']).toString();
    assert.match(out, new RegExp(`sandboxes removed: .*${holder.id.slice(0, 12)}`));
    assert.deepEqual(await holders(), []);
  });
});

describe('a gateway unused for sandbox.gateway.exit_when_unused', () => {
  it('exits; the next run starts it again where its pooled sandbox expects it', { timeout: 120_000 }, async () => {
    await emptyPool();
    // Its own gateway (other settings), which exits 2 s after the last runner left it.
    const { config, text } = world.config('pool:\n  size: 1\n  idle_timeout: 5m', '', 'exit_when_unused: 2s');
    const curl = async (): Promise<{ result: RunResult; stdout: string }> => {
      const stdout = new TextCollector();
      const command = ['sh', '-c', 'curl -s -m 10 -o /dev/null -w "%{http_code}" http://allowed.test/'];
      const result = await runSandbox({ config, configText: text, command, stdout, stderr: null });
      await settleBackground();
      return { result, stdout: stdout.text };
    };
    assert.equal((await curl()).stdout, '200');
    assert.equal(await pooled(), 1, 'refilled: a sandbox made for this gateway waits');
    const env = await ensureEnvironment(docker, config);
    const gateway = docker.getContainer(env.gatewayContainer);
    const startedAt = (await gateway.inspect()).State.StartedAt;
    // This process still holds its environment's control connection, as a resident runner does: twice the limit.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    assert.equal((await gateway.inspect()).State.Running, true, 'a connected runner keeps its gateway');

    await closeEnvironments();
    let state = (await gateway.inspect()).State;
    for (let i = 0; i < 150 && state.Running; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      state = (await gateway.inspect()).State;
    }
    assert.deepEqual({ status: state.Status, exitCode: state.ExitCode }, { status: 'exited', exitCode: 0 }, 'it exited by itself, cleanly');
    assert.equal(await pooled(), 1, 'its pooled sandbox outlives it');

    const next = await curl();
    assert.equal(next.result.warm, true, 'the sandbox pooled before the exit served the run');
    assert.equal(next.stdout, '200', 'through the gateway, started again');
    const again = await gateway.inspect();
    assert.equal(again.State.Running, true);
    assert.notEqual(again.State.StartedAt, startedAt, 'the same container, started again');
    assert.equal(addressOn(again, SANDBOX_NETWORK), env.network.gatewayIp, 'at the address its pooled sandbox was made with');
  });

  it('met as it exits (running, its control socket gone): the run waits for it to stop and starts it again', { timeout: 60_000 }, async () => {
    // A gateway of its own (other settings), stopped by SIGTERM as an unused one stops itself.
    const { config } = world.config('', '', 'exit_when_unused: 9m');
    const env = await ensureEnvironment(docker, config);
    const gateway = docker.getContainer(env.gatewayContainer);
    const before = await gateway.inspect();
    // An open connection makes its stop wait (up to 2 s) after its control socket has closed: the moment a run
    // finds it running but no longer answering. Reached over the egress network, not the sandboxes'.
    const held = connect(3128, before.NetworkSettings.Networks[EGRESS_NETWORK].IPAddress);
    held.on('error', () => undefined);
    await once(held, 'connect');
    held.write('CONNECT ');
    await closeEnvironments();
    await gateway.kill({ signal: 'SIGTERM' });
    const steps: string[] = [];
    try {
      const again = await ensureEnvironment(docker, config, { onProgress: (step) => steps.push(step) });
      assert.ok(steps.includes('gateway: it stopped as we came; starting it again'), `steps: ${steps.join(', ')}`);
      const after = await gateway.inspect();
      assert.equal(after.State.Running, true);
      assert.notEqual(after.State.StartedAt, before.State.StartedAt, 'the same container, started again');
      assert.equal(again.network.gatewayIp, env.network.gatewayIp, 'at its address');
      assert.equal(await again.control.ping().then(() => true), true);
    } finally {
      held.destroy();
    }
  });
});
