/**
 * cp (both directions, both CLIs), the archive endpoints, export and diff,
 * on created, running and stopped containers; hostile paths and archives.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync, lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { TestDaemon } from '../helpers/daemon.ts';
import { packTar } from '../../src/util/tar.ts';
import type { TarHeaderInput } from '../../src/util/tar.ts';

const d = new TestDaemon('cp');
let host = '';

before(async () => {
  await d.start();
  d.loadBusybox();
  host = join(d.dir, 'host');
  mkdirSync(join(host, 'dir', 'sub'), { recursive: true });
  writeFileSync(join(host, 'file.txt'), 'hello from the host\n');
  writeFileSync(join(host, 'dir', 'top'), 'top\n');
  writeFileSync(join(host, 'dir', 'sub', 'deep'), 'deep\n');
  symlinkSync('top', join(host, 'dir', 'toplink'));
});

after(async () => {
  await d.cleanup();
});

async function tarBuffer(entries: Array<{ header: TarHeaderInput; body?: Buffer }>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of packTar(entries)) parts.push(c);
  return Buffer.concat(parts);
}

function api(method: string, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method, path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('latin1')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Files and their contents below a host directory, for comparisons. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string, rel: string): void => {
    for (const n of readdirSync(p).sort()) {
      const full = join(p, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(full);
      if (st.isDirectory()) {
        out.push(`${r}/`);
        walk(full, r);
      } else if (st.isSymbolicLink()) out.push(`${r} -> ${readlinkSync(full)}`);
      else out.push(`${r}: ${readFileSync(full, 'utf8').trim()}`);
    }
  };
  walk(dir, '');
  return out;
}

function noTempMounts(): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  assert.doesNotMatch(mounts, new RegExp(`${d.dataRoot}/tmp/rootfs-`), 'no temporary rootfs mount is left');
}

test('the path-stat header and 404s of the archive endpoint', async () => {
  const id = d.berth(['create', 'busybox', 'true']).stdout.trim();
  const head = await api('HEAD', `/containers/${id}/archive?path=/etc/passwd`);
  assert.equal(head.status, 200);
  const stat = JSON.parse(Buffer.from(String(head.headers['x-docker-container-path-stat']), 'base64').toString()) as Record<string, unknown>;
  assert.equal(stat.name, 'passwd');
  assert.equal(stat.mode, 0o644);
  assert.equal(typeof stat.mtime, 'string');
  const dir = await api('HEAD', `/containers/${id}/archive?path=/etc/`);
  const dstat = JSON.parse(Buffer.from(String(dir.headers['x-docker-container-path-stat']), 'base64').toString()) as { mode: number };
  assert.ok(dstat.mode >= 2 ** 31, 'directories carry Go\'s ModeDir bit');
  assert.equal((await api('HEAD', `/containers/${id}/archive?path=/nope`)).status, 404);
  const get = await api('GET', `/containers/${id}/archive?path=/nope`);
  assert.equal(get.status, 404);
  assert.match(get.body, /Could not find the file \/nope in container/);
  assert.equal((await api('GET', `/containers/nosuch/archive?path=/`)).status, 404);
  const put = await api('PUT', `/containers/${id}/archive?path=/etc/passwd`);
  assert.equal(put.status, 400);
  assert.match(put.body, /extraction point is not a directory/);
  d.berth(['rm', id]);
  noTempMounts();
});

for (const cli of ['berth', 'docker'] as const) {
  const run = (args: string[], input?: string | Buffer) => (cli === 'berth' ? d.berth(args, input) : d.docker(args, input));

  test(`${cli}: cp into and out of a created container, with docker's path rules`, () => {
    const name = `cp-created-${cli}`;
    assert.equal(run(['create', '--name', name, 'busybox', 'true']).code, 0);
    const out = join(d.dir, `out-${cli}`);
    mkdirSync(out);
    // A file into an existing directory keeps its name; onto a new path takes that name.
    let r = run(['cp', join(host, 'file.txt'), `${name}:/tmp`]);
    assert.equal(r.code, 0, r.stderr);
    r = run(['cp', join(host, 'file.txt'), `${name}:/tmp/renamed.txt`]);
    assert.equal(r.code, 0, r.stderr);
    // A directory onto a missing path is created with the contents; into an existing one it nests.
    assert.equal(run(['cp', join(host, 'dir'), `${name}:/newdir`]).code, 0);
    assert.equal(run(['cp', join(host, 'dir'), `${name}:/tmp`]).code, 0);
    // `/.` copies the contents into an existing directory.
    assert.equal(run(['cp', `${join(host, 'dir')}/.`, `${name}:/root`]).code, 0);
    r = run(['cp', `${name}:/tmp`, join(out, 'tmp')]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(tree(join(out, 'tmp')), ['dir/', 'dir/sub/', 'dir/sub/deep: deep', 'dir/top: top', 'dir/toplink -> top', 'file.txt: hello from the host', 'renamed.txt: hello from the host']);
    assert.equal(run(['cp', `${name}:/newdir`, join(out, 'newdir')]).code, 0);
    assert.deepEqual(tree(join(out, 'newdir')), ['sub/', 'sub/deep: deep', 'top: top', 'toplink -> top']);
    assert.equal(run(['cp', `${name}:/root/.`, join(out, 'rootcontents')]).code, 0);
    assert.ok(existsSync(join(out, 'rootcontents', 'sub', 'deep')));
    // A file out into an existing directory, and onto an existing file.
    assert.equal(run(['cp', `${name}:/etc/passwd`, out]).code, 0);
    assert.match(readFileSync(join(out, 'passwd'), 'utf8'), /^root:/);
    writeFileSync(join(out, 'existing'), 'old');
    assert.equal(run(['cp', `${name}:/tmp/file.txt`, join(out, 'existing')]).code, 0);
    assert.equal(readFileSync(join(out, 'existing'), 'utf8'), 'hello from the host\n');
    // The whole root, into a new directory.
    assert.equal(run(['cp', `${name}:/`, join(out, 'rootfs')]).code, 0);
    assert.ok(existsSync(join(out, 'rootfs', 'bin', 'busybox')));
    assert.ok(existsSync(join(out, 'rootfs', 'tmp', 'file.txt')));
    run(['rm', name]);
    noTempMounts();
  });

  test(`${cli}: cp errors: missing paths, a directory onto a file, a missing directory`, () => {
    const name = `cp-err-${cli}`;
    run(['create', '--name', name, 'busybox', 'true']);
    let r = run(['cp', `${name}:/does/not/exist`, d.dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`Could not find the file /does/not/exist in container ${name}`));
    r = run(['cp', join(host, 'dir'), `${name}:/etc/passwd`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot copy directory/);
    r = run(['cp', join(host, 'file.txt'), `${name}:/no/such/dir/`]);
    assert.notEqual(r.code, 0);
    r = run(['cp', join(host, 'nope'), `${name}:/tmp`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such file or directory/);
    r = run(['cp', `${name}:/etc/passwd`, join(d.dir, 'no', 'such', 'dir', 'x')]);
    assert.equal(r.code, 1);
    r = run(['cp', join(host, 'file.txt'), 'nosuchcontainer:/tmp']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No such container: nosuchcontainer/);
    r = run(['cp', `${name}:/a`, `${name}:/b`]);
    assert.match(r.stderr, /copying between containers is not supported/);
    run(['rm', name]);
    noTempMounts();
  });

  test(`${cli}: cp with a running container, - for tar streams, and out of a stopped one`, () => {
    const name = `cp-run-${cli}`;
    // The container waits for the file cp brings in, prints it and writes its own.
    // (A marker, copied after the message: a file being extracted is visible before its contents.)
    const r0 = run(['run', '-d', '--name', name, 'busybox', 'sh', '-c', 'while [ ! -f /tmp/go ]; do sleep 0.05; done; cat /tmp/msg; echo made-inside > /made; sleep 0.3']);
    assert.equal(r0.code, 0, r0.stderr);
    const tar = execFileSync('tar', ['-C', host, '-c', 'file.txt']);
    let r = run(['cp', '-', `${name}:/tmp`], tar);
    assert.equal(r.code, 0, r.stderr);
    writeFileSync(join(d.dir, `msg-${cli}`), 'go now\n');
    r = run(['cp', join(d.dir, `msg-${cli}`), `${name}:/tmp/msg`]);
    assert.equal(r.code, 0, r.stderr);
    r = run(['cp', join(d.dir, `msg-${cli}`), `${name}:/tmp/go`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run(['wait', name]).stdout.trim(), '0');
    assert.equal(run(['logs', name]).stdout, 'go now\n');
    // Stopped: the file the container wrote, and the one that came in as a tar.
    const out = run(['cp', `${name}:/made`, '-']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /made-inside/);
    const listed = execFileSync('tar', ['-t'], { input: Buffer.from(run(['cp', `${name}:/tmp`, '-']).stdout, 'latin1') }).toString();
    assert.match(listed, /tmp\/file\.txt/);
    run(['rm', name]);
    noTempMounts();
  });

  test(`${cli}: the network files are the container's own`, () => {
    const name = `cp-net-${cli}`;
    run(['run', '-d', '--name', name, '--hostname', `box-${cli}`, 'busybox', 'sleep', '30']);
    const r = run(['cp', `${name}:/etc/hostname`, '-']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`box-${cli}`));
    // A running container exports through its own mount.
    const file = join(d.dir, `export-running-${cli}.tar`);
    assert.equal(run(['export', '-o', file, name]).code, 0);
    assert.ok(execFileSync('tar', ['-tf', file]).toString().split('\n').includes('bin/busybox'));
    const evs = run(['events', '--since', '60s', '--until', String(Math.ceil(Date.now() / 1000) + 1), '--filter', `container=${name}`, '--filter', 'event=archive-path', '--filter', 'event=export', '--format', '{{.Action}}']);
    assert.equal(evs.stdout, 'archive-path\nexport\n');
    run(['rm', '-f', name]);
  });

  test(`${cli}: symlinks inside the container never reach the host`, () => {
    const name = `cp-link-${cli}`;
    const hostDir = join(d.dir, `victim-${cli}`);
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, 'secret'), 'host secret\n');
    run(['run', '--name', name, 'busybox', 'sh', '-c', `ln -s ${hostDir} /esc; ln -s ${join(hostDir, 'secret')} /secretlink; mkdir -p ${hostDir}`]);
    // Writing through a link to a host path lands on that path inside the container.
    let r = run(['cp', join(host, 'file.txt'), `${name}:/esc/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(hostDir), ['secret']);
    // Reading through it reads the container's file, or nothing.
    r = run(['cp', '-L', `${name}:/secretlink`, join(d.dir, `leak-${cli}`)]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`Could not find the file ${join(hostDir, 'secret')}`));
    r = run(['cp', `${name}:/esc/file.txt`, '-']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /hello from the host/);
    // Without -L the link itself is copied.
    r = run(['cp', `${name}:/secretlink`, join(d.dir, `link-${cli}`)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readlinkSync(join(d.dir, `link-${cli}`)), join(hostDir, 'secret'));
    run(['rm', name]);
    noTempMounts();
  });

  test(`${cli}: a hostile tar is refused and nothing outside the container is touched`, async () => {
    const name = `cp-hostile-${cli}`;
    run(['create', '--name', name, 'busybox', 'true']);
    const victim = join(d.dir, `hostile-${cli}`);
    const outsideRel = `../../../../../../../../..${victim}`;
    for (const entries of [
      [{ header: { name: outsideRel, size: 4 }, body: Buffer.from('evil') }],
      [{ header: { name: 'lnk', type: 'symlink' as const, linkname: '../../../../../../../../..' } }],
      [{ header: { name: 'hard', type: 'hardlink' as const, linkname: outsideRel } }],
      [{ header: { name: 'dev', type: 'char' as const, devmajor: 1, devminor: 3 } }],
    ]) {
      const r = run(['cp', '-', `${name}:/tmp`], await tarBuffer(entries));
      assert.equal(r.code, 1, `refused: ${JSON.stringify(entries[0]!.header)}`);
      assert.match(r.stderr, /Error response from daemon: invalid (tar entry|symlink|hardlink)/);
    }
    assert.equal(existsSync(victim), false);
    const changes = run(['diff', name]);
    assert.equal(changes.stdout, '', 'the container is unchanged too');
    run(['rm', name]);
    noTempMounts();
  });

  test(`${cli}: -a gives files the container user's ids; read-only root filesystems refuse writes`, () => {
    const name = `cp-owner-${cli}`;
    run(['create', '--name', name, '-u', '1234:5678', 'busybox', 'stat', '-c', '%u:%g', '/tmp/a.txt', '/tmp/b.txt']);
    assert.equal(run(['cp', '-a', join(host, 'file.txt'), `${name}:/tmp/a.txt`]).code, 0);
    assert.equal(run(['cp', join(host, 'file.txt'), `${name}:/tmp/b.txt`]).code, 0);
    run(['start', '-a', name]);
    const st = statSync(join(host, 'file.txt'));
    assert.equal(run(['logs', name]).stdout, `1234:5678\n${st.uid}:${st.gid}\n`);
    run(['rm', name]);
    const ro = `cp-ro-${cli}`;
    run(['create', '--name', ro, '--read-only', 'busybox', 'true']);
    const r = run(['cp', join(host, 'file.txt'), `${ro}:/tmp`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /read-only/);
    assert.equal(run(['cp', `${ro}:/etc/passwd`, '-']).code, 0, 'reading is fine');
    run(['rm', ro]);
    noTempMounts();
  });

  test(`${cli}: export and diff`, () => {
    const name = `exp-${cli}`;
    const r0 = run(['run', '--name', name, 'busybox', 'sh', '-c', 'mkdir /tmp/new; echo x > /tmp/new/f; rm /etc/group; echo changed >> /etc/passwd']);
    assert.equal(r0.code, 0, r0.stderr);
    const diff = run(['diff', name]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.deepEqual(diff.stdout.trim().split('\n'), ['C /etc', 'D /etc/group', 'C /etc/passwd', 'C /tmp', 'A /tmp/new', 'A /tmp/new/f']);
    const file = join(d.dir, `export-${cli}.tar`);
    const r = run(['export', '-o', file, name]);
    assert.equal(r.code, 0, r.stderr);
    const names = execFileSync('tar', ['-tf', file]).toString().split('\n');
    assert.ok(names.includes('bin/busybox'));
    assert.ok(names.includes('tmp/new/f'));
    assert.ok(!names.includes('etc/group'), 'deleted files are gone from the export');
    assert.match(execFileSync('tar', ['-xOf', file, 'etc/passwd']).toString(), /changed/);
    const bad = run(['export', '-o', join(d.dir, 'no', 'dir', 'x.tar'), name]);
    assert.equal(bad.code, 1);
    assert.equal(run(['export', '-o', join(d.dir, 'x.tar'), 'nosuch']).code, 1);
    assert.equal(existsSync(join(d.dir, 'x.tar')), false);
    run(['rm', name]);
    noTempMounts();
  });
}
