/**
 * `clawbox proxy --workers N`: the gateway on N processes (node:cluster) so it uses every core.
 *
 * - Workers accept on the shared listening sockets themselves (SCHED_NONE), so a connection costs no IPC hop through
 *   the primary; which workers listen on the TCP ones is steered (below). The UDP (DNS) socket is shared the same
 *   way, and read by the lead alone where reads are batched (`udp-batch.ts`: one reader measured 7.4–8.4 µs of CPU
 *   per query, two 9.7–10.8); a standby's unread share waits in the socket's buffer, not lost, while a dead lead's
 *   place is taken. Through node:dgram every worker reads, as it cannot be paused.
 * - The primary accepts no traffic. It owns the control socket and forwards each request to every worker, waiting
 *   for all of them before it answers (a register is in force in every worker when the runner hears "ok");
 *   unregister sums the workers' totals. It keeps the registrations, host addresses and config, validated on a
 *   GatewayPolicies of its own, so that a worker that dies is replaced with the same state before it listens.
 * - The audit trail: every worker opens the same file with O_APPEND and writes each line with one write(2)
 *   (`src/audit/sink.ts`), so lines never interleave and none is lost when a worker or the primary is SIGKILLed.
 *   The conn id prefix is per process, so ids stay unique across workers.
 * - Signals: SIGHUP (primary) reloads every worker; SIGINT / SIGTERM stop them all. A worker whose primary is gone
 *   (SIGKILL) closes and exits by itself.
 * - Who accepts (`accept-steering.ts`): at low load one worker, the lead, takes every TCP connection and the others
 *   (standbys) keep their DNS sockets but not the TCP listeners; the lead asks for them when it gets busy and lets
 *   them go after a quiet spell. While they join and for a moment after, a worker that accepts a connection with
 *   more than its share hands it to the least loaded one through the primary: the workers publish their loads in
 *   memory the primary made and every worker maps (`worker-loads.ts`, a slot each; a replacement takes the dead
 *   one's, cleared).
 *   The primary keeps the roles: a dead lead's place goes to a live standby.
 * - Port 0 is chosen once, by the primary, before the workers start (`listen-ports.ts`): a standby gets the shared
 *   listening socket back by the arguments it first listened with, and port 0 would name a new one.
 */
import cluster, { type Worker } from 'node:cluster';
import { closeSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError, type ErrorCode } from '../src/errors.js';
import { ACTIVITY_SAMPLE_EVERY, handOverByLoad, LeadSteering, SAMPLE_MS, type StandbyRequest } from './accept-steering.js';
import { choosePorts } from './listen-ports.js';
import { createControlServer, unusedExit } from './control-server.js';
import { GatewayPolicies } from './gateway-policies.js';
import { gatewayWorkerExecArgv } from './heap-tuning.js';
import { startGateway, type GatewayAddresses, type RunningGateway, type TcpFront } from './gateway.js';
import type { TcpRelayKind } from './tcp-relay.js';
import type { DatagramIoKind } from './udp-batch.js';
import { asSendHandle, closeHandle, handleOf, socketOf, type ConnectionHandle } from './handoff.js';
import { SLOT_ENV, SLOTS_ENV, WorkerLoads } from './worker-loads.js';
import type { SandboxRegistration, SandboxTraffic } from './sandbox-registry.js';

type Request =
  | { readonly op: 'register'; readonly sandbox: SandboxRegistration }
  | { readonly op: 'unregister'; readonly client: string }
  | { readonly op: 'host-addresses'; readonly addresses: readonly string[] }
  | { readonly op: 'reload'; readonly config: SandboxConfig };

