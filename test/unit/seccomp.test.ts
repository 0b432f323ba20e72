import { gunzipSync } from 'node:zlib';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '../../src/util/errors.ts';
import { DEFAULT_CAPABILITIES } from '../../src/runtime/capabilities.ts';
import {
  defaultProfileDocument,
  defaultSeccompProfile,
  loadSeccompProfile,
  type OciSeccomp,
} from '../../src/runtime/seccomp.ts';

const DEFAULT = [...DEFAULT_CAPABILITIES];
const X86 = { arch: 'x86_64', kernel: '6.1.0' };

/** Syscalls allowed with no argument condition. */
function allowed(p: OciSeccomp): Set<string> {
  const out = new Set<string>();
  for (const s of p.syscalls ?? []) {
    if (s.action === 'SCMP_ACT_ALLOW' && !s.args) for (const n of s.names) out.add(n);
  }
  return out;
}

function rulesFor(p: OciSeccomp, name: string) {
  return (p.syscalls ?? []).filter((s) => s.names.includes(name));
}

function isInvalid(message: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, String(err));
    assert.equal(err.kind, 'InvalidParameter');
    assert.match(err.message, /^invalid seccomp profile: /);
    assert.match(err.message, message);
    return true;
  };
}

test('default profile: shape, architectures, default errno', () => {
  const p = defaultSeccompProfile({ capabilities: DEFAULT, ...X86 });
  assert.deepEqual(JSON.parse(JSON.stringify(p)), p);
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(p.defaultErrnoRet, 1);
  // x32 is filtered only where the running kernel can execute it (its config says so).
  const x32 = /^CONFIG_X86_X32(_ABI)?=y/m.test((() => { try { return gunzipSync(readFileSync('/proc/config.gz')).toString(); } catch { return 'CONFIG_X86_X32_ABI=y'; } })());
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', ...(x32 ? ['SCMP_ARCH_X32'] : [])]);
  const ok = allowed(p);
  for (const n of ['read', 'write', 'execve', 'openat', 'futex', 'exit_group', 'arch_prctl', 'modify_ldt', 'chroot', 'ptrace']) {
    assert.ok(ok.has(n), n);
  }
  for (const s of p.syscalls!) {
    assert.ok(s.names.length > 0);
    assert.equal(typeof s.action, 'string');
    // Nothing of the profile's own vocabulary leaks into the OCI object.
    assert.deepEqual(Object.keys(s).filter((k) => !['names', 'action', 'errnoRet', 'args'].includes(k)), []);
  }
  // Node's and Go's spellings of the architecture mean the same.
  assert.deepEqual(defaultSeccompProfile({ capabilities: DEFAULT, arch: 'x64', kernel: '6.1' }), p);
  assert.deepEqual(defaultSeccompProfile({ capabilities: DEFAULT, arch: 'amd64', kernel: '6.1' }), p);
});

test('mount and friends need CAP_SYS_ADMIN', () => {
  const without = allowed(defaultSeccompProfile({ capabilities: DEFAULT, ...X86 }));
  const withAdmin = allowed(defaultSeccompProfile({ capabilities: [...DEFAULT, 'CAP_SYS_ADMIN'], ...X86 }));
  for (const n of ['mount', 'umount2', 'unshare', 'setns', 'sethostname', 'bpf', 'clone3', 'fsopen']) {
    assert.ok(!without.has(n), `${n} allowed without CAP_SYS_ADMIN`);
    assert.ok(withAdmin.has(n), `${n} refused with CAP_SYS_ADMIN`);
  }
});

test('reboot, module loading and clock setting never in the default set', () => {
  const p = allowed(defaultSeccompProfile({ capabilities: DEFAULT, ...X86 }));
  for (const n of ['reboot', 'init_module', 'finit_module', 'delete_module', 'settimeofday', 'clock_settime', 'acct', 'iopl', 'kexec_load', 'open_by_handle_at', 'syslog', 'swapon']) {
    assert.ok(!p.has(n), n);
  }
  assert.ok(allowed(defaultSeccompProfile({ capabilities: ['CAP_SYS_BOOT'], ...X86 })).has('reboot'));
  assert.ok(allowed(defaultSeccompProfile({ capabilities: ['CAP_SYSLOG'], ...X86 })).has('syslog'));
  // Some calls stay refused whatever the capabilities.
  const everything = allowed(defaultSeccompProfile({ capabilities: ['CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_MODULE'], ...X86 }));
  assert.ok(!everything.has('kexec_load'));
  assert.ok(!everything.has('swapon'));
});

