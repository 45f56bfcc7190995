/**
 * The resident runner (src/cli/resident-runner.ts): the warm pool's refill helper staying up to serve the next
 * `clawbox run`s of a config that keeps one (by default, any config with a pool or network holders). Through the installed executable,
 * as a user runs it: the output, exit codes, Ctrl-C and a killed client must be what they are without a runner.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { closeEnvironments } from '../../runner/environment.js';
import { stopResidentRunners } from '../../runner/gc.js';
import { labelFilter } from '../../runner/labels.js';
import { markerPath, waitForRefillHelpers } from '../../runner/pool-refill.js';
import { isRefillHelper, processAlive } from '../../runner/process-alive.js';
import { settleBackground } from '../../runner/sandbox.js';
import { DEFAULT_STATE_DIR, poolDir, RUNNER_PID_FILE, RUNNER_SOCKET_FILE } from '../../runner/state-dir.js';
import { ANSWER_TIMEOUT_MS, listensAt, readRunnerPid, runnerPidFile, runnerSocket } from '../../src/cli/runner-protocol.js';
import { startSandboxWorld, type SandboxWorld } from '../fixtures/sandbox-env.js';

const CLI = join(import.meta.dirname, '../../bin/clawbox');
const docker = new Dockerode();
let world: SandboxWorld;

/** The runner files in the pool directory. */
function runnerFiles(): string[] {
  try {
    return readdirSync(poolDir(DEFAULT_STATE_DIR)).filter((n) => n.startsWith('runner-'));
  } catch {
    return [];
  }
}

/** Live resident runners: sockets in the pool directory whose process is a `clawbox pool-refill`. */
function runners(): number[] {
  return runnerFiles()
    .map((name) => Number(RUNNER_SOCKET_FILE.exec(name)?.[1]))
    .filter((pid) => pid > 0 && isRefillHelper(pid));
}

/** The runner the pid file names (the one a client goes to). */
const named = (): number | null => {
  const file = runnerFiles().find((n) => RUNNER_PID_FILE.test(n));
  return file === undefined ? null : readRunnerPid(join(poolDir(DEFAULT_STATE_DIR), file));
};

