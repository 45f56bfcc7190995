/**
 * The seccomp filter clawbox hands Docker: Docker's own default profile (vendored in seccomp-default.json, since
 * the daemon only applies its built-in copy when no profile is given) or a user-supplied JSON profile, with
 * `sandbox.blocked_syscalls` merged in as explicit EPERM rules.
 */
import { readFileSync } from 'node:fs';
import type { SandboxConfig } from '../src/config/schema.js';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface SeccompFilter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

export interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
  comment?: string;
  includes?: SeccompFilter;
  excludes?: SeccompFilter;
}

export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures: string[] | null }[];
  syscalls: SeccompRule[];
  [extra: string]: unknown;
}

export type SeccompResult =
  | { readonly json: string; readonly profile: SeccompProfile; readonly warnings: readonly string[] }
  | { readonly problems: readonly string[] };

const EPERM = 1;
const ACTIONS: ReadonlySet<string> = new Set([
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
]);

/**
 * Every syscall name Linux has on any architecture Docker's profile covers (x86_64, i386, x32 and the generic
 * table, plus the arch-specific names of the default profile). A name outside this list in blocked_syscalls is a
 * typo: blocking it would silently block nothing.
 */
export const KNOWN_SYSCALLS: ReadonlySet<string> = new Set(
  `
  _llseek _newselect _sysctl accept accept4 access acct add_key adjtimex afs_syscall alarm arch_prctl
  arm_fadvise64_64 arm_sync_file_range bdflush bind bpf break breakpoint brk cacheflush capget capset chdir
  chmod chown chown32 chroot clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
  clock_gettime64 clock_nanosleep clock_nanosleep_time64 clock_settime clock_settime64 clone clone3 close
  close_range connect copy_file_range creat create_module delete_module dup dup2 dup3 epoll_create
  epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
  execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_init
  fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr finit_module
  flistxattr flock fork fremovexattr fsconfig fsetxattr fsmount fsopen fspick fstat fstat64 fstatat fstatat64
  fstatfs fstatfs64 fsync ftime ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat get_kernel_syms
  get_mempolicy get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid
  geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getpmsg getppid
  getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname
  getsockopt gettid gettimeofday getuid getuid32 getxattr gtty idle init_module inotify_add_watch inotify_init
  inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup
  io_submit io_uring_enter io_uring_register io_uring_setup ioctl ioperm iopl ioprio_get ioprio_set ipc kcmp
  kexec_file_load kexec_load keyctl kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
  lchown lchown32 lgetxattr link linkat listen listxattr llistxattr llseek lock lookup_dcookie lremovexattr
  lseek lsetxattr lstat lstat64 madvise mbind membarrier memfd_create memfd_secret migrate_pages mincore mkdir
  mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 modify_ldt mount mount_setattr move_mount move_pages
  mprotect mpx mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
  mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
  name_to_handle_at nanosleep newfstatat nfsservctl nice oldfstat oldlstat oldolduname oldstat olduname open
  open_by_handle_at open_tree openat openat2 pause perf_event_open personality pidfd_getfd pidfd_open
  pidfd_send_signal pipe pipe2 pivot_root pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
  pread64 preadv preadv2 prlimit64 process_madvise process_mrelease process_vm_readv process_vm_writev prof
  profil pselect6 pselect6_time64 ptrace putpmsg pwrite64 pwritev pwritev2 query_module quotactl quotactl_fd
  read readahead readdir readlink readlinkat readv reboot recv recvfrom recvmmsg recvmmsg_time64 recvmsg
  remap_file_pages removexattr rename renameat renameat2 request_key restart_syscall riscv_flush_icache rmdir
  rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
  rt_sigtimedwait_time64 rt_tgsigqueueinfo s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr
  sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
  sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
  sched_setparam sched_setscheduler sched_yield seccomp security select semctl semget semop semtimedop
  semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto set_mempolicy set_mempolicy_home_node
  set_robust_list set_thread_area set_tid_address set_tls setdomainname setfsgid setfsgid32 setfsuid setfsuid32
  setgid setgid32 setgroups setgroups32 sethostname setitimer setns setpgid setpriority setregid setregid32
  setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt settimeofday
  setuid setuid32 setxattr sgetmask shmat shmctl shmdt shmget shutdown sigaction sigaltstack signal signalfd
  signalfd4 sigpending sigprocmask sigreturn sigsuspend socket socketcall socketpair splice ssetmask stat
  stat64 statfs statfs64 statx stime stty swapcontext swapoff swapon symlink symlinkat sync sync_file_range
  sync_file_range2 syncfs sysfs sysinfo syslog tee tgkill time timer_create timer_delete timer_getoverrun
  timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
  timerfd_settime timerfd_settime64 times tkill truncate truncate64 tuxcall ugetrlimit ulimit umask umount
  umount2 uname unlink unlinkat unshare uselib userfaultfd ustat utime utimensat utimensat_time64 utimes vfork
  vhangup vm86 vm86old vmsplice vserver wait4 waitid waitpid write writev`
    .trim()
    .split(/\s+/),
);

