/**
 * `runSandbox`: one tool call in one fresh container with every layer of the config, egress only through the
 * gateway. Everything it creates is labelled and removed, on success, failure, time-out and Ctrl-C.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import type Dockerode from 'dockerode';
import { writeRunRecord } from '../src/audit/sink.js';
import type { RunEvent } from '../src/audit/types.js';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError } from '../src/errors.js';
import { connectDocker, ignoringGone } from './docker-client.js';
import { ensureEnvironment, type Environment } from './environment.js';
import { explainDenied, explainOom, explainTimeout, mountAccessWarnings } from './explain.js';
import { probeHost, type HostSupport } from './host-support.js';
import { requireImage } from './images.js';
import { freeSandboxIp, isAddressConflict } from './ip-allocator.js';
import { LABEL_CONFIG_DIGEST, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_TOOL, labelsFor } from './labels.js';
import { resolveMounts } from './mounts.js';
import { CappedOutput } from './output.js';
import { seccompProfile } from './seccomp.js';
import { containerSpec } from './spec.js';
import { sweepLeftovers } from './gc.js';
import { UsageSampler } from './usage.js';

export interface RunOptions {
  readonly config: SandboxConfig;
  /** The config file's text, hashed into the run record's config digest. */
  readonly configText?: string;
  readonly command: readonly string[];
  /** Names a `sandbox.tools.<name>` entry (its hosts, timeout, image) and appears in audit lines. */
  readonly tool?: string;
  /** More hosts for this sandbox only (`--allow-host`). */
  readonly allowHosts?: readonly string[];
  readonly image?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Where the tool's output goes; default this process's stdout and stderr. null drops it. */
  readonly stdout?: NodeJS.WritableStream | null;
  readonly stderr?: NodeJS.WritableStream | null;
  /** Aborting stops and removes the sandbox (Ctrl-C). */
  readonly signal?: AbortSignal;
  readonly onWarning?: (message: string) => void;
  readonly onProgress?: (step: string) => void;
  readonly docker?: Dockerode;
  readonly stateDir?: string;
}

export type RunResult = RunEvent & {
  /** Set when the run was stopped by `signal`. */
  readonly aborted: boolean;
};

const EXIT_TIMEOUT = 124;
const EXIT_ABORTED = 130;

let hostSupport: Promise<HostSupport> | null = null;

/** Checks everything that can be checked before a container exists; throws ClawboxError naming the key. */
export async function prepareRun(options: RunOptions, docker: Dockerode) {
  const { config } = options;
  const tool = options.tool === undefined ? undefined : config.tools[options.tool];
  if (options.tool !== undefined && !tool) {
    const known = Object.keys(config.tools);
    throw new ClawboxError('CLI_USAGE', `unknown tool '${options.tool}': sandbox.tools has ${known.length ? known.join(', ') : 'no entries'}`);
  }
  if (options.command.length === 0) throw new ClawboxError('CLI_USAGE', 'no command to run');

  const mounts = resolveMounts(config.mounts, config.blocked_paths);
  if ('problems' in mounts) {
    throw new ClawboxError('MOUNT_BLOCKED', 'a mount is refused; nothing was started', { details: mounts.problems.map((p) => p.message) });
  }
  const seccomp = seccompProfile(config);
  if ('problems' in seccomp) {
    throw new ClawboxError('CONFIG_INVALID', 'the seccomp settings are refused; nothing was started', { details: seccomp.problems });
  }
  hostSupport ??= probeHost(docker);
  const host = await hostSupport;
  const image = options.image ?? tool?.image ?? config.default_image;
  const warnings = [
    ...seccomp.warnings,
    ...mountAccessWarnings(
      mounts.mounts.map((m, index) => ({ ...m, index })),
      config.user,
      (path) => statSync(path),
    ),
  ];
  return { tool, mounts: mounts.mounts, seccompJson: seccomp.json, host, image, warnings };
}

export async function runSandbox(options: RunOptions): Promise<RunResult> {
  const docker = options.docker ?? (await connectDocker());
  const { config } = options;
  const progress = options.onProgress ?? (() => undefined);
  const prepared = await prepareRun(options, docker);
  const timeoutMs = prepared.tool?.timeout ?? config.timeout;
  const configDigest = createHash('sha256').update(options.configText ?? JSON.stringify(config)).digest('hex').slice(0, 16);

  // A dry spec first: an unenforceable limit stops the run before any container or network exists.
  const dry = containerSpec(config, specOptions(options, prepared, 'none', {}, {}), prepared.host);
  if ('problems' in dry) {
    throw new ClawboxError('LIMIT_UNENFORCEABLE', 'the config asks for what this host cannot enforce; nothing was started', { details: dry.problems });
  }
  const warnings = [...prepared.warnings, ...dry.warnings];
  for (const warning of warnings) options.onWarning?.(warning);
  await requireImage(docker, prepared.image);

  await sweepLeftovers(docker);
  progress('environment: networks, firewall, gateway');
  const env = await ensureEnvironment(docker, config, { ...(options.stateDir ? { stateDir: options.stateDir } : {}), onProgress: progress });
  try {
    return await runInEnvironment(options, docker, env, prepared, { timeoutMs, configDigest, warnings });
  } finally {
    env.close();
  }
}

type Prepared = Awaited<ReturnType<typeof prepareRun>>;

function specOptions(options: RunOptions, prepared: Prepared, networkMode: string, env: Readonly<Record<string, string>>, labels: Record<string, string>) {
  return {
    image: prepared.image,
    cmd: options.command,
    env: { ...env, ...options.env },
    labels,
    networkMode,
    seccompJson: prepared.seccompJson,
    mounts: prepared.mounts,
  };
}

