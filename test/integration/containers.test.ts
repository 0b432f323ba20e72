/**
 * Container lifecycle through both CLIs against a private berthd: real
 * containers on runc, real overlayfs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('ctr');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));

  test(`${cli}: run --rm prints output and propagates the exit code`, () => {
    const ok = run(['run', '--rm', 'busybox', 'echo', 'hello world']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello world\n');
    const fail = run(['run', '--rm', 'busybox', 'sh', '-c', 'echo oops >&2; exit 3']);
    assert.equal(fail.code, 3);
    assert.equal(fail.stderr, 'oops\n');
    assert.equal(fail.stdout, '');
    const left = run(['ps', '-aq']);
    assert.equal(left.stdout.trim(), '', 'a --rm container must be gone');
  });

  test(`${cli}: exit codes 125, 126 and 127`, () => {
    const notFound = run(['run', '--rm', 'busybox', 'no-such-command']);
    assert.equal(notFound.code, 127, notFound.stderr);
    assert.match(notFound.stderr, /executable file not found/);
    const notExec = run(['run', '--rm', 'busybox', '/etc/passwd']);
    assert.equal(notExec.code, 126, notExec.stderr);
    assert.match(notExec.stderr, /permission denied/);
    const badFlag = run(['run', '--no-such-flag', 'busybox', 'true']);
    assert.equal(badFlag.code, 125);
    const noImage = run(['run', '--rm', '--pull', 'never', 'nosuchimage:1', 'true']);
    assert.equal(noImage.code, 125);
    assert.match(noImage.stderr, /No such image: nosuchimage:1/);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: run options: env, workdir, user, hostname, entrypoint, labels`, () => {
    const envFile = join(d.dir, `env-${cli}`);
    writeFileSync(envFile, '# comment\nFROM_FILE=yes\n');
    const r = run(['run', '--rm', '-e', 'A=1', '--env-file', envFile, '-w', '/tmp', '-u', 'nobody', '--hostname', 'box1', 'busybox', 'sh', '-c', 'echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname) $(cat /etc/hostname)']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1 yes /tmp 65534:65534 box1 box1\n');
    const ep = run(['run', '--rm', '--entrypoint', 'echo', 'busybox', 'from', 'entrypoint']);
    assert.equal(ep.stdout, 'from entrypoint\n');
    const uidgid = run(['run', '--rm', '-u', '1234:5678', 'busybox', 'id']);
    assert.match(uidgid.stdout, /uid=1234 gid=5678/);
    const badUser = run(['run', '--rm', '-u', 'nosuchuser', 'busybox', 'true']);
    assert.notEqual(badUser.code, 0);
    assert.match(badUser.stderr, /unable to find user nosuchuser/);
  });

  test(`${cli}: detached lifecycle: ps, logs, stop, start, restart, rename, wait, rm`, () => {
    const name = `life-${cli}`;
    const id = run(['run', '-d', '--name', name, '-l', 'suite=life', 'busybox', 'sh', '-c', 'trap "echo got-term; exit 7" TERM; echo started; while true; do sleep 0.1; done']).stdout.trim();
    assert.match(id, /^[a-f0-9]{64}$/);
    const ps = run(['ps', '--filter', 'label=suite=life', '--format', '{{.Names}} {{.State}}']);
    assert.equal(ps.stdout.trim(), `${name} running`);
    let logs = '';
    for (let i = 0; i < 50 && !logs.includes('started'); i++) {
      logs = run(['logs', name]).stdout;
    }
    assert.equal(logs, 'started\n');
    const dup = run(['run', '-d', '--name', name, 'busybox', 'true']);
    assert.equal(dup.code, 125);
    assert.match(dup.stderr, /already in use/);
    const stop = run(['stop', '-t', '5', name]);
    assert.equal(stop.code, 0, stop.stderr);
    const insp = JSON.parse(run(['inspect', name]).stdout)[0];
    assert.equal(insp.State.Status, 'exited');
    assert.equal(insp.State.ExitCode, 7);
    assert.match(run(['logs', name]).stdout, /got-term/);
    assert.equal(run(['wait', name]).stdout.trim(), '7');
    assert.equal(run(['start', name]).code, 0);
    assert.equal(run(['inspect', '-f', '{{.State.Running}}', name]).stdout.trim(), 'true');
    assert.equal(run(['restart', '-t', '1', name]).code, 0);
    assert.equal(run(['rename', name, `${name}-2`]).code, 0);
    const rmRunning = run(['rm', `${name}-2`]);
    assert.notEqual(rmRunning.code, 0);
    assert.match(rmRunning.stderr, /stop the container before removing or force remove/);
    assert.equal(run(['kill', '-s', 'KILL', `${name}-2`]).code, 0);
    assert.equal(run(['wait', `${name}-2`]).stdout.trim(), '137');
    assert.equal(run(['rm', `${name}-2`]).code, 0);
    assert.equal(run(['inspect', `${name}-2`]).code, 1);
  });

  test(`${cli}: ps -s reports the container's own writes and the virtual size`, () => {
    const name = `size-${cli}`;
    assert.equal(run(['run', '--name', name, 'busybox', 'dd', 'if=/dev/zero', 'of=/blob', 'bs=1000', 'count=3000']).code, 0);
    const line = run(['ps', '-a', '-s', '--filter', `name=${name}`, '--format', '{{.Size}}']).stdout.trim();
    // 3,000,000 bytes written by the container, on top of the busybox image.
    assert.match(line, /^3MB \(virtual [0-9.]+MB\)$/, line);
    const insp = JSON.parse(run(['inspect', '-s', name]).stdout)[0];
    assert.ok(insp.SizeRw >= 3_000_000 && insp.SizeRw < 3_100_000, String(insp.SizeRw));
    assert.ok(insp.SizeRootFs > insp.SizeRw);
    assert.equal(run(['rm', name]).code, 0);
  });

  test(`${cli}: stop escalates to SIGKILL after the timeout`, () => {
    const id = run(['run', '-d', 'busybox', 'sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done']).stdout.trim();
    const t0 = Date.now();
    assert.equal(run(['stop', '-t', '1', id]).code, 0);
    assert.ok(Date.now() - t0 >= 900);
    assert.equal(run(['inspect', '-f', '{{.State.ExitCode}}', id]).stdout.trim(), '137');
    run(['rm', id]);
  });

  test(`${cli}: stdin with -i`, () => {
    const r = run(['run', '--rm', '-i', 'busybox', 'sh', '-c', 'tr a-z A-Z'], 'shout\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'SHOUT\n');
  });

  test(`${cli}: logs --tail, --timestamps, --since`, () => {
    const id = run(['run', '-d', 'busybox', 'sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; done; echo err >&2']).stdout.trim();
    run(['wait', id]);
    assert.equal(run(['logs', '--tail', '2', id]).stdout, 'line5\n');
    const both = run(['logs', id]);
    assert.equal(both.stdout, 'line1\nline2\nline3\nline4\nline5\n');
    assert.equal(both.stderr, 'err\n');
    const stamped = run(['logs', '-t', '--tail', '2', id]);
    assert.match(stamped.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line5\n$/);
    assert.match(stamped.stderr, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z err\n$/);
    assert.equal(run(['logs', '--since', '2099-01-01T00:00:00Z', id]).stdout, '');
    run(['rm', id]);
  });

  test(`${cli}: logs -f follows until the container exits`, () => {
    const id = run(['run', '-d', 'busybox', 'sh', '-c', 'for i in 1 2 3; do echo tick$i; sleep 0.2; done']).stdout.trim();
    const r = run(['logs', '-f', id]);
    assert.equal(r.stdout, 'tick1\ntick2\ntick3\n');
    run(['rm', id]);
  });
}

test('isolation: namespaces, capabilities, masked paths, /dev, generated /etc files', () => {
  const r = d.berth(['run', '--rm', 'busybox', 'sh', '-c', [
    'echo pid1=$(cat /proc/1/comm)',
    'ps -o comm= > /tmp/ps.txt; echo procs=$(sort -u /tmp/ps.txt | tr "\\n" ,)',
    'grep CapEff /proc/self/status',
    'echo kcore=$(cat /proc/kcore | wc -c)',
    'touch /proc/sys/kernel/hostname 2>/dev/null && echo sysrw || echo sysro',
    'ls /dev | sort | tr "\\n" " "; echo',
    'cat /etc/hosts | grep -c localhost',
    'ip link 2>/dev/null | grep -c "^[0-9]"',
  ].join('; ')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /pid1=sh/);
  // Only the container's own processes are visible.
  assert.match(r.stdout, /procs=ps,sh,\n/);
  // Docker's default capability set is 0xa80425fb.
  assert.match(r.stdout, /CapEff:\s+00000000a80425fb/);
  assert.match(r.stdout, /kcore=0/);
  assert.match(r.stdout, /sysro/);
  assert.match(r.stdout, /^fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero \n/m);
  const seccomp = d.berth(['run', '--rm', 'busybox', 'grep', 'Seccomp:', '/proc/self/status']);
  assert.match(seccomp.stdout, /Seccomp:\s+2/);
  const net = d.berth(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'ls /sys/class/net | tr "\\n" " "']);
  assert.equal(net.stdout.trim(), 'lo');
  const hostNet = d.berth(['run', '--rm', '--network', 'host', 'busybox', 'sh', '-c', 'ls /sys/class/net | wc -l']);
  assert.ok(Number(hostNet.stdout.trim()) >= 1);
});

test('cgroup: each container gets its own cgroup under the parent', () => {
  const id = d.berth(['run', '-d', 'busybox', 'sleep', '30']).stdout.trim();
  const cg = d.berth(['run', '--rm', '--pid', 'host', 'busybox', 'true']);
  assert.equal(cg.code, 0);
  const pid = d.berth(['inspect', '-f', '{{.State.Pid}}', id]).stdout.trim();
  const cgroups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  assert.match(cgroups, new RegExp(`memory:${d.cgroupParent}/${id}`));
  d.berth(['rm', '-f', id]);
  assert.ok(!existsSync(`/sys/fs/cgroup/memory${d.cgroupParent}/${id}`), 'cgroup removed with the container');
});

test('create then start; inspect shows docker fields', () => {
  const id = d.docker(['create', '--name', 'created1', '--stop-signal', 'SIGUSR1', '--stop-timeout', '3', 'busybox', 'echo', 'later']).stdout.trim();
  assert.match(id, /^[a-f0-9]{64}$/);
  const i = JSON.parse(d.berth(['inspect', 'created1']).stdout)[0];
  assert.equal(i.State.Status, 'created');
  assert.equal(i.Name, '/created1');
  assert.equal(i.Path, 'echo');
  assert.deepEqual(i.Args, ['later']);
  assert.equal(i.Config.StopSignal, 'SIGUSR1');
  assert.equal(i.Config.StopTimeout, 3);
  assert.match(i.Image, /^sha256:/);
  const started = d.docker(['start', '-a', 'created1']);
  assert.equal(started.stdout, 'later\n');
  assert.equal(d.berth(['ps', '-a', '--filter', 'name=created1', '--filter', 'status=exited', '-q']).stdout.trim(), id.slice(0, 12));
  d.berth(['rm', 'created1']);
});

test('bad input: malformed JSON, unknown container, bad names, unknown signal', async () => {
  const post = async (path: string, body: string) => {
    const http = await import('node:http');
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ socketPath: d.socket, path, method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    });
  };
  const bad = await post('/v1.51/containers/create', '{"Image": "busybox", ');
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).message, /invalid JSON/);
  const badRef = await post('/v1.51/containers/create', '{"Image": "Busy:Box"}');
  assert.equal(badRef.status, 400);
  assert.match(JSON.parse(badRef.body).message, /invalid reference format/);
  const noImg = await post('/v1.51/containers/create', '{"Image": "nosuch:img"}');
  assert.equal(noImg.status, 404);
  const badName = await post('/v1.51/containers/create?name=bad%20name', '{"Image": "busybox"}');
  assert.equal(badName.status, 400);
  const tooNew = await post('/v9.99/containers/create', '{}');
  assert.equal(tooNew.status, 400);
  assert.equal((await post('/v1.51/containers/nope/start', '')).status, 404);
  const id = d.berth(['create', 'busybox', 'true']).stdout.trim();
  const badSig = d.berth(['kill', '-s', 'SIGNOPE', id]);
  assert.notEqual(badSig.code, 0);
  const sig = d.docker(['run', '-d', 'busybox', 'sleep', '10']).stdout.trim();
  const badSig2 = d.docker(['kill', '-s', 'NOPE', sig]);
  assert.match(badSig2.stderr, /invalid signal/);
  d.berth(['rm', '-f', id, sig]);
  assert.equal(d.berth(['ps', '-aq']).stdout.trim(), '');
});

test('an image that is not here is not fetched from a registry off this machine', () => {
  for (const r of [d.docker(['run', '--rm', 'no-such-image-here']), d.berth(['run', '--rm', 'no-such-image-here'])]) {
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, /Unable to find image 'no-such-image-here:latest' locally/);
    assert.match(r.stderr, /registry docker\.io is not on loopback/);
  }
  assert.equal(d.berth(['ps', '-aq']).stdout.trim(), '');
});
