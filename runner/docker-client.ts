import type Dockerode from 'dockerode';
import { ClawboxError } from '../src/errors.js';
import { dockerodeClass } from './dockerode.js';

/** The Docker engine client (DOCKER_HOST respected), checked to answer before anything is attempted. */
export async function connectDocker(): Promise<Dockerode> {
  const docker = new (dockerodeClass())();
  try {
    await docker.ping();
  } catch (err) {
    throw new ClawboxError(
      'DOCKER_UNAVAILABLE',
      `cannot reach the Docker engine (${(err as Error).message}); start dockerd, or run scripts/setup.sh`,
      { cause: err },
    );
  }
  return docker;
}

/** HTTP status of a Docker API error (404 no such object, 409 conflict, 304 already in that state). */
export function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}

/** Runs `action`, treating "no such object" and "already done" as success: cleanup must be idempotent. */
export async function ignoringGone(action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (err) {
    const status = dockerStatus(err);
    if (status !== 404 && status !== 304 && status !== 409) throw err;
  }
}
