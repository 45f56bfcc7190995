import { loadConfig, type ConfigSource } from '../config/load.js';
import type { SandboxConfig } from '../config/schema.js';
import { parseListenAddress, type ListenAddress } from '../config/units.js';
import { ClawboxError } from '../errors.js';
import { parseHost } from '../net/host.js';
import { createAppLogger } from '../log.js';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { runGatewayWorker, startGatewayCluster } from '../../proxy/cluster.js';
import { startGateway } from '../../proxy/gateway.js';
import { tuneHeapForGateway } from '../../proxy/heap-tuning.js';
import { describeHelperThreadPriority, lowerHelperThreadPriority } from '../../proxy/helper-threads.js';
import { parseCommandArgs } from './args.js';

export const PROXY_HELP = `Usage: clawbox proxy [--config FILE] [--http HOST:PORT] [--socks HOST:PORT] [--dns HOST:PORT]
                     [--upstream-dns HOST[:PORT]]... [--host-address IP]... [--control PATH] [--workers N]

Runs the egress gateway: an HTTP proxy (CONNECT and absolute-URI), a SOCKS5 proxy and a DNS resolver that
enforce sandbox.allowed_hosts / denied_hosts and write one audit line per decision and per close.

  --config FILE          config file (default: $CLAWBOX_CONFIG, else ~/.openclaw/config.yml)
  --http HOST:PORT       HTTP proxy listener            (sandbox.gateway.http, default 127.0.0.1:3128)
  --socks HOST:PORT      SOCKS5 listener                (sandbox.gateway.socks, default 127.0.0.1:1080)
  --dns HOST:PORT        DNS listener, UDP and TCP      (sandbox.gateway.dns, default 127.0.0.1:5353)
  --upstream-dns ADDR    resolver the gateway asks; repeatable (sandbox.gateway.upstream_dns)
  --host-address IP      another address of the host to deny; repeatable (sandbox.gateway.host_addresses)
  --control PATH         Unix socket on which 'clawbox run' registers per-sandbox policies; with
                         sandbox.gateway.exit_when_unused the gateway exits once no runner has been
                         connected for that long
  --workers N            gateway processes sharing the listeners (default: the number of CPUs; 1 = one process).
                         At low load one of them accepts every TCP connection; the others join while
                         busy connections overlap (held ones idle for a second do not count)

Signals: SIGHUP reloads the policy from the config file (a bad file is reported, the old policy kept);
SIGINT / SIGTERM stop cleanly.`;

