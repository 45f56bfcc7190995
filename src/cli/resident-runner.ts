/**
 * A resident runner: the CLI's detached refill helper (`clawbox pool-refill`) staying up, when the config keeps
 * one (`pool.runner_idle_timeout`; by default, a config with a pool or network holders keeps one as long as they
 * wait), to serve the next `clawbox run`s of such configs over a Unix socket. A run it serves costs its client Node's start
 * and the launcher only (runner-client.ts): the runner has the bundle loaded, the engine's connection open and the
 * environment checked, and refills the pool in its own process.
 *
 * - One runner per build, user, HOME and engine: a pid file names it (runner-protocol.ts), and each runner has a
 *   socket of its own. A helper that finds the named runner answering leaves after its refill; one that finds it
 *   dead removes its socket and takes its place.
 * - The sockets sit in the pool directory (/run/clawbox/pool, 0700) with mode 0600, and the client checks that
 *   the socket belongs to its own user.
 * - Only configs that keep a runner are served. Anything else (another config, `--help`, arguments or a config in
 *   error) is declined before anything starts, and the client runs it itself: errors are reported as always.
 * - Ctrl-C at the client, or the client's end, stops the tool (the run's abort: exit code 130, sandbox removed).
 * - While a run or its refill is at work, the refill marker of this process is there (pool-refill.ts), so whatever
 *   waits for refill helpers (tests, the bench) waits for it too.
 * - After runner_idle_timeout without a run (the longest of the configs it served), or on SIGTERM (which
 *   `clawbox gc --all` sends, finding it by its pid file), it stops listening, removes its socket (and the pid
 *   file, if it still names it), lets its runs and refills finish, and exits. Its idle time starts after its last
 *   refill; after an idle end, `clawbox pool-refill` sweeps the pool's expired sandboxes (pool-refill-command.ts).
 */
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { extname } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { closeEnvironments } from '../../runner/environment.js';
import { markerPath } from '../../runner/pool-refill.js';
import { settleBackground } from '../../runner/sandbox.js';
import { processAlive } from '../../runner/process-alive.js';
import { loadRunConfig, parseRunArgs, runWith } from './run-command.js';
import { writeWhole } from '../write-whole.js';
import { ANSWER_TIMEOUT_MS, encodeExit, encodeFrame, FRAME, FrameReader, listensAt, MAX_FRAME_BYTES, readRunnerPid, runnerPidFile, runnerSocket, type RunnerRequest } from './runner-protocol.js';

/**
 * Serves until idle (or SIGTERM); returns at once outside the bundle (no build a client could match) or when another
 * runner serves. True when it served and left because no run came for its idle time: its idle time starts after its
 * last refill, so the sandboxes it refilled for a pool that waits as long have expired by then.
 */
