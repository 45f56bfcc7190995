/**
 * The one schema of clawbox's config file: the seed document's `sandbox:` keys plus `sandbox.gateway` and
 * `sandbox.tools`. Every object is strict (a misspelt key is an error, never silently ignored) and every unit is
 * parsed here, so the rest of the code only sees checked numbers. Types are inferred from the schema, never
 * written twice.
 */
import { z } from 'zod';
import {
  parseCpus,
  parseCpuset,
  parseDuration,
  parseDurationOrOff,
  parseIntIn,
  parseListenAddress,
  parseSize,
  type Parsed,
} from './units.js';
import { parseHostPattern } from '../policy/pattern.js';

/** A value written in a human unit; the error text comes from the unit parser. */
function unit<T>(parse: (raw: unknown) => Parsed<T>) {
  return z.unknown().transform((raw, ctx): T => {
    const parsed = parse(raw);
    if (parsed.ok) return parsed.value;
    ctx.addIssue({ code: 'custom', message: parsed.error });
    return z.NEVER;
  });
}

const hostEntry = z.string().superRefine((raw, ctx) => {
  const parsed = parseHostPattern(raw);
  if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.error });
});

// Linux capabilities (capabilities(7)); 'CAP_' prefix optional, as Docker accepts both.
export const CAPABILITIES = [
  'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF', 'CHECKPOINT_RESTORE', 'CHOWN',
  'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE',
  'LINUX_IMMUTABLE', 'MAC_ADMIN', 'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN', 'NET_BIND_SERVICE', 'NET_BROADCAST',
  'NET_RAW', 'PERFMON', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT',
  'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT', 'SYS_PTRACE', 'SYS_RAWIO', 'SYS_RESOURCE', 'SYS_TIME',
  'SYS_TTY_CONFIG', 'SYSLOG', 'WAKE_ALARM',
] as const;
export type Capability = (typeof CAPABILITIES)[number];
const CAPABILITY_SET: ReadonlySet<string> = new Set(CAPABILITIES);

const capability = z.string().transform((raw, ctx): Capability | 'ALL' => {
  const name = raw.trim().toUpperCase().replace(/^CAP_/, '');
  if (name === 'ALL' || CAPABILITY_SET.has(name)) return name as Capability | 'ALL';
  ctx.addIssue({ code: 'custom', message: `expected a Linux capability like 'CAP_NET_BIND_SERVICE', got '${raw}'` });
  return z.NEVER;
});

const absolutePath = z.string().refine((p) => p.startsWith('/') && !p.includes('\0'), {
  message: 'expected an absolute path starting with /',
});

const syscall = z.string().regex(/^[a-z0-9_]{1,64}$/, { message: "expected a syscall name like 'ptrace'" });

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Limits that a host may be unable to enforce; naming one in `accept_degraded` runs without it (with a warning). */
export const DEGRADABLE = [
  'disk', 'disk_iops', 'disk_io_weight', 'cpuset', 'memory_swap', 'selinux_label', 'apparmor_profile',
] as const;

const resourceLimits = z.strictObject({
  memory: unit(parseSize).prefault('2gb'),
  memory_swap: unit(parseSize).optional(),
  memory_reservation: unit(parseSize).optional(),
  cpus: unit(parseCpus).prefault('1'),
  cpu_shares: unit(parseIntIn(2, 262144, '1024')).optional(),
  cpuset: unit(parseCpuset).optional(),
  disk: unit(parseSize).optional(),
  disk_iops: unit(parseIntIn(1, 1_000_000, '1000')).optional(),
  disk_io_weight: unit(parseIntIn(10, 1000, '500')).optional(),
  pids: unit(parseIntIn(8, 1_000_000, '256')).prefault(256),
});

const mount = z.strictObject({
  source: absolutePath,
  target: absolutePath,
  mode: z.enum(['ro', 'rw']).default('ro'),
});

const logging = z.strictObject({
  enabled: z.boolean().default(true),
  level: z.enum(LOG_LEVELS).default('info'),
  capture_stdout: z.boolean().default(true),
  capture_stderr: z.boolean().default(true),
  max_output_size: unit(parseSize).prefault('10mb'),
  audit_trail: absolutePath.optional(),
});

const listen = (fallback: string) => unit((raw) => parseListenAddress(raw)).prefault(fallback);

