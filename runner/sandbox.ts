/**
 * `runSandbox`: one tool call in one fresh container with every layer of the config, egress only through the
 * gateway. The container is either created for this call (cold) or taken from the warm pool; either way the
 * launcher execs the tool in the same place, so the tool cannot tell. Everything created is labelled and
 * removed, on success, failure, time-out and Ctrl-C.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import type Dockerode from 'dockerode';
import { appendToTrail } from '../src/audit/sink.js';
import type { DecisionEvent, RunEvent } from '../src/audit/types.js';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError, EXIT_ABORTED } from '../src/errors.js';
import { attemptsOf, KernelLogCursor } from './direct-attempts.js';
import { dockerClient, ignoringGone, pingDocker } from './docker-client.js';
import { DEFAULT_STATE_DIR, ensureEnvironment, SANDBOX_NETWORK, type Environment } from './environment.js';
import type { GatewayControl } from './gateway-control.js';
import { explainDenied, explainOom, explainTimeout, mountAccessWarnings } from './explain.js';
import { sweepLeftoversOnce } from './gc.js';
import { recordedDockerInfo } from './docker-info-record.js';
import { networkMembers } from './ip-allocator.js';
import { probeFromInfo, type HostSupport } from './host-support.js';
import { GATEWAY_IMAGE, requireImage } from './images.js';
import { LABEL_CONFIG_DIGEST, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_TOOL, labelsFor } from './labels.js';
import { ensureLauncher, launchMessage, LAUNCHER_PATH } from './launcher.js';
import { resolveMounts } from './mounts.js';
import { holderKey, holderShape } from './network-holder.js';
import { CappedOutput } from './output.js';
import { WarmPool } from './pool.js';
import { refillPool, startDetachedRefill, waitForRefillHelpers, type RefillJob } from './pool-refill.js';
import { createJoinedSandbox, createStartedSandbox } from './sandbox-container.js';
import { seccompProfile } from './seccomp.js';
import { containerSpec } from './spec.js';
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
  /**
   * The CLI script to refill the warm pool with (`clawbox pool-refill`, detached), so that the caller need not
   * wait for it; by default the refill runs in this process and `settleBackground` waits for it.
   */
  readonly detachedRefillEntry?: string;
  /**
   * Refill in this process once the run is over instead of from the tool's start: for a caller whose own caller
   * waits for the tool's exit (the resident runner's client), which a refill at work in the engine slows down.
   */
  readonly refillAfterRun?: boolean;
}

export type RunResult = RunEvent & {
  /** Set when the run was stopped by `signal`. */
  readonly aborted: boolean;
  /** The sandbox came from the warm pool. */
  readonly warm: boolean;
};

const EXIT_TIMEOUT = 124;

let hostSupport: Promise<HostSupport> | null = null;
const background = new Set<Promise<unknown>>();

/**
 * Waits for work runs left going: refills in this process, and (unless `helpers` is false) detached refill
 * helpers on this host. The CLI waits only for its own, which hands its refill over; tests and the bench wait
 * for all, so that a refill never overlaps what they measure next.
 */
export async function settleBackground(options: { readonly helpers?: boolean; readonly stateDir?: string } = {}): Promise<void> {
  while (background.size > 0) await Promise.allSettled([...background]);
  if (options.helpers !== false) await waitForRefillHelpers(options.stateDir ?? DEFAULT_STATE_DIR);
}

function track(work: Promise<unknown>): void {
  const settled = work.catch(() => undefined).finally(() => background.delete(settled));
  background.add(settled);
}

