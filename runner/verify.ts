/**
 * `clawbox verify`: the seed document's "Testing your sandbox" section as a command. One sandbox with the user's
 * config runs a probe script; each check compares what the sandbox sees with what the host has. Probe targets
 * never leave the machine: the "outside" address is in 198.18.0.0/15 (reserved for benchmarks), names are .test.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { TextCollector } from './output.js';
import type { SandboxConfig } from '../src/config/schema.js';
import { runSandbox } from './sandbox.js';

export interface CheckResult {
  readonly group: 'network' | 'filesystem' | 'process';
  readonly check: string;
  readonly passed: boolean;
  readonly detail: string;
}

const OUTSIDE_IP = '198.18.255.254';
const NOT_ALLOWED_NAME = 'clawbox-verify.test';

// Each probe prints `name=value` lines; values are exit codes, HTTP codes, hashes or lists.
const PROBE = String.raw`
probe() { name="$1"; shift; "$@" >/dev/null 2>&1; echo "$name=$?"; }
probe direct_tcp curl -sS -m 3 --noproxy '*' http://${OUTSIDE_IP}/
probe direct_metadata curl -sS -m 3 --noproxy '*' http://169.254.169.254/
probe host_bridge curl -sS -m 3 --noproxy '*' http://$(ip route | awk '/default/ {print $3; exit}'):$CLAWBOX_VERIFY_HOST_PORT/
echo "proxy_denied=$(curl -s -m 10 -o /dev/null -w '%{http_code}' http://${NOT_ALLOWED_NAME}/)"
echo "proxy_metadata=$(curl -s -m 10 -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/)"
probe dns_not_allowed getent hosts ${NOT_ALLOWED_NAME}
probe nc_outside nc -z -w 3 ${OUTSIDE_IP} 443
echo "passwd_sha=$(sha256sum /etc/passwd | cut -c1-64)"
echo "root_list=$(ls -A /root 2>/dev/null | tr '\n' ',')"
echo "varlog_list=$(ls -A /var/log 2>/dev/null | tr '\n' ',')"
echo "home_list=$(ls -A "${'$'}HOME" 2>/dev/null | tr '\n' ',')"
echo "marker_found=$(find / -xdev -name 'clawbox-verify-marker-*' 2>/dev/null | head -1)"
echo "pid1=$(cat /proc/1/comm)"
echo "procs=$(ps -eo comm --no-headers | tr '\n' ',')"
`;

function parseProbe(output: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return values;
}

const HOST_DAEMONS = ['sshd', 'systemd', 'dockerd', 'containerd', 'init', 'cron', 'node'];

export interface HostView {
  readonly passwdSha: string;
  /** Host directories where a marker file was placed (the sandbox must not see any). */
  readonly markedDirs: readonly string[];
  /** Marker name, so a listing that shows it proves the directory is shared. */
  readonly marker: string;
}

export function judge(values: Map<string, string>, host: HostView): CheckResult[] {
  const failed = (key: string): boolean => /^[1-9]\d*$/.test(values.get(key) ?? '');
  const list = (key: string): string[] => (values.get(key) ?? '').split(',').filter((x) => x.length > 0);
  const shows = (key: string): boolean => list(key).includes(host.marker);
  const procs = list('procs');
  const code = (key: string): string => values.get(key) ?? '?';
  return [
    { group: 'network', check: `direct TCP to an outside address (${OUTSIDE_IP}) fails`, passed: failed('direct_tcp'), detail: `curl exit ${code('direct_tcp')}` },
    { group: 'network', check: 'direct connection to cloud metadata (169.254.169.254) fails', passed: failed('direct_metadata'), detail: `curl exit ${code('direct_metadata')}` },
    {
      group: 'network',
      check: 'a service listening on the host is not reachable through the bridge address',
      // 28: dropped (time-out). 7 could be a refusal from the host itself, which would mean it is reachable.
      passed: code('host_bridge') === '28',
      detail: `curl exit ${code('host_bridge')}${code('host_bridge') === '28' ? ' (dropped)' : ''}`,
    },
    { group: 'network', check: 'nc to an outside address fails', passed: failed('nc_outside'), detail: `nc exit ${code('nc_outside')}` },
    { group: 'network', check: `the gateway refuses a host not in allowed_hosts (${NOT_ALLOWED_NAME})`, passed: code('proxy_denied') === '403', detail: `HTTP ${code('proxy_denied')}` },
    { group: 'network', check: 'the gateway refuses cloud metadata', passed: code('proxy_metadata') === '403', detail: `HTTP ${code('proxy_metadata')}` },
    { group: 'network', check: 'DNS does not resolve a name that is not allowed', passed: failed('dns_not_allowed'), detail: `getent exit ${code('dns_not_allowed')}` },
    { group: 'filesystem', check: "the host's /etc/passwd is not the sandbox's", passed: values.has('passwd_sha') && code('passwd_sha') !== host.passwdSha, detail: 'compared by sha256' },
    {
      group: 'filesystem',
      check: `no marker placed in the host's ${host.markedDirs.join(', ')} is visible`,
      passed: values.has('marker_found') && code('marker_found') === '' && !shows('root_list') && !shows('varlog_list') && !shows('home_list'),
      detail: code('marker_found') === '' ? 'searched the whole sandbox filesystem' : `found ${code('marker_found')}`,
    },
    { group: 'process', check: "only the sandbox's own processes are visible", passed: procs.length > 0 && !procs.some((p) => HOST_DAEMONS.includes(p)), detail: procs.join(' ') },
    { group: 'process', check: 'PID 1 is an init that reaps zombies', passed: ['docker-init', 'tini'].includes(code('pid1')), detail: `PID 1: ${code('pid1')}` },
  ];
}

/**
 * Places a marker file in the host's /root, /var/log and $HOME (removed afterwards), runs the probe in a
 * sandbox with `config`, and judges what it saw.
 */
export async function verifySandbox(config: SandboxConfig, configText: string, onProgress?: (step: string) => void): Promise<CheckResult[]> {
  const marker = `clawbox-verify-marker-${randomBytes(6).toString('hex')}`;
  const dirs = [...new Set(['/root', '/var/log', process.env.HOME ?? '/root'])];
  const marked: string[] = [];
  for (const dir of dirs) {
    try {
      writeFileSync(join(dir, marker), 'a file of the host: a sandbox must not see it\n', { flag: 'wx' });
      marked.push(dir);
    } catch {
      // Not writable for this user: that directory is simply not checked.
    }
  }
  // A real service on every host address: the probe must not reach it.
  const listener = createServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nhost service\n'));
  await new Promise<void>((resolve) => listener.listen(0, '0.0.0.0', resolve));
  const hostPort = (listener.address() as AddressInfo).port;
  try {
    const output = new TextCollector();
    await runSandbox({
      config,
      configText,
      command: ['sh', '-c', PROBE],
      env: { CLAWBOX_VERIFY_HOST_PORT: String(hostPort) },
      stdout: output,
      stderr: null,
      ...(onProgress ? { onProgress } : {}),
    });
    return judge(parseProbe(output.text), {
      passwdSha: createHash('sha256').update(readFileSync('/etc/passwd')).digest('hex'),
      markedDirs: marked,
      marker,
    });
  } finally {
    listener.close();
    for (const dir of marked) rmSync(join(dir, marker), { force: true });
  }
}
