/**
 * The shared sandbox environment on this host: an internal-only network whose only way out is the gateway
 * container, which also sits on an egress network. Created once (labelled), reused by every run, swept by gc.
 *
 *   sandbox ──(clawbox-sandboxes: internal, no ICC, host INPUT dropped)──▶ gateway ──(clawbox-egress)──▶ world
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type Dockerode from 'dockerode';
import type { SandboxConfig } from '../src/config/schema.js';
import { ClawboxError } from '../src/errors.js';
import { localAddresses } from '../proxy/local-addresses.js';
import { ensureBridgeRules } from './firewall.js';
import { GatewayControl } from './gateway-control.js';
import { digestLabelOf, GATEWAY_IMAGE, requireImage } from './images.js';
import { ignoringGone } from './docker-client.js';
import { readEnvironmentRecord, writeEnvironmentRecord } from './environment-record.js';
import { labelsFor } from './labels.js';

export const SANDBOX_NETWORK = 'clawbox-sandboxes';
export const EGRESS_NETWORK = 'clawbox-egress';
export const SANDBOX_BRIDGE = 'clawbox-sbx0';
export const GATEWAY_CONTAINER = 'clawbox-gateway';
export const DEFAULT_STATE_DIR = '/run/clawbox';
export const DEFAULT_AUDIT_TRAIL = '/var/log/clawbox/audit.log';

const GATEWAY_DIGEST_LABEL = 'dev.clawbox.gateway-digest';
/** The gateway's listeners inside its container. */
export const GATEWAY_PORTS = { http: 3128, socks: 1080, dns: 53 } as const;

export interface Environment {
  readonly network: { readonly name: string; readonly subnet: string; readonly gatewayIp: string };
  readonly control: GatewayControl;
  /** `nameserver <gateway>`: bind-mounted over each sandbox's /etc/resolv.conf. */
  readonly resolvConf: string;
  /** HTTP_PROXY and friends for the sandbox. */
  readonly proxyEnv: Readonly<Record<string, string>>;
  readonly auditTrail: string;
  close(): void;
}

export interface EnvironmentOptions {
  readonly stateDir?: string;
  /** Sandbox subnet; the gateway takes .2, sandboxes .10 and up. */
  readonly subnet?: string;
  readonly onProgress?: (step: string) => void;
}

/**
 * Brings the networks, firewall rules and gateway container up (reusing what is already right). Concurrent
 * calls in one process share one bring-up; concurrent runners meet at Docker's name conflict and wait. A check
 * is trusted for RECHECK_MS: within this process, and by other processes through its record
 * (environment-record.ts) as long as the gateway it checked still runs and answers.
 */
export async function ensureEnvironment(docker: Dockerode, config: SandboxConfig, options: EnvironmentOptions = {}): Promise<Environment> {
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const auditTrail = config.logging.audit_trail ?? DEFAULT_AUDIT_TRAIL;
  const configText = gatewayConfig(config, auditTrail);
  // Everything the environment is made from: the gateway's own config text carries the audit trail, the level
  // and the gateway settings (a key without the level once handed a debug run the running info-level gateway).
  const key = [stateDir, options.subnet ?? '', configText].join('\0');
  const previous = bringUps.get(key);
  const mine = (async (): Promise<Checked> => {
    const cached = await previous?.catch(() => null);
    // Within a process, a checked environment is reused for a while. Sending the host's current addresses
    // both keeps them fresh and proves the gateway still answers.
    if (cached && Date.now() - cached.checkedAt < RECHECK_MS && (await alive(cached.env.control))) return cached;
    cached?.env.close();
    // Another process's check (an earlier `clawbox run`) is reused for as long, if its gateway still runs.
    const recorded = await reuseRecorded(docker, stateDir, key);
    if (recorded) return recorded;
    const checked = await bringUp(docker, { auditTrail, configText }, options);
    const { env } = checked;
    writeEnvironmentRecord(stateDir, {
      key,
      digest: checked.digest,
      checkedAt: checked.checkedAt,
      network: env.network,
      resolvConf: env.resolvConf,
      proxyEnv: env.proxyEnv,
      auditTrail: env.auditTrail,
    });
    return checked;
  })();
  bringUps.set(key, mine);
  return (await mine).env;
}

const alive = (control: GatewayControl): Promise<boolean> => control.setHostAddresses(localAddresses()).then(() => true, () => false);

/**
 * The environment another process checked less than RECHECK_MS ago, if the gateway it checked (same digest
 * label) still runs and answers; else null, and the caller checks everything.
 */