/** Checks everything that can be checked before a container exists; throws ClawboxError naming the key. */
export async function prepareRun(options: RunOptions, docker: Dockerode) {
  const { config } = options;
  if (!config.enabled) {
    // Running the tool unsandboxed is never what clawbox does: the key can only stop the run.
    throw new ClawboxError('CONFIG_INVALID', 'sandbox.enabled is false: clawbox runs tools only inside a sandbox; nothing was started', {
      details: ['set sandbox.enabled: true (the default), or run the tool outside clawbox'],
    });
  }
  const tool = options.tool === undefined ? undefined : config.tools[options.tool];
  if (options.tool !== undefined && !tool) {
    const known = Object.keys(config.tools);
    throw new ClawboxError('CLI_USAGE', `unknown tool '${options.tool}': sandbox.tools has ${known.length ? known.join(', ') : 'no entries'}`);
  }
  if (options.command.length === 0) throw new ClawboxError('CLI_USAGE', 'no command to run');
  const message = launchMessage(options.command, options.env ?? {});

  const mounts = resolveMounts(config.mounts, config.blocked_paths);
  if ('problems' in mounts) {
    throw new ClawboxError('MOUNT_BLOCKED', 'a mount is refused; nothing was started', { details: mounts.problems.map((p) => p.message) });
  }
  const seccomp = seccompProfile(config);
  if ('problems' in seccomp) {
    throw new ClawboxError('CONFIG_INVALID', 'the seccomp settings are refused; nothing was started', { details: seccomp.problems });
  }
  if (hostSupport === null) {
    const probing = recordedDockerInfo(docker, options.stateDir ?? DEFAULT_STATE_DIR).then((info) => probeFromInfo(info, ''));
    hostSupport = probing;
    // A probe that failed (the engine was down) is not kept: the next run asks again.
    probing.catch(() => {
      if (hostSupport === probing) hostSupport = null;
    });
  }
  const host = await hostSupport;
  const image = options.image ?? tool?.image ?? config.default_image;
  const warnings = [
    ...seccomp.warnings,
    ...mountAccessWarnings(mounts.mounts.map((m, index) => ({ ...m, index })), config.user, (path) => statSync(path)),
  ];
  return { tool, mounts: mounts.mounts, seccompJson: seccomp.json, host, image, warnings, message };
}

type Prepared = Awaited<ReturnType<typeof prepareRun>>;