async function until<T>(what: string, probe: () => T | Promise<T>, limitMs = 15_000): Promise<NonNullable<T>> {
  const end = Date.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** As `clawbox gc --all` stops them (SIGTERM); they leave once their runs are done. */
async function stopRunners(): Promise<void> {
  const stopped = stopResidentRunners();
  await until('the resident runners to exit', () => stopped.every((pid) => !processAlive(pid)));
}

interface Cli {
  readonly pid: number;
  /** Resolves once the tool's output contains `text`. */
  printed(text: string): Promise<void>;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Cli {
  const child = spawn(CLI, ['run', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  const waiting: Array<{ text: string; resolve: () => void }> = [];
  const check = (): void => {
    for (const w of waiting.splice(0)) {
      if (stdout.includes(w.text) || stderr.includes(w.text)) w.resolve();
      else waiting.push(w);
    }
  };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    check();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    check();
  });
  const done = (once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>).then(([code, signal]) => ({ code, signal, stdout, stderr }));
  return {
    pid: child.pid!,
    printed: (text) =>
      new Promise((resolve, reject) => {
        waiting.push({ text, resolve });
        check();
        void done.then((d) => reject(new Error(`clawbox run ended (code ${d.code}) before printing '${text}': ${d.stdout}${d.stderr}`)));
      }),
    done,
  };
}

/** The pooled sandbox the next run takes (the pool holds one): a run removes it when it ends. */
async function nextPooled(): Promise<string> {
  const pooled = await until('one pooled sandbox', async () => {
    const found = await docker.listContainers({ all: true, filters: labelFilter('pool') });
    return found.length === 1 ? found : null;
  });
  return pooled[0].Id;
}

const exists = (id: string): Promise<boolean> =>
  docker.getContainer(id).inspect().then(
    () => true,
    (err: { statusCode?: number }) => {
      if (err.statusCode === 404) return false;
      throw err;
    },
  );


// A pool without a word about the runner: it keeps one by default, for as long as its sandboxes wait.
const RUNNER_POOL = 'pool:\n  size: 1\n  idle_timeout: 5m';

before(async () => {
  await stopRunners();
  world = await startSandboxWorld();
});
after(async () => {
  await stopRunners();
  await settleBackground();
  execFileSync(process.execPath, [`${import.meta.dirname}/../../dist/src/cli/main.js`, 'gc']);
  for (const role of ['pool', 'holder'] as const) {
    for (const info of await docker.listContainers({ all: true, filters: labelFilter(role) })) await docker.getContainer(info.Id).remove({ force: true });
  }
  await closeEnvironments();
  await world?.close();
});

describe('the resident runner', () => {
  let path: string;
  let runner: number;

  it('is left by a run of a config that keeps one, and serves the next runs: output, exit code, --json', async () => {
    path = world.config(RUNNER_POOL).path;
    const first = await cli(['--config', path, '--', 'true']).done;
    assert.equal(first.code, 0, first.stderr);
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    // Its socket appears when it binds, its pid file once it listens: wait for both.
    [runner] = await until('a resident runner', () => (runners().length === 1 && named() !== null ? runners() : null));
    assert.equal(named(), runner);

    // While it serves a run, the runner's refill marker is there (a run in the CLI's own process has none).
    const run = cli(['--config', path, '--', 'sh', '-c', 'echo out; echo err >&2; sleep 1; exit 3']);
    await run.printed('out\n');
    assert.ok(existsSync(markerPath(DEFAULT_STATE_DIR, runner)), 'the runner serves the run');
    const served = await run.done;
    assert.deepEqual([served.code, served.stdout], [3, 'out\n']);
    assert.match(served.stderr, /^err\n/);

    await waitForRefillHelpers(DEFAULT_STATE_DIR); // the runner refills after each run, as the CLI's helper does
    const json = await cli(['--config', path, '--json', '--', 'sh', '-c', 'echo tool-output']).done;
    assert.equal(json.code, 0, json.stderr);
    const record = JSON.parse(json.stdout) as { exit_code: number; warm: boolean };
    assert.deepEqual([record.exit_code, record.warm], [0, true]);
    assert.match(json.stderr, /tool-output/, 'with --json the tool writes to stderr, as without a runner');
    assert.deepEqual(runners(), [runner], 'the same runner served both');
  });

  it('stops the tool on Ctrl-C at the client (exit code 130) and removes its sandbox', async () => {
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const taken = await nextPooled();
    const run = cli(['--config', path, '--', 'sh', '-c', 'echo started; sleep 30']);
    await run.printed('started');
    assert.ok(existsSync(markerPath(DEFAULT_STATE_DIR, runner)), 'the runner serves the run');
    process.kill(run.pid, 'SIGINT');
    const stopped = await run.done;
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.equal(await exists(taken), false, 'the sandbox is removed');
  });

  it('stops the tool when the client is killed', async () => {
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const taken = await nextPooled();
    const run = cli(['--config', path, '--', 'sh', '-c', 'echo started; sleep 30']);
    await run.printed('started');
    assert.equal(await exists(taken), true);
    process.kill(run.pid, 'SIGKILL');
    await run.done;
    await until('the sandbox of the killed client to go', async () => !(await exists(taken)));
    assert.deepEqual(runners(), [runner], 'and keeps serving');
  });

  it('declines a config that keeps no runner: the CLI runs it itself', async () => {
    for (const pool of ['pool:\n  size: 1\n  idle_timeout: 5m\n  runner_idle_timeout: off', 'pool:\n  size: 0']) {
      await waitForRefillHelpers(DEFAULT_STATE_DIR);
      const other = world.config(pool).path;
      const run = cli(['--config', other, '--', 'sh', '-c', 'echo started; sleep 1']);
      await run.printed('started');
      assert.equal(existsSync(markerPath(DEFAULT_STATE_DIR, runner)), false, `not served by the runner: ${pool}`);
      assert.equal((await run.done).code, 0);
    }
    // As do arguments in error: the CLI reports them as always.
    const bad = await cli(['--config', path, '--tool']).done;
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /clawbox: .*--tool/);
  });

  it('serves a config with network holders and no pool, which keeps one by default', async () => {
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const held = world.config('pool:\n  network_holders: 1\n  idle_timeout: 5m').path;
    for (let i = 0; i < 2; i++) {
      const run = cli(['--config', held, '--', 'sh', '-c', 'echo started; sleep 1']);
      await run.printed('started');
      assert.ok(existsSync(markerPath(DEFAULT_STATE_DIR, runner)), `run ${i + 1} is served by the runner`);
      assert.equal((await run.done).code, 0);
      await waitForRefillHelpers(DEFAULT_STATE_DIR);
    }
    const holders = await docker.listContainers({ filters: labelFilter('holder') });
    assert.equal(holders.length, 1, 'the runner refilled the holders after its runs');
    for (const info of holders) await docker.getContainer(info.Id).remove({ force: true });
    assert.deepEqual(runners(), [runner]);
  });

  it('is skipped with CLAWBOX_RUNNER=off', async () => {
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const run = cli(['--config', path, '--', 'sh', '-c', 'echo started; sleep 1'], { ...process.env, CLAWBOX_RUNNER: 'off' });
    await run.printed('started');
    assert.equal(existsSync(markerPath(DEFAULT_STATE_DIR, runner)), false);
    assert.equal((await run.done).code, 0);
  });

  it('is replaced when it died: the next run starts in the CLI, and its helper serves next and removes the dead socket', async () => {
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const dead = runnerFiles().find((n) => n.endsWith(`-${runner}.sock`));
    assert.ok(dead);
    process.kill(runner, 'SIGKILL');
    await until('the runner to die', () => !processAlive(runner));
    const run = await cli(['--config', path, '--', 'echo', 'after']).done;
    assert.deepEqual([run.code, run.stdout], [0, 'after\n']);
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const next = await until('a new resident runner', () => {
      const pid = named();
      return pid !== null && pid !== runner ? pid : null;
    });
    assert.equal(await listensAt(join(poolDir(DEFAULT_STATE_DIR), dead.replace(`-${runner}.sock`, `-${next}.sock`))), true);
    assert.equal(runnerFiles().includes(dead), false, "the dead runner's socket is gone");
    runner = next;
  });

  it('closes a connection that sends no request', async () => {
    const silent = connect(join(poolDir(DEFAULT_STATE_DIR), runnerFiles().find((n) => n.endsWith(`-${runner}.sock`)) ?? 'none'));
    silent.on('error', () => undefined);
    const closed = once(silent, 'close');
    await once(silent, 'connect');
    await until('the runner to close the silent connection', () => silent.destroyed, ANSWER_TIMEOUT_MS + 5000);
    await closed;
  });

  it('neither hangs nor runs the command itself when a runner takes the request and never answers', { timeout: 30_000 }, async () => {
    await stopRunners();
    // A stand-in that this user's launcher finds as its runner: named by the pid file, listening, and mute.
    const pidFile = runnerPidFile(DEFAULT_STATE_DIR, join(import.meta.dirname, '../../dist/bundle/clawbox.cjs'));
    const mute = createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((resolve) => mute.listen(runnerSocket(pidFile, process.pid), resolve));
    writeFileSync(pidFile, String(process.pid));
    try {
      const run = await cli(['--config', path, '--', 'sh', '-c', 'echo should-not-run']).done;
      assert.equal(run.code, 1);
      assert.match(run.stderr, new RegExp(`the resident runner \\(pid ${process.pid}\\) did not answer within 5 s`));
      assert.equal(run.stdout, '', 'the command did not run here either');
    } finally {
      mute.close();
      rmSync(pidFile, { force: true });
      rmSync(runnerSocket(pidFile, process.pid), { force: true });
    }
  });

  /**
   * A first run of `pool` (runners stopped before it) leaves a runner; waits until it has left by itself. Resolves
   * with the pooled sandbox it refilled, for what became of it.
   */
  async function runnerLeftAlone(pool: string): Promise<string> {
    await stopRunners();
    assert.deepEqual(runnerFiles(), [], 'SIGTERM: socket and pid file gone');
    const first = await cli(['--config', world.config(pool).path, '--', 'true']).done;
    assert.equal(first.code, 0, first.stderr);
    await waitForRefillHelpers(DEFAULT_STATE_DIR);
    const [runner] = await until('a resident runner', () => (runners().length === 1 ? runners() : null));
    const pooled = await nextPooled();
    await until('the idle runner to exit', () => !processAlive(runner), 15_000);
    assert.deepEqual(runnerFiles(), [], 'idle end: socket and pid file gone');
    return pooled;
  }

  it('ends after runner_idle_timeout without a run, and on SIGTERM, removing its socket', async () => {
    const pooled = await runnerLeftAlone('pool:\n  size: 1\n  idle_timeout: 5m\n  runner_idle_timeout: 1s');
    assert.equal(await exists(pooled), true, 'a pooled sandbox that has not expired waits for its time');
  });

  it('by default leaves when its pool has expired, and removes the sandboxes it refilled', async () => {
    // The runner waits as long as the pool's sandboxes, from its last refill on: when it leaves, they have expired.
    const pooled = await runnerLeftAlone('pool:\n  size: 1\n  idle_timeout: 2s');
    assert.equal(await exists(pooled), false, 'its expired sandbox is gone, without a run or gc');
  });
});