test('clone is filtered on namespace flags without CAP_SYS_ADMIN', () => {
  const p = defaultSeccompProfile({ capabilities: DEFAULT, ...X86 });
  assert.ok(!allowed(p).has('clone'));
  const clone = rulesFor(p, 'clone');
  assert.equal(clone.length, 1);
  assert.equal(clone[0]!.action, 'SCMP_ACT_ALLOW');
  // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET must all be clear.
  assert.deepEqual(clone[0]!.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  assert.equal(0x7e020000, 2114060288);
  // clone3 hides its flags from seccomp: ENOSYS sends libc back to clone.
  assert.deepEqual(rulesFor(p, 'clone3'), [{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);

  const admin = defaultSeccompProfile({ capabilities: [...DEFAULT, 'CAP_SYS_ADMIN'], ...X86 });
  assert.ok(allowed(admin).has('clone'));
  assert.ok(rulesFor(admin, 'clone').every((r) => !r.args));
  assert.ok(rulesFor(admin, 'clone3').every((r) => r.action === 'SCMP_ACT_ALLOW'));

  // s390 passes the flags second.
  const s390 = defaultSeccompProfile({ capabilities: DEFAULT, arch: 's390x', kernel: '6.1' });
  assert.deepEqual(rulesFor(s390, 'clone').map((r) => r.args?.[0]?.index), [1]);
  assert.deepEqual(s390.architectures, ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390']);
});

test('argument filters: socket families and personality', () => {
  const p = defaultSeccompProfile({ capabilities: DEFAULT, ...X86 });
  assert.deepEqual(
    rulesFor(p, 'socket').map((r) => r.args),
    [[{ index: 0, value: 38, op: 'SCMP_CMP_LT' }], [{ index: 0, value: 39, op: 'SCMP_CMP_EQ' }], [{ index: 0, value: 40, op: 'SCMP_CMP_GT' }]],
  );
  assert.deepEqual(
    rulesFor(p, 'personality').map((r) => r.args![0]!.value).sort((a, b) => a - b),
    [0, 8, 0x20000, 0x20008, 0xffffffff],
  );
});

test('architecture and kernel conditions', () => {
  const arm = defaultSeccompProfile({ capabilities: DEFAULT, arch: 'arm64', kernel: '6.1' });
  assert.deepEqual(arm.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  assert.ok(allowed(arm).has('set_tls'));
  assert.ok(!allowed(arm).has('arch_prctl'));
  assert.ok(!allowed(defaultSeccompProfile({ capabilities: DEFAULT, ...X86 })).has('set_tls'));
  // ptrace is safe only from 4.8 on; before that it needs CAP_SYS_PTRACE.
  assert.ok(!allowed(defaultSeccompProfile({ capabilities: DEFAULT, arch: 'amd64', kernel: '4.4.0-100-generic' })).has('ptrace'));
  assert.ok(allowed(defaultSeccompProfile({ capabilities: ['CAP_SYS_PTRACE'], arch: 'amd64', kernel: '4.4.0' })).has('ptrace'));
  assert.ok(allowed(defaultSeccompProfile({ capabilities: DEFAULT, arch: 'amd64', kernel: '4.8' })).has('ptrace'));
  // The host's own values are used when none are given.
  assert.ok(defaultSeccompProfile({ capabilities: DEFAULT }).syscalls!.length > 5);
});

test('the built-in profile and the same profile from JSON convert identically', () => {
  const json = JSON.stringify(defaultProfileDocument());
  for (const caps of [[], DEFAULT, [...DEFAULT, 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']]) {
    assert.deepEqual(loadSeccompProfile(json, caps, X86), defaultSeccompProfile({ capabilities: caps, ...X86 }));
  }
});

test('user profiles: names, conditions, errno, architectures', () => {
  const profile = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    flags: ['SECCOMP_FILTER_FLAG_LOG'],
    syscalls: [
      { name: 'chmod', action: 'SCMP_ACT_ERRNO', errnoRet: 13, comment: 'no chmod' },
      { names: ['mkdir', 'rmdir'], action: 'SCMP_ACT_ERRNO', includes: { caps: ['CAP_CHOWN', 'CAP_KILL'] } },
      { names: ['kill'], action: 'SCMP_ACT_KILL', excludes: { caps: ['CAP_KILL'] } },
      { names: ['uname'], action: 'SCMP_ACT_LOG', includes: { arches: ['arm64'] } },
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', includes: { minKernel: '99.0' } },
      { names: ['getppid'], action: 'SCMP_ACT_ERRNO', excludes: { minKernel: '3.10' } },
      { names: ['write'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 99, op: 'SCMP_CMP_EQ' }] },
    ],
  };
  const p = loadSeccompProfile(JSON.stringify(profile), ['CAP_CHOWN'], X86);
  assert.deepEqual(p, {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    flags: ['SECCOMP_FILTER_FLAG_LOG'],
    syscalls: [
      { names: ['chmod'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['kill'], action: 'SCMP_ACT_KILL' },
      { names: ['write'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 99, op: 'SCMP_CMP_EQ' }] },
    ],
  });
  const both = loadSeccompProfile(JSON.stringify(profile), ['CAP_CHOWN', 'CAP_KILL'], X86);
  assert.deepEqual(both.syscalls!.map((s) => s.names[0]), ['chmod', 'mkdir', 'write']);

  // archMap picks the native entry; a profile without either leaves the choice to the runtime.
  const mapped = loadSeccompProfile(JSON.stringify({
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 38,
    archMap: [{ architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] }, { architecture: 'SCMP_ARCH_X86_64', subArchitectures: null }],
    syscalls: null,
  }), [], X86);
  assert.deepEqual(mapped, { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, architectures: ['SCMP_ARCH_X86_64'], syscalls: [] });
  assert.deepEqual(loadSeccompProfile('{"defaultAction":"SCMP_ACT_ALLOW"}', [], X86), { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] });
});

test('malformed user profiles are refused clearly', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /not valid JSON/],
    ['{"defaultAction":', /not valid JSON/],
    ['[]', /must be a JSON object/],
    ['"SCMP_ACT_ALLOW"', /must be a JSON object/],
    ['{}', /defaultAction: unknown action undefined/],
    ['{"defaultAction":"ALLOW"}', /defaultAction: unknown action "ALLOW"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1}', /defaultErrnoRet is only valid/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":-1}', /defaultErrnoRet must be a non-negative integer/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":["x86_64"]}', /architectures: unknown architecture "x86_64"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":"SCMP_ARCH_X86_64"}', /architectures must be an array of strings/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[]}]}', /both "architectures" and "archMap"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"amd64"}]}', /archMap\[0\]\.architecture: unknown architecture "amd64"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","flags":["FOO"]}', /flags: unknown flag "FOO"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}', /syscalls must be an array/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[1]}', /syscalls\[0\] must be an object/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}', /syscalls\[0\] names no syscall/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}', /syscalls\[0\] names no syscall/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[1],"action":"SCMP_ACT_ERRNO"}]}', /syscalls\[0\]\.names must be an array of strings/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}', /use either "name" or "names"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"]}]}', /syscalls\[0\]\.action: unknown action undefined/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","errnoRet":1}]}', /errnoRet is only valid/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}', /args\[0\]\.index must be 0\.\.5/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"EQ"}]}]}', /unknown operator "EQ"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":"1","op":"SCMP_CMP_EQ"}]}]}', /args\[0\]\.value must be a non-negative integer/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}', /args\[0\]\.value must be a non-negative integer/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":{}}]}', /args must be an array/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4"}}]}', /minKernel: kernel version must be "major.minor"/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","excludes":{"caps":"CAP_X"}}]}', /excludes\.caps must be an array of strings/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_NOTIFY"}]}', /SCMP_ACT_NOTIFY needs listenerPath/],
  ];
  for (const [json, message] of cases) {
    assert.throws(() => loadSeccompProfile(json, DEFAULT, X86), isInvalid(message), json);
  }
});