export async function runSandbox(options: RunOptions): Promise<RunResult> {
  const docker = options.docker ?? dockerClient();
  // The engine's ping goes out beside the first requests instead of ahead of them. Its error, when it has one,
  // is the one reported: it explains why the others failed.
  const reachable = options.docker ? Promise.resolve() : pingDocker(docker);
  reachable.catch(() => undefined); // awaited below; this only marks it handled until then
  const engineFirst = async <T>(work: Promise<T>): Promise<T> => {
    try {
      return await work;
    } catch (err) {
      await reachable;
      throw err;
    }
  };
  const { config } = options;
  const progress = options.onProgress ?? (() => undefined);
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  // A run without a pool creates its sandbox: the addresses in use go out with the first requests too (null when
  // the network is not there yet, as on a first run: it is read again once the environment is up).
  const membersNow = config.pool.size > 0 ? undefined : networkMembers(docker, SANDBOX_NETWORK).catch(() => null);
  const prepared = await engineFirst(prepareRun(options, docker));
  const configDigest = createHash('sha256').update(options.configText ?? JSON.stringify(config)).digest('hex').slice(0, 16);

  // A dry spec first: an unenforceable limit stops the run before any container or network exists.
  const dry = containerSpec(config, specOptions(prepared, 'none', {}), prepared.host);
  if ('problems' in dry) {
    throw new ClawboxError('LIMIT_UNENFORCEABLE', 'the config asks for what this host cannot enforce; nothing was started', { details: dry.problems });
  }
  const warnings = [...prepared.warnings, ...dry.warnings];
  for (const warning of warnings) options.onWarning?.(warning);
  const pool = config.pool.size > 0 ? new WarmPool(docker, stateDir) : null;
  const holders = config.pool.network_holders > 0 ? new WarmPool(docker, stateDir, 'holder') : null;
  // What only a new container needs: its image. With a pool, a run checks it only when the pool has nothing for it:
  // a warm start's first round trip is then two requests to the engine, not four, and the engine answers each
  // sooner. Crash leftovers are swept beside the new container, not before it: one still running holds its address
  // (the network lists it, so it is not picked), and one stopped holds none. A pool's refill sweeps them too.
  const readyToCreate = (): Promise<unknown> => {
    track(sweepLeftoversOnce(docker, stateDir));
    return requireImage(docker, prepared.image);
  };
  const creatable = pool ? null : readyToCreate();
  // Independent of each other, so at once: a warm run's start is mostly these round trips to the engine.
  const [launcher, env] = await engineFirst(
    allSettledOrThrow([
      ensureLauncher(),
      ensureEnvironment(docker, config, { stateDir, onProgress: progress }),
      reachable,
      creatable ?? Promise.resolve(),
    ]),
  );
  const built = containerSpec(config, specOptions(prepared, env.network.name, env.proxyEnv), prepared.host);
  if ('problems' in built) throw new ClawboxError('LIMIT_UNENFORCEABLE', 'the config cannot be enforced', { details: built.problems });
  const shape = sandboxShape(built.spec, env, launcher);
  const poolKey = createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 16);

  const taken = pool ? await pool.take(poolKey) : null;
  // Without a pooled sandbox, one made now joins a network holder when one waits (network-holder.ts).
  const holder = holders === null ? null : holderShape(env.network.name, GATEWAY_IMAGE, launcher);
  const heldKey = holder === null ? '' : holderKey(holder, env.network.gatewayIp);
  const held = taken === null && holders !== null ? await holders.take(heldKey) : null;
  // A holder taken by a run that fails before its sandbox exists goes (a taken one is never handed out again), and
  // so does one found gone, if the cold start that replaces it fails.
  const orDropHolder = <T>(work: Promise<T>): Promise<T> =>
    work.catch(async (err: unknown) => {
      if (held !== null) await holders?.discard(held.container.id);
      throw err;
    });
  if (taken === null) await orDropHolder(engineFirst(creatable ?? readyToCreate()));
  // A sandbox made now is started here, as the pool's are, and waits in its launcher for its message (see drive).
  // A holder's kernel log bookmark was read once its address was found free, as a pooled sandbox's was.
  let kernelLogBookmark = taken?.kernelLogBookmark ?? held?.kernelLogBookmark;
  const labels = labelsFor('sandbox', {
    [LABEL_OWNER_PID]: String(process.pid),
    [LABEL_OWNER_HOST]: hostname(),
    [LABEL_CONFIG_DIGEST]: configDigest,
    ...(options.tool === undefined ? {} : { [LABEL_TOOL]: options.tool }),
  });
  // A holder that is gone by now is removed with the run's sandbox (release, below), like one that served.
  const joined = taken === null && held !== null ? await orDropHolder(createJoinedSandbox(docker, env.network, held, shape, labels)) : null;
  const sandbox =
    taken ??
    joined ??
    (await orDropHolder(
      createStartedSandbox(docker, env.network, shape, labels, {
        membersNow,
        // Read while the engine creates the container: this process keeps it, no label need carry it.
        whileCreating: async () => {
          kernelLogBookmark = (await KernelLogCursor.bookmarkNow()) ?? undefined;
        },
      }),
    ));
  const job: RefillJob = {
    stateDir,
    key: poolKey,
    shape,
    network: env.network,
    size: config.pool.size,
    idleTimeoutMs: config.pool.idle_timeout,
    runnerIdleMs: config.pool.runner_idle_timeout,
    ...(holder === null ? {} : { holders: { key: heldKey, shape: holder, size: config.pool.network_holders } }),
  };
  const detachedEntry = options.detachedRefillEntry;
  // When the pool is topped up. In this process by default once the tool has its command: its requests would
  // otherwise queue in the engine ahead of this run's attach and start. After the run for a detached helper, and
  // for a caller that asks (`refillAfterRun`): the engine handles the tool's exit slowly while it starts another
  // container, and their callers wait for that exit.
  const refillWhen = pool === null && holders === null ? 'never' : detachedEntry !== undefined ? 'detached' : options.refillAfterRun === true ? 'after-run' : 'tool-started';
  const refill = (): void => {
    if (refillWhen === 'tool-started') track(refillPool(docker, job));
  };

  let released: Promise<void> | null = null;
  const removeSandbox = (): Promise<void> =>
    pool && taken ? pool.discard(sandbox.container.id) : ignoringGone(() => sandbox.container.remove({ force: true, v: true }));
  // A holder goes after its sandbox, whether or not that removal succeeded: it takes the sandbox's network with it.
  const release = (): Promise<void> =>
    (released ??= held === null || holders === null ? removeSandbox() : removeSandbox().finally(() => holders.discard(held.container.id)));
  try {
    return await drive(docker, options, env, sandbox, { warm: taken !== null, kernelLogBookmark, prepared, configDigest, warnings, onToolStarted: refill, release });
  } finally {
    await release();
    if (refillWhen === 'detached' && detachedEntry !== undefined) track(startDetachedRefill(job, detachedEntry));
    else if (refillWhen === 'after-run') track(refillPool(docker, job));
  }
}

