/**
 * The resident runner's wire format: `resident-runner.ts` serves it, `runner-client.ts` (in the CLI's launcher)
 * speaks it. Frames of a type byte and a 32-bit big-endian length, over a Unix socket in the state directory.
 *
 *   client → runner   request (JSON, first and once), abort (Ctrl-C or SIGTERM at the client)
 *   runner → client   declined (the client runs the command itself; nothing was started) or accepted, then
 *                     stdout / stderr (bytes, in order), then exit (the exit code, 4 bytes)
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { poolDir } from '../../runner/state-dir.js';
import { buildKey } from './code-cache.js';

export const FRAME = {
  request: 0x51,
  abort: 0x41,
  declined: 0x46,
  accepted: 0x53,
  stdout: 0x4f,
  stderr: 0x45,
  exit: 0x58,
} as const;

/** A request carries a command line and a few paths; output is sent in pieces of at most this size. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * How long each side waits for the other's first frame: the runner for the request, the client for the runner's
 * answer (accepted or declined, normally a few milliseconds). Past it, neither waits forever.
 */
export const ANSWER_TIMEOUT_MS = 5000;

/** What `clawbox run` hands a resident runner: its arguments, and what they are relative to. */
export interface RunnerRequest {
  /** The arguments after `run`. */
  readonly args: readonly string[];
  /** The client's working directory: `--config FILE` is relative to it. */
  readonly cwd: string;
  /** The client's CLAWBOX_CONFIG (the config when `--config` is absent), or null. */
  readonly configEnv: string | null;
}

export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
}

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const head = Buffer.allocUnsafe(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

export function encodeExit(code: number): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeInt32BE(code, 0);
  return encodeFrame(FRAME.exit, body);
}

/** Splits a byte stream into frames; throws on a frame larger than MAX_FRAME_BYTES (the peer is not ours). */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    while (this.pending.length >= 5) {
      const length = this.pending.readUInt32BE(1);
      if (length > MAX_FRAME_BYTES) throw new Error(`resident runner protocol: a frame of ${length} bytes (at most ${MAX_FRAME_BYTES})`);
      if (this.pending.length < 5 + length) break;
      frames.push({ type: this.pending[0], payload: this.pending.subarray(5, 5 + length) });
      this.pending = this.pending.subarray(5 + length);
    }
    return frames;
  }
}

/**
 * The pid file naming the runner that serves this bundle as built, for this user and this engine: a client never
 * talks to a runner of another build (its code and config schema), another user, or another DOCKER_HOST or HOME
 * (the default config's place). Each runner listens on a socket of its own (`runnerSocket`), so a runner that
 * lost a race to another, or one that stops, never touches the other's socket.
 */
export function runnerPidFile(stateDir: string, bundle: string, env: NodeJS.ProcessEnv = process.env): string {
  const identity = [
    buildKey(bundle),
    process.getuid?.() ?? '',
    env.HOME ?? '',
    env.DOCKER_HOST ?? '',
    env.DOCKER_CONTEXT ?? '',
    env.DOCKER_CERT_PATH ?? '',
    env.DOCKER_TLS_VERIFY ?? '',
  ].join('\0');
  return join(poolDir(stateDir), `runner-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}.pid`);
}

/** The socket of runner `pid`, beside its pid file. */
export const runnerSocket = (pidFile: string, pid: number): string => pidFile.replace(/\.pid$/, `-${pid}.sock`);

/** The pid the file names, or null (no file, or not a pid). */
export function readRunnerPid(pidFile: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Whether something listens on the Unix socket `path`. */
export function listensAt(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
