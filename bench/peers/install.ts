/**
 * Installs the peers the bench compares against: Debian packages (only those missing) and proxy-chain from npm
 * into bench/.peers (never into package.json). Package postinst scripts must not start system instances on the
 * ports we use, so a policy-rc.d that refuses every start is in place during the install (Debian's documented
 * mechanism, honoured by invoke-rc.d and deb-systemd-invoke); anything started anyway is stopped after.
 * A failure is returned per package, so the table can say "n/a (reason)" instead of the bench crashing.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
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
const PROXY_CHAIN_VERSION = '3.0.1';

export interface InstallReport {
  /** Absent key: installed and found. Present: why it is unavailable. */
  readonly unavailable: Partial<Record<AptPeer | 'proxy-chain', string>>;
  /** Path to require() proxy-chain from, when it installed. */
  readonly proxyChainMain: string | null;
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
  const unavailable: Partial<Record<AptPeer | 'proxy-chain', string>> = {};
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

  const main = join(PEERS_DIR, 'node_modules', 'proxy-chain');
  let proxyChainMain: string | null = existsSync(join(main, 'package.json')) ? main : null;
  if (proxyChainMain === null) {
    progress(`installing proxy-chain@${PROXY_CHAIN_VERSION} into bench/.peers`);
    mkdirSync(PEERS_DIR, { recursive: true });
    const r = run('npm', ['install', '--prefix', PEERS_DIR, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `proxy-chain@${PROXY_CHAIN_VERSION}`], { timeoutMs: 300_000 });
    if (ok(r) && existsSync(join(main, 'package.json'))) proxyChainMain = main;
    else unavailable['proxy-chain'] = `npm install failed: ${failure(r)}`;
  }
  return { unavailable, proxyChainMain };
}