function specOptions(prepared: Prepared, networkMode: string, env: Readonly<Record<string, string>>) {
  return {
    image: prepared.image,
    // The command goes to the launcher at run time; the spec only shapes the container.
    cmd: [LAUNCHER_PATH],
    env,
    labels: {},
    networkMode,
    seccompJson: prepared.seccompJson,
    mounts: prepared.mounts,
  };
}

/** Everything that shapes a sandbox container except its labels and address: what the pool key hashes. */
function sandboxShape(spec: Dockerode.ContainerCreateOptions, env: Environment, launcher: string): Dockerode.ContainerCreateOptions {
  const host = spec.HostConfig ?? {};
  return {
    ...spec,
    Entrypoint: [LAUNCHER_PATH],
    Cmd: [],
    // The launcher reads its one message on stdin, then replaces stdin with /dev/null before the tool starts.
    OpenStdin: true,
    StdinOnce: true,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      ...host,
      Binds: [...(host.Binds ?? []), `${env.resolvConf}:/etc/resolv.conf:ro`],
      Mounts: [...(host.Mounts ?? []), { Type: 'bind', Source: launcher, Target: LAUNCHER_PATH, ReadOnly: true }],
    },
  };
}

/** Promise.all that settles only once every one has: a failure leaves nothing of the others still running. */
async function allSettledOrThrow<T extends readonly unknown[] | []>(work: T): Promise<{ -readonly [P in keyof T]: Awaited<T[P]> }> {
  for (const result of await Promise.allSettled(work)) if (result.status === 'rejected') throw result.reason;
  return Promise.all(work);
}

/** What the sandbox sent past the gateway, as audit lines (see `direct-attempts.ts`). */
function directDenials(kernelLog: KernelLogCursor | null, ip: string, sandbox: string, tool: string | undefined): DecisionEvent[] {
  if (!kernelLog) return [];
  return attemptsOf(kernelLog.readNew(), ip).map((attempt, index) => ({
    event: 'decision',
    conn: `${sandbox}-direct-${index + 1}`,
    channel: 'direct',
    client: ip,
    sandbox,
    ...(tool === undefined ? {} : { tool }),
    host: attempt.destination,
    port: attempt.port,
    decision: 'deny',
    rule: 'builtin.direct-connection',
    reason: `a direct ${attempt.protocol} connection that skipped the gateway; the sandbox network dropped it`,
  }));
}

/**
 * The gateway's control connection failed under a run and did not come back within 30 s (a gateway that restarts
 * is told its runs again, `gateway-control.ts`): it was stopped or removed, or it refused a request. The run's
 * registration is gone (it is denied everything from then on, which fails closed) and so are its traffic totals.
 */
