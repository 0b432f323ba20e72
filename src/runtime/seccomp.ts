/**
 * Seccomp: the default syscall filter every container gets, and user profiles
 * in the profile format docker users already have on disk (`--security-opt
 * seccomp=profile.json`). Both are turned into the OCI runtime spec's
 * `linux.seccomp` object by the same converter, so the default is nothing
 * more than a built-in profile.
 *
 * A profile is conditional: rules apply only for some capabilities,
 * architectures or kernel versions. Conversion resolves those conditions for
 * one container (its capability set, the host's architecture and kernel),
 * leaving a flat filter the runtime can load as is.
 */
import { arch as hostArch, release } from 'node:os';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { invalid, type BerthError } from '../util/errors.ts';

// ---------------------------------------------------------------------------
// OCI runtime spec: linux.seccomp

export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface OciSeccompSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[];
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: OciSeccompSyscall[];
}

// ---------------------------------------------------------------------------
// The profile format (input)

export interface ProfileCondition {
  caps?: string[];
  /** Go-style architecture names: amd64, arm64, x32, s390x, … */
  arches?: string[];
  /** `major.minor` */
  minKernel?: string;
}

export interface ProfileSyscall {
  names?: string[];
  name?: string;
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[];
  includes?: ProfileCondition;
  excludes?: ProfileCondition;
  comment?: string;
}

export interface ProfileArchMap {
  architecture: string;
  subArchitectures: string[] | null;
}

export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: ProfileArchMap[];
  flags?: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: ProfileSyscall[];
}

export interface SeccompTarget {
  /** The container's capabilities (its bounding set), `CAP_*` names. */
  capabilities: string[];
  /** Architecture: Node (`x64`), Go (`amd64`) or uname (`x86_64`) spelling; default the host's. */
  arch?: string;
  /** Kernel version for `minKernel` conditions; default the running kernel. */
  kernel?: string;
}

// ---------------------------------------------------------------------------
// Constants from the OCI spec / libseccomp

const ACTIONS = new Set([
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
]);
/** Only these actions carry an errno; the runtime refuses errnoRet on others. */
const ERRNO_ACTIONS = new Set(['SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE']);
const OPS = new Set([
  'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
]);
const ARCHES = new Set([
  'SCMP_ARCH_X86', 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64', 'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390', 'SCMP_ARCH_S390X', 'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64', 'SCMP_ARCH_LOONGARCH64', 'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
]);
const FLAGS = new Set([
  'SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
]);

/** Profile conditions name architectures the Go way; map other spellings onto them. */
const ARCH_ALIASES: Record<string, string> = {
  x64: 'amd64', x86_64: 'amd64', ia32: '386', i386: '386', i686: '386', aarch64: 'arm64',
  ppc64: 'ppc64le', ppc64el: 'ppc64le', loong64: 'loong64', loongarch64: 'loong64',
  mips64el: 'mips64le',
};
/** The seccomp architecture a machine natively runs, looked up in archMap. */
const NATIVE_SECCOMP_ARCH: Record<string, string> = {
  '386': 'SCMP_ARCH_X86', amd64: 'SCMP_ARCH_X86_64', arm: 'SCMP_ARCH_ARM',
  arm64: 'SCMP_ARCH_AARCH64', mips: 'SCMP_ARCH_MIPS', mipsle: 'SCMP_ARCH_MIPSEL',
  mips64: 'SCMP_ARCH_MIPS64', mips64le: 'SCMP_ARCH_MIPSEL64', ppc: 'SCMP_ARCH_PPC',
  ppc64le: 'SCMP_ARCH_PPC64LE', riscv64: 'SCMP_ARCH_RISCV64', s390: 'SCMP_ARCH_S390',
  s390x: 'SCMP_ARCH_S390X', loong64: 'SCMP_ARCH_LOONGARCH64',
};

const EPERM = 1;
const ENOSYS = 38;

// ---------------------------------------------------------------------------
// The default profile, as data.

const words = (s: string): string[] => s.trim().split(/\s+/);

/**
 * Syscalls every container may make. The list is generous on purpose:
 * names the host's libseccomp does not know (other architectures' calls,
 * calls newer than the library) are skipped by the runtime, not refused.
 */
