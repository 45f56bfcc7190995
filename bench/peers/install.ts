/**
 * Installs the peers the bench compares against: Debian packages (only those missing) and the npm peers
 * (proxy-chain, sandbox-runtime) into bench/.peers (never into package.json). Package postinst scripts must not
 * start system instances on the ports we use, so a policy-rc.d that refuses every start is in place during the
 * install (Debian's documented mechanism, honoured by invoke-rc.d and deb-systemd-invoke); anything started anyway
 * is stopped after.
 * A failure is returned per package, so the table can say "n/a (reason)" instead of the bench crashing.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failure, ok, progress, run, which } from '../lib/exec.js';

/** Debian package → a binary it ships (how we find it) and the init service it registers. */
export const APT_PEERS = {
  squid: { bin: 'squid', service: 'squid' },
  tinyproxy: { bin: 'tinyproxy', service: 'tinyproxy' },
  'dante-server': { bin: 'danted', service: 'danted' },
  dnsmasq: { bin: 'dnsmasq', service: 'dnsmasq' },
  unbound: { bin: 'unbound', service: 'unbound' },
  dnsperf: { bin: 'dnsperf', service: null },
} as const;
export type AptPeer = keyof typeof APT_PEERS;

export const PEERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '.peers');
/**
 * npm peers, pinned. sandbox-runtime (Anthropic's, the TypeScript sandbox whose HTTP and SOCKS5 proxies filter by
 * domain) declares Node >= 22.12 but its proxies run on this Node 20, as clawbox and proxy-chain do.
 */
export const NPM_PEERS = { 'proxy-chain': '3.0.1', '@anthropic-ai/sandbox-runtime': '0.0.83' } as const;
export type NpmPeer = keyof typeof NPM_PEERS;

export interface InstallReport {
  /** Absent key: installed and found. Present: why it is unavailable. */
  readonly unavailable: Partial<Record<AptPeer | NpmPeer, string>>;
  /** Each npm peer's package directory, when it installed. */
  readonly npmPeerDirs: Partial<Record<NpmPeer, string>>;
}

const POLICY_RC = '/usr/sbin/policy-rc.d';

function aptInstall(packages: readonly string[]): string | null {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const args = ['install', '-y', '-q', '--no-install-recommends', ...packages];
  let r = run('apt-get', args, { env, timeoutMs: 420_000 });
  if (!ok(r)) {
    // A fresh machine often has no (or stale) package lists: update once and retry.
    progress('apt-get install failed; running apt-get update and retrying');
    run('apt-get', ['update', '-q'], { env, timeoutMs: 180_000 });
    r = run('apt-get', args, { env, timeoutMs: 420_000 });
  }
  return ok(r) ? null : failure(r);
}

function stopServices(services: readonly string[]): void {
  const systemd = existsSync('/run/systemd/system');
  for (const service of services) {
    if (systemd) run('systemctl', ['stop', service], { timeoutMs: 30_000 });
    else run('sh', ['-c', `[ -x /etc/init.d/${service} ] && /etc/init.d/${service} stop`], { timeoutMs: 30_000 });
  }
}

export function installPeers(): InstallReport {
  const unavailable: Partial<Record<AptPeer | NpmPeer, string>> = {};
  const missing = (Object.keys(APT_PEERS) as AptPeer[]).filter((p) => which(APT_PEERS[p].bin) === null);
  if (missing.length > 0) {
    progress(`installing Debian packages: ${missing.join(' ')}`);
    const ownPolicy = !existsSync(POLICY_RC);
    if (ownPolicy) {
      writeFileSync(POLICY_RC, '#!/bin/sh\n# clawbox bench: no service starts during package install\nexit 101\n');
      chmodSync(POLICY_RC, 0o755);
    }
    let err: string | null;
    try {
      err = aptInstall(missing);
    } finally {
      if (ownPolicy) rmSync(POLICY_RC, { force: true });
    }
    stopServices(missing.flatMap((p) => (APT_PEERS[p].service ? [APT_PEERS[p].service] : [])));
    for (const p of missing) {
      if (which(APT_PEERS[p].bin) === null) unavailable[p] = `not installed: ${err ?? 'binary missing after install'}`;
    }
  }

  const npmPeerDirs: Partial<Record<NpmPeer, string>> = {};
  const peers = Object.keys(NPM_PEERS) as NpmPeer[];
  const installedVersion = (name: NpmPeer): string | null => {
    try {
      return (JSON.parse(readFileSync(join(PEERS_DIR, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
    } catch {
      return null;
    }
  };
  // All in one install, even when one is missing: npm removes from bench/.peers what a --no-save install does not name.
  if (peers.some((name) => installedVersion(name) !== NPM_PEERS[name])) {
    const specs = peers.map((name) => `${name}@${NPM_PEERS[name]}`);
    progress(`installing ${specs.join(' ')} into bench/.peers`);
    mkdirSync(PEERS_DIR, { recursive: true });
    const r = run('npm', ['install', '--prefix', PEERS_DIR, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', ...specs], { timeoutMs: 300_000 });
    if (!ok(r)) for (const name of peers) unavailable[name] = `npm install failed: ${failure(r)}`;
  }
  for (const name of peers) {
    if (installedVersion(name) === NPM_PEERS[name]) npmPeerDirs[name] = join(PEERS_DIR, 'node_modules', name);
    else unavailable[name] ??= `${name}@${NPM_PEERS[name]} is not in bench/.peers after npm install`;
  }
  return { unavailable, npmPeerDirs };
}