// ---------------------------------------------------------------------------
// The real thing: the profile loaded by runc, filtering a busybox container.

const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';
const canRun = existsSync(RUNC) && existsSync(BUSYBOX) && process.getuid?.() === 0;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function makeBundle(dir: string): void {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['mnt', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(BUSYBOX, join(rootfs, 'bin/busybox'));
  for (const applet of ['sh', 'echo', 'true', 'mount', 'umount', 'unshare', 'hostname', 'cat', 'linux32']) {
    symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  const r = spawnSync(RUNC, ['spec', '-b', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

function runIn(dir: string, root: string, id: string, seccomp: OciSeccomp | undefined, caps: string[], script: string): Run {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[]; capabilities: Record<string, string[]> };
    root: { readonly: boolean };
    linux: { seccomp?: OciSeccomp };
  };
  config.process.terminal = false;
  config.process.args = ['/bin/sh', '-c', script];
  config.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
  config.root.readonly = false;
  if (seccomp) config.linux.seccomp = seccomp;
  else delete config.linux.seccomp;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  try {
    const r = spawnSync(RUNC, ['--root', root, 'run', '-b', dir, id], { encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    spawnSync(RUNC, ['--root', root, 'delete', '-f', id], { encoding: 'utf8' });
  }
}

test('runc enforces the generated profile', { skip: !canRun && 'needs root, runc and busybox' }, () => {
  const base = mkdtempSync(join(tmpdir(), 'berth-seccomp-'));
  const bundle = join(base, 'bundle');
  const root = join(base, 'runc');
  mkdirSync(bundle);
  mkdirSync(root);
  const id = `berth-seccomp-${process.pid}`;
  try {
    makeBundle(bundle);
    const adminCaps = [...DEFAULT, 'CAP_SYS_ADMIN'];
    const plain = defaultSeccompProfile({ capabilities: DEFAULT });
    const admin = defaultSeccompProfile({ capabilities: adminCaps });

    // Ordinary work runs normally, including the filtered clone (fork) and personality.
    let r = runIn(bundle, root, id, plain, DEFAULT, 'echo hello; (true); echo fork=$?; linux32 true; echo p=$?');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'hello\nfork=0\np=0\n');

    // The process holds CAP_SYS_ADMIN, but the profile was made without it:
    // the filter alone must stop mount, with EPERM.
    r = runIn(bundle, root, id, plain, adminCaps, 'mount -t tmpfs x /mnt; echo rc=$?');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /rc=[1-9]/);
    // busybox words EPERM from mount(2) its own way.
    assert.match(r.stderr, /permission denied \(are you root\?\)|Operation not permitted/);

    r = runIn(bundle, root, id, admin, adminCaps, 'mount -t tmpfs x /mnt && echo mounted');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'mounted\n');

    // New user namespaces need no capability at all, so only seccomp
    // refuses them here; with the filter off they work.
    r = runIn(bundle, root, id, plain, DEFAULT, 'unshare -U true; echo rc=$?');
    assert.match(r.stdout, /rc=[1-9]/);
    assert.match(r.stderr, /Operation not permitted/);
    r = runIn(bundle, root, id, undefined, DEFAULT, 'unshare -U true; echo rc=$?');
    assert.equal(r.stdout, 'rc=0\n', r.stderr);

    r = runIn(bundle, root, id, plain, adminCaps, 'hostname foo; echo rc=$?');
    assert.match(r.stdout, /rc=[1-9]/);
  } finally {
    spawnSync(RUNC, ['--root', root, 'delete', '-f', id], { encoding: 'utf8' });
    rmSync(base, { recursive: true, force: true });
  }
});