async function runInEnvironment(
  options: RunOptions,
  docker: Dockerode,
  env: Environment,
  prepared: Prepared,
  run: { timeoutMs: number; configDigest: string; warnings: string[] },
): Promise<RunResult> {
  const { config } = options;
  const labels = labelsFor('sandbox', {
    [LABEL_OWNER_PID]: String(process.pid),
    [LABEL_OWNER_HOST]: hostname(),
    [LABEL_CONFIG_DIGEST]: run.configDigest,
    ...(options.tool === undefined ? {} : { [LABEL_TOOL]: options.tool }),
  });
  const built = containerSpec(config, specOptions(options, prepared, env.network.name, env.proxyEnv, labels), prepared.host);
  if ('problems' in built) throw new ClawboxError('LIMIT_UNENFORCEABLE', 'the config cannot be enforced', { details: built.problems });
  const prefix = env.network.gatewayIp.split('.').slice(0, 3).join('.');

  let container: Dockerode.Container | null = null;
  let ip = '';
  for (let attempt = 0; attempt < 5 && !container; attempt++) {
    ip = await freeSandboxIp(docker, env.network.name, prefix);
    const spec: Dockerode.ContainerCreateOptions = {
      ...built.spec,
      HostConfig: {
        ...built.spec.HostConfig,
        Binds: [...(built.spec.HostConfig?.Binds ?? []), `${env.resolvConf}:/etc/resolv.conf:ro`],
      },
      NetworkingConfig: { EndpointsConfig: { [env.network.name]: { IPAMConfig: { IPv4Address: ip } } } },
    };
    try {
      container = await docker.createContainer(spec);
    } catch (err) {
      if (!isAddressConflict(err)) throw err;
    }
  }
  if (!container) throw new ClawboxError('SANDBOX_FAILED', 'could not find a free sandbox address after 5 tries');
  const id = container.id.slice(0, 12);
  const sandbox = container;

  const toolCfg = prepared.tool;
  let registered = false;
  const started = performance.now();
  let timedOut = false;
  let aborted = false;
  let sampler: UsageSampler | null = null;
  const stdout = new CappedOutput(config.logging.capture_stdout ? (options.stdout === undefined ? process.stdout : options.stdout) : null, config.logging.max_output_size, 'stdout');
  const stderr = new CappedOutput(config.logging.capture_stderr ? (options.stderr === undefined ? process.stderr : options.stderr) : null, config.logging.max_output_size, 'stderr');
  const onAbort = (): void => {
    aborted = true;
    void ignoringGone(() => sandbox.kill());
  };

  try {
    await env.control.register({
      client: ip,
      sandbox: id,
      ...(options.tool === undefined ? {} : { tool: options.tool }),
      allowed_hosts: [...config.allowed_hosts, ...(toolCfg?.allowed_hosts ?? []), ...(options.allowHosts ?? [])],
      denied_hosts: [...config.denied_hosts, ...(toolCfg?.denied_hosts ?? [])],
      network_policy: config.network_policy,
      default_ports: config.gateway.default_ports,
    });
    registered = true;

    const stream = await sandbox.attach({ stream: true, stdout: true, stderr: true, hijack: true });
    const streamEnded = new Promise<void>((resolve) => stream.once('end', resolve).once('close', resolve));
    docker.modem.demuxStream(stream, stdout, stderr);
    const exited = sandbox.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>;
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    await sandbox.start();
    sampler = new UsageSampler(sandbox.id);
    const timer = setTimeout(() => {
      timedOut = true;
      void ignoringGone(() => sandbox.kill());
    }, run.timeoutMs);
    let status: number;
    try {
      status = (await exited).StatusCode;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
    const usage = sampler.stop();
    await Promise.race([streamEnded, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);

    const state = (await sandbox.inspect()).State;
    if (state.Running || state.Pid !== 0) {
      throw new ClawboxError('SANDBOX_FAILED', `sandbox ${id} still has processes after its end; it will be force-removed`);
    }
    const traffic = await env.control.unregister(ip);
    registered = false;
    const oomKilled = state.OOMKilled;
    const explanation = timedOut
      ? explainTimeout(run.timeoutMs)
      : oomKilled
        ? explainOom(config.resource_limits.memory)
        : traffic.not_allowed.length > 0
          ? explainDenied(traffic.not_allowed)
          : undefined;
    const record: RunEvent = {
      event: 'run',
      sandbox: id,
      ...(options.tool === undefined ? {} : { tool: options.tool }),
      command: options.command,
      image: prepared.image,
      config_digest: run.configDigest,
      exit_code: aborted ? EXIT_ABORTED : timedOut ? EXIT_TIMEOUT : status,
      duration_ms: Math.round(performance.now() - started),
      peak_memory_bytes: usage.peakMemoryBytes,
      cpu_time_ms: usage.cpuTimeMs,
      bytes_up: traffic.bytes_up,
      bytes_down: traffic.bytes_down,
      connections_allowed: traffic.allowed,
      connections_denied: traffic.denied,
      oom_killed: oomKilled,
      timed_out: timedOut,
      output_truncated: stdout.truncated || stderr.truncated,
      warnings: run.warnings,
      ...(explanation === undefined ? {} : { explanation }),
    };
    writeRunRecord(env.auditTrail, config.logging.enabled ? config.logging.level : 'silent', record);
    return { ...record, aborted };
  } finally {
    sampler?.stop();
    if (registered) await env.control.unregister(ip).catch(() => undefined);
    await ignoringGone(() => sandbox.remove({ force: true, v: true }));
  }
}