async function reuseRecorded(docker: Dockerode, stateDir: string, key: string): Promise<Checked | null> {
  const record = readEnvironmentRecord(stateDir, key, Date.now(), RECHECK_MS);
  if (record === null) return null;
  const gateway = await docker.getContainer(GATEWAY_CONTAINER).inspect().catch(() => null);
  if (!gateway?.State.Running || gateway.Config.Labels[GATEWAY_DIGEST_LABEL] !== record.digest) return null;
  const control = await GatewayControl.open(controlSocket(stateDir)).catch(() => null);
  if (control === null) return null;
  if (!(await alive(control))) {
    control.close();
    return null;
  }
  const env: Environment = {
    network: record.network,
    control,
    resolvConf: record.resolvConf,
    proxyEnv: record.proxyEnv,
    auditTrail: record.auditTrail,
    close: () => control.close(),
  };
  return { env, checkedAt: record.checkedAt, digest: record.digest };
}

const controlSocket = (stateDir: string): string => join(stateDir, 'gateway', 'control', 'control.sock');

/** Closes the control connections this process holds (tests and long-lived callers that want to exit). */
export async function closeEnvironments(): Promise<void> {
  const all = [...bringUps.values()];
  bringUps.clear();
  for (const entry of await Promise.allSettled(all)) if (entry.status === 'fulfilled') entry.value.env.close();
}

/** How long a checked environment (networks, firewall rules, gateway) is trusted before it is checked again. */
const RECHECK_MS = 30_000;
/** A checked environment, when it was checked, and the digest of the gateway that was checked. */
interface Checked {
  readonly env: Environment;
  readonly checkedAt: number;
  readonly digest: string;
}
const bringUps = new Map<string, Promise<Checked>>();

/** The gateway's config file and the audit trail it names (see gatewayConfig). */
interface GatewaySettings {
  readonly auditTrail: string;
  readonly configText: string;
}

async function bringUp(docker: Dockerode, { auditTrail, configText }: GatewaySettings, options: EnvironmentOptions): Promise<Checked> {
  const checkedAt = Date.now();
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const subnet = options.subnet ?? '10.213.0.0/24';
  const prefix = subnet.split('.').slice(0, 3).join('.');
  const gatewayIp = `${prefix}.2`;
  const progress = options.onProgress ?? (() => undefined);

  await ensureNetwork(docker, SANDBOX_NETWORK, {
    Internal: true,
    IPAM: { Driver: 'default', Config: [{ Subnet: subnet, Gateway: `${prefix}.1` }] },
    Options: {
      'com.docker.network.bridge.name': SANDBOX_BRIDGE,
      'com.docker.network.bridge.enable_icc': 'false',
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
    },
  });
  await ensureNetwork(docker, EGRESS_NETWORK, {});
  await ensureBridgeRules({ bridge: SANDBOX_BRIDGE, gatewayIp });

  const gatewayDir = join(stateDir, 'gateway');
  const controlDir = join(gatewayDir, 'control');
  mkdirSync(controlDir, { recursive: true, mode: 0o700 });
  mkdirSync(dirname(auditTrail), { recursive: true });
  writeFileSync(join(gatewayDir, 'config.yml'), configText);
  const gatewayImage = await requireImage(docker, GATEWAY_IMAGE);
  // The host's addresses are not part of the digest: they change (new bridges, DHCP) and are sent over the
  // control socket instead, so a change never restarts the gateway under running sandboxes.
  const digest = createHash('sha256')
    .update(configText)
    .update(digestLabelOf(gatewayImage) ?? '')
    .update(gatewayIp)
    .digest('hex')
    .slice(0, 16);

  const running = await docker.getContainer(GATEWAY_CONTAINER).inspect().catch(() => null);
  if (!running || !running.State.Running || running.Config.Labels[GATEWAY_DIGEST_LABEL] !== digest) {
    progress(running ? 'gateway: restarting with the new settings' : 'gateway: starting');
    if (running) await ignoringGone(() => docker.getContainer(GATEWAY_CONTAINER).remove({ force: true }));
    try {
      await startGatewayContainer(docker, { digest, gatewayIp, gatewayDir, controlDir, auditTrail });
    } catch (err) {
      // Another runner is starting the same gateway right now: use theirs.
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
    }
  }
  const control = await waitForControl(controlSocket(stateDir));
  await control.setHostAddresses(localAddresses());

  const resolvConf = join(gatewayDir, 'resolv.conf');
  writeFileSync(resolvConf, `nameserver ${gatewayIp}\noptions ndots:0 timeout:2 attempts:2\n`);
  const httpProxy = `http://${gatewayIp}:${GATEWAY_PORTS.http}`;
  const proxyEnv = {
    HTTP_PROXY: httpProxy,
    HTTPS_PROXY: httpProxy,
    http_proxy: httpProxy,
    https_proxy: httpProxy,
    ALL_PROXY: `socks5h://${gatewayIp}:${GATEWAY_PORTS.socks}`,
    all_proxy: `socks5h://${gatewayIp}:${GATEWAY_PORTS.socks}`,
    NO_PROXY: 'localhost,127.0.0.1,::1',
    no_proxy: 'localhost,127.0.0.1,::1',
  };
  const env: Environment = {
    network: { name: SANDBOX_NETWORK, subnet, gatewayIp },
    control,
    resolvConf,
    proxyEnv,
    auditTrail,
    close: () => control.close(),
  };
  return { env, checkedAt, digest };
}