const OPTIONS = {
  config: { type: 'string' },
  http: { type: 'string' },
  socks: { type: 'string' },
  dns: { type: 'string' },
  'upstream-dns': { type: 'string', multiple: true },
  'host-address': { type: 'string', multiple: true },
  control: { type: 'string' },
  workers: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface GatewayOverrides {
  readonly http?: ListenAddress;
  readonly socks?: ListenAddress;
  readonly dns?: ListenAddress;
  readonly upstream_dns?: ListenAddress[];
  readonly host_addresses?: string[];
}

function flagAddress(flag: string, raw: string, defaultPort?: number): ListenAddress {
  const parsed = parseListenAddress(raw, defaultPort);
  if (!parsed.ok) throw new ClawboxError('CLI_USAGE', `clawbox proxy --${flag}: ${parsed.error}`);
  return parsed.value;
}

/** CLI flags win over the file; they are parsed by the same unit parsers as the config keys. */
function applyOverrides(source: ConfigSource, overrides: GatewayOverrides): SandboxConfig {
  const sandbox = source.config.sandbox;
  const hostAddresses = [...sandbox.gateway.host_addresses, ...(overrides.host_addresses ?? [])];
  return { ...sandbox, gateway: { ...sandbox.gateway, ...overrides, host_addresses: hostAddresses } };
}

function flagIp(raw: string): string {
  const parsed = parseHost(raw, { brackets: 'forbidden' });
  if (!parsed.ok || parsed.host.kind !== 'ip') throw new ClawboxError('CLI_USAGE', `clawbox proxy --host-address: expected an IP address, got '${raw}'`);
  return parsed.host.ip.text;
}

function flagWorkers(raw: string | undefined): number {
  if (raw === undefined) return availableParallelism();
  if (!/^[1-9][0-9]{0,2}$/.test(raw)) throw new ClawboxError('CLI_USAGE', `clawbox proxy --workers: expected a number from 1 to 999, got '${raw}'`);
  return Number(raw);
}

export async function proxyCommand(args: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs('proxy', args, OPTIONS);
  if (values.help) {
    process.stdout.write(`${PROXY_HELP}\n`);
    return 0;
  }
  tuneHeapForGateway();
  const helperThreads = lowerHelperThreadPriority();
  if (cluster.isWorker) {
    // A worker of `--workers N`: config, registrations and reloads all come from the primary.
    const workerLog = createAppLogger(process.env.CLAWBOX_WORKER_LOG === 'silent' ? 'silent' : 'info');
    if ('unavailable' in helperThreads) workerLog.warn({ helper_threads: describeHelperThreadPriority(helperThreads) }, "gateway worker's helper threads keep the event loop's priority");
    return runGatewayWorker(workerLog);
  }
  const workers = flagWorkers(values.workers);
  const overrides: GatewayOverrides = {
    ...(values.http === undefined ? {} : { http: flagAddress('http', values.http) }),
    ...(values.socks === undefined ? {} : { socks: flagAddress('socks', values.socks) }),
    ...(values.dns === undefined ? {} : { dns: flagAddress('dns', values.dns) }),
    ...(values['upstream-dns'] === undefined
      ? {}
      : { upstream_dns: values['upstream-dns'].map((raw) => flagAddress('upstream-dns', raw, 53)) }),
    ...(values['host-address'] === undefined ? {} : { host_addresses: values['host-address'].map(flagIp) }),
  };
  const source = loadConfig(values.config);
  const config = applyOverrides(source, overrides);
  const log = createAppLogger(config.logging.level === 'silent' ? 'silent' : 'info');
  if (!config.logging.enabled) log.warn('audit trail disabled by sandbox.logging.enabled: false');
  const exitWhenUnused = config.gateway.exit_when_unused ?? 0;
  if (exitWhenUnused > 0 && !values.control) {
    throw new ClawboxError('CONFIG_INVALID', `sandbox.gateway.exit_when_unused (${exitWhenUnused} ms) needs --control: without a control socket no runner ever connects, so the gateway would only ever exit`, {
      details: ["set it to 'off' (or leave it out) for a gateway run on its own"],
    });
  }
  // The gateway's own exit once no runner has been connected for that long: the same clean stop as SIGTERM.
  let stop: (reason: string) => void = () => undefined;
  const onUnused = (): void => {
    log.info({ exit_when_unused_ms: exitWhenUnused }, 'no runner connected for sandbox.gateway.exit_when_unused: exiting');
    stop('unused');
  };
  const controlOption = values.control ? { controlSocket: values.control, onUnused } : {};
  const gateway = workers === 1 ? await startGateway({ config, log, ...controlOption }) : await startGatewayCluster({ config, log, workers, ...controlOption });
  const { http, socks, dns } = gateway.addresses;
  log.info(
    {
      config: source.path ?? '(none: secure defaults)',
      http: `${http.address}:${http.port}`,
      socks5: `${socks.address}:${socks.port}`,
      dns: `${dns.address}:${dns.port}`,
      audit: config.logging.audit_trail ?? 'stdout',
      workers,
      dns_io: gateway.dnsIo,
      tcp_relay: gateway.tcpRelay,
      helper_threads: describeHelperThreadPriority(helperThreads),
    },
    'clawbox gateway listening',
  );

  process.on('SIGHUP', () => {
    void (async () => {
      try {
        const next = loadConfig(values.config);
        await gateway.reload(applyOverrides(next, overrides));
        log.info({ config: next.path }, 'policy reloaded');
      } catch (err) {
        const details = err instanceof ClawboxError ? err.details : [];
        log.error({ err: err instanceof Error ? err.message : String(err), details }, 'reload failed; keeping the old policy');
      }
    })();
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    stop = (reason: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ reason }, 'stopping');
      void gateway.close().then(() => resolve(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
