/**
 * Security and namespace options through both CLIs: capabilities and
 * --privileged against the host's real bounding set, seccomp profiles,
 * no-new-privileges, read-only roots, users and groups, devices, sysctls,
 * /dev/shm, IPC/PID/UTS modes and --init.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';
import { eventually } from '../helpers/cgroup.ts';

const d = new TestDaemon('sec');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

const hostCapBnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[]) => (cli === 'berth' ? d.berth(args) : d.docker(args));
  const capEff = (flags: string[]) => {
    const r = run(['run', '--rm', ...flags, 'busybox', 'grep', 'CapEff', '/proc/self/status']);
    assert.equal(r.code, 0, r.stderr);
    return /CapEff:\s*([0-9a-f]+)/.exec(r.stdout)![1]!;
  };

  test(`${cli}: capabilities: default, drop ALL, add, privileged = the host's bounding set`, () => {
    assert.equal(capEff([]), '00000000a80425fb', 'docker\'s default set');
    assert.equal(capEff(['--cap-drop', 'ALL']), '0000000000000000');
    assert.equal(capEff(['--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN']), '0000000000001000');
    assert.equal(capEff(['--cap-drop', 'chown']), '00000000a80425fa');
    assert.equal(capEff(['--cap-add', 'ALL', '--cap-drop', 'SYS_ADMIN']), (BigInt(`0x${hostCapBnd}`) & ~(1n << 21n)).toString(16).padStart(16, '0'));
    // Every capability the host can grant, and only those: no "unable to apply caps".
    assert.equal(capEff(['--privileged']), hostCapBnd);
    const dev = run(['run', '--rm', '--privileged', 'busybox', 'sh', '-c', 'ls /dev/loop0 && grep Seccomp: /proc/self/status']);
    assert.equal(dev.code, 0, dev.stderr);
    assert.match(dev.stdout, /Seccomp:\s+0/);
    const bad = run(['run', '--rm', '--cap-add', 'NOT_A_CAP', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /unknown capability: "CAP_NOT_A_CAP"/);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: seccomp profiles from a file, unconfined, and bad files`, () => {
    const profile = join(d.dir, `deny-mkdir-${cli}.json`);
    writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] }, null, 2));
    const denied = run(['run', '--rm', '--security-opt', `seccomp=${profile}`, 'busybox', 'mkdir', '/x']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /Operation not permitted/);
    assert.equal(run(['run', '--rm', '--security-opt', `seccomp=${profile}`, 'busybox', 'touch', '/x']).code, 0, 'only the listed calls are denied');
    assert.match(run(['run', '--rm', 'busybox', 'grep', 'Seccomp:', '/proc/self/status']).stdout, /Seccomp:\s+2/);
    assert.match(run(['run', '--rm', '--security-opt', 'seccomp=unconfined', 'busybox', 'grep', 'Seccomp:', '/proc/self/status']).stdout, /Seccomp:\s+0/);
    const missing = run(['run', '--rm', '--security-opt', 'seccomp=/no/such/profile.json', 'busybox', 'true']);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /opening seccomp profile \(\/no\/such\/profile.json\) failed: open \/no\/such\/profile.json: no such file or directory/);
    const broken = join(d.dir, `broken-${cli}.json`);
    writeFileSync(broken, '{"defaultAction": "SCMP_ACT_NOPE"}');
    const bad = run(['run', '--rm', '--security-opt', `seccomp=${broken}`, 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /seccomp/i);
    const unknown = run(['run', '--rm', '--security-opt', 'bogus=1', 'busybox', 'true']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /Invalid --security-opt: "bogus=1"/);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: no-new-privileges, read-only, user with group-add, shm-size`, () => {
    assert.match(run(['run', '--rm', '--security-opt', 'no-new-privileges', 'busybox', 'grep', 'NoNewPrivs', '/proc/self/status']).stdout, /NoNewPrivs:\s+1/);
    assert.match(run(['run', '--rm', 'busybox', 'grep', 'NoNewPrivs', '/proc/self/status']).stdout, /NoNewPrivs:\s+0/);
    const ro = run(['run', '--rm', '--read-only', 'busybox', 'sh', '-c', 'touch /x; touch /tmp/y 2>&1; echo done']);
    assert.match(ro.stderr + ro.stdout, /Read-only file system/);
    assert.equal(run(['run', '--rm', '-u', '1000:1000', '--group-add', '44', '--group-add', '55', 'busybox', 'id']).stdout.trim(), 'uid=1000 gid=1000 groups=44,55');
    assert.match(run(['run', '--rm', '--shm-size', '10m', 'busybox', 'df', '-k', '/dev/shm']).stdout, /\s10240\s/);
  });

  test(`${cli}: --device and --sysctl`, () => {
    const dev = run(['run', '--rm', '--device', '/dev/loop0:/dev/myloop:r', 'busybox', 'sh', '-c', 'stat -c "%t %T %F" /dev/myloop; head -c 1 /dev/myloop >/dev/null 2>&1; echo read=$?; echo x > /dev/myloop 2>/dev/null; echo write=$?']);
    assert.equal(dev.code, 0, dev.stderr);
    assert.match(dev.stdout, /^7 0 block special file\n/);
    assert.match(dev.stdout, /write=1/, 'the cgroup allows only what the mapping grants');
    const nodev = run(['run', '--rm', '--device', '/dev/no-such-device', 'busybox', 'true']);
    assert.notEqual(nodev.code, 0);
    assert.match(nodev.stderr, /error gathering device information while adding custom device "\/dev\/no-such-device": no such file or directory/);
    const sys = run(['run', '--rm', '--sysctl', 'net.ipv4.ip_forward=1', '--sysctl', 'kernel.shmmax=1000000', 'busybox', 'sh', '-c', 'cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax']);
    assert.equal(sys.stdout, '1\n1000000\n', sys.stderr);
    const host = run(['run', '--rm', '--sysctl', 'vm.swappiness=1', 'busybox', 'true']);
    assert.equal(host.code, 125);
    assert.match(host.stderr, /vm.swappiness/);
    const hostNet = run(['run', '--rm', '--network', 'host', '--sysctl', 'net.ipv4.ip_forward=1', 'busybox', 'true']);
    assert.equal(hostNet.code, 125);
    assert.match(hostNet.stderr, /not allowed in host network namespace/);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: IPC, PID and UTS modes`, () => {
    const donor = `donor-${cli}`;
    assert.equal(run(['run', '-d', '--name', donor, '--ipc', 'shareable', 'busybox', 'sh', '-c', 'echo shared > /dev/shm/f; sleep 300']).code, 0);
    const priv = `priv-${cli}`;
    assert.equal(run(['run', '-d', '--name', priv, 'busybox', 'sleep', '300']).code, 0);
    assert.equal(run(['inspect', '-f', '{{.HostConfig.IpcMode}}', priv]).stdout.trim(), 'private');
    let shared = '';
    for (let i = 0; i < 50 && shared !== 'shared'; i++) shared = run(['run', '--rm', '--ipc', `container:${donor}`, 'busybox', 'cat', '/dev/shm/f']).stdout.trim();
    assert.equal(shared, 'shared');
    const ipcNs = (name: string) => run(['run', '--rm', '--ipc', name, 'busybox', 'readlink', '/proc/self/ns/ipc']).stdout.trim();
    const donorPid = Number(run(['inspect', '-f', '{{.State.Pid}}', donor]).stdout.trim());
    assert.equal(ipcNs(`container:${donor}`), readlinkProc(donorPid, 'ipc'));
    assert.equal(ipcNs('host'), readlinkProc(process.pid, 'ipc'));
    const notShareable = run(['run', '--rm', '--ipc', `container:${priv}`, 'busybox', 'true']);
    assert.notEqual(notShareable.code, 0);
    assert.match(notShareable.stderr, /non-shareable IPC/);
    const bogus = run(['run', '--rm', '--ipc', 'bogus', 'busybox', 'true']);
    assert.equal(bogus.code, 125);
    assert.match(bogus.stderr, /invalid IPC mode: bogus/);
    const pids = run(['run', '--rm', '--pid', `container:${donor}`, 'busybox', 'ps', '-o', 'pid,comm']);
    assert.match(pids.stdout, /\n\s+1 sleep\n/, 'the donor\'s init is PID 1 here');
    const hostPids = run(['run', '--rm', '--pid', 'host', 'busybox', 'readlink', '/proc/self/ns/pid']).stdout.trim();
    assert.equal(hostPids, readlinkProc(process.pid, 'pid'));
    assert.equal(run(['run', '--rm', '--uts', 'host', 'busybox', 'hostname']).stdout.trim(), hostname());
    assert.equal(run(['rm', '-f', donor, priv]).code, 0);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(`${d.dir}/data/containers`), 'the shared /dev/shm was unmounted');
  });

  test(`${cli}: --init runs tini as PID 1: it forwards signals and reaps zombies`, async () => {
    const ps = run(['run', '--rm', '--init', 'busybox', 'ps', '-o', 'pid,comm']);
    assert.match(ps.stdout, /\n\s+1 docker-init\n/);
    // An orphan reparented to PID 1 is reaped by tini; a PID 1 that is not an init leaves it a zombie.
    const orphan = 'sh -c "sleep 0.1 &"; exec sleep 300';
    const withInit = `zombie-init-${cli}`;
    const without = `zombie-${cli}`;
    assert.equal(run(['run', '-d', '--init', '--name', withInit, 'busybox', 'sh', '-c', orphan]).code, 0);
    assert.equal(run(['run', '-d', '--name', without, 'busybox', 'sh', '-c', orphan]).code, 0);
    const pidOf = (n: string) => Number(run(['inspect', '-f', '{{.State.Pid}}', n]).stdout.trim());
    await eventually('a zombie under a PID 1 that does not reap', () => descendants(pidOf(without)).some((p) => p.state === 'Z'));
    await eventually('tini to be left with just the container command', () => {
      const ds = descendants(pidOf(withInit));
      return ds.length === 1 && ds[0]!.comm === 'sleep' && ds[0]!.state !== 'Z';
    });
    assert.equal(run(['rm', '-f', withInit, without]).code, 0);
    // sleep as PID 1 ignores SIGTERM; behind tini it gets it and dies of it (143, not a kill after the timeout).
    const name = `init-${cli}`;
    assert.equal(run(['run', '-d', '--init', '--name', name, 'busybox', 'sleep', '300']).code, 0);
    assert.equal(run(['stop', '-t', '60', name]).code, 0);
    assert.equal(run(['inspect', '-f', '{{.State.ExitCode}}', name]).stdout.trim(), '143');
    assert.equal(run(['inspect', '-f', '{{.HostConfig.Init}}', name]).stdout.trim(), 'true');
    assert.equal(run(['rm', name]).code, 0);
  });
}

function readlinkProc(pid: number, ns: string): string {
  return readlinkSync(`/proc/${pid}/ns/${ns}`);
}

/** Every process below `root` on the host, with its state letter. */
function descendants(root: number): Array<{ pid: number; comm: string; state: string }> {
  const all: Array<{ pid: number; ppid: number; comm: string; state: string }> = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = st.lastIndexOf(')');
      const [state, ppid] = st.slice(close + 2).split(' ');
      all.push({ pid: Number(e), ppid: Number(ppid), comm: st.slice(st.indexOf('(') + 1, close), state: state! });
    } catch {
      // exited meanwhile
    }
  }
  const out: Array<{ pid: number; comm: string; state: string }> = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift()!;
    for (const c of all.filter((x) => x.ppid === p)) {
      out.push({ pid: c.pid, comm: c.comm, state: c.state });
      queue.push(c.pid);
    }
  }
  return out;
}