type ToWorker =
  | { readonly t: 'init'; readonly config: SandboxConfig; readonly sandboxes: SandboxRegistration[]; readonly hostAddresses: readonly string[] }
  | ({ readonly t: 'req'; readonly id: number } & Request)
  | { readonly t: 'stop' }
  /** You are the lead; whether the standbys accept right now. */
  | { readonly t: 'lead'; readonly standbysAccepting: boolean }
  /** To a standby: start or stop accepting TCP connections. */
  | { readonly t: 'accept'; readonly on: boolean }
  /** To a standby: stop reading DNS queries over UDP (the lead reads them; a new lead resumes by itself). */
  | { readonly t: 'dns-standby' }
  /** To the lead: the standbys now accept (or not), as it asked. */
  | { readonly t: 'standbys'; readonly accepting: boolean }
  /** With a connection's handle: serve it. `to`: the slot whose `incoming` the sender counted it in. */
  | { readonly t: 'conn'; readonly front: TcpFront; readonly to?: number };

type Reply = { readonly ok: true; readonly traffic?: SandboxTraffic } | { readonly ok: false; readonly error: string };

type FromWorker =
  | { readonly t: 'hello' }
  | { readonly t: 'listening'; readonly addresses: GatewayAddresses; readonly dnsIo: DatagramIoKind; readonly tcpRelay: TcpRelayKind }
  | { readonly t: 'failed'; readonly code: string; readonly message: string; readonly details: readonly string[] }
  | ({ readonly t: 'res'; readonly id: number } & Reply)
  /** From the lead. */
  | { readonly t: 'standbys'; readonly want: StandbyRequest }
  /** A standby's answer to 'accept'. */
  | { readonly t: 'accepting'; readonly on: boolean; readonly error?: string }
  /**
   * With a connection's handle: give it to another worker, the one in slot `to` where the workers share their loads
   * (`worker-loads.ts`), else a standby.
   */
  | { readonly t: 'conn'; readonly front: TcpFront; readonly to?: number };

export interface ClusterOptions {
  readonly workers: number;
  readonly config: SandboxConfig;
  readonly log: Logger;
  readonly controlSocket?: string;
  /** Called once no runner has been connected to the control socket for `gateway.exit_when_unused` (if set). */
  readonly onUnused?: () => void;
}