const ALWAYS_ALLOWED = words(`
  accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod
  chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
  clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close
  close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
  epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd
  eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
  fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
  fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
  fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue
  futex_time64 futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents
  getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
  getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
  getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
  getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
  getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
  ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
  ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset
  landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listmount
  listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
  madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat
  mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
  mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
  mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
  name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause
  pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
  ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
  pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
  recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
  removexattrat rename renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq
  rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
  rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
  sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
  sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
  sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp
  select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
  sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
  setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
  setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list
  setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr setxattrat
  shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
  sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
  symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
  timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
  timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
  timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
  unlinkat uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4
  waitid waitpid write writev
`);

/** Syscalls unlocked by holding a capability. */
const BY_CAPABILITY: ReadonlyArray<readonly [cap: string, names: string]> = [
  ['CAP_DAC_READ_SEARCH', 'open_by_handle_at'],
  ['CAP_SYS_ADMIN', `bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick
    lookup_dcookie lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount
    mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd
    setdomainname sethostname setns syslog umount umount2 unshare`],
  ['CAP_SYS_BOOT', 'reboot'],
  ['CAP_SYS_CHROOT', 'chroot'],
  ['CAP_SYS_MODULE', 'delete_module init_module finit_module'],
  ['CAP_SYS_PACCT', 'acct'],
  ['CAP_SYS_PTRACE', 'kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace'],
  ['CAP_SYS_RAWIO', 'iopl ioperm'],
  ['CAP_SYS_TIME', 'settimeofday stime clock_settime clock_settime64'],
  ['CAP_SYS_TTY_CONFIG', 'vhangup'],
  ['CAP_SYS_NICE', 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node'],
  ['CAP_SYSLOG', 'syslog'],
  ['CAP_BPF', 'bpf'],
  ['CAP_PERFMON', 'perf_event_open'],
];

/** Architecture-specific calls, by the architectures (Go names) that have them. */
const BY_ARCH: ReadonlyArray<readonly [arches: string, names: string]> = [
  ['ppc64le', 'sync_file_range2 swapcontext'],
  ['arm arm64', 'arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls'],
  ['amd64 x32', 'arch_prctl'],
  ['amd64 x32 x86', 'modify_ldt'],
  ['s390 s390x', 's390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr'],
  ['riscv64', 'riscv_flush_icache'],
];

/**
 * Every namespace flag clone(2) takes. Without CAP_SYS_ADMIN a container may
 * clone threads and processes but not new namespaces: user namespaces in
 * particular would otherwise give it a fresh, full capability set.
 */
const CLONE_NAMESPACE_FLAGS =
  0x00020000 /* NEWNS */ | 0x02000000 /* NEWCGROUP */ | 0x04000000 /* NEWUTS */ |
  0x08000000 /* NEWIPC */ | 0x10000000 /* NEWUSER */ | 0x20000000 /* NEWPID */ |
  0x40000000; /* NEWNET */

/** Socket address families refused: AF_ALG (38) and AF_VSOCK (40). */
const SOCKET_FAMILY_RULES: ReadonlyArray<readonly [op: string, value: number]> = [
  ['SCMP_CMP_LT', 38], ['SCMP_CMP_EQ', 39], ['SCMP_CMP_GT', 40],
];

/**
 * personality(2) personas allowed: PER_LINUX, PER_LINUX32, UNAME26 alone
 * and with PER_LINUX32, and 0xffffffff, which only queries.
 */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

const ARCH_MAP: ReadonlyArray<readonly [native: string, subs: string]> = [
  ['X86_64', 'X86 X32'],
  ['AARCH64', 'ARM'],
  ['MIPS64', 'MIPS MIPS64N32'],
  ['MIPS64N32', 'MIPS MIPS64'],
  ['MIPSEL64', 'MIPSEL MIPSEL64N32'],
  ['MIPSEL64N32', 'MIPSEL MIPSEL64'],
  ['S390X', 'S390'],
  ['RISCV64', ''],
  ['LOONGARCH64', ''],
];

function allow(names: string[], more: Partial<ProfileSyscall> = {}): ProfileSyscall {
  return { names, action: 'SCMP_ACT_ALLOW', ...more };
}

function buildDefaultProfile(): SeccompProfile {
  const arg0 = (op: string, value: number, valueTwo?: number): OciSeccompArg[] =>
    [valueTwo === undefined ? { index: 0, value, op } : { index: 0, value, valueTwo, op }];
  const syscalls: ProfileSyscall[] = [
    allow(ALWAYS_ALLOWED),
    // Cross-process memory access and tracing became safe to allow once the
    // kernel checked ptrace permissions for them (4.8); earlier kernels need
    // CAP_SYS_PTRACE, below.
    allow(words('process_vm_readv process_vm_writev ptrace'), { includes: { minKernel: '4.8' } }),
    ...SOCKET_FAMILY_RULES.map(([op, v]) => allow(['socket'], { args: arg0(op, v) })),
    ...PERSONALITIES.map((p) => allow(['personality'], { args: arg0('SCMP_CMP_EQ', p) })),
    ...BY_ARCH.map(([arches, names]) => allow(words(names), { includes: { arches: words(arches) } })),
    ...BY_CAPABILITY.map(([cap, names]) => allow(words(names), { includes: { caps: [cap] } })),
    allow(['clone'], {
      args: arg0('SCMP_CMP_MASKED_EQ', CLONE_NAMESPACE_FLAGS, 0),
      excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] },
    }),
    // s390 passes clone's flags as the second argument.
    allow(['clone'], {
      args: [{ index: 1, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      includes: { arches: ['s390', 's390x'] },
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    // clone3 passes its flags in memory, where seccomp cannot look. Saying
    // ENOSYS (rather than EPERM) makes libc fall back to clone, which the
    // rule above can inspect.
    {
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: ENOSYS,
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    },
  ];
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    archMap: ARCH_MAP.map(([native, subs]) => ({
      architecture: `SCMP_ARCH_${native}`,
      subArchitectures: subs === '' ? null : words(subs).map((s) => `SCMP_ARCH_${s}`),
    })),
    syscalls,
  };
}

/** The built-in profile in the user-profile format (e.g. to show or save it). */
export function defaultProfileDocument(): SeccompProfile {
  return buildDefaultProfile();
}

// ---------------------------------------------------------------------------
// Validation: the input is untrusted JSON, so check every field we use and
// say precisely which one is wrong.

const bad = (msg: string): BerthError => invalid(`invalid seccomp profile: ${msg}`);

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function strList(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw bad(`${what} must be an array of strings`);
  }
  return v as string[];
}

function optString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`${what} must be a string`);
  return v;
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    // JSON numbers beyond 2^53 lose precision when parsed; refusing them is
    // better than silently filtering on a different value.
    throw bad(`${what} must be a non-negative integer no larger than ${Number.MAX_SAFE_INTEGER}`);
  }
  return v;
}

