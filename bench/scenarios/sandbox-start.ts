/**
 * Sandbox start, interleaved per iteration so drift hits every mode alike, with the same image, network and
 * limits everywhere:
 *   - `docker run --rm` (the baseline),
 *   - `clawbox run -- CMD` (the CLI end to end): cold; cold but joining a network holder that waits
 *     (`pool.network_holders: 1`, runner/network-holder.ts), as it runs by default, served by the resident runner
 *     that such a config keeps ('clawbox run holder'); with a warm pool as it runs by default, served by the
 *     resident runner ('clawbox run runner'); and with the warm pool but no runner (`pool.runner_idle_timeout:
 *     off`), the CLI alone ('clawbox run warm'),
 *   - the library's `runSandbox`, cold, with a network holder and from a warm pool.
 * Two figures each: "start" is the time to the tool's first output byte (the tool is `echo x`), "total" the time
 * until the call returned. The warm pool and the holders are refilled between measured runs, outside the timing.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Dockerode from 'dockerode';
import { parseConfig } from '../../src/config/load.js';
import { runSandbox, settleBackground } from '../../runner/sandbox.js';
import { closeEnvironments, SANDBOX_NETWORK } from '../../runner/environment.js';
import { stopResidentRunners } from '../../runner/gc.js';
import { LABEL_MANAGED, LABEL_ROLE } from '../../runner/labels.js';
import { POOL_ROLES } from '../../runner/pool.js';
import { refillHelpersWorking } from '../../runner/pool-refill.js';
import { processAlive } from '../../runner/process-alive.js';
import { DEFAULT_STATE_DIR } from '../../runner/state-dir.js';
import { SANDBOX_IMAGE } from '../../runner/images.js';
import { onCleanup } from '../lib/cleanup.js';
import { failure, ok, progress, run } from '../lib/exec.js';
import { percentile } from '../lib/stats.js';
import { na, val, type BenchParams, type Cell, type Row, type ScenarioResult } from '../model.js';

export const SANDBOX_START_LABELS = [
  'docker run',
  'clawbox run cold',
  'clawbox run holder',
  'clawbox run warm',
  'clawbox run runner',
  'runSandbox cold',
  'runSandbox holder',
  'runSandbox warm',
] as const;
type Mode = (typeof SANDBOX_START_LABELS)[number];

export interface SandboxStartContext {
  readonly params: BenchParams;
  /** Private temp dir (removed at exit). */
  readonly dir: string;
}

interface Sample {
  readonly start: number;
  readonly total: number;
}

/** What a user types: the package's bin. */
const CLI = join(import.meta.dirname, '../../bin/clawbox');

/** The limits clawbox applies by default, spelled as docker run flags, for a like-for-like baseline. */
const DOCKER_RUN = [
  'run', '--rm', '--network', SANDBOX_NETWORK, '--memory', '2g', '--memory-swap', '2g', '--cpus', '1', '--pids-limit', '256',
  '--read-only', '--tmpfs', '/tmp:size=100m,noexec,nosuid,nodev', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
  '--user', '65534:65534', '--init', SANDBOX_IMAGE, 'echo', 'x',
];

