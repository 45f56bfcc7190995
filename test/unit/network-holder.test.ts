import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { holderKey, holderShape, joinedShape } from '../../runner/network-holder.js';
import { LAUNCHER_PATH } from '../../runner/launcher.js';

describe('network holders (shapes)', () => {
  const holder = holderShape('clawbox-sandboxes', 'clawbox-gateway:latest', '/var/cache/clawbox/launch-abc');

  it('holds an address with no capability, no privilege and a read-only root, as the sandbox user', () => {
    assert.equal(holder.User, '65534:65534');
    assert.equal(holder.Hostname, 'sandbox', 'the host name its sandbox will have');
    assert.deepEqual(holder.Entrypoint, [LAUNCHER_PATH]);
    assert.equal(holder.OpenStdin, true, 'the launcher waits on a stdin held open');
    const host = holder.HostConfig ?? {};
    assert.equal(host.NetworkMode, 'clawbox-sandboxes');
    assert.deepEqual(host.CapDrop, ['ALL']);
    assert.deepEqual(host.CapAdd, undefined);
    assert.equal(host.Privileged, undefined);
    assert.deepEqual(host.SecurityOpt, ['no-new-privileges:true']);
    assert.equal(host.ReadonlyRootfs, true);
    assert.equal(host.Init, true);
    assert.ok((host.Memory ?? 0) > 0 && (host.PidsLimit ?? 0) > 0, 'bounded memory and processes');
    assert.equal(host.PortBindings, undefined);
    assert.deepEqual(host.Mounts, [{ Type: 'bind', Source: '/var/cache/clawbox/launch-abc', Target: LAUNCHER_PATH, ReadOnly: true }]);
  });

  it('keys holders by their shape and their gateway', () => {
    const key = holderKey(holder, '10.213.0.2');
    assert.match(key, /^[0-9a-f]{16}$/);
    assert.equal(holderKey(holderShape('clawbox-sandboxes', 'clawbox-gateway:latest', '/var/cache/clawbox/launch-abc'), '10.213.0.2'), key);
    assert.notEqual(holderKey(holder, '10.213.0.3'), key, 'another gateway');
    assert.notEqual(holderKey(holderShape('clawbox-sandboxes', 'clawbox-gateway:latest', '/var/cache/clawbox/launch-def'), '10.213.0.2'), key, 'another launcher');
  });

  it("joins a sandbox to the holder's namespace and changes nothing else", () => {
    const sandbox = {
      Image: 'openclaw-sandbox:latest',
      Hostname: 'sandbox',
      User: '65534:65534',
      NetworkingConfig: { EndpointsConfig: { 'clawbox-sandboxes': { IPAMConfig: { IPv4Address: '10.213.0.40' } } } },
      HostConfig: { NetworkMode: 'clawbox-sandboxes', ReadonlyRootfs: true, CapDrop: ['ALL'], Memory: 2 ** 31 },
    };
    const joined = joinedShape(sandbox, 'f00d');
    assert.deepEqual(joined, {
      Image: 'openclaw-sandbox:latest',
      User: '65534:65534',
      HostConfig: { NetworkMode: 'container:f00d', ReadonlyRootfs: true, CapDrop: ['ALL'], Memory: 2 ** 31 },
    });
    assert.equal(sandbox.HostConfig.NetworkMode, 'clawbox-sandboxes', 'the shape it was given is left as it was');
    assert.equal(sandbox.Hostname, 'sandbox');
  });
});