/**
 * The gateway container's own config: no host is allowed by default (a client the runner did not register gets
 * nothing); every sandbox is registered with its complete lists. So one gateway serves runs of any config.
 */
function gatewayConfig(config: SandboxConfig, auditTrail: string): string {
  const upstream = config.gateway.upstream_dns?.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`));
  return [
    'sandbox:',
    '  network_policy: deny-by-default',
    '  logging:',
    `    level: ${config.logging.level === 'silent' ? 'info' : config.logging.level}`,
    `    audit_trail: ${JSON.stringify(auditTrail)}`,
    '  gateway:',
    `    default_ports: [${config.gateway.default_ports.join(', ')}]`,
    `    connect_timeout: ${config.gateway.connect_timeout}ms`,
    `    idle_timeout: ${config.gateway.idle_timeout}ms`,
    `    handshake_timeout: ${config.gateway.handshake_timeout}ms`,
    `    max_header_size: ${config.gateway.max_header_size}`,
    ...(upstream ? [`    upstream_dns: ${JSON.stringify(upstream)}`] : []),
    '',
  ].join('\n');
}

async function ensureNetwork(docker: Dockerode, name: string, options: Partial<Dockerode.NetworkCreateOptions>): Promise<void> {
  const existing = await docker.getNetwork(name).inspect().catch(() => null);
  if (existing) return;
  try {
    await docker.createNetwork({ Name: name, Driver: 'bridge', CheckDuplicate: true, Labels: labelsFor('network'), ...options });
  } catch (err) {
    // Another runner created it between our look and our create.
    if ((err as { statusCode?: number }).statusCode !== 409) {
      throw new ClawboxError('SANDBOX_FAILED', `cannot create Docker network ${name}: ${(err as Error).message}`, { cause: err });
    }
  }
}

interface GatewayContainerSpec {
  readonly digest: string;
  readonly gatewayIp: string;
  readonly gatewayDir: string;
  readonly controlDir: string;
  readonly auditTrail: string;
}

async function startGatewayContainer(docker: Dockerode, spec: GatewayContainerSpec): Promise<void> {
  const auditDir = dirname(spec.auditTrail);
  const container = await docker.createContainer({
    name: GATEWAY_CONTAINER,
    Image: GATEWAY_IMAGE,
    Entrypoint: ['/usr/local/bin/node', '/opt/clawbox/dist/src/cli/main.js'],
    // Root in the container but with no capability at all: it may write the root-owned control and audit
    // directories mounted in, nothing more. Port 53 is bound thanks to the namespaced sysctl below.
    User: '0:0',
    Cmd: [
      'proxy',
      '--config', '/etc/clawbox/config.yml',
      '--http', `0.0.0.0:${GATEWAY_PORTS.http}`,
      '--socks', `0.0.0.0:${GATEWAY_PORTS.socks}`,
      '--dns', `0.0.0.0:${GATEWAY_PORTS.dns}`,
      '--control', '/run/clawbox/control.sock',
    ],
    Labels: labelsFor('gateway', { [GATEWAY_DIGEST_LABEL]: spec.digest }),
    HostConfig: {
      NetworkMode: EGRESS_NETWORK,
      Binds: [
        `${join(spec.gatewayDir, 'config.yml')}:/etc/clawbox/config.yml:ro`,
        `${spec.controlDir}:/run/clawbox:rw`,
        `${auditDir}:${auditDir}:rw`,
      ],
      RestartPolicy: { Name: 'unless-stopped' },
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      Sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
      SecurityOpt: ['no-new-privileges:true'],
      Memory: 512 * 1024 * 1024,
      PidsLimit: 256,
      Init: true,
    },
  });
  await docker.getNetwork(SANDBOX_NETWORK).connect({
    Container: container.id,
    EndpointConfig: { IPAMConfig: { IPv4Address: spec.gatewayIp } },
  });
  await container.start();
}

async function waitForControl(path: string): Promise<GatewayControl> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const control = await GatewayControl.open(path);
      await control.ping();
      return control;
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new ClawboxError(
    'SANDBOX_FAILED',
    `the gateway container did not come up (control socket ${path}: ${(lastError as Error).message}); see 'docker logs ${GATEWAY_CONTAINER}'`,
  );
}
