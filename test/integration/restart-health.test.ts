/**
 * Restart policies (with RestartCount and the user's stop winning), the
 * policies applied when berthd starts again, and health checks from the
 * image's HEALTHCHECK and the --health-* flags, through both CLIs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { TestDaemon, killMonitors } from '../helpers/daemon.ts';
import { eventually } from '../helpers/cgroup.ts';

const d = new TestDaemon('rh');

before(async () => {
  await d.start();
  d.loadBusybox();
  loadHealthImage();
});

after(async () => {
  await d.cleanup();
});

/** busybox with a HEALTHCHECK in its config, made by editing a saved archive (import cannot set one). */
function loadHealthImage(): void {
  const work = join(d.dir, 'hcimg');
  mkdirSync(work);
  const tar = join(d.dir, 'bb.tar');
  assert.equal(d.berth(['save', '-o', tar, 'busybox']).code, 0);
  execFileSync('tar', ['-xf', tar, '-C', work]);
  const manifest = JSON.parse(readFileSync(join(work, 'manifest.json'), 'utf8')) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
  const config = JSON.parse(readFileSync(join(work, manifest[0]!.Config), 'utf8')) as { config: Record<string, unknown> };
  config.config.Healthcheck = { Test: ['CMD-SHELL', 'test -f /tmp/healthy'], Interval: 200_000_000, Retries: 1 };
  const text = JSON.stringify(config);
  const hex = createHash('sha256').update(text).digest('hex');
  writeFileSync(join(work, 'blobs', 'sha256', hex), text);
  manifest[0]!.Config = `blobs/sha256/${hex}`;
  manifest[0]!.RepoTags = ['hcimage:latest'];
  writeFileSync(join(work, 'manifest.json'), JSON.stringify(manifest));
  for (const f of ['index.json', 'oci-layout', 'repositories']) rmSync(join(work, f), { force: true });
  const out = join(d.dir, 'hc.tar');
  execFileSync('tar', ['-cf', out, '-C', work, ...readdirSync(work)]);
  const r = d.berth(['load', '-i', out]);
  assert.equal(r.code, 0, r.stderr);
}

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[]) => (cli === 'berth' ? d.berth(args) : d.docker(args));
  const state = (name: string, f: string) => run(['inspect', '-f', f, name]).stdout.trim();

  test(`${cli}: on-failure:N restarts a failing container N times, not a clean exit`, async () => {
    const name = `onfail-${cli}`;
    assert.equal(run(['run', '-d', '--name', name, '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'exit 3']).code, 0);
    await eventually('two restarts then a stop', () => state(name, '{{.RestartCount}} {{.State.Status}}') === '2 exited');
    assert.equal(state(name, '{{.State.ExitCode}} {{.State.Restarting}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}'), '3 false on-failure:2');
    const clean = `onfail-ok-${cli}`;
    assert.equal(run(['run', '--name', clean, '--restart', 'on-failure', 'busybox', 'true']).code, 0);
    assert.equal(state(clean, '{{.RestartCount}} {{.State.Status}}'), '0 exited');
    assert.equal(run(['rm', name, clean]).code, 0);
  });

  test(`${cli}: always restarts with back-off; the user's stop ends it`, async () => {
    const name = `always-${cli}`;
    assert.equal(run(['run', '-d', '--name', name, '--restart', 'always', 'busybox', 'sh', '-c', 'sleep 0.2; exit 0']).code, 0);
    await eventually('restarts', () => Number(state(name, '{{.RestartCount}}')) >= 3);
    assert.match(run(['ps', '-a', '--filter', `name=${name}`]).stdout, /Up |Restarting \(0\)/);
    assert.equal(run(['stop', '-t', '1', name]).code, 0);
    assert.equal(state(name, '{{.State.Status}} {{.State.Restarting}}'), 'exited false');
    const count = state(name, '{{.RestartCount}}');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(state(name, '{{.State.Status}} {{.RestartCount}}'), `exited ${count}`, 'a stopped container stays stopped');
    // A start by the user brings the policy back.
    assert.equal(run(['start', name]).code, 0);
    await eventually('restarting again', () => Number(state(name, '{{.RestartCount}}')) > Number(count));
    assert.equal(run(['rm', '-f', name]).code, 0);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: bad restart policies are refused`, () => {
    const bad = run(['run', '-d', '--restart', 'sometimes', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    const rm = run(['run', '-d', '--rm', '--restart', 'always', 'busybox', 'true']);
    assert.equal(rm.code, 125);
    assert.match(rm.stderr, /conflicting options: cannot specify both --restart and --rm/);
    const count = run(['run', '-d', '--restart', 'always:3', 'busybox', 'true']);
    assert.equal(count.code, 125);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });

  test(`${cli}: health checks from flags: starting, unhealthy, healthy, in inspect and ps`, async () => {
    const name = `health-${cli}`;
    // The probe fails its first 12 runs, then passes: starting → unhealthy → healthy, whatever the machine's speed.
    const probe = 'n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -gt 12 ] && echo fine';
    const since = Math.floor(Date.now() / 1000) - 1;
    const r = run(['run', '-d', '--name', name, '--health-cmd', probe, '--health-interval', '200ms', '--health-retries', '2', '--health-timeout', '5s', 'busybox', 'sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(state(name, '{{json .Config.Healthcheck}}')), { Test: ['CMD-SHELL', probe], Interval: 200_000_000, Timeout: 5_000_000_000, Retries: 2 });
    await eventually('unhealthy after two failures', () => /^unhealthy [2-9]/.test(state(name, '{{.State.Health.Status}} {{.State.Health.FailingStreak}}')));
    assert.match(run(['ps', '--filter', `name=${name}`]).stdout, /Up .* \(unhealthy\)/);
    await eventually('healthy', () => state(name, '{{.State.Health.Status}}') === 'healthy');
    assert.match(run(['ps', '--filter', `name=${name}`]).stdout, /Up .* \(healthy\)/);
    const health = JSON.parse(state(name, '{{json .State.Health}}')) as { FailingStreak: number; Log: Array<{ ExitCode: number; Output: string; Start: string; End: string }> };
    assert.equal(health.FailingStreak, 0);
    assert.ok(health.Log.length >= 1 && health.Log.length <= 5, 'docker keeps the last five results');
    const last = health.Log[health.Log.length - 1]!;
    assert.equal(last.ExitCode, 0);
    assert.equal(last.Output, 'fine\n');
    assert.ok(Date.parse(last.End) >= Date.parse(last.Start));
    const events = run(['events', '--since', String(since), '--until', String(Math.floor(Date.now() / 1000) + 1), '--filter', `container=${name}`, '--filter', 'event=health_status', '--format', '{{.Action}}']);
    assert.equal(events.code, 0, events.stderr);
    assert.deepEqual(events.stdout.trim().split('\n'), ['health_status: unhealthy', 'health_status: healthy']);
    assert.equal(run(['rm', '-f', name]).code, 0);
  });

  test(`${cli}: health timeout, start period, image HEALTHCHECK and --no-healthcheck`, async () => {
    const slow = `hslow-${cli}`;
    assert.equal(run(['run', '-d', '--name', slow, '--health-cmd', 'sleep 30', '--health-interval', '100ms', '--health-timeout', '200ms', '--health-retries', '1', 'busybox', 'sleep', '300']).code, 0);
    await eventually('a timed-out probe', () => state(slow, '{{.State.Health.Status}}') === 'unhealthy');
    const log = JSON.parse(state(slow, '{{json .State.Health.Log}}')) as Array<{ ExitCode: number; Output: string }>;
    assert.equal(log[0]!.ExitCode, -1);
    assert.equal(log[0]!.Output, 'Health check exceeded timeout (200ms)');
    const grace = `hgrace-${cli}`;
    assert.equal(run(['run', '-d', '--name', grace, '--health-cmd', 'false', '--health-interval', '100ms', '--health-start-interval', '100ms', '--health-start-period', '10m', '--health-retries', '1', 'busybox', 'sleep', '300']).code, 0);
    await eventually('probes during the start period', () => Number(state(grace, '{{len .State.Health.Log}}')) >= 3);
    assert.equal(state(grace, '{{.State.Health.Status}} {{.State.Health.FailingStreak}}'), 'starting 0', 'failures in the start period do not count');
    const img = `himg-${cli}`;
    assert.equal(run(['run', '-d', '--name', img, 'hcimage', 'sh', '-c', 'touch /tmp/healthy; sleep 300']).code, 0);
    assert.equal(state(img, '{{json .Config.Healthcheck.Test}}'), '["CMD-SHELL","test -f /tmp/healthy"]');
    await eventually('the image\'s check passing', () => state(img, '{{.State.Health.Status}}') === 'healthy');
    const off = `hoff-${cli}`;
    assert.equal(run(['run', '-d', '--name', off, '--no-healthcheck', 'hcimage', 'sleep', '300']).code, 0);
    assert.equal(state(off, '{{json .Config.Healthcheck.Test}}'), '["NONE"]');
    assert.equal(state(off, '{{json .State.Health}}'), 'null');
    assert.doesNotMatch(run(['ps', '--filter', `name=${off}`]).stdout, /health/);
    const conflict = run(['run', '-d', '--no-healthcheck', '--health-cmd', 'true', 'busybox', 'true']);
    assert.equal(conflict.code, 125);
    assert.match(conflict.stderr, /--no-healthcheck conflicts with --health-\* options/);
    assert.equal(run(['rm', '-f', slow, grace, img, off]).code, 0);
    assert.equal(run(['ps', '-aq']).stdout.trim(), '');
  });
}

test('policies when berthd starts again: always and unless-stopped come back, a user-stopped unless-stopped does not', async () => {
  const b = new TestDaemon('rh-boot');
  await b.start();
  try {
    b.loadBusybox();
    const mk = (name: string, policy: string) => {
      const r = b.berth(['run', '-d', '--name', name, '--restart', policy, 'busybox', 'sleep', '300']);
      assert.equal(r.code, 0, r.stderr);
    };
    mk('always-run', 'always');
    mk('unless-run', 'unless-stopped');
    mk('unless-stopped-by-user', 'unless-stopped');
    mk('always-stopped-by-user', 'always');
    assert.equal(b.berth(['run', '-d', '--name', 'no-policy', 'busybox', 'sleep', '300']).code, 0);
    assert.equal(b.berth(['stop', '-t', '0', 'unless-stopped-by-user', 'always-stopped-by-user']).code, 0);
    const pid = (n: string) => Number(b.berth(['inspect', '-f', '{{.State.Pid}}', n]).stdout.trim());
    const pids = Object.fromEntries(['always-run', 'unless-run', 'no-policy'].map((n) => [n, pid(n)]));
    // berthd dies, then everything it ran goes too (as after a host reboot).
    await b.stop('SIGKILL');
    killMonitors(b.dir);
    for (const p of Object.values(pids)) {
      try { process.kill(p, 'SIGKILL'); } catch { /* gone with its monitor */ }
    }
    await eventually('container processes gone', () => Object.values(pids).every((p) => { try { process.kill(p, 0); return false; } catch { return true; } }));
    await b.start();
    const st = (n: string) => b.berth(['inspect', '-f', '{{.State.Status}}', n]).stdout.trim();
    await eventually('always and unless-stopped containers running again', () => st('always-run') === 'running' && st('unless-run') === 'running' && st('always-stopped-by-user') === 'running');
    assert.equal(st('unless-stopped-by-user'), 'exited');
    assert.equal(st('no-policy'), 'exited');
    assert.notEqual(pid('always-run'), pids['always-run']);
    const logs = b.docker(['ps', '--format', '{{.Names}}']).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(logs, ['always-run', 'always-stopped-by-user', 'unless-run']);
    assert.equal(b.berth(['rm', '-f', 'always-run', 'unless-run', 'unless-stopped-by-user', 'always-stopped-by-user', 'no-policy']).code, 0);
    await b.stop();
  } finally {
    await b.cleanup();
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  assert.ok(!mounts.includes(b.dir), 'no mounts left behind');
});
