/**
 * Network holders: containers that only hold an address on the sandbox network, each for one sandbox that joins
 * its network namespace (`NetworkMode: container:<holder>`) when the warm pool has nothing for its config.
 *
 * Why: most of a container's start in this engine is its network. Docker 20.10 runs a hook at the start of every
 * container with a network namespace of its own, `none` included (libnetwork-setkey: the engine's own binary
 * executed again), and then makes the endpoint: created and started through the API, a container on the sandbox
 * network takes 320–360 ms to its end here, one with no network 200–230, one that joins a running container's
 * namespace 100–145 (`docker start -a`, six of each). A holder is the same for every config, so one kept ready
 * serves whichever config comes next, where a pooled sandbox serves only its own.
 *
 * What the sandbox gets is what a cold one gets: its own address on the sandbox network (the holder's, found free
 * as a cold sandbox's is), the same host name and /etc/hosts, the sandbox's own resolv.conf, and a namespace in
 * which nothing listens or sends (the holder runs the launcher, which blocks reading a stdin that nobody writes).
 * The holder cannot see or signal the sandbox (their PID namespaces differ) and holds no capability. It is removed
 * after its sandbox: removing it first would take the sandbox's interface away, not leave it running elsewhere.
 */
import { createHash } from 'node:crypto';
import type Dockerode from 'dockerode';
import { LAUNCHER_PATH } from './launcher.js';
import { DEFAULT_USER, SANDBOX_HOSTNAME } from './spec.js';

// Enough for docker-init and the launcher (a static binary waiting in read(2)), which use well under 1 MiB.
const HOLDER_MEMORY = 16 * 1024 * 1024;
const HOLDER_PIDS = 4;

/** A holder's container, apart from its labels and address (createStartedSandbox adds those). */
export function holderShape(networkName: string, image: string, launcher: string): Dockerode.ContainerCreateOptions {
  return {
    Image: image,
    Entrypoint: [LAUNCHER_PATH],
    Cmd: [],
    User: DEFAULT_USER,
    Hostname: SANDBOX_HOSTNAME,
    // The launcher waits for a message on stdin: held open and never written, it waits for as long as the holder lives.
    OpenStdin: true,
    StdinOnce: false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    HostConfig: {
      NetworkMode: networkName,
      Init: true,
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      IpcMode: 'private',
      Memory: HOLDER_MEMORY,
      PidsLimit: HOLDER_PIDS,
      LogConfig: { Type: 'none', Config: {} },
      Mounts: [{ Type: 'bind', Source: launcher, Target: LAUNCHER_PATH, ReadOnly: true }],
    },
  };
}

/** The holders of one shape for one gateway: the pool key they wait under (the gateway's address is on them too). */
export function holderKey(shape: Dockerode.ContainerCreateOptions, gatewayIp: string): string {
  return createHash('sha256').update(JSON.stringify(shape)).update(`\0${gatewayIp}`).digest('hex').slice(0, 16);
}

/**
 * A sandbox's shape to join `holderId`'s network namespace: the engine refuses a host name of its own there (the
 * holder's, the same, is used) and any network settings.
 */
export function joinedShape(shape: Dockerode.ContainerCreateOptions, holderId: string): Dockerode.ContainerCreateOptions {
  const joined: Dockerode.ContainerCreateOptions = { ...shape, HostConfig: { ...shape.HostConfig, NetworkMode: `container:${holderId}` } };
  delete joined.Hostname;
  delete joined.NetworkingConfig;
  return joined;
}
