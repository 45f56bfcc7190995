import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockSyscalls, dockerDefaultProfile, KNOWN_SYSCALLS, seccompProfile, type SeccompProfile } from '../../runner/seccomp.js';

function ok(result: ReturnType<typeof seccompProfile>) {
  if ('problems' in result) assert.fail(result.problems.join('\n'));
  return result;
}

function rulesNaming(profile: SeccompProfile, name: string) {
  return profile.syscalls.filter((r) => r.names.includes(name));
}

void describe('dockerDefaultProfile', () => {
  const p = dockerDefaultProfile();
  void it("is moby's default: deny by default with EPERM, allow-lists after", () => {
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(p.defaultErrnoRet, 1);
    assert.ok((p.syscalls[0]?.names.length ?? 0) > 300);
    assert.equal('comment' in p, false, 'the license note is stripped before reaching Docker');
  });
  void it('allows ptrace conditionally and reboot only with CAP_SYS_BOOT', () => {
    assert.equal(rulesNaming(p, 'ptrace').length, 2);
    assert.deepEqual(rulesNaming(p, 'reboot')[0]?.includes, { caps: ['CAP_SYS_BOOT'] });
  });
  void it('knows every name in the profile', () => {
    for (const rule of p.syscalls) for (const n of rule.names) assert.ok(KNOWN_SYSCALLS.has(n), n);
  });
});

void describe('seccompProfile', () => {
  void it('merges blocked syscalls as one EPERM rule and removes them from every allow rule', () => {
    const { profile } = ok(seccompProfile({ seccomp_profile: 'docker-default', blocked_syscalls: ['ptrace', 'personality', 'kexec_load'] }));
    const first = profile.syscalls[0];
    assert.deepEqual(first?.names, ['kexec_load', 'personality', 'ptrace']);
    assert.equal(first?.action, 'SCMP_ACT_ERRNO');
    assert.equal(first?.errnoRet, 1);
    for (const n of ['ptrace', 'personality']) assert.deepEqual(rulesNaming(profile, n), [first], n);
    // Rules left empty by the removal are gone, others keep their remaining names.
    assert.ok(profile.syscalls.every((r) => r.names.length > 0));
    assert.ok(rulesNaming(profile, 'process_vm_readv').length === 2);
  });
  void it('returns the unmodified default without blocked syscalls', () => {
    const { json } = ok(seccompProfile({ seccomp_profile: 'docker-default', blocked_syscalls: [] }));
    assert.deepEqual(JSON.parse(json), dockerDefaultProfile());
  });
  void it('names unknown syscall entries', () => {
    const r = seccompProfile({ seccomp_profile: 'docker-default', blocked_syscalls: ['ptrace', 'ptrac'] });
    assert.deepEqual('problems' in r ? r.problems : [], ["sandbox.blocked_syscalls[1]: 'ptrac' is not a Linux syscall name"]);
  });
  void it('refuses unconfined and other names', () => {
    const r = seccompProfile({ seccomp_profile: 'unconfined', blocked_syscalls: [] });
    assert.match('problems' in r ? r.problems.join() : '', /'unconfined' would run tools without any syscall filter/);
    const s = seccompProfile({ seccomp_profile: 'strict', blocked_syscalls: [] });
    assert.match('problems' in s ? s.problems.join() : '', /expected 'docker-default' or an absolute path/);
  });
  void it('does not mutate its input', () => {
    const base = dockerDefaultProfile();
    const before = JSON.stringify(base);
    blockSyscalls(base, ['ptrace']);
    assert.equal(JSON.stringify(base), before);
  });
});

void describe('seccompProfile from a file', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'clawbox-seccomp-'));
    writeFileSync(
      join(dir, 'allow.json'),
      JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ name: 'mount', action: 'SCMP_ACT_ERRNO' }, { names: ['ptrace', 'read'], action: 'SCMP_ACT_ALLOW' }] }),
    );
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ defaultAction: 'DENY', syscalls: [{ names: [], action: 'SCMP_ACT_ALLOW' }] }));
    writeFileSync(join(dir, 'both.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: null }], syscalls: [] }));
    writeFileSync(join(dir, 'broken.json'), '{');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('loads a profile, folds legacy name into names and merges blocked syscalls', () => {
    const r = ok(seccompProfile({ seccomp_profile: join(dir, 'allow.json'), blocked_syscalls: ['ptrace'] }));
    assert.deepEqual(r.profile.syscalls.map((s) => s.names), [['ptrace'], ['mount'], ['read']]);
    assert.match(r.warnings.join(), /allows every syscall it does not list/);
  });
  void it('reports invalid profiles against the key', () => {
    const problems = (path: string): string => {
      const r = seccompProfile({ seccomp_profile: path, blocked_syscalls: [] });
      return 'problems' in r ? r.problems.join('\n') : '';
    };
    assert.match(problems(join(dir, 'bad.json')), /^sandbox\.seccomp_profile: .*bad\.json: defaultAction must be one of/m);
    assert.match(problems(join(dir, 'bad.json')), /syscalls\[0\]: has no syscall names/);
    assert.match(problems(join(dir, 'both.json')), /either architectures or archMap/);
    assert.match(problems(join(dir, 'broken.json')), /is not valid JSON/);
    assert.match(problems(join(dir, 'missing.json')), /cannot read .*missing\.json: ENOENT/);
  });
});
