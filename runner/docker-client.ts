import { Agent, type AgentOptions } from 'node:http';
import { inspect } from 'node:util';
import type Dockerode from 'dockerode';
import { ClawboxError } from '../src/errors.js';
import { dockerodeClass } from './dockerode.js';

/** The Docker engine client (DOCKER_HOST respected), checked to answer before anything is attempted. */
export async function connectDocker(): Promise<Dockerode> {
  const docker = dockerClient();
  await pingDocker(docker);
  return docker;
}

/** The modem's transport as docker-modem's constructor sets it (its typings leave these fields out). */
interface ModemTransport {
  readonly protocol: string;
  agent?: Agent;
}

/**
 * The agent for requests to the engine over plain HTTP (its Unix socket, or tcp:// without TLS).
 * - Node's agent works out a TLS server name for every request unless one is given, and testing the host for an
 *   IP address (net.isIP) first compiles a long IPv6 pattern: about 5 ms of a `clawbox run`'s start, for a name
 *   that plain HTTP never sends. This agent gives an empty one.
 * - docker-modem formats every request's options for its debug log (util.inspect, hidden properties, no depth
 *   limit) whether or not that log is on, and so would walk the agent's sockets and functions each time: the
 *   agent formats as its name.
 * Otherwise the settings of Node's global agent.
 */
class EngineAgent extends Agent {
  [inspect.custom](): string {
    return 'EngineAgent';
  }
}
let plainHttpAgent: EngineAgent | null = null;

/** The Docker engine client (DOCKER_HOST respected), not yet checked: pair it with `pingDocker`. */
export function dockerClient(): Dockerode {
  const docker = new (dockerodeClass())();
  const modem = docker.modem as unknown as ModemTransport;
  if (modem.protocol === 'http' && modem.agent === undefined) {
    // Node's agent adds its own options to every request's (a server name given is not worked out).
    const options: AgentOptions & { readonly servername: string } = { keepAlive: true, scheduling: 'lifo', timeout: 5000, servername: '' };
    modem.agent = plainHttpAgent ??= new EngineAgent(options);
  }
  return docker;
}

/** Resolves once the engine answers; else rejects with DOCKER_UNAVAILABLE, saying how to start it. */
export async function pingDocker(docker: Dockerode): Promise<void> {
  try {
    await docker.ping();
  } catch (err) {
    throw new ClawboxError(
      'DOCKER_UNAVAILABLE',
      `cannot reach the Docker engine (${(err as Error).message}); start dockerd, or run scripts/setup.sh`,
      { cause: err },
    );
  }
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

/**
 * `docker.createContainer(spec)`, with the spec sent once. dockerode hands a create's options to docker-modem both
 * as the body and, each object value as JSON, as the query string: a sandbox's spec (12 KB of JSON, most of it the
 * seccomp profile) added 20 KB to the request line, which this process percent-encoded and the engine parsed, at
 * every cold start. The engine reads a create's spec from the body only (its query takes `name` and `platform`,
 * which clawbox does not set); docker-modem sends `_query` and `_body` in place of the options when they are given.
 */
export function createContainer(docker: Dockerode, spec: Dockerode.ContainerCreateOptions): Promise<Dockerode.Container> {
  const split = { _query: {}, _body: spec };
  return docker.createContainer(split as Dockerode.ContainerCreateOptions);
}
