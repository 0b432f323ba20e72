/**
 * Volumes and mounts through both CLIs against a private berthd: named and
 * anonymous volumes, pre-population, binds, tmpfs, --mount, --volumes-from,
 * volumes with driver options, propagation, restarts, and bad input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { BUSYBOX_TAR, ROOT, TestDaemon } from '../helpers/daemon.ts';

const d = new TestDaemon('vol');
const volRoot = () => join(d.dataRoot, 'volumes');

/** Mounts on the host under the test directory (volumes with options, scratch mounts). */
function hostMountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(dir));
}

/** Mounts berth made: everything under the data root except container root filesystems. */
function volumeMounts(): string[] {
  return hostMountsUnder(d.dataRoot).filter((m) => !m.startsWith(join(d.dataRoot, 'containers')));
}

function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method, path, headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
  });
}

before(async () => {
  await d.start();
  d.loadBusybox();
  // An image whose /data (owner 1234:5678, mode 0750) is a VOLUME, and one whose volume path is a symlink to /etc.
  const src = join(d.dir, 'img-src');
  mkdirSync(join(src, 'data', 'sub'), { recursive: true });
  writeFileSync(join(src, 'data', 'sub', 'file'), 'seed\n');
  writeFileSync(join(src, 'data', 'top'), 'top\n');
  chmodSync(join(src, 'data'), 0o750);
  symlinkSync('/etc', join(src, 'linketc'));
  const tar = join(d.dir, 'volimg.tar');
  copyFileSync(BUSYBOX_TAR, tar);
  execFileSync('tar', ['-rf', tar, '--owner=1234', '--group=5678', '-C', src, 'data', 'linketc']);
  const r = d.berth(['import', '-c', 'VOLUME /data', '-c', 'CMD ["sh"]', tar, 'volimg:1']);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await d.cleanup();
});

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));
  const n = (s: string) => `${cli}-${s}`;

  test(`${cli}: volume create, ls with filters and formats, inspect, rm`, () => {
    assert.equal(run(['volume', 'create', '--label', 'suite=crud', '--label', 'tier=a', n('one')]).stdout, `${n('one')}\n`);
    assert.equal(run(['volume', 'create', '--label', 'suite=crud', n('two')]).code, 0);
    // Creating an existing name is not an error.
    assert.equal(run(['volume', 'create', n('two')]).code, 0);
    const gen = run(['volume', 'create', '--label', 'suite=crud']);
    assert.match(gen.stdout, /^[a-f0-9]{64}\n$/);
    const generated = gen.stdout.trim();
    const ls = run(['volume', 'ls', '--filter', 'label=suite=crud']);
    assert.equal(ls.code, 0, ls.stderr);
    const lines = ls.stdout.trim().split('\n');
    assert.match(lines[0]!, /^DRIVER\s+VOLUME NAME$/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)), [['local', generated], ['local', n('one')], ['local', n('two')]].sort((a, b) => (a[1]! < b[1]! ? -1 : 1)));
    assert.equal(run(['volume', 'ls', '-q', '--filter', 'label=tier=a']).stdout, `${n('one')}\n`);
    assert.equal(run(['volume', 'ls', '-q', '--filter', `name=${cli}-tw`]).stdout, `${n('two')}\n`);
    const fmt = run(['volume', 'ls', '--filter', 'label=tier=a', '--format', '{{.Name}} {{.Driver}} {{.Scope}} {{.Label "tier"}} {{.Labels}}']).stdout.trim().split(' ');
    // docker's CLI joins the labels in Go's map order: compare them as a set.
    assert.deepEqual([...fmt.slice(0, 4), fmt[4]!.split(',').sort().join(',')], [n('one'), 'local', 'local', 'a', 'suite=crud,tier=a']);
    const json = JSON.parse(run(['volume', 'ls', '--filter', 'label=tier=a', '--format', 'json']).stdout);
    assert.equal(json.Name, n('one'));
    assert.equal(json.Mountpoint, join(volRoot(), n('one'), '_data'));
    assert.match(run(['volume', 'ls', '--filter', 'dangling=true', '-q']).stdout, new RegExp(n('one')));
    assert.equal(run(['volume', 'ls', '--filter', 'bogus=1']).code, 1);
    const insp = JSON.parse(run(['volume', 'inspect', n('one')]).stdout);
    assert.equal(insp.length, 1);
    assert.deepEqual(Object.keys(insp[0]), ['CreatedAt', 'Driver', 'Labels', 'Mountpoint', 'Name', 'Options', 'Scope']);
    assert.deepEqual(insp[0].Labels, { suite: 'crud', tier: 'a' });
    assert.equal(insp[0].Driver, 'local');
    assert.ok(statSync(insp[0].Mountpoint).isDirectory());
    assert.equal(run(['volume', 'inspect', '-f', '{{.Mountpoint}}', n('two')]).stdout.trim(), join(volRoot(), n('two'), '_data'));
    const missing = run(['volume', 'inspect', n('nosuch')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such volume/);
    const rm = run(['volume', 'rm', n('one'), n('two'), generated]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout, `${n('one')}\n${n('two')}\n${generated}\n`);
    assert.equal(run(['volume', 'ls', '-q', '--filter', 'label=suite=crud']).stdout, '');
    assert.ok(!existsSync(join(volRoot(), n('one'))));
    assert.equal(run(['volume', 'rm', n('one')]).code, 1);
    assert.equal(run(['volume', 'rm', '-f', n('one')]).code, 0);
  });

  test(`${cli}: bad volume names and driver options are refused`, () => {
    const bad = run(['volume', 'create', 'bad/name']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"bad\/name" includes invalid characters for a local volume name/);
    assert.match(run(['volume', 'create', '-o', 'foo=bar', n('opts')]).stderr, /invalid option: "foo"/);
    assert.match(run(['volume', 'create', '-o', 'type=tmpfs', n('opts')]).stderr, /missing required option: "device"/);
    assert.match(run(['volume', 'create', '-d', 'nosuchdriver', n('opts')]).stderr, /plugin "nosuchdriver" not found/);
    assert.equal(run(['volume', 'ls', '-q', '--filter', `name=${n('opts')}`]).stdout, '');
    assert.ok(!existsSync(join(volRoot(), 'bad')));
  });

  test(`${cli}: named volume data survives the container; two running containers share it`, () => {
    const v = n('shared');
    assert.equal(run(['run', '--rm', '-v', `${v}:/s`, 'busybox', 'sh', '-c', 'echo persisted > /s/f']).code, 0);
    assert.equal(readFileSync(join(volRoot(), v, '_data', 'f'), 'utf8'), 'persisted\n');
    assert.equal(run(['run', '--rm', '-v', `${v}:/other`, 'busybox', 'cat', '/other/f']).stdout, 'persisted\n');
    // A waits for B's ping and answers; B prints what A answered: both run at once on one volume.
    const a = run(['run', '-d', '--name', n('ponger'), '-v', `${v}:/s`, 'busybox', 'sh', '-c', 'i=0; while [ ! -f /s/ping ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /s/ping > /s/pong']);
    assert.equal(a.code, 0, a.stderr);
    const b = run(['run', '--rm', '--mount', `source=${v},target=/t`, 'busybox', 'sh', '-c', 'echo ping-from-b > /t/ping; i=0; while [ ! -s /t/pong ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /t/pong']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, 'ping-from-b\n');
    assert.equal(run(['wait', n('ponger')]).stdout.trim(), '0');
    // In use by a container (even a stopped one): refused, with -f too; data untouched.
    const inUse = run(['volume', 'rm', v]);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, new RegExp(`remove ${v}: volume is in use - \\[[a-f0-9]{64}\\]`));
    assert.equal(run(['volume', 'rm', '-f', v]).code, 1);
    assert.ok(existsSync(join(volRoot(), v, '_data', 'f')));
    assert.equal(run(['volume', 'ls', '-q', '--filter', 'dangling=false', '--filter', `name=${v}`]).stdout, `${v}\n`);
    assert.equal(run(['ps', '-aq', '--filter', `volume=${v}`]).stdout.trim().length, 12);
    // rm -v keeps named volumes.
    assert.equal(run(['rm', '-v', n('ponger')]).code, 0);
    assert.ok(existsSync(join(volRoot(), v, '_data', 'pong')));
    assert.equal(run(['volume', 'rm', v]).code, 0);
  });

  test(`${cli}: read-only volume and bind mounts reject writes`, () => {
    const v = n('ro');
    run(['volume', 'create', v]);
    const host = join(d.dir, `${cli}-robind`);
    mkdirSync(host, { recursive: true });
    const r = run(['run', '--rm', '-v', `${v}:/v:ro`, '-v', `${host}:/h:ro`, '--mount', `type=volume,src=${v},dst=/m,readonly`, 'busybox', 'sh', '-c', 'touch /v/x 2>&1; touch /h/x 2>&1; touch /m/x 2>&1; echo done']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/Read-only file system/g)?.length, 3, r.stdout);
    assert.deepEqual(readdirSync(join(volRoot(), v, '_data')), []);
    assert.deepEqual(readdirSync(host), []);
    assert.equal(run(['volume', 'rm', v]).code, 0);
  });

  test(`${cli}: read-only binds are recursive unless bind-recursive=writable`, () => {
    const host = join(d.dir, `${cli}-rro`);
    mkdirSync(join(host, 'sub'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(host, 'sub')]);
    try {
      const r = run(['run', '--rm', '-v', `${host}:/h:ro`, '--mount', `type=bind,src=${host},dst=/w,readonly,bind-recursive=writable`, 'busybox', 'sh', '-c',
        'touch /h/sub/a 2>/dev/null && echo h-sub-rw || echo h-sub-ro; touch /w/sub/b 2>/dev/null && echo w-sub-rw || echo w-sub-ro; touch /w/c 2>/dev/null && echo w-rw || echo w-ro']);
      assert.equal(r.stdout, 'h-sub-ro\nw-sub-rw\nw-ro\n', r.stderr);
      assert.deepEqual(readdirSync(join(host, 'sub')), ['b']);
      if (cli === 'docker') {
        // A client older than API 1.44 gets the old non-recursive read-only bind.
        const old = d.cli2('docker', ['run', '--rm', '--mount', `type=bind,src=${host},dst=/o,readonly`, 'busybox', 'sh', '-c', 'touch /o/sub/old && echo sub-rw; touch /o/top 2>/dev/null || echo top-ro'], { DOCKER_API_VERSION: '1.43' });
        assert.equal(old.stdout, 'sub-rw\ntop-ro\n', old.stderr);
      }
      const bad = run(['run', '--rm', '--mount', `type=bind,src=${host},dst=/w,bind-recursive=writable`, 'busybox', 'true']);
      assert.equal(bad.code, 125);
      assert.match(bad.stderr, /option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction/);
    } finally {
      spawnSync('umount', ['-l', join(host, 'sub')]);
    }
  });

  test(`${cli}: bind mounts: -v creates a missing source, --mount refuses it, relative paths are refused`, () => {
    const host = join(d.dir, `${cli}-bind`);
    mkdirSync(host, { recursive: true });
    writeFileSync(join(host, 'in'), 'from host\n');
    const r = run(['run', '--rm', '-v', `${host}:/h`, 'busybox', 'sh', '-c', 'cat /h/in; echo from ctr > /h/out']);
    assert.equal(r.stdout, 'from host\n');
    assert.equal(readFileSync(join(host, 'out'), 'utf8'), 'from ctr\n');
    const created = join(d.dir, `${cli}-made`, 'deep');
    assert.equal(run(['run', '--rm', '-v', `${created}:/m`, 'busybox', 'touch', '/m/x']).code, 0);
    assert.ok(existsSync(join(created, 'x')));
    const missing = join(d.dir, `${cli}-missing`);
    const m = run(['run', '--rm', '--mount', `type=bind,src=${missing},dst=/m`, 'busybox', 'true']);
    assert.equal(m.code, 125);
    assert.match(m.stderr, new RegExp(`invalid mount config for type "bind": bind source path does not exist: ${missing}`));
    assert.ok(!existsSync(missing));
    const rel = run(['run', '--rm', '-v', 'relative/dir:/m', 'busybox', 'true']);
    assert.equal(rel.code, 125);
    assert.match(rel.stderr, /"relative\/dir" includes invalid characters for a local volume name.*If you intended to pass a host directory, use absolute path/);
    assert.ok(!existsSync(join(volRoot(), 'relative')));
    const relMount = run(['run', '--rm', '--mount', 'type=bind,src=relative/dir,dst=/m', 'busybox', 'true']);
    assert.equal(relMount.code, 125);
    assert.match(relMount.stderr, /mount path must be absolute/);
    const ro = run(['run', '--rm', '--mount', `type=bind,src=${host},dst=/h,readonly`, 'busybox', 'sh', '-c', 'cat /h/in && ! touch /h/new']);
    assert.equal(ro.code, 0, ro.stderr);
    assert.ok(!existsSync(join(host, 'new')));
    assert.equal(run(['ps', '-aq']).stdout, '', 'failed creates leave no containers');
  });

  test(`${cli}: anonymous volumes: -v /path, image VOLUME, rm -v and --rm remove them, prune`, () => {
    const before = new Set(run(['volume', 'ls', '-q']).stdout.split('\n').filter(Boolean));
    const c = run(['create', '--name', n('anon'), '-v', '/anon', 'volimg:1', 'sh', '-c', 'ls /data/sub; echo x > /anon/x']);
    assert.equal(c.code, 0, c.stderr);
    const mounts = JSON.parse(run(['inspect', '-f', '{{json .Mounts}}', n('anon')]).stdout) as Array<Record<string, unknown>>;
    assert.equal(mounts.length, 2);
    for (const m of mounts) {
      assert.equal(m.Type, 'volume');
      assert.match(String(m.Name), /^[a-f0-9]{64}$/);
      assert.equal(m.Source, join(volRoot(), String(m.Name), '_data'));
      assert.equal(m.Mode, '');
      assert.equal(m.RW, true);
    }
    assert.deepEqual(mounts.map((m) => m.Destination).sort(), ['/anon', '/data']);
    const dataVol = String(mounts.find((m) => m.Destination === '/data')!.Name);
    // The image's /data was copied into its anonymous volume at create.
    assert.equal(readFileSync(join(volRoot(), dataVol, '_data', 'sub', 'file'), 'utf8'), 'seed\n');
    const insp = JSON.parse(run(['volume', 'inspect', dataVol]).stdout)[0];
    assert.deepEqual(insp.Labels, { 'com.docker.volume.anonymous': '' });
    assert.equal(run(['start', '-a', n('anon')]).stdout, 'file\n');
    assert.equal(run(['rm', '-v', n('anon')]).code, 0);
    const after1 = run(['volume', 'ls', '-q']).stdout.split('\n').filter((x) => x && !before.has(x));
    assert.deepEqual(after1, [], 'rm -v removes the anonymous volumes');
    // --rm removes them too; plain rm keeps them for prune.
    assert.equal(run(['run', '--rm', '-v', '/gone', 'volimg:1', 'true']).code, 0);
    assert.deepEqual(run(['volume', 'ls', '-q']).stdout.split('\n').filter((x) => x && !before.has(x)), []);
    assert.equal(run(['run', '--name', n('keep'), '--mount', 'dst=/k,volume-label=prune=me', 'volimg:1', 'true']).code, 0);
    assert.equal(run(['volume', 'create', '--label', 'prune=me', n('named-prune')]).code, 0);
    assert.equal(run(['rm', n('keep')]).code, 0);
    const left = run(['volume', 'ls', '-q', '--filter', 'label=prune=me']).stdout.split('\n').filter(Boolean);
    assert.equal(left.length, 2, 'the anonymous /k volume and the named one (the image volume /data has no such label)');
    const prune = run(['volume', 'prune', '-f', '--filter', 'label=prune=me']);
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, /^Deleted Volumes:\n[a-f0-9]{64}\n\nTotal reclaimed space: \d+(\.\d+)?k?B\n$/);
    assert.deepEqual(run(['volume', 'ls', '-q', '--filter', 'label=prune=me']).stdout, `${n('named-prune')}\n`);
    const pruneAll = run(['volume', 'prune', '-f', '-a', '--filter', 'label=prune=me']);
    assert.equal(pruneAll.stdout, `Deleted Volumes:\n${n('named-prune')}\n\nTotal reclaimed space: 0B\n`);
    // The image VOLUME of `keep` had no label: it goes with a plain prune (anonymous only).
    assert.equal(run(['volume', 'prune', '-f']).code, 0);
    assert.deepEqual(run(['volume', 'ls', '-q']).stdout.split('\n').filter((x) => x && !before.has(x)), []);
  });

  test(`${cli}: pre-population keeps ownership and modes; nocopy and non-empty volumes are left alone`, () => {
    const v = n('prepop');
    assert.equal(run(['run', '--rm', '-v', `${v}:/data`, 'volimg:1', 'true']).code, 0);
    const data = join(volRoot(), v, '_data');
    const st = statSync(data);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 5678, 0o750]);
    const sub = statSync(join(data, 'sub', 'file'));
    assert.deepEqual([sub.uid, sub.gid], [1234, 5678]);
    assert.equal(readFileSync(join(data, 'top'), 'utf8'), 'top\n');
    // A volume with data is not overwritten.
    writeFileSync(join(data, 'top'), 'changed\n');
    assert.equal(run(['run', '--rm', '-v', `${v}:/data`, 'volimg:1', 'cat', '/data/top']).stdout, 'changed\n');
    const noc = n('nocopy');
    assert.equal(run(['run', '--rm', '--mount', `src=${noc},dst=/data,volume-nocopy`, 'volimg:1', 'ls', '-A', '/data']).stdout, '');
    const noc2 = n('nocopy2');
    assert.equal(run(['run', '--rm', '-v', `${noc2}:/data:nocopy`, 'volimg:1', 'ls', '-A', '/data']).stdout, '');
    // The image's volume path is a symlink to /etc: the copy comes from the image's /etc, never the host's.
    const link = n('linketc');
    assert.equal(run(['run', '--rm', '-v', `${link}:/linketc`, 'volimg:1', 'true']).code, 0);
    assert.deepEqual(readdirSync(join(volRoot(), link, '_data')).sort(), ['group', 'passwd']);
    assert.equal(run(['volume', 'rm', v, noc, noc2, link]).code, 0);
    assert.deepEqual(volumeMounts(), []);
  });

  test(`${cli}: --mount volume-subpath stays inside the volume`, () => {
    const v = n('sub');
    run(['volume', 'create', v]);
    const data = join(volRoot(), v, '_data');
    mkdirSync(join(data, 'a', 'b'), { recursive: true });
    writeFileSync(join(data, 'a', 'b', 'f'), 'inner\n');
    symlinkSync('a/b', join(data, 'inlink'));
    symlinkSync('/etc', join(data, 'abs'));
    symlinkSync('../../../..', join(data, 'up'));
    assert.equal(run(['run', '--rm', '--mount', `type=volume,src=${v},dst=/x,volume-subpath=a/b`, 'busybox', 'cat', '/x/f']).stdout, 'inner\n');
    assert.equal(run(['run', '--rm', '--mount', `type=volume,src=${v},dst=/x,volume-subpath=inlink`, 'busybox', 'cat', '/x/f']).stdout, 'inner\n');
    const dotdot = run(['run', '--rm', '--mount', `type=volume,src=${v},dst=/x,volume-subpath=../../..`, 'busybox', 'true']);
    assert.equal(dotdot.code, 125);
    assert.match(dotdot.stderr, /subpath must be a relative path within the volume/);
    for (const [sub, why] of [['abs', /escapes its root through the symbolic link "abs"/], ['up', /escapes its root/], ['nothere', /does not exist in volume/]] as const) {
      const r = run(['run', '--rm', '--mount', `type=volume,src=${v},dst=/x,volume-subpath=${sub}`, 'busybox', 'sh', '-c', 'touch /x/pwned']);
      assert.equal(r.code, 125, sub);
      assert.match(r.stderr, why);
    }
    assert.ok(!existsSync('/etc/pwned'));
    assert.equal(run(['ps', '-aq']).stdout, '');
    // The checked subpath is pinned (bind-mounted by inode) while the container runs, and released after.
    const pinned = run(['run', '-d', '--name', n('pinned'), '--mount', `type=volume,src=${v},dst=/x,volume-subpath=a/b`, 'busybox', 'sh', '-c', 'i=0; while [ ! -f /x/stop ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /x/f']);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal(hostMountsUnder(join(d.execRoot, 'subpaths')).length, 1);
    writeFileSync(join(data, 'a', 'b', 'stop'), '');
    assert.equal(run(['wait', n('pinned')]).stdout.trim(), '0');
    assert.equal(run(['logs', n('pinned')]).stdout, 'inner\n');
    assert.deepEqual(hostMountsUnder(join(d.execRoot, 'subpaths')), []);
    assert.equal(run(['rm', n('pinned')]).code, 0);
    assert.equal(run(['volume', 'rm', v]).code, 0);
  });

  test(`${cli}: tmpfs: --tmpfs and --mount type=tmpfs with size and mode`, () => {
    const r = run(['run', '--rm', '--tmpfs', '/run:rw,size=1m,mode=1770', '--mount', 'type=tmpfs,dst=/t2,tmpfs-size=2m,tmpfs-mode=700', 'busybox', 'sh', '-c', 'grep -E " /(run|t2) " /proc/mounts | sort; stat -c "%a" /run /t2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^tmpfs \/run tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=1770 0 0\ntmpfs \/t2 tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k,mode=700 0 0\n1770\n700\n$/);
    const insp = run(['create', '--name', n('tmpfs'), '--tmpfs', '/run', '--mount', 'type=tmpfs,dst=/t', 'busybox']);
    assert.equal(insp.code, 0, insp.stderr);
    // --mount tmpfs shows in Mounts, --tmpfs only in HostConfig.Tmpfs, as docker shows them.
    assert.equal(run(['inspect', '-f', '{{json .Mounts}}', n('tmpfs')]).stdout.trim(), '[{"Type":"tmpfs","Source":"","Destination":"/t","Mode":"","RW":true,"Propagation":""}]');
    assert.equal(run(['inspect', '-f', '{{json .HostConfig.Tmpfs}}', n('tmpfs')]).stdout.trim(), '{"/run":""}');
    run(['rm', n('tmpfs')]);
    assert.match(run(['run', '--rm', '--tmpfs', '/x:bogus', 'busybox', 'true']).stderr, /invalid tmpfs option/);
    assert.match(run(['run', '--rm', '--mount', 'type=tmpfs,dst=/x,tmpfs-mode=9', 'busybox', 'true']).stderr, /invalid value for tmpfs-mode: 9/);
  });

  test(`${cli}: --volumes-from with :ro, and Mounts in inspect`, () => {
    const v = n('vf');
    const host = join(d.dir, `${cli}-vf-host`);
    mkdirSync(host, { recursive: true });
    assert.equal(run(['create', '--name', n('src'), '-v', `${v}:/named`, '-v', `${host}:/bound:ro,rprivate`, '--mount', `type=bind,src=${host},dst=/m`, '-v', '/anonvf', 'busybox']).code, 0);
    const src = JSON.parse(run(['inspect', '-f', '{{json .Mounts}}', n('src')]).stdout) as Array<Record<string, unknown>>;
    const byDest = Object.fromEntries(src.map((m) => [m.Destination, m]));
    assert.deepEqual(byDest['/named'], { Type: 'volume', Name: v, Source: join(volRoot(), v, '_data'), Destination: '/named', Driver: 'local', Mode: 'z', RW: true, Propagation: '' });
    assert.deepEqual(byDest['/bound'], { Type: 'bind', Source: host, Destination: '/bound', Mode: 'ro,rprivate', RW: false, Propagation: 'rprivate' });
    assert.deepEqual(byDest['/m'], { Type: 'bind', Source: host, Destination: '/m', Mode: '', RW: true, Propagation: 'rprivate' });
    assert.equal((byDest['/anonvf'] as Record<string, unknown>).Mode, '');
    const r = run(['run', '--rm', '--volumes-from', `${n('src')}:ro`, 'busybox', 'sh', '-c', 'ls -d /named /m /anonvf; touch /named/x 2>&1; touch /m/x 2>&1']);
    assert.equal(r.stdout, '/anonvf\n/m\n/named\ntouch: /named/x: Read-only file system\ntouch: /m/x: Read-only file system\n', r.stderr);
    const rw = run(['run', '--rm', '--volumes-from', n('src'), '-v', `${join(d.dir, `${cli}-vf-other`)}:/m`, 'busybox', 'sh', '-c', 'touch /named/x && touch /m/y && echo ok']);
    assert.equal(rw.stdout, 'ok\n', rw.stderr);
    assert.ok(existsSync(join(volRoot(), v, '_data', 'x')));
    assert.ok(existsSync(join(d.dir, `${cli}-vf-other`, 'y')), 'a -v over an inherited mount replaces it');
    const none = run(['run', '--rm', '--volumes-from', n('nosuch'), 'busybox', 'true']);
    assert.equal(none.code, 125);
    assert.match(none.stderr, /No such container: /);
    assert.equal(run(['rm', '-v', n('src')]).code, 0);
    assert.equal(run(['volume', 'rm', v]).code, 0);
  });

  test(`${cli}: volumes with driver options: tmpfs, bind-backed, created by --mount volume-opt`, () => {
    const t = n('tmpfsvol');
    assert.equal(run(['volume', 'create', '--driver', 'local', '-o', 'type=tmpfs', '-o', 'device=tmpfs', '-o', 'o=size=4m,mode=0770', t]).code, 0);
    assert.deepEqual(JSON.parse(run(['volume', 'inspect', t]).stdout)[0].Options, { type: 'tmpfs', device: 'tmpfs', o: 'size=4m,mode=0770' });
    const data = join(volRoot(), t, '_data');
    assert.ok(!volumeMounts().includes(data), 'mounted only while used');
    const holder = run(['run', '-d', '--name', n('tholder'), '-v', `${t}:/t`, 'busybox', 'sh', '-c', 'echo kept > /t/f; i=0; while [ ! -f /t/stop ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done']);
    assert.equal(holder.code, 0, holder.stderr);
    const r = run(['run', '--rm', '-v', `${t}:/t`, 'busybox', 'sh', '-c', 'i=0; while [ ! -f /t/f ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /t/f; df -k /t | tail -1 | awk "{print \\$1, \\$2}"; touch /t/stop']);
    assert.equal(r.stdout, 'kept\ntmpfs 4096\n', r.stderr);
    assert.equal(run(['wait', n('tholder')]).stdout.trim(), '0');
    assert.ok(!volumeMounts().includes(data), 'unmounted after the last user stopped');
    assert.equal(run(['rm', n('tholder')]).code, 0);
    // Bind-backed: the data lands in the host directory; removing the volume leaves that directory alone.
    const backing = join(d.dir, `${cli}-backing`);
    mkdirSync(backing, { recursive: true });
    writeFileSync(join(backing, 'h'), 'host\n');
    const b = n('bindvol');
    assert.equal(run(['volume', 'create', '-o', 'type=none', '-o', 'o=bind', '-o', `device=${backing}`, b]).code, 0);
    assert.equal(run(['run', '--rm', '-v', `${b}:/b`, 'busybox', 'sh', '-c', 'cat /b/h; echo c > /b/c']).stdout, 'host\n');
    assert.equal(readFileSync(join(backing, 'c'), 'utf8'), 'c\n');
    assert.equal(run(['volume', 'rm', b, t]).code, 0);
    assert.deepEqual(readdirSync(backing).sort(), ['c', 'h']);
    // A device that does not exist: a clear error at start, the container not started.
    const bad = n('badbind');
    run(['volume', 'create', '-o', 'type=none', '-o', 'o=bind', '-o', `device=${join(d.dir, 'no-such-backing')}`, bad]);
    const fail = run(['run', '--rm', '-v', `${bad}:/b`, 'busybox', 'true']);
    assert.equal(fail.code, 125);
    assert.match(fail.stderr, /error while mounting volume '.*': failed to mount local volume/);
    assert.equal(run(['volume', 'rm', bad]).code, 0);
    // --mount with volume-opt creates the volume with those options.
    const o = n('optvol');
    const m = run(['run', '--rm', '--mount', `src=${o},dst=/o,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=2m,volume-label=made=bymount`, 'busybox', 'sh', '-c', 'df -k /o | tail -1 | awk "{print \\$1, \\$2}"']);
    assert.equal(m.stdout, 'tmpfs 2048\n', m.stderr);
    const oi = JSON.parse(run(['volume', 'inspect', o]).stdout)[0];
    assert.deepEqual([oi.Options.type, oi.Labels.made], ['tmpfs', 'bymount']);
    assert.equal(run(['volume', 'rm', o]).code, 0);
    assert.deepEqual(volumeMounts(), []);
  });

  test(`${cli}: system df -v shows volume sizes and links`, () => {
    const v = n('df');
    assert.equal(run(['run', '--name', n('dfc'), '-v', `${v}:/d`, 'busybox', 'sh', '-c', 'head -c 3000 /dev/zero > /d/blob']).code, 0);
    const r = run(['system', 'df', '-v']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Local Volumes space usage:\n\nVOLUME NAME\s+LINKS\s+SIZE\n/);
    assert.match(r.stdout, new RegExp(`\\n${v}\\s+1\\s+3kB\\n`));
    const sum = run(['system', 'df', '--format', '{{.Type}} {{.TotalCount}}']);
    assert.match(sum.stdout, /^Local Volumes [1-9]\d*$/m);
    run(['rm', n('dfc')]);
    assert.match(run(['system', 'df', '-v']).stdout, new RegExp(`\\n${v}\\s+0\\s+3kB\\n`));
    assert.equal(run(['volume', 'rm', v]).code, 0);
  });
}

test('docker-py: volumes create, list, use, remove conflicts, prune', () => {
  const host = join(d.dir, 'py-bind');
  mkdirSync(host, { recursive: true });
  writeFileSync(join(host, 'host'), 'from host\n');
  const r = spawnSync('python3', [join(ROOT, 'test', 'sdk', 'docker_py_volumes.py'), d.host, host], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /prune ok/);
  assert.deepEqual(readdirSync(host), ['host']);
});

test('cp reaches a stopped container\'s volumes and binds through its Mounts', () => {
  const host = join(d.dir, 'cp-bind');
  mkdirSync(host, { recursive: true });
  assert.equal(d.berth(['create', '--name', 'cp-vol', '-v', 'cp-named:/named', '-v', `${host}:/bound`, 'busybox']).code, 0);
  const src = join(d.dir, 'cp-src.txt');
  writeFileSync(src, 'copied\n');
  assert.equal(d.docker(['cp', src, 'cp-vol:/named/in-volume.txt']).code, 0);
  assert.equal(d.berth(['cp', src, 'cp-vol:/bound/in-bind.txt']).code, 0);
  assert.equal(readFileSync(join(volRoot(), 'cp-named', '_data', 'in-volume.txt'), 'utf8'), 'copied\n');
  assert.equal(readFileSync(join(host, 'in-bind.txt'), 'utf8'), 'copied\n');
  assert.equal(d.berth(['rm', 'cp-vol']).code, 0);
  assert.equal(d.berth(['volume', 'rm', 'cp-named']).code, 0);
});

test('volume events: create, mount, unmount, destroy through both CLIs', () => {
  const since = String(Math.floor(Date.now() / 1000) - 1);
  assert.equal(d.berth(['run', '--rm', '-v', 'ev-vol:/e:ro', 'busybox', 'true']).code, 0);
  assert.equal(d.berth(['volume', 'rm', 'ev-vol']).code, 0);
  const until = String(Math.floor(Date.now() / 1000) + 1);
  for (const cli of ['berth', 'docker'] as const) {
    const ev = (extra: string[]) => (cli === 'berth' ? d.berth : d.docker).call(d, ['events', '--since', since, '--until', until, '--filter', 'volume=ev-vol', ...extra]);
    const r = ev(['--format', '{{.Type}} {{.Action}} {{.Actor.ID}}']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'volume create ev-vol\nvolume mount ev-vol\nvolume unmount ev-vol\nvolume destroy ev-vol\n');
    const m = ev(['--filter', 'event=mount', '--format', '{{index .Actor.Attributes "destination"}} {{index .Actor.Attributes "read/write"}} {{index .Actor.Attributes "driver"}}']);
    assert.equal(m.stdout, '/e false local\n');
  }
});

test('mount propagation: rslave sees host mounts made later; rshared needs a shared source', async () => {
  const shared = join(d.dir, 'prop-shared');
  mkdirSync(shared, { recursive: true });
  execFileSync('mount', ['--bind', shared, shared]);
  try {
    execFileSync('mount', ['--make-shared', shared]);
    const c = d.berth(['run', '-d', '--name', 'prop', '-v', `${shared}:/p:rslave`, 'busybox', 'sh', '-c', 'i=0; while [ ! -f /p/late/marker ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat /p/late/marker']);
    assert.equal(c.code, 0, c.stderr);
    mkdirSync(join(shared, 'late'));
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', join(shared, 'late')]);
    writeFileSync(join(shared, 'late', 'marker'), 'propagated\n');
    assert.equal(d.berth(['wait', 'prop']).stdout.trim(), '0');
    assert.equal(d.berth(['logs', 'prop']).stdout, 'propagated\n');
    assert.equal(d.berth(['inspect', '-f', '{{(index .Mounts 0).Propagation}}', 'prop']).stdout.trim(), 'rslave');
    d.berth(['rm', 'prop']);
  } finally {
    spawnSync('umount', ['-l', join(shared, 'late')]);
    spawnSync('umount', ['-l', shared]);
  }
  const priv = join(d.dir, 'prop-private');
  mkdirSync(priv, { recursive: true });
  execFileSync('mount', ['--bind', priv, priv]);
  try {
    execFileSync('mount', ['--make-private', priv]);
    const r = d.docker(['run', '--rm', '--mount', `type=bind,src=${priv},dst=/p,bind-propagation=rshared`, 'busybox', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`path ${priv} is mounted on ${priv} but it is not a shared mount`));
  } finally {
    spawnSync('umount', ['-l', priv]);
  }
});

test('the volume API: create, inspect, list filters, delete conflicts, prune', async () => {
  const c = await api('POST', '/v1.51/volumes/create', { Name: 'api-vol', Labels: { k: 'v' } });
  assert.equal(c.status, 201);
  assert.deepEqual((c.body as Record<string, unknown>).Labels, { k: 'v' });
  assert.equal((await api('POST', '/volumes/create', { Name: 'api-bad', DriverOpts: { nope: '1' } })).status, 400);
  assert.equal((await api('POST', '/volumes/create', '{bad json')).status, 400);
  assert.equal((await api('GET', '/volumes/api-nosuch')).status, 404);
  const list = await api('GET', `/volumes?filters=${encodeURIComponent(JSON.stringify({ label: ['k=v'] }))}`);
  assert.deepEqual((list.body as { Volumes: Array<{ Name: string }> }).Volumes.map((v) => v.Name), ['api-vol']);
  assert.equal((await api('GET', `/volumes?filters=${encodeURIComponent(JSON.stringify({ dangling: ['maybe'] }))}`)).status, 400);
  assert.equal(d.berth(['create', '--name', 'api-user', '-v', 'api-vol:/x', 'busybox']).code, 0);
  const del = await api('DELETE', '/volumes/api-vol?force=1');
  assert.equal(del.status, 409);
  assert.match((del.body as { message: string }).message, /volume is in use/);
  d.berth(['rm', 'api-user']);
  assert.equal((await api('DELETE', '/volumes/api-vol')).status, 204);
  assert.equal((await api('DELETE', '/volumes/api-vol')).status, 404);
  // Before API 1.42 prune took named volumes too.
  await api('POST', '/volumes/create', { Name: 'api-old', Labels: { old: '1' } });
  const p = await api('POST', `/v1.41/volumes/prune?filters=${encodeURIComponent(JSON.stringify({ label: ['old=1'] }))}`);
  assert.deepEqual((p.body as { VolumesDeleted: string[] }).VolumesDeleted, ['api-old']);
  const df = await api('GET', '/system/df?type=volume');
  assert.deepEqual(Object.keys(df.body as object), ['Volumes']);
});

test('volumes and their data survive a berthd restart; a running container keeps its tmpfs volume', async () => {
  assert.equal(d.berth(['volume', 'create', '--label', 'r=1', 'restart-vol']).code, 0);
  assert.equal(d.berth(['run', '--rm', '-v', 'restart-vol:/r', 'busybox', 'sh', '-c', 'echo before > /r/f']).code, 0);
  assert.equal(d.berth(['volume', 'create', '-o', 'type=tmpfs', '-o', 'device=tmpfs', 'restart-tmpfs']).code, 0);
  const held = d.berth(['run', '-d', '--name', 'restart-holder', '-v', 'restart-tmpfs:/t', 'busybox', 'sh', '-c', 'echo in-tmpfs > /t/f; i=0; while [ ! -f /t/stop ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done']);
  assert.equal(held.code, 0, held.stderr);
  const tdata = join(volRoot(), 'restart-tmpfs', '_data');
  for (let i = 0; i < 100 && !existsSync(join(tdata, 'f')); i++) await new Promise((r) => setTimeout(r, 50));
  await d.stop('SIGKILL');
  await d.start();
  assert.deepEqual(JSON.parse(d.docker(['volume', 'inspect', 'restart-vol']).stdout)[0].Labels, { r: '1' });
  assert.equal(d.docker(['run', '--rm', '-v', 'restart-vol:/r', 'busybox', 'cat', '/r/f']).stdout, 'before\n');
  assert.ok(volumeMounts().includes(tdata), 'the running container keeps the tmpfs volume mounted');
  assert.equal(readFileSync(join(tdata, 'f'), 'utf8'), 'in-tmpfs\n');
  writeFileSync(join(tdata, 'stop'), '');
  assert.equal(d.berth(['wait', 'restart-holder']).stdout.trim(), '0');
  assert.ok(!volumeMounts().includes(tdata), 'unmounted once its user stopped');
  assert.equal(d.berth(['rm', 'restart-holder']).code, 0);
  assert.equal(d.berth(['volume', 'rm', 'restart-vol', 'restart-tmpfs']).code, 0);
  assert.deepEqual(volumeMounts(), []);
});