const DEFAULT_PROFILE_URL = new URL('./seccomp-default.json', import.meta.url);

/** Docker's default profile exactly as vendored, minus the license comment Docker would not understand. */
export function dockerDefaultProfile(): SeccompProfile {
  const parsed = validateProfile(JSON.parse(readFileSync(DEFAULT_PROFILE_URL, 'utf8')) as unknown, 'seccomp-default.json');
  if ('problems' in parsed) throw new Error(`vendored seccomp profile is invalid: ${parsed.problems.join('; ')}`);
  return parsed.profile;
}

/**
 * The profile for `sandbox.seccomp_profile`: 'docker-default', or a path to a JSON profile. 'unconfined' is refused:
 * a sandbox without a syscall filter is not something clawbox runs.
 */
export function seccompProfile(config: Pick<SandboxConfig, 'seccomp_profile' | 'blocked_syscalls'>): SeccompResult {
  const problems = checkSyscallNames(config.blocked_syscalls);
  const choice = config.seccomp_profile;
  let base: SeccompProfile;
  const warnings: string[] = [];
  if (choice === 'unconfined') {
    problems.push(
      "sandbox.seccomp_profile: 'unconfined' would run tools without any syscall filter, which clawbox does not offer; use 'docker-default' (optionally with sandbox.blocked_syscalls) or a path to a JSON profile",
    );
    return { problems };
  } else if (choice === 'docker-default') {
    base = dockerDefaultProfile();
  } else if (choice.startsWith('/')) {
    const loaded = loadProfileFile(choice);
    if ('problems' in loaded) return { problems: [...problems, ...loaded.problems] };
    base = loaded.profile;
    if (base.defaultAction === 'SCMP_ACT_ALLOW' || base.defaultAction === 'SCMP_ACT_LOG') {
      warnings.push(
        `sandbox.seccomp_profile: ${choice} allows every syscall it does not list (defaultAction ${base.defaultAction}); Docker's default profile denies unknown syscalls`,
      );
    }
  } else {
    problems.push(
      `sandbox.seccomp_profile: expected 'docker-default' or an absolute path to a JSON seccomp profile, got '${choice}'`,
    );
    return { problems };
  }
  if (problems.length > 0) return { problems };
  const profile = blockSyscalls(base, config.blocked_syscalls);
  return { json: JSON.stringify(profile), profile, warnings };
}

/** Names in blocked_syscalls that no Linux architecture has, as problems naming the entry. */
export function checkSyscallNames(names: readonly string[]): string[] {
  return names.flatMap((name, i) =>
    KNOWN_SYSCALLS.has(name) ? [] : [`sandbox.blocked_syscalls[${i}]: '${name}' is not a Linux syscall name`],
  );
}

/**
 * Adds an EPERM rule for each blocked name and removes the names from every other rule. Removing them matters:
 * libseccomp refuses (or arbitrarily resolves) two unconditional rules with different actions for one syscall, and
 * a conditional allow rule (e.g. `personality` with an argument filter, or a cap-gated `ptrace`) would otherwise
 * still let the call through. With the name in exactly one rule, EPERM wins regardless of caps, arches or args.
 */
