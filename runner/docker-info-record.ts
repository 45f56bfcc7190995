/**
 * `docker info`, kept in the state directory for the next `clawbox run`: the daemon's answer took 10 ms of every
 * run's start, and what the host probe reads from it (cgroup version, security options, storage driver, the
 * limits it supports) is fixed for the daemon's life. The record is tied to that life: dockerd makes its socket
 * anew when it starts, so the socket's inode and change time (and the boot) name the daemon that answered. The
 * kernel side of the probe (/sys) is still read on every run.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import type { DockerInfo } from './host-support.js';
import { writeWhole } from '../src/write-whole.js';

/** A daemon answer older than this is asked again, even from the same daemon. */
const MAX_AGE_MS = 10 * 60_000;

interface InfoRecord {
  readonly daemon: string;
  readonly savedAt: number;
  readonly info: DockerInfo;
}

export const infoRecordPath = (stateDir: string): string => join(stateDir, 'docker-info.json');

/**
 * Which daemon answers on a local socket: the socket's path, inode and change time, and the boot. Null when the
 * daemon is not on a local Unix socket (DOCKER_HOST=tcp:// or ssh://): then there is no record.
 */
export function daemonIdentity(socketPath: string | undefined): string | null {
  if (socketPath === undefined) return null;
  try {
    const socket = statSync(socketPath);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return [socketPath, socket.dev, socket.ino, socket.ctimeMs, boot].join(':');
  } catch {
    return null;
  }
}

/** The daemon's Unix socket, as docker-modem resolves it (by default a function that looks for it), or undefined. */
async function socketPathOf(modem: unknown): Promise<string | undefined> {
  const m = modem as { socketPath?: unknown; getSocketPath?: () => Promise<unknown> };
  const path = typeof m.getSocketPath === 'function' ? await m.getSocketPath() : m.socketPath;
  return typeof path === 'string' ? path : undefined;
}

/** `docker info` from the record when the same daemon gave it within MAX_AGE_MS; else asked, and recorded. */
export async function recordedDockerInfo(docker: Pick<Dockerode, 'info' | 'modem'>, stateDir: string, now = Date.now()): Promise<DockerInfo> {
  const daemon = daemonIdentity(await socketPathOf(docker.modem));
  if (daemon !== null) {
    const record = readInfoRecord(stateDir);
    if (record !== null && record.daemon === daemon && now - record.savedAt >= 0 && now - record.savedAt < MAX_AGE_MS) return record.info;
  }
  const info = (await docker.info()) as DockerInfo;
  if (daemon !== null) writeInfoRecord(stateDir, { daemon, savedAt: now, info });
  return info;
}

function readInfoRecord(stateDir: string): InfoRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(infoRecordPath(stateDir), 'utf8'));
  } catch {
    return null; // none yet, or not JSON: ask the daemon
  }
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Record<string, unknown>;
  const ok = typeof r.daemon === 'string' && typeof r.savedAt === 'number' && typeof r.info === 'object' && r.info !== null && !Array.isArray(r.info);
  return ok ? (value as InfoRecord) : null;
}

function writeInfoRecord(stateDir: string, record: InfoRecord): void {
  writeWhole(infoRecordPath(stateDir), JSON.stringify(record));
}