/** Runs a command, timing its first stdout byte and its exit. */
function timeProcess(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let start = 0;
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'], env });
    child.stdout.on('data', () => {
      start ||= performance.now() - t0;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.slice(0, 2).join(' ')} exited with ${code}`));
      else resolve({ start, total: performance.now() - t0 });
    });
  });
}

async function timeLibrary(configText: string): Promise<Sample> {
  const config = parseConfig(configText).sandbox;
  const t0 = performance.now();
  let start = 0;
  const stdout = new Writable({
    write(_chunk, _encoding, callback) {
      start ||= performance.now() - t0;
      callback();
    },
  });
  const result = await runSandbox({ config, configText, command: ['echo', 'x'], stdout, stderr: null });
  const total = performance.now() - t0;
  if (result.exit_code !== 0) throw new Error(`runSandbox exited with ${result.exit_code}`);
  return { start, total };
}

export async function sandboxStart(ctx: SandboxStartContext): Promise<ScenarioResult> {
  const runs = ctx.params.quick ? 10 : 50;
  const unavailable = async (): Promise<string | null> => {
    try {
      const docker = new Dockerode();
      await docker.ping();
      await docker.getImage(SANDBOX_IMAGE).inspect();
      return null;
    } catch (err) {
      return `Docker engine or ${SANDBOX_IMAGE} not available (${(err as Error).message}); run scripts/setup.sh`;
    }
  };
  const reason = await unavailable();
  if (reason) return rowsOf(Object.fromEntries(SANDBOX_START_LABELS.map((m) => [m, reason])), {});

  const coldText = 'sandbox:\n  pool:\n    size: 0\n';
  // A short idle time: the sandbox refilled after the last run expires soon and is swept by the next run or gc.
  // The same sandbox shape in both, so the same pool (refilled between runs). A config with a pool keeps a
  // resident runner unless it says otherwise: runner.yml is the default, warm.yml the CLI alone.
  const runnerText = 'sandbox:\n  pool:\n    size: 1\n    idle_timeout: 30s\n';
  const warmText = `${runnerText}    runner_idle_timeout: off\n`;
  // No pooled sandbox, so a new one each run, made in a network holder's namespace (one refilled between runs); the
  // config keeps a resident runner, as one with a pool does.
  const holderText = `${coldText}    network_holders: 1\n    idle_timeout: 30s\n`;
  writeFileSync(join(ctx.dir, 'cold.yml'), coldText);
  writeFileSync(join(ctx.dir, 'holder.yml'), holderText);
  writeFileSync(join(ctx.dir, 'warm.yml'), warmText);
  writeFileSync(join(ctx.dir, 'runner.yml'), runnerText);
  // The CLI on its own: no resident runner is asked (one would decline these configs, at a round trip's cost).
  const alone = { ...process.env, CLAWBOX_RUNNER: 'off' };
  const modes: Record<Mode, () => Promise<Sample>> = {
    'docker run': () => timeProcess('docker', DOCKER_RUN),
    'clawbox run cold': () => timeProcess(CLI, ['run', '--config', join(ctx.dir, 'cold.yml'), '--', 'echo', 'x'], alone),
    'clawbox run holder': () => timeProcess(CLI, ['run', '--config', join(ctx.dir, 'holder.yml'), '--', 'echo', 'x']),
    'clawbox run warm': () => timeProcess(CLI, ['run', '--config', join(ctx.dir, 'warm.yml'), '--', 'echo', 'x'], alone),
    'clawbox run runner': () => timeProcess(CLI, ['run', '--config', join(ctx.dir, 'runner.yml'), '--', 'echo', 'x']),
    'runSandbox cold': () => timeLibrary(coldText),
    'runSandbox holder': () => timeLibrary(holderText),
    'runSandbox warm': () => timeLibrary(warmText),
  };
  const entriesBefore = new Set(poolEntryIds());
  // Undone on Ctrl-C and on error too: the runners these configs keep, and what they and the runs left waiting.
  onCleanup('sandbox start: resident runners and pool entries', () => {
    untilNothingRefills(stopResidentRunners());
    removeEntriesSince(entriesBefore);
  });
  const samples = Object.fromEntries(SANDBOX_START_LABELS.map((m) => [m, [] as Sample[]])) as Record<Mode, Sample[]>;
  const failures: Partial<Record<Mode, string>> = {};
  // One untimed round first: networks, the gateway container, the launcher, a first pooled sandbox and holder.
  for (const mode of SANDBOX_START_LABELS) await modes[mode]().catch(() => undefined);
  await settleBackground();
  for (let i = 0; i < runs; i++) {
    if (i % 10 === 0) progress(`sandbox start: run ${i + 1}/${runs}`);
    for (const mode of SANDBOX_START_LABELS) {
      if (failures[mode]) continue;
      try {
        samples[mode].push(await modes[mode]());
      } catch (err) {
        failures[mode] = (err as Error).message;
      }
      await settleBackground(); // refill the pool outside the timing
    }
  }
  untilNothingRefills(stopResidentRunners());
  await closeEnvironments();
  removeEntriesSince(entriesBefore);
  return rowsOf(failures, samples);
}

/**
 * The warm pool's sandboxes and the network holders on this machine: their container ids. Through the docker CLI,
 * so that the clean-up can run from an exit handler, which cannot wait for a promise.
 */
function poolEntryIds(): string[] {
  return POOL_ROLES.flatMap((role) => {
    const r = run('docker', ['ps', '--all', '--quiet', '--no-trunc', '--filter', `label=${LABEL_MANAGED}=1`, '--filter', `label=${LABEL_ROLE}=${role}`], { timeoutMs: 30_000 });
    if (!ok(r)) throw new Error(`docker ps (${role} entries): ${failure(r)}`);
    return r.stdout.split('\n').filter((id) => id !== '');
  });
}

/**
 * The entries this scenario's runs left waiting (the refill after the last run of each mode) removed; those that were
 * there before it, a user's, stay. Left alone they would run until the next clawbox command swept them once expired.
 * Entries waiting to be taken have no lock file, so removing the container is all the pool's own discard does here.
 */
function removeEntriesSince(before: ReadonlySet<string>): void {
  const left = poolEntryIds().filter((id) => !before.has(id));
  if (left.length === 0) return;
  const r = run('docker', ['rm', '--force', '--volumes', ...left], { timeoutMs: 60_000 });
  if (!ok(r)) throw new Error(`docker rm of ${left.length} pool entries: ${failure(r)}`);
}

/**
 * Until the resident runners told to stop are gone and no detached refill helper is at work (each may be making
 * one more entry), at most 10 s. Blocking: the clean-up also runs from an exit handler, which cannot wait for a
 * promise.
 */
function untilNothingRefills(runners: readonly number[]): void {
  const until = Date.now() + 10_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while ((runners.some(processAlive) || refillHelpersWorking(DEFAULT_STATE_DIR)) && Date.now() < until) Atomics.wait(pause, 0, 0, 50);
}

function rowsOf(failures: Partial<Record<Mode, string>>, samples: Partial<Record<Mode, Sample[]>>): ScenarioResult {
  const cell = (mode: Mode, pick: (s: Sample) => number, p: number): Cell => {
    const failed = failures[mode];
    if (failed) return na(failed);
    const values = (samples[mode] ?? []).map(pick);
    return values.length === 0 ? na('no samples') : val(Math.round(percentile(values, p) * 10) / 10);
  };
  const row = (metric: string, pick: (s: Sample) => number, p: number): Row => ({
    scenario: 'sandbox start',
    metric,
    unit: 'ms',
    better: 'lower',
    baseline: 'docker run',
    cells: Object.fromEntries(SANDBOX_START_LABELS.map((m) => [m, cell(m, pick, p)])),
  });
  return {
    rows: [
      row('start p50 (first output byte)', (s) => s.start, 50),
      row('start p99', (s) => s.start, 99),
      row('total p50', (s) => s.total, 50),
      row('total p99', (s) => s.total, 99),
    ],
    raw: { failures, samples },
  };
}
