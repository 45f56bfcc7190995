import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { createServer } from 'node:net';
import { choosePorts } from '../../proxy/listen-ports.js';
import { parseConfig } from '../../src/config/load.js';

const gateway = (yaml: string) => parseConfig(`sandbox:\n  gateway:\n${yaml}`).sandbox.gateway;

describe('choosePorts: port 0 of a cluster, chosen once by its primary', () => {
  it('gives each front its own free number, and keeps the ones given', async () => {
    const chosen = await choosePorts(gateway("    http: '127.0.0.1:0'\n    socks: '127.0.0.1:0'\n    dns: '127.0.0.1:0'\n"));
    const ports = [chosen.http.port, chosen.socks.port, chosen.dns.port];
    assert.ok(ports.every((p) => p > 0), String(ports));
    assert.equal(new Set(ports).size, 3);
    // Released: the workers can bind them (DNS on both protocols).
    for (const port of ports) {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      server.close();
    }
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(chosen.dns.port, '127.0.0.1', resolve));
    udp.close();

    const kept = await choosePorts(gateway("    http: '127.0.0.1:3999'\n    socks: '127.0.0.1:0'\n"));
    assert.equal(kept.http.port, 3999);
    assert.notEqual(kept.socks.port, 0);
  });

  it('names the front when its host cannot be bound', async () => {
    await assert.rejects(choosePorts(gateway("    socks: '192.0.2.1:0'\n")), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'LISTEN_FAILED');
      assert.match(err.message, /sandbox\.gateway\.socks 192\.0\.2\.1:0: EADDRNOTAVAIL/);
      return true;
    });
  });
});