export async function serveResidentRunner(stateDir: string, idleMs: number, moduleUrl: string = import.meta.url): Promise<boolean> {
  const bundle = fileURLToPath(moduleUrl);
  if (extname(bundle) !== '.cjs') return false;
  const pidFile = runnerPidFile(stateDir, bundle);
  const current = readRunnerPid(pidFile);
  if (current !== null && current !== process.pid) {
    if (await listensAt(runnerSocket(pidFile, current))) return false; // another runner serves
    if (!processAlive(current)) rmSync(runnerSocket(pidFile, current), { force: true }); // it died and left it
  }
  const path = runnerSocket(pidFile, process.pid);
  rmSync(path, { force: true }); // an earlier process of this pid's
  const server = createServer();
  if (!(await listenOn(server, path))) return false;
  chmodSync(path, 0o600);
  // Two helpers may get here at once: the later rename wins, and the other serves nobody until its idle end.
  writeWhole(pidFile, String(process.pid));

  let active = 0;
  let longestIdle = idleMs;
  let stopping = false;
  let idledOut = false;
  let idle: NodeJS.Timeout | null = null;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const marker = markerPath(stateDir, process.pid);

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    if (idle !== null) clearTimeout(idle);
    server.close();
    rmSync(path, { force: true });
    if (readRunnerPid(pidFile) === process.pid) rmSync(pidFile, { force: true });
    if (active === 0) stopped();
  };
  const waitIdle = (): void => {
    if (idle !== null) clearTimeout(idle);
    idle = setTimeout(() => {
      idledOut = true;
      stop();
    }, longestIdle);
  };
  process.once('SIGTERM', stop);
  server.on('error', stop); // a listener that fails is a runner no client can reach
  waitIdle();

  const serveRequest = async (socket: Socket, request: RunnerRequest, abort: AbortController): Promise<void> => {
    // Declined before anything starts: the client runs the command itself and reports any error as always.
    const accepted = await accept(request);
    if (accepted === null || stopping || socket.destroyed) {
      socket.end(encodeFrame(FRAME.declined));
      return;
    }
    const { parsed, source, keepFor } = accepted;
    longestIdle = Math.max(longestIdle, keepFor);
    active += 1;
    if (idle !== null) clearTimeout(idle);
    writeWhole(marker, String(process.pid)); // never throws: `active` is always given back below
    socket.write(encodeFrame(FRAME.accepted));
    try {
      const code = await runWith(parsed.values, parsed.command, source, {
        stdout: framesTo(socket, FRAME.stdout),
        stderr: framesTo(socket, FRAME.stderr),
        cwd: request.cwd,
        configEnv: request.configEnv ?? undefined,
        signal: abort.signal,
      });
      if (!socket.destroyed) socket.end(encodeExit(code));
    } finally {
      active -= 1;
      if (active === 0) {
        await settleBackground({ helpers: false }); // this run's refill
        if (active === 0) rmSync(marker, { force: true });
      }
      if (stopping && active === 0) stopped();
      else if (active === 0) waitIdle();
    }
  };

  server.on('connection', (socket: Socket) => {
    const reader = new FrameReader();
    const abort = new AbortController();
    let requested = false;
    socket.on('error', () => undefined); // 'close' follows
    socket.once('close', () => abort.abort()); // the client is gone: its tool stops
    // A connection that sends no request is not held open.
    socket.setTimeout(ANSWER_TIMEOUT_MS, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.type === FRAME.abort) abort.abort();
        else if (frame.type === FRAME.request && !requested) {
          requested = true;
          socket.setTimeout(0); // a tool may run, and print nothing, for as long as its timeout allows
          const request = requestOf(frame.payload);
          if (request === null) socket.end(encodeFrame(FRAME.declined));
          else void serveRequest(socket, request, abort).catch(() => socket.destroy());
        } else {
          socket.destroy(); // not our client
          return;
        }
      }
    });
  });

  await done;
  process.removeListener('SIGTERM', stop);
  await settleBackground({ helpers: false });
  await closeEnvironments();
  return idledOut;
}

/** The request, if it is one: a command line, a directory and the config variable. */
function requestOf(payload: Buffer): RunnerRequest | null {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { args, cwd, configEnv } = value as Record<string, unknown>;
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string') || typeof cwd !== 'string') return null;
  if (configEnv !== null && typeof configEnv !== 'string') return null;
  return { args, cwd, configEnv };
}

/** The parsed command and config when this runner may serve them: a run (not help) of a config that keeps a runner. */
async function accept(request: RunnerRequest) {
  try {
    const parsed = parseRunArgs(request.args);
    if (parsed.help) return null;
    const source = await loadRunConfig(parsed.values, { cwd: request.cwd, configEnv: request.configEnv ?? undefined });
    const keepFor = source.config.sandbox.pool.runner_idle_timeout;
    return keepFor === 0 ? null : { parsed, source, keepFor };
  } catch {
    return null;
  }
}

/** A stream whose bytes go to the client as frames of `type`, in order; dropped once the client is gone. */
function framesTo(socket: Socket, type: number): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (socket.destroyed) {
        callback();
        return;
      }
      for (let at = 0; at < chunk.length; at += MAX_FRAME_BYTES) socket.write(encodeFrame(type, chunk.subarray(at, at + MAX_FRAME_BYTES)));
      callback();
    },
  });
}

function listenOn(server: Server, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(path, () => resolve(true));
  });
}