export interface ClusteredGateway {
  readonly addresses: GatewayAddresses;
  /** The workers' DNS I/O: `dgram` if any one answers through node:dgram. */
  readonly dnsIo: DatagramIoKind;
  /** The workers' tunnels: `node` if any one relays through node:net. */
  readonly tcpRelay: TcpRelayKind;
  readonly workers: number;
  /** Validates the config, then swaps it in on every worker; throws (changing nothing) when it is invalid. */
  reload(config: SandboxConfig): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

const MAX_NOT_ALLOWED = 20;

/** In the primary: forks the workers, waits until every one listens, serves the control socket. */
export async function startGatewayCluster(options: ClusterOptions): Promise<ClusteredGateway> {
  const { log } = options;
  const gw = await choosePorts(options.config.gateway);
  let config: SandboxConfig = { ...options.config, gateway: gw };
  // The primary's own table only validates and canonicalises what the workers will be told (it decides nothing).
  const validator = new GatewayPolicies(config, [gw.http.port, gw.socks.port, gw.dns.port].filter((p) => p !== 0));
  const sandboxes = new Map<string, SandboxRegistration>();
  let hostAddresses: readonly string[] = [];

  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // The workers' loads, shared so that each can balance what it accepts (`worker-loads.ts`); without them a
  // burst is split as the scheduler happens to split it.
  const made = options.workers > 1 ? WorkerLoads.create(options.workers) : null;
  if (typeof made === 'string') log.warn({ reason: made }, 'gateway workers cannot share their loads; a burst of connections may be split unevenly between them');
  const shared = made === null || typeof made === 'string' ? null : made;
  const loads = shared?.loads ?? null;
  /** The memory's descriptor is kept for replacement workers until the workers are gone. */
  const releaseLoads = (): void => {
    if (shared) closeSync(shared.fd);
  };
  cluster.setupPrimary({
    execArgv: gatewayWorkerExecArgv(process.execArgv),
    // stdin, stdout and stderr as the primary's, the IPC channel, then the shared loads at INHERITED_FD.
    stdio: shared ? ['inherit', 'inherit', 'inherit', 'ipc', shared.fd] : ['inherit', 'inherit', 'inherit', 'ipc'],
  });
  /** Each worker's slot in the shared loads: a replacement takes the dead worker's. */
  const slots = new Map<Worker, number>();

  const live = new Set<Worker>();
  /** Workers that got their init; only these are sent requests (the others will get the state in their init). */
  const initialised = new Set<Worker>();
  const pending = new Map<Worker, Map<number, (reply: Reply) => void>>();
  let nextId = 0;
  let stopping = false;
  let started = false;
  let lastRespawn = 0;

  // Accept steering (see the header). Until a lead is named, every worker accepts.
  const steered = options.workers > 1;
  let lead: Worker | null = null;
  let standbysAccepting = true;
  let steeringDone: Promise<void> = Promise.resolve();
  const acceptAnswers = new Map<Worker, Array<() => void>>();
  let nextStandby = 0;
  const standbys = (): Worker[] => [...initialised].filter((w) => w !== lead && w.isConnected());
  const setAccepting = (worker: Worker, on: boolean): Promise<void> =>
    new Promise((resolve) => {
      if (!worker.isConnected()) {
        resolve();
        return;
      }
      const waiting = acceptAnswers.get(worker) ?? [];
      waiting.push(resolve);
      acceptAnswers.set(worker, waiting);
      worker.send({ t: 'accept', on } satisfies ToWorker);
    });
  // The lead's requests apply one after the other; each answer tells it the state it asked for.
  const steerStandbys = (want: StandbyRequest): void => {
    steeringDone = steeringDone.then(async () => {
      standbysAccepting = want === 'join';
      await Promise.all(standbys().map((w) => setAccepting(w, standbysAccepting)));
      if (lead?.isConnected()) lead.send({ t: 'standbys', accepting: standbysAccepting } satisfies ToWorker);
      log.debug({ standbysAccepting }, 'gateway standby workers changed');
    });
  };
  const handOver = (from: Worker, front: TcpFront, handle: ConnectionHandle, to: number | undefined): void => {
    // The connection stays in slot `to`'s `incoming` until a worker adopts it (the handles queue in this process's
    // channel, each sent once the previous one is acknowledged), or here if it cannot be passed on.
    const target =
      (to === undefined ? undefined : [...slots].find(([w, slot]) => slot === to && w !== from && w.isConnected())?.[0]) ?? otherThan(from);
    target.send({ t: 'conn', front, ...(to === undefined ? {} : { to }) } satisfies ToWorker, asSendHandle(handle), {}, (err: Error | null) => {
      if (err) {
        log.warn({ err: err.message, worker: target.process.pid }, 'a handed-over connection could not be passed on; closed');
        if (to !== undefined) loads?.addIncoming(to, -1);
      }
      closeHandle(handle);
    });
  };
  /** A standby other than `from`, or, with none left (it died), `from` itself: the lead then serves it. */
  const otherThan = (from: Worker): Worker => {
    const candidates = standbys().filter((w) => w !== from);
    return candidates.length > 0 ? candidates[nextStandby++ % candidates.length] : from;
  };
  const nameLead = (worker: Worker): void => {
    lead = worker;
    worker.send({ t: 'lead', standbysAccepting } satisfies ToWorker);
  };
  /** A worker that is not the lead: it leaves the DNS socket to the lead, and accepts only while the standbys do. */
  const makeStandby = (worker: Worker): Promise<void> => {
    worker.send({ t: 'dns-standby' } satisfies ToWorker);
    return standbysAccepting ? Promise.resolve() : setAccepting(worker, false);
  };

  let settleStartup: { resolve: (a: GatewayAddresses) => void; reject: (e: Error) => void } | null = null;
  const startup = new Promise<GatewayAddresses>((resolve, reject) => (settleStartup = { resolve, reject }));
  let listening = 0;
  let firstAddresses: GatewayAddresses | null = null;
  let dnsIo: DatagramIoKind = 'batched';
  let relayKind: TcpRelayKind = 'native';

  const fork = (slot: number): Worker => {
    loads?.clear(slot);
    const worker = cluster.fork({ CLAWBOX_WORKER_LOG: log.level, [SLOT_ENV]: String(slot), [SLOTS_ENV]: String(options.workers) });
    slots.set(worker, slot);
    live.add(worker);
    pending.set(worker, new Map());
    // A message to a worker that has just exited, and whose exit is not handled yet, fails with EPIPE. Its exit
    // handler settles what it owed; unhandled, the error would kill the primary (seen when a whole process group
    // gets SIGTERM, as `timeout` and service managers send it: every worker exits while the primary says stop).
    worker.on('error', (err: Error) => log.debug({ worker: worker.process.pid, err: err.message }, 'message to an exiting gateway worker lost'));
    worker.on('message', (message: FromWorker, handle: unknown) => {
      switch (message.t) {
        case 'hello': {
          // The state as of now: every later change reaches this worker as a request, after this message.
          const init: ToWorker = { t: 'init', config, sandboxes: [...sandboxes.values()], hostAddresses };
          worker.send(init);
          initialised.add(worker);
          return;
        }
        case 'listening':
          if (started) {
            log.info({ worker: worker.process.pid }, 'replacement gateway worker listening');
            if (steered && lead === null) nameLead(worker);
            else if (steered) void makeStandby(worker);
            return;
          }
          firstAddresses ??= message.addresses;
          if (message.dnsIo === 'dgram') dnsIo = 'dgram';
          if (message.tcpRelay === 'node') relayKind = 'node';
          listening += 1;
          if (listening === options.workers) settleStartup?.resolve(firstAddresses);
          return;
        case 'failed': {
          const known = message.code as ErrorCode;
          const err = new ClawboxError(known, message.message, { details: message.details });
          if (!started) settleStartup?.reject(err);
          else log.error({ worker: worker.process.pid, err: message.message }, 'replacement gateway worker failed to start');
          return;
        }
        case 'res': {
          const waiting = pending.get(worker);
          const resolve = waiting?.get(message.id);
          waiting?.delete(message.id);
          resolve?.(message.ok ? { ok: true, ...(message.traffic ? { traffic: message.traffic } : {}) } : { ok: false, error: message.error });
          return;
        }
        case 'standbys':
          if (worker === lead) steerStandbys(message.want);
          return;
        case 'accepting':
          if (message.error) log.error({ worker: worker.process.pid, err: message.error }, 'a gateway standby worker could not change its listeners');
          acceptAnswers.get(worker)?.shift()?.();
          return;
        case 'conn':
          if (handle) handOver(worker, message.front, handle as ConnectionHandle, message.to);
          return;
      }
    });
    worker.on('exit', (code: number | null, signal: string | null) => {
      live.delete(worker);
      slots.delete(worker);
      loads?.clear(slot);
      initialised.delete(worker);
      // Its counters are gone with it; what it wrote to the audit trail is not.
      for (const resolve of pending.get(worker)?.values() ?? []) resolve({ ok: true });
      pending.delete(worker);
      for (const answered of acceptAnswers.get(worker) ?? []) answered();
      acceptAnswers.delete(worker);
      if (worker === lead) {
        lead = null;
        // A standby takes its place at once (the replacement, when it listens, becomes a standby).
        const next = standbys()[0];
        if (next && !stopping) {
          void setAccepting(next, true);
          nameLead(next);
        }
      }
      if (stopping) return;
      if (!started) {
        settleStartup?.reject(new ClawboxError('LISTEN_FAILED', `gateway worker exited during start-up (code ${code}, signal ${signal})`));
        return;
      }
      log.error({ worker: worker.process.pid, code, signal }, 'gateway worker died; starting a replacement');
      // A worker that dies at once must not turn into a fork loop.
      const wait = Math.max(0, lastRespawn + 1000 - Date.now());
      lastRespawn = Date.now() + wait;
      setTimeout(() => {
        if (!stopping) fork(slot);
      }, wait);
    });
    return worker;
  };

  const ask = (worker: Worker, request: Request): Promise<Reply> =>
    new Promise((resolve) => {
      if (!worker.isConnected()) {
        resolve({ ok: true });
        return;
      }
      nextId += 1;
      pending.get(worker)?.set(nextId, resolve);
      const message: ToWorker = { t: 'req', id: nextId, ...request };
      worker.send(message);
    });
  const broadcast = async (request: Request): Promise<Reply[]> => {
    const replies = await Promise.all([...initialised].map((w) => ask(w, request)));
    const failed = replies.find((r): r is Extract<Reply, { ok: false }> => !r.ok);
    if (failed) throw new Error(failed.error);
    return replies;
  };

  for (let slot = 0; slot < options.workers; slot++) fork(slot);
  let addresses: GatewayAddresses;
  try {
    addresses = await startup;
  } catch (err) {
    stopping = true;
    await stopWorkers(live, 2000);
    releaseLoads();
    throw err;
  }
  started = true;
  if (steered) {
    const first = [...initialised][0];
    standbysAccepting = false;
    if (first) nameLead(first);
    await Promise.all(standbys().map(makeStandby));
  }

  const control: Server | null = options.controlSocket
    ? await createControlServer(
        options.controlSocket,
        {
          // Each change is validated and recorded here first (synchronously, so a worker forked meanwhile gets it
          // in its init), then every live worker applies it before the runner hears the answer.
          register: async (registration) => {
            const canonical = validator.register(registration);
            sandboxes.set(canonical.client, canonical);
            await broadcast({ op: 'register', sandbox: canonical });
          },
          unregister: async (client) => {
            validator.unregister(client);
            sandboxes.delete(client);
            return sumTraffic(await broadcast({ op: 'unregister', client }));
          },
          setHostAddresses: async (addresses) => {
            if (!validator.setHostAddresses(addresses)) return; // every worker has them already
            hostAddresses = [...addresses];
            await broadcast({ op: 'host-addresses', addresses: hostAddresses });
          },
        },
        log,
        unusedExit(gw.exit_when_unused, options.onUnused),
      ).catch(async (err: unknown) => {
        stopping = true;
        await stopWorkers(live, 2000);
        releaseLoads();
        throw err;
      })
    : null;

  let closing: Promise<void> | null = null;
  return {
    addresses,
    dnsIo,
    tcpRelay: relayKind,
    workers: options.workers,
    async reload(next: SandboxConfig): Promise<void> {
      // The listeners stay as they are (a reload changes policy); a replacement worker listens where the others do.
      const kept: SandboxConfig = { ...next, gateway: { ...next.gateway, http: gw.http, socks: gw.socks, dns: gw.dns } };
      validator.reload(kept);
      config = kept;
      await broadcast({ op: 'reload', config: kept });
    },
    close(graceMs = 2000): Promise<void> {
      closing ??= (async () => {
        stopping = true;
        await Promise.all([stopWorkers(live, graceMs), control ? new Promise<void>((r) => control.close(() => r())) : undefined]);
        releaseLoads();
      })();
      return closing;
    },
  };
}

function stopWorkers(workers: ReadonlySet<Worker>, graceMs: number): Promise<void> {
  return Promise.all(
    [...workers].map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.process.exitCode !== null || worker.process.signalCode !== null) {
            resolve();
            return;
          }
          const kill = setTimeout(() => worker.process.kill('SIGKILL'), graceMs + 5000);
          worker.process.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          if (worker.isConnected()) worker.send({ t: 'stop' } satisfies ToWorker);
          else worker.process.kill('SIGTERM');
        }),
    ),
  ).then(() => undefined);
}