const gateway = z.strictObject({
  http: listen('127.0.0.1:3128'),
  socks: listen('127.0.0.1:1080'),
  dns: listen('127.0.0.1:5353'),
  /** Resolvers the gateway asks; default: the nameservers of /etc/resolv.conf. */
  upstream_dns: z
    .union([unit((raw) => parseListenAddress(raw, 53)), z.array(unit((raw) => parseListenAddress(raw, 53))).min(1)])
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .optional(),
  /** Ports that an allowed_hosts entry without ':port' allows. */
  default_ports: z.array(z.number().int().min(1).max(65535)).min(1).default([80, 443]),
  /** More addresses to treat as the host's own (denied unless named exactly in allowed_hosts). */
  host_addresses: z.array(z.string()).default([]),
  max_header_size: unit(parseSize).prefault('16k'),
  handshake_timeout: unit(parseDuration).prefault('10s'),
  connect_timeout: unit(parseDuration).prefault('10s'),
  idle_timeout: unit(parseDuration).prefault('5m'),
  /**
   * A gateway with a control socket exits (status 0) once no runner has been connected to it for this long; 0 or
   * `off`: never. Unset: the runner's gateway containers use DEFAULT_GATEWAY_EXIT_WHEN_UNUSED (runner/environment.ts),
   * and `clawbox proxy` never exits by itself. Parsed, milliseconds.
   */
  exit_when_unused: unit(parseDurationOrOff).optional(),
});

/**
 * Warm pool: sandboxes created and started ahead of time (the tool's command not yet given), one per tool call,
 * destroyed after it. A pooled sandbox is removed unused after `idle_timeout`. The CLI's refill helper stays up as
 * a resident runner that serves the next `clawbox run`s of such a config, until none came for
 * `runner_idle_timeout` (src/cli/resident-runner.ts). `network_holders`: how many containers that only hold an
 * address on the sandbox network wait, for any config's sandbox that the pool has nothing for to join
 * (runner/network-holder.ts); they wait `idle_timeout` too. A config that keeps a pool or holders keeps a runner as
 * long as they wait (`idle_timeout`) unless it says otherwise; 0 or `off` keeps none; without either there is none
 * unless asked for. Parsed, it is always a number of milliseconds, 0 for none.
 */
const pool = z
  .strictObject({
    size: unit(parseIntIn(0, 32, '2')).prefault(0),
    idle_timeout: unit(parseDuration).prefault('5m'),
    runner_idle_timeout: unit(parseDurationOrOff).optional(),
    network_holders: unit(parseIntIn(0, 32, '1')).prefault(0),
  })
  .transform(({ size, idle_timeout, runner_idle_timeout, network_holders }) => ({
    size,
    idle_timeout,
    runner_idle_timeout: runner_idle_timeout ?? (size > 0 || network_holders > 0 ? idle_timeout : 0),
    network_holders,
  }));

/** Per-tool additions: hosts allowed or denied for that tool's sandbox only. */
const tool = z.strictObject({
  allowed_hosts: z.array(hostEntry).default([]),
  denied_hosts: z.array(hostEntry).default([]),
  timeout: unit(parseDuration).optional(),
  image: z.string().min(1).optional(),
});

export const sandboxSchema = z.strictObject({
  enabled: z.boolean().default(true),
  engine: z.literal('docker', { message: "expected 'docker' (the only engine clawbox drives)" }).default('docker'),
  default_image: z.string().min(1).default('openclaw-sandbox:latest'),
  timeout: unit(parseDuration).prefault(300),
  resource_limits: resourceLimits.prefault({}),
  accept_degraded: z.array(z.enum(DEGRADABLE)).default([]),
  network_policy: z.enum(['deny-by-default', 'allow-all']).default('deny-by-default'),
  allowed_hosts: z.array(hostEntry).default([]),
  denied_hosts: z.array(hostEntry).default([]),
  drop_capabilities: z.array(capability).default(['ALL']),
  keep_capabilities: z.array(capability).default([]),
  user: z.string().regex(/^\d+(:\d+)?$/, { message: "expected a numeric UID[:GID] like '65534:65534'" }).default('65534:65534'),
  mounts: z.array(mount).default([]),
  blocked_paths: z.array(absolutePath).default(['/home', '/root', '/.ssh', '/etc/passwd', '/var/log', '/proc', '/sys', '/var/run/docker.sock', '/run/docker.sock']),
  selinux_label: z.string().min(1).optional(),
  apparmor_profile: z.string().min(1).optional(),
  readonly_root: z.boolean().default(true),
  writable_tmpfs: z.boolean().default(true),
  tmpfs_size: unit(parseSize).prefault('100m'),
  seccomp_profile: z.string().min(1).default('docker-default'),
  blocked_syscalls: z.array(syscall).default([]),
  logging: logging.prefault({}),
  gateway: gateway.prefault({}),
  pool: pool.prefault({}),
  tools: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/), tool).prefault({}),
});

export const configSchema = z.strictObject({ sandbox: sandboxSchema.prefault({}) });

export type ClawboxConfig = z.output<typeof configSchema>;
export type SandboxConfig = ClawboxConfig['sandbox'];
export type GatewayConfig = SandboxConfig['gateway'];
export type ToolConfig = SandboxConfig['tools'][string];
