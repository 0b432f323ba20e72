/**
 * system df, container prune with filters, system prune and info counts,
 * through both CLIs and the API.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('df');

before(async () => {
  await d.start();
  d.loadBusybox();
});

after(async () => {
  await d.cleanup();
});

function apiGet<T>(path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method: 'GET', path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as T) : reject(new Error(`${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Df {
  LayersSize: number;
  Images: Array<{ Id: string; Containers: number; Size: number; SharedSize: number }>;
  Containers: Array<{ Id: string; SizeRw: number; SizeRootFs: number; State: string }>;
  Volumes: unknown[];
  BuildCache: unknown[];
}

function removeAll(): void {
  const ids = d.berth(['ps', '-aq']).stdout.split('\n').filter(Boolean);
  if (ids.length) d.berth(['rm', '-f', ...ids]);
}

test('API: /system/df lists images, containers with their writes, and empty volume and cache lists', async () => {
  removeAll();
  const id = d.berth(['run', '--name', 'df-writer', 'busybox', 'sh', '-c', 'head -c 100000 /dev/zero > /blob']).stdout.trim() || d.berth(['inspect', '-f', '{{.Id}}', 'df-writer']).stdout.trim();
  const df = await apiGet<Df>('/system/df');
  assert.ok(df.LayersSize > 1_000_000);
  assert.equal(df.Images.length, 1);
  assert.equal(df.Images[0]!.Containers, 1);
  assert.equal(df.Images[0]!.SharedSize, 0);
  const c = df.Containers.find((x) => x.Id === id)!;
  assert.ok(c.SizeRw >= 100_000 && c.SizeRw < 200_000, `SizeRw ${c.SizeRw}`);
  assert.equal(c.SizeRootFs, c.SizeRw + df.Images[0]!.Size);
  assert.deepEqual(df.Volumes, []);
  assert.deepEqual(df.BuildCache, []);
  const only = await apiGet<Partial<Df>>('/system/df?type=container');
  assert.deepEqual(Object.keys(only), ['Containers']);
  await assert.rejects(apiGet('/system/df?type=bogus'), /400/);
  removeAll();
});

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));

  test(`${cli}: system df summary and -v`, () => {
    removeAll();
    run(['run', '--name', `df-a-${cli}`, 'busybox', 'sh', '-c', 'head -c 100000 /dev/zero > /blob']);
    run(['run', '-d', '--name', `df-b-${cli}`, 'busybox', 'sleep', '30']);
    const r = run(['system', 'df']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
    assert.deepEqual(lines[0], ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE']);
    assert.deepEqual(lines[1]!.slice(0, 3), ['Images', '1', '1']);
    assert.deepEqual(lines[2]!.slice(0, 3), ['Containers', '2', '1']);
    assert.match(lines[2]![4]!, /^100(\.\d)?kB \(\d+%\)$/, 'the stopped container\'s writes are reclaimable');
    assert.deepEqual(lines[3], ['Local Volumes', '0', '0', '0B', '0B']);
    assert.deepEqual(lines[4], ['Build Cache', '0', '0', '0B', '0B']);
    const v = run(['system', 'df', '-v']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^Images space usage:\n\nREPOSITORY +TAG +IMAGE ID +CREATED +SIZE +SHARED SIZE +UNIQUE SIZE +CONTAINERS\nbusybox +latest /);
    assert.match(v.stdout, new RegExp(`\\nContainers space usage:\\n\\nCONTAINER ID +IMAGE +COMMAND +LOCAL VOLUMES +SIZE +CREATED +STATUS +NAMES\\n[\\s\\S]*df-a-${cli}`));
    assert.match(v.stdout, /\nLocal Volumes space usage:\n\nVOLUME NAME +LINKS +SIZE\n/);
    assert.match(v.stdout, /\nBuild cache usage: 0B\n/);
    const f = run(['system', 'df', '--format', '{{.Type}}={{.TotalCount}}']);
    assert.equal(f.stdout, 'Images=1\nContainers=2\nLocal Volumes=0\nBuild Cache=0\n');
    removeAll();
  });

  test(`${cli}: info counts containers by state and images`, () => {
    removeAll();
    run(['create', '--name', `info-c-${cli}`, 'busybox', 'true']);
    run(['run', '-d', '--name', `info-r-${cli}`, 'busybox', 'sleep', '30']);
    run(['tag', 'busybox', `info-${cli}:x`]);
    const r = run(['info', '--format', '{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}}']);
    assert.equal(r.stdout.trim(), '2 1 0 1 1');
    run(['rmi', `info-${cli}:x`]);
    removeAll();
  });

  test(`${cli}: container prune with label, label! and until filters`, () => {
    removeAll();
    const keep = run(['create', '--name', `p-keep-${cli}`, '-l', 'keep=yes', 'busybox', 'true']).stdout.trim();
    const other = run(['create', '--name', `p-other-${cli}`, '-l', 'tier=b', 'busybox', 'true']).stdout.trim();
    const plain = run(['run', '--name', `p-plain-${cli}`, 'busybox', 'sh', '-c', 'head -c 5000 /dev/zero > /x']).stdout;
    assert.equal(plain, '');
    const running = run(['run', '-d', '--name', `p-run-${cli}`, 'busybox', 'sleep', '30']).stdout.trim();
    // until in the past: nothing is old enough.
    let r = run(['container', 'prune', '-f', '--filter', 'until=2000-01-01T00:00:00']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Total reclaimed space: 0B/);
    r = run(['container', 'prune', '-f', '--filter', 'label=tier=b']);
    assert.equal(r.stdout, `Deleted Containers:\n${other}\n\nTotal reclaimed space: 0B\n`);
    r = run(['container', 'prune', '-f', '--filter', 'label!=keep']);
    assert.match(r.stdout, /^Deleted Containers:\n[a-f0-9]{64}\n\nTotal reclaimed space: 5(\.\d+)?kB\n$/);
    const left = run(['ps', '-a', '--format', '{{.ID}}', '--no-trunc']).stdout.trim().split('\n').sort();
    assert.deepEqual(left, [keep, running].sort());
    r = run(['container', 'prune', '-f', '--filter', 'bogus=1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid filter 'bogus'/);
    removeAll();
  });

  test(`${cli}: system prune removes stopped containers and dangling images; -a unused ones`, () => {
    removeAll();
    run(['create', '--name', `sp-${cli}`, 'busybox', 'true']);
    const running = run(['run', '-d', '--name', `sp-run-${cli}`, 'busybox', 'sleep', '30']).stdout.trim();
    const r = run(['system', 'prune', '-f']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Deleted Containers:\n[a-f0-9]{64}\n\n/);
    assert.match(r.stdout, /Total reclaimed space: /);
    assert.deepEqual(run(['ps', '-aq', '--no-trunc']).stdout.trim().split('\n'), [running]);
    // Without -f the question is asked; "n" changes nothing.
    const asked = run(['system', 'prune'], 'n\n');
    assert.match(asked.stdout, /WARNING! This will remove:\n {2}- all stopped containers\n {2}- all networks not used by at least one container\n {2}- all dangling images\n/);
    run(['rm', '-f', running]);
    run(['tag', 'busybox', `spare-${cli}:1`]);
    const all = run(['system', 'prune', '-a', '-f']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /Deleted Images:\n(untagged: \S+\n)+(deleted: sha256:[a-f0-9]{64}\n)+\n/);
    assert.match(all.stdout, /untagged: busybox:latest\n/);
    assert.match(all.stdout, new RegExp(`untagged: spare-${cli}:1\n`));
    assert.equal(run(['images', '-q']).stdout, '');
    d.loadBusybox();
  });
}