export function blockSyscalls(profile: SeccompProfile, blocked: readonly string[]): SeccompProfile {
  if (blocked.length === 0) return profile;
  const names = new Set(blocked);
  const kept = profile.syscalls
    .map((rule) => ({ ...rule, names: rule.names.filter((n) => !names.has(n)) }))
    .filter((rule) => rule.names.length > 0);
  const block: SeccompRule = {
    names: [...names].sort(),
    action: 'SCMP_ACT_ERRNO',
    errnoRet: EPERM,
    comment: 'sandbox.blocked_syscalls (clawbox)',
  };
  return { ...profile, syscalls: [block, ...kept] };
}

function loadProfileFile(path: string): { profile: SeccompProfile } | { problems: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { problems: [`sandbox.seccomp_profile: cannot read ${path}: ${code}`] };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { problems: [`sandbox.seccomp_profile: ${path} is not valid JSON: ${(err as Error).message}`] };
  }
  return validateProfile(raw, path);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/**
 * Checks the shape Docker's daemon parses (moby's types.Seccomp), so a broken profile is reported against the
 * config key instead of as an opaque daemon error at container start.
 */
export function validateProfile(raw: unknown, source: string): { profile: SeccompProfile } | { problems: string[] } {
  const where = `sandbox.seccomp_profile: ${source}`;
  if (!isRecord(raw)) return { problems: [`${where} must be a JSON object`] };
  const problems: string[] = [];
  // The vendored copy's license note is not part of Docker's format.
  const rest: Record<string, unknown> = { ...raw };
  delete rest.comment;
  const defaultAction = rest.defaultAction;
  if (typeof defaultAction !== 'string' || !ACTIONS.has(defaultAction)) {
    problems.push(`${where}: defaultAction must be one of ${[...ACTIONS].join(', ')}`);
  }
  if (rest.defaultErrnoRet !== undefined && !Number.isInteger(rest.defaultErrnoRet)) {
    problems.push(`${where}: defaultErrnoRet must be an integer`);
  }
  if (rest.architectures !== undefined && !isStringArray(rest.architectures)) {
    problems.push(`${where}: architectures must be a list of names like 'SCMP_ARCH_X86_64'`);
  }
  if (rest.archMap !== undefined && !Array.isArray(rest.archMap)) {
    problems.push(`${where}: archMap must be a list`);
  }
  if (Array.isArray(rest.architectures) && rest.architectures.length > 0 && Array.isArray(rest.archMap) && rest.archMap.length > 0) {
    problems.push(`${where}: use either architectures or archMap, not both (Docker refuses both)`);
  }
  const syscalls: SeccompRule[] = [];
  if (!Array.isArray(rest.syscalls)) {
    problems.push(`${where}: syscalls must be a list of rules`);
  } else {
    rest.syscalls.forEach((rule: unknown, i) => {
      const parsed = validateRule(rule, `${where}: syscalls[${i}]`);
      if (typeof parsed === 'string') problems.push(parsed);
      else syscalls.push(parsed);
    });
  }
  if (problems.length > 0) return { problems };
  return { profile: { ...rest, defaultAction: defaultAction as string, syscalls } };
}

function validateRule(rule: unknown, where: string): SeccompRule | string {
  if (!isRecord(rule)) return `${where} must be an object`;
  // moby still accepts the legacy single 'name'; fold it into 'names' so merging sees one shape.
  const { name, names, action, errnoRet, args } = rule;
  const all = [...(typeof name === 'string' && name !== '' ? [name] : []), ...(isStringArray(names) ? names : [])];
  if (names !== undefined && !isStringArray(names)) return `${where}: names must be a list of syscall names`;
  if (all.length === 0) return `${where}: has no syscall names`;
  if (typeof action !== 'string' || !ACTIONS.has(action)) return `${where}: action must be one of ${[...ACTIONS].join(', ')}`;
  if (errnoRet !== undefined && !Number.isInteger(errnoRet)) return `${where}: errnoRet must be an integer`;
  if (args !== undefined && args !== null && !Array.isArray(args)) return `${where}: args must be a list`;
  const copy: Record<string, unknown> = { ...rule, names: all, action };
  delete copy.name;
  return copy as unknown as SeccompRule;
}
