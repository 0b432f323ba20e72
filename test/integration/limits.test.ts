/**
 * Resource limits through both CLIs: visible in inspect, enforced in the
 * cgroup, a memory hog killed and reported as OOMKilled, a fork bomb held
 * by --pids-limit, live updates, bad values refused; stats and pause.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { TestDaemon } from '../helpers/daemon.ts';
import { CGROUP_V2, cgroupFile, containerPid, eventually } from '../helpers/cgroup.ts';
import { cgroupOfPid } from '../../src/runtime/cgroups.ts';

const d = new TestDaemon('limits');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

function getJson(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method: 'GET', path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The first `n` lines of a streaming response, then hang up. */
function firstLines(path: string, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method: 'GET', path }, (res) => {
      let buf = '';
      res.on('data', (c) => {
        buf += c;
        const lines = buf.split('\n').filter(Boolean);
        if (lines.length >= n && buf.endsWith('\n')) {
          req.destroy();
          resolve(lines.slice(0, n));
        }
      });
      res.on('end', () => resolve(buf.split('\n').filter(Boolean)));
    });
    req.on('error', (e) => (e.message.includes('socket hang up') ? undefined : reject(e)));
    req.end();
  });
}

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[]) => (cli === 'berth' ? d.berth(args) : d.docker(args));

  test(`${cli}: limits are in inspect and in the cgroup`, () => {
    const name = `lim-${cli}`;
    const r = run(['run', '-d', '--name', name, '-m', '64m', '--memory-reservation', '32m', '--cpus', '0.5', '--cpu-shares', '512',
      '--cpuset-cpus', '0', '--pids-limit', '50', '--ulimit', 'nofile=1000:2000', '--oom-kill-disable', 'busybox', 'sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
    const hc = JSON.parse(run(['inspect', '-f', '{{json .HostConfig}}', name]).stdout) as Record<string, unknown>;
    assert.equal(hc.Memory, 64 * 1024 * 1024);
    assert.equal(hc.MemoryReservation, 32 * 1024 * 1024);
    assert.equal(hc.MemorySwap, 128 * 1024 * 1024, 'swap defaults to twice the memory, as docker sets it');
    assert.equal(hc.NanoCpus, 500_000_000);
    assert.equal(hc.CpuShares, 512);
    assert.equal(hc.CpusetCpus, '0');
    assert.equal(hc.PidsLimit, 50);
    assert.equal(hc.OomKillDisable, true);
    assert.deepEqual(hc.Ulimits, [{ Name: 'nofile', Soft: 1000, Hard: 2000 }]);
    assert.equal(cgroupFile(d, name, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(64 * 1024 * 1024));
    assert.equal(cgroupFile(d, name, 'memory', 'memory.soft_limit_in_bytes', 'memory.low'), String(32 * 1024 * 1024));
    if (CGROUP_V2) {
      assert.equal(cgroupFile(d, name, 'cpu', '', 'cpu.max'), '50000 100000');
    } else {
      assert.equal(cgroupFile(d, name, 'cpu', 'cpu.cfs_quota_us', ''), '50000');
      assert.equal(cgroupFile(d, name, 'cpu', 'cpu.cfs_period_us', ''), '100000');
      assert.equal(cgroupFile(d, name, 'cpu', 'cpu.shares', ''), '512');
      assert.match(cgroupFile(d, name, 'memory', 'memory.oom_control', ''), /oom_kill_disable 1/);
    }
    assert.equal(cgroupFile(d, name, 'cpuset', 'cpuset.cpus', 'cpuset.cpus'), '0');
    assert.equal(cgroupFile(d, name, 'pids', 'pids.max', 'pids.max'), '50');
    const inside = run(['run', '--rm', '--ulimit', 'nofile=1000:2000', 'busybox', 'sh', '-c', 'ulimit -n; ulimit -Hn']);
    assert.equal(inside.stdout, '1000\n2000\n', inside.stderr);
    assert.equal(run(['rm', '-f', name]).code, 0);
  });

  test(`${cli}: a memory hog is OOM-killed: exit 137, State.OOMKilled`, () => {
    const name = `hog-${cli}`;
    const r = run(['run', '--name', name, '-m', '16m', '--memory-swap', '16m', 'busybox', 'sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived']);
    assert.equal(r.code, 137, r.stderr);
    assert.doesNotMatch(r.stdout, /survived/);
    assert.equal(run(['inspect', '-f', '{{.State.OOMKilled}} {{.State.ExitCode}}', name]).stdout.trim(), 'true 137');
    // A container that merely exits is not OOMKilled.
    const ok = run(['run', '--name', `${name}-ok`, '-m', '16m', 'busybox', 'true']);
    assert.equal(ok.code, 0);
    assert.equal(run(['inspect', '-f', '{{.State.OOMKilled}}', `${name}-ok`]).stdout.trim(), 'false');
    assert.equal(run(['rm', name, `${name}-ok`]).code, 0);
  });

  test(`${cli}: a fork bomb is held by --pids-limit`, async () => {
    const name = `bomb-${cli}`;
    const r = run(['run', '-d', '--name', name, '--pids-limit', '30', '--cpus', '0.5', 'busybox', 'sh', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 300']);
    assert.equal(r.code, 0, r.stderr);
    const rejected = () => Number(/max (\d+)/.exec(cgroupFile(d, name, 'pids', 'pids.events', 'pids.events'))?.[1] ?? 0);
    await eventually('the kernel refusing forks', () => rejected() > 0);
    for (let i = 0; i < 10; i++) assert.ok(Number(cgroupFile(d, name, 'pids', 'pids.current', 'pids.current')) <= 30);
    const cg = cgroupOfPid(containerPid(d, name))!.dir('pids')!;
    assert.equal(run(['rm', '-f', name]).code, 0);
    await eventually('the container cgroup to be removed', () => !existsSync(cg));
  });

  test(`${cli}: update changes the limits of a running container`, () => {
    const name = `upd-${cli}`;
    assert.equal(run(['run', '-d', '--name', name, '-m', '64m', 'busybox', 'sleep', '300']).code, 0);
    const u = run(['update', '-m', '96m', '--memory-swap', '200m', '--cpus', '0.25', '--pids-limit', '40', '--restart', 'on-failure:3', name]);
    assert.equal(u.code, 0, u.stderr);
    assert.equal(u.stdout.trim(), name);
    assert.equal(run(['inspect', '-f', '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', name]).stdout.trim(),
      `${96 * 1024 * 1024} ${200 * 1024 * 1024} 250000000 40 on-failure:3`);
    assert.equal(cgroupFile(d, name, 'memory', 'memory.limit_in_bytes', 'memory.max'), String(96 * 1024 * 1024));
    assert.equal(cgroupFile(d, name, 'pids', 'pids.max', 'pids.max'), '40');
    if (!CGROUP_V2) assert.equal(cgroupFile(d, name, 'cpu', 'cpu.cfs_quota_us', ''), '25000');
    const bad = run(['update', '-m', '1m', name]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Minimum memory limit allowed is 6MB/);
    assert.equal(run(['inspect', '-f', '{{.HostConfig.Memory}}', name]).stdout.trim(), String(96 * 1024 * 1024), 'a refused update changes nothing');
    assert.equal(run(['rm', '-f', name]).code, 0);
  });

  test(`${cli}: bad limit values are refused and nothing is created`, () => {
    const cases: Array<[string[], RegExp]> = [
      [['-m', '1x'], /invalid argument "1x" for "-m, --memory" flag: invalid suffix: 'x'/],
      [['--cpus', '-1'], /Range of CPUs is from 0.01 to \d+\.00/],
      [['--cpus', '1000'], /Range of CPUs is from 0.01 to \d+\.00/],
      [['-m', '1m'], /Minimum memory limit allowed is 6MB/],
      [['-m', '64m', '--memory-swap', '32m'], /Minimum memoryswap limit should be larger than memory limit/],
      [['--memory-swap', '64m'], /You should always set the Memory limit when using Memoryswap limit/],
      [['--cpuset-cpus', '99'], /Requested CPUs are not available - requested 99/],
      [['--cpu-period', '10'], /CPU cfs period can not be less than 1ms/],
      [['--cpus', '1', '--cpu-quota', '50000'], /Conflicting options: Nano CPUs and CPU Quota cannot both be set/],
      [['--blkio-weight', '5'], /Range of blkio weight is from 10 to 1000/],
      [['--ulimit', 'nofile=20:10'], /soft limit must be less than or equal to hard limit/],
      [['--ulimit', 'bogus=1'], /invalid ulimit type: bogus/],
    ];
    for (const [flags, msg] of cases) {
      const r = run(['run', '--rm', ...flags, 'busybox', 'true']);
      assert.equal(r.code, 125, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg, flags.join(' '));
    }
    assert.equal(run(['ps', '-aq']).stdout.trim(), '', 'nothing was created');
  });

  test(`${cli}: stats --no-stream, --format and the live view`, async () => {
    const name = `st-${cli}`;
    assert.equal(run(['run', '-d', '--name', name, '-m', '64m', 'busybox', 'sh', '-c', 'dd if=/dev/zero of=/tmp/f bs=1k count=512 2>/dev/null; sleep 300']).code, 0);
    const table = run(['stats', '--no-stream', name]);
    assert.equal(table.code, 0, table.stderr);
    const [header, row] = table.stdout.split('\n');
    assert.match(header!, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
    assert.match(row!, new RegExp(`^[0-9a-f]{12}\\s+${name}\\s+\\d+\\.\\d\\d%\\s+[\\d.]+[KMG]?i?B / 64MiB\\s+\\d+\\.\\d\\d%\\s+\\S+ / \\S+\\s+\\S+ / \\S+\\s+[12]$`));
    const f = run(['stats', '--no-stream', '--format', '{{.Name}}|{{.MemUsage}}|{{.PIDs}}', name]);
    assert.match(f.stdout.trim(), new RegExp(`^${name}\\|[\\d.]+[KMG]?i?B / 64MiB\\|[12]$`));
    const usage = Number(/^[\d.]+/.exec(f.stdout.split('|')[1]!)![0]);
    assert.ok(usage > 0);
    // The streaming view redraws the table until interrupted.
    const live = d.spawn(cli, ['stats', '--format', 'table {{.Name}}\t{{.PIDs}}', name]);
    let out = '';
    live.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    const ended = new Promise((r) => live.once('exit', r));
    try {
      await eventually('two redraws of the live table', () => out.split('NAME').length > 2);
    } finally {
      live.kill('SIGKILL');
      await ended;
    }
    assert.match(out, new RegExp(`NAME\\s+PIDS\n${name}\\s+[12]\n`));
    assert.equal(run(['rm', '-f', name]).code, 0);
  });

  test(`${cli}: pause and unpause freeze the container`, () => {
    const name = `pz-${cli}`;
    assert.equal(run(['run', '-d', '--name', name, 'busybox', 'sleep', '300']).code, 0);
    assert.equal(run(['pause', name]).stdout.trim(), name);
    assert.equal(run(['inspect', '-f', '{{.State.Status}} {{.State.Paused}} {{.State.Running}}', name]).stdout.trim(), 'paused true true');
    assert.match(run(['ps', '--filter', `name=${name}`]).stdout, /Up .* \(Paused\)/);
    if (!CGROUP_V2) assert.equal(cgroupFile(d, name, 'freezer', 'freezer.state', ''), 'FROZEN');
    else assert.equal(cgroupFile(d, name, 'freezer', '', 'cgroup.freeze'), '1');
    const again = run(['pause', name]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is already paused/);
    assert.equal(run(['unpause', name]).code, 0);
    assert.equal(run(['inspect', '-f', '{{.State.Status}} {{.State.Paused}}', name]).stdout.trim(), 'running false');
    const notPaused = run(['unpause', name]);
    assert.match(notPaused.stderr, /is not paused/);
    // A paused container can still be removed by force.
    assert.equal(run(['pause', name]).code, 0);
    assert.equal(run(['rm', '-f', name]).code, 0);
    const stopped = run(['create', '--name', `${name}-c`, 'busybox', 'true']);
    assert.equal(stopped.code, 0);
    assert.match(run(['pause', `${name}-c`]).stderr, /is not running/);
    assert.equal(run(['rm', `${name}-c`]).code, 0);
  });
}

test('stats API: one-shot, stream=false with precpu, and a stream', async () => {
  assert.equal(d.berth(['run', '-d', '--name', 'st-api', 'busybox', 'sh', '-c', 'while :; do :; done']).code, 0);
  const one = await getJson('/v1.51/containers/st-api/stats?stream=false&one-shot=true');
  assert.equal(one.status, 200);
  const s = JSON.parse(one.body);
  for (const k of ['read', 'preread', 'pids_stats', 'blkio_stats', 'cpu_stats', 'precpu_stats', 'memory_stats', 'name', 'id']) assert.ok(k in s, k);
  assert.equal(s.name, '/st-api');
  assert.ok(s.cpu_stats.cpu_usage.total_usage > 0);
  assert.ok(s.cpu_stats.system_cpu_usage > 0);
  assert.ok(s.cpu_stats.online_cpus >= 1);
  assert.ok(s.memory_stats.usage > 0);
  assert.ok(s.memory_stats.limit > 0);
  assert.equal(s.pids_stats.current, 1);
  assert.equal(s.precpu_stats.cpu_usage.total_usage, 0);
  const two = JSON.parse((await getJson('/v1.51/containers/st-api/stats?stream=false')).body);
  assert.ok(two.precpu_stats.cpu_usage.total_usage > 0, 'precpu_stats is filled without one-shot');
  assert.ok(two.cpu_stats.cpu_usage.total_usage > two.precpu_stats.cpu_usage.total_usage, 'a busy container used CPU between samples');
  const lines = await firstLines('/v1.51/containers/st-api/stats', 2);
  assert.equal(lines.length, 2);
  const [a, b] = lines.map((l) => JSON.parse(l));
  assert.equal(b.preread, a.read);
  const bad = await getJson('/v1.51/containers/st-api/stats?stream=true&one-shot=true');
  assert.equal(bad.status, 400);
  const missing = await getJson('/v1.51/containers/nope/stats?stream=false');
  assert.equal(missing.status, 404);
  assert.equal(d.berth(['rm', '-f', 'st-api']).code, 0);
});
