/**
 * The shared sandbox environment on this host: an internal-only network whose only way out is a gateway
 * container, which also sits on an egress network. Created once (labelled), reused by every run, swept by gc; a
 * gateway nobody uses exits by itself (`gateway.exit_when_unused`) and the next run starts it again.
 * There is a gateway per set of gateway settings in use (gateway-container.ts); runs with the same settings share it.
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
import {
  addressOn,
  controlSocketOf,
  ensureGatewayContainer,
  gatewayBlock,
  gatewayContainerName,
  gatewayDir,
  GATEWAY_DIGEST_LABEL,
  GATEWAY_PORTS,
  markGatewayUsed,
  waitForControl,
} from './gateway-container.js';
import { digestLabelOf, GATEWAY_IMAGE, requireImage } from './images.js';
import { readEnvironmentRecord, writeEnvironmentRecord } from './environment-record.js';
import { labelsFor } from './labels.js';
import { DEFAULT_STATE_DIR } from './state-dir.js';

export const SANDBOX_NETWORK = 'clawbox-sandboxes';
export const EGRESS_NETWORK = 'clawbox-egress';
export const SANDBOX_BRIDGE = 'clawbox-sbx0';
export { DEFAULT_STATE_DIR };
export const DEFAULT_AUDIT_TRAIL = '/var/log/clawbox/audit.log';
/**
 * How long a gateway container the runner starts waits for runs before it exits (`exit_when_unused` unset). Here and
 * not beside the schema: a value from the schema's module would build the schema (zod, about 10 ms) in every run
 * that its config cache spares the parse (src/cli/config-cache.ts).
 */
export const DEFAULT_GATEWAY_EXIT_WHEN_UNUSED = 10 * 60_000;
export { GATEWAY_PORTS };

export interface Environment {
  readonly network: { readonly name: string; readonly subnet: string; readonly gatewayIp: string };
  /** The name of the gateway container these settings got. */
  readonly gatewayContainer: string;
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
  /** Sandbox subnet (a /24); gateways take .2 to .7, sandboxes .10 and up. */
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
    const fresh = cached && Date.now() - cached.checkedAt < RECHECK_MS && (await alive(cached.env.control)) ? cached : null;
    if (fresh === null) cached?.env.close();
    // Another process's check (an earlier `clawbox run`) is reused for as long, if its gateway still runs.
    const reused = fresh ?? (await reuseRecorded(docker, stateDir, key));
    if (reused) {
      markGatewayUsed(gatewayDir(stateDir, reused.digest));
      return reused;
    }
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

/** A connection that is down (its gateway gone, or coming back) is not waited for: the environment is checked again. */
const alive = (control: GatewayControl): Promise<boolean> =>
  control.connected ? control.setHostAddresses(localAddresses()).then(() => true, () => false) : Promise.resolve(false);

/**
 * The environment another process checked less than RECHECK_MS ago, if the gateway it checked (same digest
 * label) still runs and answers; else null, and the caller checks everything.
 */
async function reuseRecorded(docker: Dockerode, stateDir: string, key: string): Promise<Checked | null> {
  const record = readEnvironmentRecord(stateDir, key, Date.now(), RECHECK_MS);
  if (record === null) return null;
  const gatewayContainer = gatewayContainerName(record.digest);
  // The container's check and the control connection's are independent round trips: both at once.
  const [gateway, control] = await Promise.all([
    docker.getContainer(gatewayContainer).inspect().catch(() => null),
    GatewayControl.open(controlSocketOf(gatewayDir(stateDir, record.digest))).then(
      async (opened) => {
        if (await alive(opened)) return opened;
        opened.close();
        return null;
      },
      () => null,
    ),
  ]);
  const sameGateway =
    gateway?.State.Running === true &&
    gateway.Config.Labels[GATEWAY_DIGEST_LABEL] === record.digest &&
    // A gateway made again (after a removal) may hold another address than the one the record hands out.
    addressOn(gateway, SANDBOX_NETWORK) === record.network.gatewayIp;
  if (!sameGateway || control === null) {
    control?.close();
    return null;
  }
  const env: Environment = {
    network: record.network,
    gatewayContainer,
    control,
    resolvConf: record.resolvConf,
    proxyEnv: record.proxyEnv,
    auditTrail: record.auditTrail,
    close: () => control.close(),
  };
  return { env, checkedAt: record.checkedAt, digest: record.digest };
}

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
  await ensureBridgeRules({ bridge: SANDBOX_BRIDGE, gateways: gatewayBlock(prefix) });

  const gatewayImage = await requireImage(docker, GATEWAY_IMAGE);
  // The gateway's identity: its settings and its image. Not the host's addresses: they change (new bridges,
  // DHCP) and are sent over the control socket instead, so a change never restarts a gateway under its sandboxes.
  const digest = createHash('sha256').update(configText).update(digestLabelOf(gatewayImage) ?? '').digest('hex').slice(0, 16);
  const dir = gatewayDir(stateDir, digest);
  mkdirSync(join(dir, 'control'), { recursive: true, mode: 0o700 });
  mkdirSync(dirname(auditTrail), { recursive: true });
  writeFileSync(join(dir, 'config.yml'), configText);
  markGatewayUsed(dir);
  const gatewayContainer = gatewayContainerName(digest);
  const spec = { stateDir, digest, auditTrail, sandboxNetwork: SANDBOX_NETWORK, egressNetwork: EGRESS_NETWORK, prefix };
  let gatewayIp = '';
  let control: GatewayControl | null = null;
  // A gateway found running as it exited unused has stopped by the time its control socket is given up on: it starts
  // again (where it was, if it can).
  for (let attempt = 0; control === null; attempt++) {
    if (attempt > 3) {
      throw new ClawboxError('SANDBOX_FAILED', `the gateway container ${gatewayContainer} keeps stopping as it starts; see 'docker logs ${gatewayContainer}'`);
    }
    if (attempt > 0) progress('gateway: it stopped as we came; starting it again');
    gatewayIp = await ensureGatewayContainer(docker, spec, progress);
    control = await waitForControl(docker, dir, gatewayContainer);
  }
  await control.setHostAddresses(localAddresses());

  const resolvConf = join(dir, 'resolv.conf');
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
    gatewayContainer,
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
    `    exit_when_unused: ${config.gateway.exit_when_unused ?? DEFAULT_GATEWAY_EXIT_WHEN_UNUSED}ms`,
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