function sumTraffic(replies: readonly Reply[]): SandboxTraffic {
  const total: SandboxTraffic = { allowed: 0, denied: 0, bytes_up: 0, bytes_down: 0, not_allowed: [] };
  for (const reply of replies) {
    if (!reply.ok || !reply.traffic) continue;
    total.allowed += reply.traffic.allowed;
    total.denied += reply.traffic.denied;
    total.bytes_up += reply.traffic.bytes_up;
    total.bytes_down += reply.traffic.bytes_down;
    for (const host of reply.traffic.not_allowed) {
      if (total.not_allowed.length < MAX_NOT_ALLOWED && !total.not_allowed.includes(host)) total.not_allowed.push(host);
    }
  }
  return total;
}

/** In a worker: waits for the primary's init, runs an ordinary single-process gateway, answers the primary. */
export function runGatewayWorker(log: Logger): Promise<number> {
  const send = (message: FromWorker, then?: () => void): void => {
    if (process.connected && process.send) process.send(message, undefined, {}, () => then?.());
    else then?.();
  };
  let gateway: Promise<RunningGateway> | null = null;
  let stopped: Promise<number> | null = null;
  // Set only in the lead (the primary's 'lead' message); a standby hands over only in the lead's balancing window.
  let steering: LeadSteering | null = null;
  let sampler: NodeJS.Timeout | null = null;
  let accepting: Promise<void> = Promise.resolve();
  const inherited = WorkerLoads.inherited();
  if (typeof inherited === 'string') log.debug({ reason: inherited }, 'this gateway worker does not balance by load');
  const shared = typeof inherited === 'string' ? null : inherited;
  /** The lead's window, for the standbys to balance in it too. */
  const publishWindow = (): void => {
    if (steering && shared) shared.loads.balancing = steering.balancing;
  };

  const steer = (front: TcpFront, socket: Socket, busy: number): boolean => {
    // The loads are read only when a burst is being balanced: a steady flow of connections pays nothing for them.
    const balancing = steering === null ? shared !== null && shared.loads.balancing : steering.balancesNext(busy);
    const least = balancing ? (shared?.loads.leastLoadedOther(shared.slot) ?? null) : null;
    // Its load as the others see it: what it serves and what is on its way to it (the primary passes handles on
    // one at a time, each acknowledged, so a burst handed over can take milliseconds to arrive).
    const load = balancing && shared ? busy + shared.loads.incoming(shared.slot) : busy;
    let handOver: boolean;
    if (steering === null) {
      handOver = least !== null && handOverByLoad(load, least.load);
    } else {
      const decided = steering.onConnection(load, least?.load ?? null);
      if (decided.request) {
        send({ t: 'standbys', want: decided.request });
        publishWindow();
      }
      handOver = decided.handOver;
    }
    const handle = handOver && process.connected && process.send ? handleOf(socket) : null;
    if (handle === null) return false;
    const to = least?.slot;
    if (to !== undefined) shared?.loads.addIncoming(to, 1);
    // Our copy is closed once the handle has left (or could not: the primary is gone, and so are we).
    process.send?.({ t: 'conn', front, ...(to === undefined ? {} : { to }) } satisfies FromWorker, asSendHandle(handle), {}, () => socket.destroy());
    return true;
  };
  /**
   * Every 100 ms: the lead's steering sample; every 500 ms which connections moved bytes, in the lead for its
   * steering and, where loads are shared, in every worker, so that a standby's held keep-alives do not count.
   */
  const startSampling = (running: RunningGateway): void => {
    let ticks = 0;
    sampler = setInterval(() => {
      ticks += 1;
      if (ticks % ACTIVITY_SAMPLE_EVERY === 0 && (steering !== null || shared !== null)) running.sampleActivity();
      const request = steering?.onSample(running.busyConnections) ?? null;
      if (request) send({ t: 'standbys', want: request });
      publishWindow();
    }, SAMPLE_MS);
    sampler.unref();
  };

  return new Promise<number>((resolve) => {
    const stop = (): void => {
      if (sampler) clearInterval(sampler);
      steering = null;
      stopped ??= (async () => {
        const running = await gateway?.catch(() => null);
        await running?.close();
        return 0;
      })();
      void stopped.then((code) => {
        resolve(code);
        // The IPC channel would keep the process alive.
        if (process.connected) process.disconnect();
      });
    };
    // SIGHUP is the primary's to handle (it tells us); the default action would kill us.
    process.on('SIGHUP', () => undefined);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.on('disconnect', stop);

    process.on('message', (message: ToWorker, handle: unknown) => {
      switch (message.t) {
        case 'init':
          if (gateway) return;
          gateway = startGateway({
            config: message.config,
            log,
            sandboxes: message.sandboxes,
            hostAddresses: message.hostAddresses,
            steer,
            ...(shared ? { publishBusy: (busy: number) => shared.loads.publishBusy(shared.slot, busy) } : {}),
          });
          gateway.then(
            (running) => {
              shared?.loads.setLive(shared.slot, true);
              startSampling(running);
              send({ t: 'listening', addresses: running.addresses, dnsIo: running.dnsIo, tcpRelay: running.tcpRelay });
            },
            (err: unknown) => {
              const code = err instanceof ClawboxError ? err.code : 'LISTEN_FAILED';
              const details = err instanceof ClawboxError ? [...err.details] : [];
              send({ t: 'failed', code, message: err instanceof Error ? err.message : String(err), details }, () => {
                resolve(1);
                if (process.connected) process.disconnect();
              });
            },
          );
          return;
        case 'req': {
          const { id } = message;
          void (gateway ?? Promise.reject(new Error('worker not initialised'))).then(
            (running) => send({ t: 'res', id, ...apply(running, message) }),
            (err: unknown) => send({ t: 'res', id, ok: false, error: err instanceof Error ? err.message : String(err) }),
          );
          return;
        }
        case 'stop':
          stop();
          return;
        case 'lead':
          void gateway?.then((running) => {
            if (stopped) return;
            running.setDnsReading(true);
            steering = new LeadSteering(message.standbysAccepting);
          }, () => undefined);
          return;
        case 'dns-standby':
          void gateway?.then((running) => {
            if (!stopped) running.setDnsReading(false);
          }, () => undefined);
          return;
        case 'standbys':
          steering?.standbysAre(message.accepting);
          publishWindow();
          return;
        case 'accept': {
          const { on } = message;
          // One change at a time: listening again takes a round trip to the primary.
          accepting = accepting.then(async () => {
            try {
              if (!gateway) throw new Error('worker not initialised');
              await (await gateway).setAccepting(on);
              send({ t: 'accepting', on });
            } catch (err) {
              send({ t: 'accepting', on, error: err instanceof Error ? err.message : String(err) });
            }
          });
          return;
        }
        case 'conn': {
          const received = handle as ConnectionHandle | undefined;
          if (!received) return;
          const { to } = message;
          // Counted in our busy connections as it is adopted, it leaves the sender's count of those on their way.
          const arrived = (): void => {
            if (to !== undefined) shared?.loads.addIncoming(to, -1);
          };
          if (!gateway || stopped) {
            closeHandle(received);
            arrived();
            return;
          }
          void gateway.then((running) => running.adopt(message.front, socketOf(received)), () => closeHandle(received)).finally(arrived);
          return;
        }
      }
    });
    // Messages sent before a listener exists are lost, so the primary sends the init only when asked.
    send({ t: 'hello' });
  });
}

function apply(gateway: RunningGateway, request: Request): Reply {
  try {
    switch (request.op) {
      case 'register':
        gateway.registerSandbox(request.sandbox);
        return { ok: true };
      case 'unregister':
        return { ok: true, traffic: gateway.unregisterSandbox(request.client) };
      case 'host-addresses':
        gateway.setHostAddresses(request.addresses);
        return { ok: true };
      case 'reload':
        gateway.reload(request.config);
        return { ok: true };
    }
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