function action(v: unknown, what: string): string {
  if (typeof v !== 'string' || !ACTIONS.has(v)) throw bad(`${what}: unknown action ${JSON.stringify(v)}`);
  return v;
}

function parseKernel(v: string, what: string): [number, number] {
  const m = /^(\d+)\.(\d+)$/.exec(v);
  if (!m) throw bad(`${what}: kernel version must be "major.minor", got ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2])];
}

function condition(v: unknown, what: string): ProfileCondition | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw bad(`${what} must be an object`);
  const out: ProfileCondition = {};
  const caps = strList(v.caps, `${what}.caps`);
  const arches = strList(v.arches, `${what}.arches`);
  const minKernel = optString(v.minKernel, `${what}.minKernel`);
  if (caps) out.caps = caps;
  if (arches) out.arches = arches;
  if (minKernel !== undefined && minKernel !== '') {
    parseKernel(minKernel, `${what}.minKernel`);
    out.minKernel = minKernel;
  }
  return out;
}

function args(v: unknown, what: string): OciSeccompArg[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(`${what} must be an array`);
  return v.map((a, i) => {
    const w = `${what}[${i}]`;
    if (!isObj(a)) throw bad(`${w} must be an object`);
    const index = uint(a.index, `${w}.index`);
    if (index > 5) throw bad(`${w}.index must be 0..5 (syscalls have six arguments)`);
    if (typeof a.op !== 'string' || !OPS.has(a.op)) throw bad(`${w}: unknown operator ${JSON.stringify(a.op)}`);
    const out: OciSeccompArg = { index, value: uint(a.value, `${w}.value`), op: a.op };
    if (a.valueTwo !== undefined && a.valueTwo !== null) out.valueTwo = uint(a.valueTwo, `${w}.valueTwo`);
    return out;
  });
}

function syscallRule(v: unknown, i: number): ProfileSyscall {
  const w = `syscalls[${i}]`;
  if (!isObj(v)) throw bad(`${w} must be an object`);
  const names = strList(v.names, `${w}.names`);
  const name = optString(v.name, `${w}.name`);
  if (name && names && names.length > 0) throw bad(`${w}: use either "name" or "names", not both`);
  const all = name ? [name] : (names ?? []);
  if (all.length === 0) throw bad(`${w} names no syscall`);
  if (all.some((n) => n === '')) throw bad(`${w} has an empty syscall name`);
  const act = action(v.action, `${w}.action`);
  const out: ProfileSyscall = { names: all, action: act };
  if (v.errnoRet !== undefined && v.errnoRet !== null) {
    if (!ERRNO_ACTIONS.has(act)) throw bad(`${w}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE`);
    out.errnoRet = uint(v.errnoRet, `${w}.errnoRet`);
  }
  const a = args(v.args, `${w}.args`);
  if (a && a.length > 0) out.args = a;
  const inc = condition(v.includes, `${w}.includes`);
  const exc = condition(v.excludes, `${w}.excludes`);
  if (inc) out.includes = inc;
  if (exc) out.excludes = exc;
  return out;
}

function archList(v: unknown, what: string): string[] | undefined {
  const list = strList(v, what);
  for (const a of list ?? []) if (!ARCHES.has(a)) throw bad(`${what}: unknown architecture ${JSON.stringify(a)}`);
  return list;
}

function validateProfile(v: unknown): SeccompProfile {
  if (!isObj(v)) throw bad('must be a JSON object');
  const out: SeccompProfile = { defaultAction: action(v.defaultAction, 'defaultAction') };
  if (v.defaultErrnoRet !== undefined && v.defaultErrnoRet !== null) {
    if (!ERRNO_ACTIONS.has(out.defaultAction)) {
      throw bad('defaultErrnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE');
    }
    out.defaultErrnoRet = uint(v.defaultErrnoRet, 'defaultErrnoRet');
  }
  const architectures = archList(v.architectures, 'architectures');
  if (v.archMap !== undefined && v.archMap !== null) {
    if (!Array.isArray(v.archMap)) throw bad('archMap must be an array');
    out.archMap = v.archMap.map((m, i) => {
      if (!isObj(m)) throw bad(`archMap[${i}] must be an object`);
      const [arch] = archList([m.architecture], `archMap[${i}].architecture`) ?? [];
      const subs = archList(m.subArchitectures, `archMap[${i}].subArchitectures`);
      return { architecture: arch!, subArchitectures: subs ?? null };
    });
  }
  if (architectures && architectures.length > 0 && out.archMap && out.archMap.length > 0) {
    throw bad('both "architectures" and "archMap" are given; use one of them');
  }
  if (architectures) out.architectures = architectures;
  const flags = strList(v.flags, 'flags');
  for (const f of flags ?? []) if (!FLAGS.has(f)) throw bad(`flags: unknown flag ${JSON.stringify(f)}`);
  if (flags && flags.length > 0) out.flags = flags;
  const listenerPath = optString(v.listenerPath, 'listenerPath');
  const listenerMetadata = optString(v.listenerMetadata, 'listenerMetadata');
  if (listenerPath) out.listenerPath = listenerPath;
  if (listenerMetadata) {
    if (!listenerPath) throw bad('listenerMetadata needs listenerPath');
    out.listenerMetadata = listenerMetadata;
  }
  const usesNotify = out.defaultAction === 'SCMP_ACT_NOTIFY';
  if (v.syscalls !== undefined && v.syscalls !== null) {
    if (!Array.isArray(v.syscalls)) throw bad('syscalls must be an array');
    out.syscalls = v.syscalls.map(syscallRule);
  }
  if ((usesNotify || out.syscalls?.some((s) => s.action === 'SCMP_ACT_NOTIFY')) && !listenerPath) {
    throw bad('SCMP_ACT_NOTIFY needs listenerPath');
  }
  return out;
}

// ---------------------------------------------------------------------------
// Conversion

function normalizeArch(a: string): string {
  const lower = a.toLowerCase();
  return ARCH_ALIASES[lower] ?? lower;
}

function kernelVersion(s: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(s);
  if (!m) throw invalid(`cannot read kernel version from ${JSON.stringify(s)}`);
  return [Number(m[1]), Number(m[2])];
}

function atLeast(have: [number, number], want: [number, number]): boolean {
  return have[0] !== want[0] ? have[0] > want[0] : have[1] >= want[1];
}

/** Does a rule apply to this container? includes must all hold; any exclude that holds drops it. */
function applies(rule: ProfileSyscall, caps: Set<string>, arch: string, kernel: [number, number]): boolean {
  const exc = rule.excludes;
  if (exc) {
    if (exc.arches?.includes(arch)) return false;
    if (exc.caps?.some((c) => caps.has(c))) return false;
    if (exc.minKernel && atLeast(kernel, parseKernel(exc.minKernel, 'minKernel'))) return false;
  }
  const inc = rule.includes;
  if (inc) {
    if (inc.arches && inc.arches.length > 0 && !inc.arches.includes(arch)) return false;
    if (inc.caps && !inc.caps.every((c) => caps.has(c))) return false;
    if (inc.minKernel && !atLeast(kernel, parseKernel(inc.minKernel, 'minKernel'))) return false;
  }
  return true;
}

/**
 * Resolves a profile (already parsed JSON, validated here) for one container.
 * The profile's architecture list is kept as given; with an archMap, the
 * entry for the native architecture contributes it and its sub-architectures
 * (so 32-bit binaries on a 64-bit host are filtered too).
 */
export function convertSeccompProfile(input: unknown, target: SeccompTarget): OciSeccomp {
  const profile = validateProfile(input);
  const arch = normalizeArch(target.arch ?? hostArch());
  const kernel = kernelVersion(target.kernel ?? release());
  const caps = new Set(target.capabilities);

  const out: OciSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;

  if (profile.architectures && profile.architectures.length > 0) {
    out.architectures = [...profile.architectures];
  } else if (profile.archMap) {
    const native = NATIVE_SECCOMP_ARCH[arch];
    const entry = profile.archMap.find((m) => m.architecture === native);
    if (entry) out.architectures = [entry.architecture, ...(entry.subArchitectures ?? []).filter(kernelRunsArch)];
  }
  if (profile.flags) out.flags = [...profile.flags];
  if (profile.listenerPath) out.listenerPath = profile.listenerPath;
  if (profile.listenerMetadata) out.listenerMetadata = profile.listenerMetadata;

  const syscalls: OciSeccompSyscall[] = [];
  for (const rule of profile.syscalls ?? []) {
    if (!applies(rule, caps, arch, kernel)) continue;
    const call: OciSeccompSyscall = { names: [...rule.names!], action: rule.action };
    if (rule.errnoRet !== undefined) call.errnoRet = rule.errnoRet;
    if (rule.args) call.args = rule.args.map((a) => ({ ...a }));
    syscalls.push(call);
  }
  out.syscalls = syscalls;
  return out;
}

let kernelConfig: string | null | undefined;

/**
 * Whether the running kernel can execute system calls of a sub-architecture.
 * Every architecture in a filter costs the runtime time to compile on each
 * container start, so one the kernel was built without (x32 usually) is left
 * out: its calls could not be made anyway. Unknown kernels keep everything.
 */
function kernelRunsArch(arch: string): boolean {
  if (kernelConfig === undefined) {
    try {
      kernelConfig = gunzipSync(readFileSync('/proc/config.gz')).toString();
    } catch {
      kernelConfig = null;
    }
  }
  if (kernelConfig === null) return true;
  if (arch === 'SCMP_ARCH_X32') return /^CONFIG_X86_X32(_ABI)?=y/m.test(kernelConfig);
  if (arch === 'SCMP_ARCH_X86') return /^CONFIG_IA32_EMULATION=y/m.test(kernelConfig);
  return true;
}

const defaultCache = new Map<string, OciSeccomp>();

/** The default filter for a container holding `capabilities`. */
export function defaultSeccompProfile(opts: SeccompTarget): OciSeccomp {
  // Computed once per capability set: it is on the path of every container start.
  const key = `${opts.arch ?? ''}|${opts.kernel ?? ''}|${[...opts.capabilities].sort().join(',')}`;
  let p = defaultCache.get(key);
  if (!p) {
    p = convertSeccompProfile(buildDefaultProfile(), opts);
    defaultCache.set(key, p);
  }
  return p;
}

/** A user's profile file (`--security-opt seccomp=<file>`), resolved for a container. */
export function loadSeccompProfile(json: string, caps: string[], opts: Omit<SeccompTarget, 'capabilities'> = {}): OciSeccomp {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw bad(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return convertSeccompProfile(parsed, { ...opts, capabilities: caps });
}
