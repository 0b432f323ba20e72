/**
 * The daemon as a whole: API versions and ping, two daemons side by side,
 * and live restore (berthd killed while containers run).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestDaemon } from '../helpers/daemon.ts';

const a = new TestDaemon('da');
const b = new TestDaemon('db');

before(async () => {
  await Promise.all([a.start(), b.start()]);
  a.loadBusybox();
  b.loadBusybox();
});

after(async () => {
  await a.cleanup();
  await b.cleanup();
});

function call(d: TestDaemon, method: string, path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method, path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('ping (GET and HEAD), version headers, version negotiation', async () => {
  const get = await call(a, 'GET', '/_ping');
  assert.equal(get.status, 200);
  assert.equal(get.body, 'OK');
  assert.equal(get.headers['api-version'], '1.51');
  assert.equal(get.headers['ostype'], 'linux');
  const head = await call(a, 'HEAD', '/_ping');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  for (const v of ['1.24', '1.41', '1.45', '1.50', '1.51']) {
    const r = await call(a, 'GET', `/v${v}/version`);
    assert.equal(r.status, 200, v);
    assert.equal(JSON.parse(r.body).ApiVersion, '1.51');
  }
  const old = await call(a, 'GET', '/v1.12/version');
  assert.equal(old.status, 400);
  assert.match(JSON.parse(old.body).message, /too old/);
  const missing = await call(a, 'GET', '/v1.51/nothing/here');
  assert.equal(missing.status, 404);
  assert.equal(JSON.parse(missing.body).message, 'page not found');
  const v = a.docker(['version', '--format', '{{.Server.APIVersion}} {{.Client.APIVersion}}']);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), '1.51 1.50');
  const older = a.cli2('docker', ['version', '--format', '{{.Client.APIVersion}}'], { DOCKER_API_VERSION: '1.41' });
  assert.equal(older.stdout.trim(), '1.41');
  const ps = a.cli2('docker', ['ps', '-a'], { DOCKER_API_VERSION: '1.41' });
  assert.equal(ps.code, 0, ps.stderr);
  const info = a.docker(['info', '--format', '{{.Containers}} {{.Images}} {{.Driver}}']);
  assert.equal(info.stdout.trim(), '0 1 overlay2');
});

test('two daemons with their own roots and sockets do not see each other', () => {
  const ida = a.berth(['run', '-d', '--name', 'only-in-a', 'busybox', 'sleep', '30']).stdout.trim();
  assert.match(ida, /^[a-f0-9]{64}$/);
  assert.equal(b.berth(['ps', '-aq']).stdout.trim(), '');
  const r = b.berth(['run', '--rm', '--name', 'only-in-a', 'busybox', 'echo', 'b-too']);
  assert.equal(r.stdout, 'b-too\n', r.stderr);
  assert.equal(a.berth(['inspect', '-f', '{{.State.Running}}', 'only-in-a']).stdout.trim(), 'true');
  assert.equal(a.berth(['rm', '-f', 'only-in-a']).code, 0);
});

test('live restore: SIGKILL berthd while containers run; the next berthd adopts them', async () => {
  const id = a.berth(['run', '-d', '--name', 'survivor', 'busybox', 'sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done']).stdout.trim();
  const ends = a.berth(['run', '-d', '--name', 'ends-while-down', 'busybox', 'sh', '-c', 'sleep 0.5; exit 42']).stdout.trim();
  const gone = a.berth(['run', '-d', '--rm', '--name', 'rm-while-down', 'busybox', 'sh', '-c', 'sleep 0.5']).stdout.trim();
  const pid = Number(a.berth(['inspect', '-f', '{{.State.Pid}}', id]).stdout.trim());
  assert.ok(pid > 0);
  await a.stop('SIGKILL');
  const before = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  assert.match(before, /sh/);
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(existsSync(`/proc/${pid}`), 'the container kept running while berthd was down');
  await a.start();
  const st = a.berth(['inspect', '-f', '{{.State.Running}} {{.State.Pid}}', id]).stdout.trim();
  assert.equal(st, `true ${pid}`);
  const logs = a.berth(['logs', id]).stdout.split('\n').filter(Boolean);
  assert.ok(logs.length >= 15, `logging went on while berthd was down (${logs.length} lines)`);
  assert.equal(a.berth(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', ends]).stdout.trim(), 'exited 42');
  assert.equal(a.berth(['inspect', gone]).code, 1, 'an --rm container that exited while berthd was down is removed');
  const exec = a.docker(['wait', ends]);
  assert.equal(exec.stdout.trim(), '42');
  assert.equal(a.docker(['stop', '-t', '1', id]).code, 0);
  assert.equal(a.berth(['wait', id]).stdout.trim(), '137');
  assert.equal(a.berth(['rm', id, ends]).code, 0);
  assert.equal(a.berth(['ps', '-aq']).stdout.trim(), '');
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  assert.ok(!mounts.includes(a.dir), 'no mounts left');
});

test('live restore with limits, health and pause: berthd SIGKILLed mid-run; stats, update, stop, wait and logs work on adopted containers; nothing leaks', async () => {
  const busy = a.berth(['run', '-d', '--name', 'lr-busy', '-m', '64m', '--pids-limit', '20', '--health-cmd', 'true', '--health-interval', '200ms',
    'busybox', 'sh', '-c', 'i=0; while true; do i=$((i+1)); echo n$i; sleep 0.1; done']).stdout.trim();
  const frozen = a.berth(['run', '-d', '--name', 'lr-paused', 'busybox', 'sleep', '300']).stdout.trim();
  assert.equal(a.berth(['pause', frozen]).code, 0);
  const pid = Number(a.berth(['inspect', '-f', '{{.State.Pid}}', busy]).stdout.trim());
  const monitors = (): number[] => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return cmd.includes('berth-monitor') && cmd.includes(a.dir);
    } catch {
      return false;
    }
  });
  assert.equal(monitors().length, 2);
  await a.stop('SIGKILL');
  const linesBefore = readFileSync(`${a.dataRoot}/containers/${busy}/${busy}-json.log`, 'utf8').split('\n').length;
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(readFileSync(`${a.dataRoot}/containers/${busy}/${busy}-json.log`, 'utf8').split('\n').length > linesBefore, 'the log grows while berthd is down');
  await a.start();
  assert.equal(a.berth(['inspect', '-f', '{{.State.Running}} {{.State.Pid}}', busy]).stdout.trim(), `true ${pid}`);
  assert.equal(a.berth(['inspect', '-f', '{{.State.Status}}', frozen]).stdout.trim(), 'paused');
  const stats = a.docker(['stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}} {{.PIDs}}', busy]);
  assert.match(stats.stdout.trim(), /^lr-busy [\d.]+[KMG]?i?B \/ 64MiB \d+$/, stats.stderr);
  // Health probes resume on the adopted container.
  const lastProbe = () => {
    const log = JSON.parse(a.berth(['inspect', '-f', '{{json .State.Health.Log}}', busy]).stdout) as Array<{ Start: string }>;
    return log[log.length - 1]?.Start ?? '';
  };
  const before = lastProbe();
  for (let i = 0; i < 100 && lastProbe() === before; i++) await new Promise((r) => setTimeout(r, 100));
  assert.notEqual(lastProbe(), before, 'health probes run after adoption');
  assert.equal(a.berth(['inspect', '-f', '{{.State.Health.Status}}', busy]).stdout.trim(), 'healthy');
  assert.equal(a.docker(['update', '--pids-limit', '30', busy]).code, 0);
  assert.equal(a.docker(['unpause', frozen]).code, 0);
  const waiter = a.spawn('docker', ['wait', busy]);
  const waited = new Promise<string>((resolve) => {
    let out = '';
    waiter.stdout!.on('data', (c) => (out += c));
    waiter.on('exit', () => resolve(out.trim()));
  });
  assert.equal(a.docker(['stop', '-t', '1', busy, frozen]).code, 0);
  assert.equal(await waited, '137');
  assert.match(a.berth(['logs', '--tail', '1', busy]).stdout, /^n\d+\n$/);
  assert.equal(a.berth(['rm', busy, frozen]).code, 0);
  for (let i = 0; i < 50 && monitors().length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(monitors(), [], 'no monitor processes left');
  assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(a.dir), 'no mounts left');
  for (const ctl of readdirSync('/sys/fs/cgroup')) {
    const dir = `/sys/fs/cgroup/${ctl}${a.cgroupParent}`;
    if (!existsSync(dir)) continue;
    const children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
    assert.deepEqual(children.map((c) => c.name), [], `no container cgroups left under ${dir}`);
  }
});

test('--config-file: daemon.json keys apply; a bad file, an unknown runtime and an unusable runtime stop berthd with a clear error', async () => {
  const c = new TestDaemon('dc');
  try {
    const cfgPath = join(c.dir, 'daemon.json');
    writeFileSync(cfgPath, JSON.stringify({ 'registry-mirrors': ['http://127.0.0.1:5999/'], 'insecure-registries': ['myreg.test:5000'], 'log-level': 'debug' }));
    await c.start(['--config-file', cfgPath]);
    const info = JSON.parse(c.docker(['info', '--format', '{{json .RegistryConfig}}']).stdout);
    assert.deepEqual(info.Mirrors, ['http://127.0.0.1:5999/']);
    assert.equal(info.IndexConfigs['myreg.test:5000'].Secure, false);
    assert.ok(JSON.stringify(info).includes('myreg.test:5000'), JSON.stringify(info));
    await c.stop();

    writeFileSync(cfgPath, '{"registry-mirrors": [');
    await assert.rejects(c.start(['--config-file', cfgPath]), /unable to configure the daemon from .*daemon\.json/);
    await assert.rejects(c.start(['--runtime', 'nosuch']), /unknown runtime: nosuch/);
    if (existsSync('/sys/fs/cgroup/unified/cgroup.controllers') && readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim()) {
      // This host's hybrid cgroup layout is one crun refuses; berthd says so at once.
      await assert.rejects(c.start(['--runtime', 'crun']), /crun does not support this host's hybrid cgroup layout/);
    } else {
      await c.start(['--runtime', 'crun']);
      c.loadBusybox();
      assert.equal(c.berth(['run', '--rm', 'busybox', 'echo', 'crun']).stdout, 'crun\n');
    }
  } finally {
    await c.cleanup();
  }
});