function gatewayLost(sandbox: string, gatewayContainer: string, err: unknown, consequence: string): ClawboxError {
  return new ClawboxError('SANDBOX_FAILED', `sandbox ${sandbox}: ${(err as Error).message}; ${consequence}`, {
    details: [`see 'docker logs ${gatewayContainer}': a gateway that stops and is not back within 30 s (a crash past its restart policy, or a docker command) has lost the runs it served`],
    cause: err,
  });
}

interface DriveContext {
  /** The sandbox came from the pool (for the result). Either way it is running, its launcher waiting. */
  readonly warm: boolean;
  /** Where the kernel log stood once the sandbox's address was found free (read from there, not from now). */
  readonly kernelLogBookmark: string | undefined;
  readonly prepared: Prepared;
  readonly configDigest: string;
  readonly warnings: readonly string[];
  /** Called once the tool has its command (or the run failed before that). */
  readonly onToolStarted: () => void;
  /**
   * Removes the sandbox (once; the caller awaits it after the run). Called as soon as its end is confirmed, so that
   * the engine removes it while the run's record is made.
   */
  readonly release: () => Promise<void>;
}

async function drive(
  docker: Dockerode,
  options: RunOptions,
  env: Environment,
  { container, ip }: { container: Dockerode.Container; ip: string },
  ctx: DriveContext,
): Promise<RunResult> {
  const { config } = options;
  const id = container.id.slice(0, 12);
  const timeoutMs = ctx.prepared.tool?.timeout ?? config.timeout;
  const toolCfg = ctx.prepared.tool;
  const stdout = new CappedOutput(config.logging.capture_stdout ? (options.stdout === undefined ? process.stdout : options.stdout) : null, config.logging.max_output_size, 'stdout');
  const stderr = new CappedOutput(config.logging.capture_stderr ? (options.stderr === undefined ? process.stderr : options.stderr) : null, config.logging.max_output_size, 'stderr');
  let registered = false;
  let unregistering: Promise<Awaited<ReturnType<GatewayControl['unregister']>>> | null = null;
  let timedOut = false;
  let aborted = false;
  let sampler: UsageSampler | null = null;
  const onAbort = (): void => {
    aborted = true;
    void ignoringGone(() => container.kill());
  };
  const started = performance.now();
  let toolStartedCalled = false;
  const toolStarted = (): void => {
    if (toolStartedCalled) return;
    toolStartedCalled = true;
    ctx.onToolStarted();
  };

  try {
    let restartsAtRegister = 0;
    const registering = env.control
      .register({
        client: ip,
        sandbox: id,
        ...(options.tool === undefined ? {} : { tool: options.tool }),
        allowed_hosts: [...config.allowed_hosts, ...(toolCfg?.allowed_hosts ?? []), ...(options.allowHosts ?? [])],
        denied_hosts: [...config.denied_hosts, ...(toolCfg?.denied_hosts ?? [])],
        network_policy: config.network_policy,
        default_ports: config.gateway.default_ports,
      })
      .then(
        () => {
          registered = true;
          restartsAtRegister = env.control.restarts;
        },
        (err: unknown) => {
          throw gatewayLost(id, env.gatewayContainer, err, 'the tool was not started');
        },
      );
    // Attaching starts nothing (the tool waits for its message), so it need not wait for the registration. The
    // kernel log is read from the sandbox's bookmark, taken before its start; without one (another boot, or no
    // bookmark), from now: the tool cannot send a packet before its message. (A hijacked attach is the engine's
    // socket: a net.Socket, which the typings call a ReadWriteStream.)
    const attaching = container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true }) as Promise<Socket>;
    const kernelLog = KernelLogCursor.fromBookmark(ctx.kernelLogBookmark) ?? KernelLogCursor.open();
    const [registration, attached] = await Promise.allSettled([registering, attaching]);
    if (registration.status === 'rejected') {
      if (attached.status === 'fulfilled') attached.value.destroy();
      throw registration.reason;
    }
    if (attached.status === 'rejected') throw attached.reason;
    const stream = attached.value;
    const streamEnded = new Promise<void>((resolve) => stream.once('end', resolve).once('close', resolve));
    docker.modem.demuxStream(stream, stdout, stderr);
    // The sandbox is running: 'not-running' also catches a tool that ends before Docker has registered this wait.
    const exited = container.wait({ condition: 'not-running' }) as Promise<{ StatusCode: number }>;
    if (options.signal?.aborted) throw new ClawboxError('ABORTED', 'stopped before the tool started; its sandbox is removed');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    stream.write(ctx.prepared.message);
    toolStarted();
    sampler = new UsageSampler(container.id);
    const timer = setTimeout(() => {
      timedOut = true;
      void ignoringGone(() => container.kill());
    }, timeoutMs);
    let status: number;
    try {
      status = (await exited).StatusCode;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
    const usage = sampler.stop();
    await Promise.race([streamEnded, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);

    // The engine's last word on the container and the gateway's totals are independent round trips: both at once.
    const inspected = container.inspect();
    unregistering = env.control.unregister(ip);
    unregistering.catch(() => undefined); // awaited below, or in `finally` if the inspect fails first
    const state = (await inspected).State;
    if (state.Running || state.Pid !== 0) {
      throw new ClawboxError('SANDBOX_FAILED', `sandbox ${id} still has processes after its end; it will be force-removed`);
    }
    ctx.release().catch(() => undefined); // its failure is the caller's to report, where it awaits it
    const exitCode = aborted ? EXIT_ABORTED : timedOut ? EXIT_TIMEOUT : status;
    const traffic = await unregistering.catch((err: unknown) => {
      registered = false; // nothing left to unregister: the gateway that held it is gone
      throw gatewayLost(id, env.gatewayContainer, err, `the tool exited with ${exitCode}, but its traffic totals (connections, bytes) are lost; the gateway's audit lines still record each connection`);
    });
    registered = false;
    const warnings = [...ctx.warnings];
    if (env.control.restarts !== restartsAtRegister) {
      const warning = `the gateway ${env.gatewayContainer} restarted during the run and was told about this sandbox again: its connections in between were refused, and the traffic totals count only from then (the audit trail has every connection)`;
      warnings.push(warning);
      options.onWarning?.(warning);
    }
    // The kernel log is read synchronously (a few ms); one turn of the event loop first lets the removal's request
    // go out, so that the engine removes the sandbox meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
    const direct = directDenials(kernelLog, ip, id, options.tool);
    const explanation = timedOut
      ? explainTimeout(timeoutMs)
      : state.OOMKilled
        ? explainOom(config.resource_limits.memory)
        : traffic.not_allowed.length > 0
          ? explainDenied(traffic.not_allowed)
          : undefined;
    const record: RunEvent = {
      event: 'run',
      sandbox: id,
      ...(options.tool === undefined ? {} : { tool: options.tool }),
      command: options.command,
      image: ctx.prepared.image,
      config_digest: ctx.configDigest,
      exit_code: exitCode,
      duration_ms: Math.round(performance.now() - started),
      peak_memory_bytes: usage.peakMemoryBytes,
      cpu_time_ms: usage.cpuTimeMs,
      bytes_up: traffic.bytes_up,
      bytes_down: traffic.bytes_down,
      connections_allowed: traffic.allowed,
      connections_denied: traffic.denied + direct.length,
      oom_killed: state.OOMKilled,
      timed_out: timedOut,
      output_truncated: stdout.truncated || stderr.truncated,
      warnings,
      ...(explanation === undefined ? {} : { explanation }),
    };
    appendToTrail(env.auditTrail, config.logging.enabled ? config.logging.level : 'silent', [...direct, record]);
    return { ...record, aborted, warm: ctx.warm };
  } finally {
    sampler?.stop();
    toolStarted();
    if (registered) await (unregistering ?? env.control.unregister(ip)).catch(() => undefined);
  }
}
