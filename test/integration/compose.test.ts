/**
 * docker-compose.yml: the gateway and an internal network for other tools' containers. A container attached to
 * that network (as an OpenClaw install would attach its sandboxes) gets the same egress control: allowed through
 * the gateway, denied with the rule named, no direct way out, no path to the host once `clawbox firewall` ran.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { SANDBOX_IMAGE } from '../../runner/images.js';
import { removeBridgeRules } from '../../runner/firewall.js';
import { startSandboxWorld, UPSTREAM_IP, DNS_IP, type SandboxWorld } from '../fixtures/sandbox-env.js';

const ROOT = join(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const PROJECT = 'clawbox-compose-test';
const docker = new Dockerode();
let world: SandboxWorld;
let dir: string;
let hostService: Server;

function compose(...args: string[]): string {
  return execFileSync('docker-compose', ['-p', PROJECT, '-f', join(ROOT, 'docker-compose.yml'), ...args], {
    env: { ...process.env, CLAWBOX_CONFIG: join(dir, 'config.yml'), CLAWBOX_AUDIT_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
}

async function inNetwork(script: string): Promise<string> {
  const container = await docker.createContainer({
    Image: SANDBOX_IMAGE,
    Cmd: ['sh', '-c', script],
    // curl reads only the lower-case http_proxy (the upper-case one is ignored for CGI safety).
    Env: ['http_proxy=http://10.213.1.2:3128'],
    Labels: { 'dev.clawbox.test': '1' },
    HostConfig: { NetworkMode: 'clawbox-compose-sandboxes', Dns: ['10.213.1.2'] },
  });
  try {
    await container.start();
    await container.wait();
    return (await container.logs({ stdout: true, stderr: true })).toString();
  } finally {
    await container.remove({ force: true });
  }
}

before(async () => {
  world = await startSandboxWorld();
  dir = mkdtempSync(join(tmpdir(), 'clawbox-compose-'));
  writeFileSync(
    join(dir, 'config.yml'),
    `sandbox:\n  allowed_hosts: [allowed.test, '${UPSTREAM_IP}']\n  logging:\n    audit_trail: /var/log/clawbox/compose-audit.log\n  gateway:\n    upstream_dns: ['${DNS_IP}:53']\n`,
  );
  hostService = createServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nhost service\n'));
  await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve));
  compose('up', '-d');
  execFileSync(process.execPath, [CLI, 'firewall', '--bridge', 'clawbox-cmp0', '--gateway', '10.213.1.2']);
});

after(async () => {
  try {
    compose('down', '--remove-orphans');
  } finally {
    await removeBridgeRules({ bridge: 'clawbox-cmp0', gateways: '10.213.1.2' });
    hostService?.close();
    rmSync(dir, { recursive: true, force: true });
    await world?.close();
  }
});

describe('docker-compose.yml', () => {
  it('gives containers on its network the gateway\'s egress control and audit trail', async () => {
    const { port } = hostService.address() as AddressInfo;
    let output = '';
    for (let attempt = 0; attempt < 20 && !/allowed=200/.test(output); attempt++) {
      output = await inNetwork(
        [
          'curl -s -m 5 -o /dev/null -w "allowed=%{http_code}\\n" http://allowed.test/',
          'curl -s -m 5 -o /dev/null -w "denied=%{http_code}\\n" http://denied.test/',
          'curl -s -m 5 -o /dev/null -w "metadata=%{http_code}\\n" http://169.254.169.254/',
          'curl -s -m 5 -o /dev/null -x socks5h://10.213.1.2:1080 -w "socks=%{http_code}\\n" http://allowed.test/',
          'curl -s -m 5 -o /dev/null -x socks5h://10.213.1.2:1080 http://denied.test/; echo socksdenied=$?',
          `curl -s -m 3 --noproxy '*' -o /dev/null http://${UPSTREAM_IP}/; echo direct=$?`,
          `curl -s -m 3 --noproxy '*' -o /dev/null http://10.213.1.1:${port}/; echo host=$?`,
        ].join('; '),
      );
      if (!/allowed=200/.test(output)) await new Promise((resolve) => setTimeout(resolve, 250)); // gateway still starting
    }
    assert.match(output, /allowed=200/);
    assert.match(output, /denied=403/);
    assert.match(output, /metadata=403/);
    assert.match(output, /socks=200/);
    assert.match(output, /socksdenied=97/, 'curl 97: the SOCKS5 proxy refused the connection');
    assert.match(output, /direct=(7|28)/);
    assert.match(output, /host=28/, 'the host service is dropped by the firewall rule');
    const audit = readFileSync(join(dir, 'compose-audit.log'), 'utf8');
    assert.match(audit, /"host":"denied\.test".*"rule":"network_policy"/);
    assert.match(audit, /"host":"allowed\.test".*"decision":"allow"/);
  });
});
