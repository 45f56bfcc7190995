import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { judge } from '../../runner/verify.js';

const HOST = { passwdSha: 'h'.repeat(64), markedDirs: ['/root', '/var/log'], marker: 'clawbox-verify-marker-abc' };

/** What a well-isolated sandbox prints. */
const GOOD: Record<string, string> = {
  direct_tcp: '28',
  direct_metadata: '28',
  host_bridge: '28',
  nc_outside: '1',
  proxy_denied: '403',
  proxy_metadata: '403',
  dns_not_allowed: '2',
  passwd_sha: 's'.repeat(64),
  root_list: '.bashrc,.profile,',
  varlog_list: '',
  home_list: '',
  marker_found: '',
  pid1: 'docker-init',
  procs: 'docker-init,sh,ps,tr,',
};

function failing(overrides: Record<string, string>): string[] {
  return judge(new Map(Object.entries({ ...GOOD, ...overrides })), HOST)
    .filter((r) => !r.passed)
    .map((r) => r.check);
}

describe('clawbox verify judges each check from what the sandbox saw', () => {
  it('passes a well-isolated sandbox', () => {
    assert.deepEqual(failing({}), []);
  });

  const breaches: Array<[string, Record<string, string>, RegExp]> = [
    ['a direct connection that worked', { direct_tcp: '0' }, /direct TCP/],
    ['metadata reached directly', { direct_metadata: '0' }, /cloud metadata \(169/],
    ['a host service that answered (refused counts as reachable)', { host_bridge: '7' }, /listening on the host/],
    ['a gateway that let a host through', { proxy_denied: '200' }, /refuses a host not in allowed_hosts/],
    ['a gateway that served metadata', { proxy_metadata: '200' }, /refuses cloud metadata/],
    ['DNS that resolved a name not allowed', { dns_not_allowed: '0' }, /DNS/],
    ["the host's passwd", { passwd_sha: HOST.passwdSha }, /passwd/],
    ['a marker found on the filesystem', { marker_found: '/hostroot/clawbox-verify-marker-abc' }, /marker/],
    ['a marker in a listing', { varlog_list: 'clawbox-verify-marker-abc,' }, /marker/],
    ['host daemons in ps', { procs: 'systemd,sshd,dockerd,sh,' }, /own processes/],
    ['a shell as PID 1', { pid1: 'sh' }, /PID 1/],
    ['a probe that never ran', { direct_tcp: '' }, /direct TCP/],
  ];
  for (const [name, overrides, check] of breaches) {
    it(`fails on ${name}`, () => {
      const failed = failing(overrides);
      assert.ok(failed.some((c) => check.test(c)), `${String(check)} in ${JSON.stringify(failed)}`);
    });
  }
});
