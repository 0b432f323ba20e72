import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile, unlink, utimes, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { BerthError } from '../../src/util/errors.ts';
import { packTar, readTar } from '../../src/util/tar.ts';
import type { TarBody, TarHeaderInput } from '../../src/util/tar.ts';
import { applyLayer, decompressStream, diffLayer, tarTree } from '../../src/image/layer.ts';
import { collect } from '../helpers/tmp.ts';

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-layer-test-'));
  try {
    await fn(dir);
  } finally {
    // Unmount anything a failed test left behind before deleting.
    try {
      const mounts = await readFile('/proc/self/mounts', 'utf8');
      for (const line of mounts.split('\n')) {
        const mp = line.split(' ')[1];
        if (mp && mp.startsWith(`${dir}/`)) execFileSync('umount', ['-l', mp]);
      }
    } catch {
      // best effort
    }
    await rm(dir, { recursive: true, force: true });
  }
}

type Entry = { header: TarHeaderInput; body?: TarBody };
const tarOf = (entries: Entry[]): AsyncIterable<Buffer> => packTar(entries);

function getXattr(path: string, name: string): string | null {
  try {
    return execFileSync('getfattr', ['-h', '--absolute-names', '-n', name, '--only-values', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
}

async function isWhiteout(path: string): Promise<boolean> {
  const st = await lstat(path);
  return st.isCharacterDevice() && st.rdev === 0;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** A comparable description of a tree: type, mode, owner, size, content digest or link target. */
async function describe(dir: string, withTimes = false): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<number, string>();
  async function walk(abs: string, rel: string): Promise<void> {
    for (const name of (await readdir(abs)).sort()) {
      const p = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      let d = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (withTimes && !st.isSymbolicLink()) d += ` t=${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out[r] = `dir ${d}`;
        await walk(p, r);
        continue;
      }
      if (st.isFile()) {
        const sum = createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 12);
        out[r] = `file ${d} ${st.size} ${sum}`;
        if (st.nlink > 1) {
          const first = inodes.get(st.ino);
          if (first) out[r] += ` link=${first}`;
          else inodes.set(st.ino, r);
        }
      } else if (st.isSymbolicLink()) out[r] = `symlink -> ${await readlink(p)}`;
      else if (st.isFIFO()) out[r] = `fifo ${d}`;
      else if (st.isCharacterDevice()) out[r] = `char ${st.rdev} ${d}`;
      else out[r] = `other ${d}`;
    }
  }
  await walk(dir, '');
  return out;
}

async function mountOverlay(target: string, lowers: string[], upper?: { upper: string; work: string }): Promise<void> {
  await mkdir(target, { recursive: true });
  let opts = `lowerdir=${lowers.join(':')}`;
  if (upper) opts += `,upperdir=${upper.upper},workdir=${upper.work}`;
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', opts, target]);
}

const T1 = new Date('2020-01-02T03:04:05Z');
const T2 = new Date('2022-02-03T04:05:06Z');

test('applyLayer extracts files, directories, links, fifos, owners, modes, times and xattrs', async () => {
  await withTmp(async (dir) => {
    const root = join(dir, 'root');
    const { size } = await applyLayer(
      root,
      tarOf([
        { header: { name: './', type: 'directory', mode: 0o755, mtime: T1 } },
        { header: { name: 'ro', type: 'directory', mode: 0o555, uid: 7, gid: 8, mtime: T1 } },
        // A read-only directory still receives its contents.
        { header: { name: 'ro/inside', mode: 0o444, mtime: T2 }, body: Buffer.from('in') },
        { header: { name: 'tmp', type: 'directory', mode: 0o1777, mtime: T2 } },
        { header: { name: 'bin/su', mode: 0o4755, uid: 1000, gid: 1000, mtime: T1 }, body: Buffer.alloc(70_000, 'b') },
        { header: { name: 'bin/sg', mode: 0o2755, uid: 0, gid: 50, mtime: T1 }, body: Buffer.from('sg') },
        { header: { name: 'bin/link', type: 'hardlink', linkname: 'bin/su', mtime: T1 } },
        { header: { name: '/abs/file', mtime: T1 }, body: Buffer.from('leading slash dropped') },
        { header: { name: 'sym', type: 'symlink', linkname: '/etc/passwd', uid: 5, gid: 6, mtime: T1 } },
        { header: { name: 'fifo', type: 'fifo', mode: 0o620, mtime: T1 } },
        // Modes the umask would trim, and none at all.
        { header: { name: 'wide', mode: 0o666, mtime: T1 }, body: Buffer.from('w') },
        { header: { name: 'none', mode: 0o000, mtime: T1 }, body: Buffer.from('n') },
        { header: { name: 'cap', mode: 0o755, mtime: T1, xattrs: { 'user.note': Buffer.from('noted'), 'trusted.other': Buffer.from('t') } }, body: Buffer.from('c') },
      ]),
    );
    assert.equal(size, 2 + 70_000 + 2 + 21 + 1 + 1 + 1);
    assert.equal((await lstat(join(root, 'wide'))).mode & 0o7777, 0o666);
    assert.equal((await lstat(join(root, 'none'))).mode & 0o7777, 0);
    assert.equal(await readFile(join(root, 'none'), 'utf8'), 'n');
    const ro = await lstat(join(root, 'ro'));
    assert.equal(ro.mode & 0o7777, 0o555);
    assert.equal(ro.uid, 7);
    assert.equal(ro.mtimeMs, T1.getTime());
    assert.equal(await readFile(join(root, 'ro/inside'), 'utf8'), 'in');
    assert.equal((await lstat(join(root, 'tmp'))).mode & 0o7777, 0o1777);
    const su = await lstat(join(root, 'bin/su'));
    assert.equal(su.mode & 0o7777, 0o4755);
    assert.equal(su.uid, 1000);
    assert.equal(su.nlink, 2);
    assert.equal((await lstat(join(root, 'bin/link'))).ino, su.ino);
    assert.equal((await lstat(join(root, 'bin/sg'))).mode & 0o7777, 0o2755);
    assert.equal((await lstat(join(root, 'bin/sg'))).gid, 50);
    assert.equal(await readFile(join(root, 'abs/file'), 'utf8'), 'leading slash dropped');
    assert.equal(await readlink(join(root, 'sym')), '/etc/passwd');
    assert.equal((await lstat(join(root, 'sym'))).uid, 5);
    const fifo = await lstat(join(root, 'fifo'));
    assert.ok(fifo.isFIFO());
    assert.equal(fifo.mode & 0o7777, 0o620);
    assert.equal(getXattr(join(root, 'cap'), 'user.note'), 'noted');
    assert.equal(getXattr(join(root, 'cap'), 'trusted.other'), 't');
    // The root entry's attributes land on the root itself, last.
    assert.equal((await lstat(root)).mtimeMs, T1.getTime());
  });
});

test('whiteouts and opaque directories hide lower content under a real overlay mount', async () => {
  await withTmp(async (dir) => {
    const lower = join(dir, 'lower');
    const upper = join(dir, 'upper');
    await applyLayer(
      lower,
      tarOf([
        { header: { name: 'etc', type: 'directory' } },
        { header: { name: 'etc/keep' }, body: Buffer.from('keep') },
        { header: { name: 'etc/gone' }, body: Buffer.from('gone') },
        { header: { name: 'gonedir/sub/f' }, body: Buffer.from('f') },
        { header: { name: 'opq', type: 'directory' } },
        { header: { name: 'opq/old1' }, body: Buffer.from('1') },
        { header: { name: 'opq/olddir/old2' }, body: Buffer.from('2') },
      ]),
    );
    await applyLayer(
      upper,
      tarOf([
        { header: { name: 'etc', type: 'directory' } },
        { header: { name: 'etc/.wh.gone' }, body: Buffer.alloc(0) },
        { header: { name: '.wh.gonedir' }, body: Buffer.alloc(0) },
        { header: { name: 'opq', type: 'directory' } },
        { header: { name: 'opq/new' }, body: Buffer.from('new') },
        // The opaque marker may come after the directory's new content.
        { header: { name: 'opq/.wh..wh..opq' }, body: Buffer.alloc(0) },
        // Other tools' bookkeeping is not extracted.
        { header: { name: '.wh..wh.plnk', type: 'directory' } },
      ]),
    );
    assert.ok(await isWhiteout(join(upper, 'etc/gone')));
    assert.ok(await isWhiteout(join(upper, 'gonedir')));
    assert.equal(getXattr(join(upper, 'opq'), 'trusted.overlay.opaque'), 'y');
    assert.deepEqual((await readdir(upper)).sort(), ['etc', 'gonedir', 'opq']);

    const merged = join(dir, 'merged');
    await mountOverlay(merged, [upper, lower]);
    try {
      assert.deepEqual((await readdir(join(merged, 'etc'))).sort(), ['keep']);
      assert.equal(await exists(join(merged, 'gonedir')), false);
      assert.deepEqual((await readdir(join(merged, 'opq'))).sort(), ['new']);
    } finally {
      execFileSync('umount', [merged]);
    }
  });
});

test('a whiteout never removes an entry of its own layer, in either order', async () => {
  await withTmp(async (dir) => {
    const root = join(dir, 'root');
    await applyLayer(
      root,
      tarOf([
        { header: { name: 'a' }, body: Buffer.from('first') },
        { header: { name: '.wh.a' }, body: Buffer.alloc(0) },
        { header: { name: '.wh.b' }, body: Buffer.alloc(0) },
        { header: { name: 'b' }, body: Buffer.from('second') },
        // A whiteout later needed as a parent directory gives way.
        { header: { name: '.wh.c' }, body: Buffer.alloc(0) },
        { header: { name: 'c/inner' }, body: Buffer.from('inner') },
        // overlayfs' own whiteout form is accepted too.
        { header: { name: 'd', type: 'char', devmajor: 0, devminor: 0 } },
        { header: { name: '.wh.e' }, body: Buffer.alloc(0) },
        { header: { name: '.wh.f' }, body: Buffer.alloc(0) },
        { header: { name: 'f', type: 'directory' } },
      ]),
    );
    assert.equal(await readFile(join(root, 'a'), 'utf8'), 'first');
    assert.equal(await readFile(join(root, 'b'), 'utf8'), 'second');
    assert.equal(await readFile(join(root, 'c/inner'), 'utf8'), 'inner');
    assert.ok((await lstat(join(root, 'f'))).isDirectory());
    assert.ok(await isWhiteout(join(root, 'd')));
    assert.ok(await isWhiteout(join(root, 'e')));
    // The shared whiteout device used for linking is gone.
    assert.deepEqual((await readdir(root)).sort(), ['a', 'b', 'c', 'd', 'e', 'f']);
  });
});

test('later entries replace earlier ones, directories are merged', async () => {
  await withTmp(async (dir) => {
    const root = join(dir, 'root');
    await applyLayer(
      root,
      tarOf([
        { header: { name: 'x/old' }, body: Buffer.from('old') },
        { header: { name: 'x', type: 'symlink', linkname: '/etc' } },
        { header: { name: 'y' }, body: Buffer.from('y1') },
        { header: { name: 'y' }, body: Buffer.from('y2') },
        { header: { name: 'z/1' }, body: Buffer.from('1') },
        { header: { name: 'z', type: 'directory', mode: 0o700 } },
        { header: { name: 'z/2' }, body: Buffer.from('2') },
      ]),
    );
    assert.equal(await readlink(join(root, 'x')), '/etc');
    assert.equal(await readFile(join(root, 'y'), 'utf8'), 'y2');
    assert.deepEqual((await readdir(join(root, 'z'))).sort(), ['1', '2']);
    assert.equal((await lstat(join(root, 'z'))).mode & 0o7777, 0o700);
  });
});

test('hostile archives are refused and nothing is written outside the root', async (t) => {
  await withTmp(async (dir) => {
    const outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'sentinel'), 'untouched');
    const passwdBefore = await lstat('/etc/passwd');
    const cases: { name: string; entries: Entry[]; allowed?: boolean }[] = [
      { name: 'dot-dot', entries: [{ header: { name: '../evil' }, body: Buffer.from('x') }] },
      { name: 'nested dot-dot', entries: [{ header: { name: 'a/../../evil' }, body: Buffer.from('x') }] },
      { name: 'absolute with dot-dot', entries: [{ header: { name: '/abs/../../evil' }, body: Buffer.from('x') }] },
      {
        name: 'symlink parent to an absolute path',
        entries: [
          { header: { name: 'link', type: 'symlink', linkname: outside } },
          { header: { name: 'link/file' }, body: Buffer.from('x') },
        ],
      },
      {
        name: 'symlink parent made of dot-dots',
        entries: [
          { header: { name: 'up', type: 'symlink', linkname: '../..' } },
          { header: { name: 'up/outside/evil' }, body: Buffer.from('x') },
        ],
      },
      {
        name: 'chain of symlinks to ..',
        entries: [
          { header: { name: 'd', type: 'directory' } },
          { header: { name: 'd/l1', type: 'symlink', linkname: '..' } },
          { header: { name: 'd/l1/l2', type: 'symlink', linkname: '..' } },
          { header: { name: 'd/l1/l2/evil' }, body: Buffer.from('x') },
        ],
      },
      {
        name: 'symlink parent for a directory',
        entries: [
          { header: { name: 'link', type: 'symlink', linkname: outside } },
          { header: { name: 'link/newdir', type: 'directory' } },
        ],
      },
      {
        name: 'symlink parent for a whiteout',
        entries: [
          { header: { name: 'link', type: 'symlink', linkname: outside } },
          { header: { name: 'link/.wh.sentinel' }, body: Buffer.alloc(0) },
        ],
      },
      {
        name: 'symlink parent for an opaque marker',
        entries: [
          { header: { name: 'link', type: 'symlink', linkname: outside } },
          { header: { name: 'link/.wh..wh..opq' }, body: Buffer.alloc(0) },
        ],
      },
      { name: 'hardlink to /etc/passwd', entries: [{ header: { name: 'pw', type: 'hardlink', linkname: '/etc/passwd' } }] },
      { name: 'hardlink escaping with dot-dot', entries: [{ header: { name: 'pw', type: 'hardlink', linkname: '../outside/sentinel' } }] },
      {
        name: 'hardlink through a symlink',
        entries: [
          { header: { name: 'etc', type: 'symlink', linkname: '/etc' } },
          { header: { name: 'pw', type: 'hardlink', linkname: 'etc/passwd' } },
        ],
      },
      {
        name: 'hardlink through a symlink to the outside dir',
        entries: [
          { header: { name: 'o', type: 'symlink', linkname: outside } },
          { header: { name: 's', type: 'hardlink', linkname: 'o/sentinel' } },
        ],
      },
      { name: 'device node', entries: [{ header: { name: 'null', type: 'char', devmajor: 1, devminor: 3 } }] },
      { name: 'block device', entries: [{ header: { name: 'sda', type: 'block', devmajor: 8, devminor: 0 } }] },
      { name: 'empty whiteout name', entries: [{ header: { name: 'x/.wh.' }, body: Buffer.alloc(0) }] },
      { name: 'file as the root', entries: [{ header: { name: './' }, body: Buffer.from('x') }] },
      { name: 'NUL in a PAX path', entries: [{ header: { name: 'a\0b' }, body: Buffer.from('x') }] },
    ];
    for (const c of cases) {
      await t.test(c.name, async () => {
        const root = join(dir, 'layer', 'root');
        await rm(join(dir, 'layer'), { recursive: true, force: true });
        await assert.rejects(applyLayer(root, tarOf(c.entries)), (err: unknown) => {
          assert.ok(err instanceof BerthError, String(err));
          assert.equal(err.kind, 'InvalidParameter', err.message);
          return true;
        });
        assert.deepEqual(await readdir(outside), ['sentinel']);
        assert.equal(await readFile(join(outside, 'sentinel'), 'utf8'), 'untouched');
        assert.deepEqual((await readdir(dir)).sort(), ['layer', 'outside']);
        assert.deepEqual(await readdir(join(dir, 'layer')), ['root']);
        assert.equal(await exists(join(dir, 'evil')), false);
        const passwd = await lstat('/etc/passwd');
        assert.equal(passwd.nlink, passwdBefore.nlink);
        assert.equal(passwd.mtimeMs, passwdBefore.mtimeMs);
      });
    }

    await t.test('a hardlink to a symlink copies the link, never its target', async () => {
      const root = join(dir, 'layer2');
      await applyLayer(
        root,
        tarOf([
          { header: { name: 'out', type: 'symlink', linkname: join(outside, 'sentinel') } },
          { header: { name: 'out2', type: 'hardlink', linkname: 'out' } },
        ]),
      );
      assert.equal(await readlink(join(root, 'out2')), join(outside, 'sentinel'));
      assert.equal((await lstat(join(outside, 'sentinel'))).nlink, 1);
      await rm(root, { recursive: true });
    });

    await t.test('an entry replacing a symlink replaces the link, never writes through it', async () => {
      const root = join(dir, 'layer4');
      await applyLayer(
        root,
        tarOf([
          { header: { name: 'f', type: 'symlink', linkname: join(outside, 'sentinel') } },
          { header: { name: 'f' }, body: Buffer.from('replaced') },
          { header: { name: 'd', type: 'symlink', linkname: outside } },
          { header: { name: 'd', type: 'directory', mode: 0o700 } },
          { header: { name: 'd/inside' }, body: Buffer.from('in') },
        ]),
      );
      assert.equal(await readFile(join(root, 'f'), 'utf8'), 'replaced');
      assert.ok((await lstat(join(root, 'd'))).isDirectory());
      assert.equal(await readFile(join(root, 'd/inside'), 'utf8'), 'in');
      assert.deepEqual(await readdir(outside), ['sentinel']);
      assert.equal(await readFile(join(outside, 'sentinel'), 'utf8'), 'untouched');
      await rm(root, { recursive: true });
    });

    await t.test('devices are created when allowed', async () => {
      const root = join(dir, 'layer3');
      await applyLayer(root, tarOf([{ header: { name: 'null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 } }]), { allowDevices: true });
      const st = await lstat(join(root, 'null'));
      assert.ok(st.isCharacterDevice());
      assert.equal(st.rdev, (1 << 8) | 3);
      assert.equal(st.mode & 0o7777, 0o666);
      await rm(root, { recursive: true });
    });
  });
});

test('diffLayer of a real overlay upper dir reproduces the container view', async () => {
  await withTmp(async (dir) => {
    const lower = join(dir, 'lower');
    await applyLayer(
      lower,
      tarOf([
        { header: { name: 'etc', type: 'directory', mtime: T1 } },
        { header: { name: 'etc/config', mtime: T1 }, body: Buffer.from('v1') },
        { header: { name: 'etc/delete-me', mtime: T1 }, body: Buffer.from('bye') },
        { header: { name: 'app', type: 'directory', mtime: T1 } },
        { header: { name: 'app/lib', type: 'directory', mtime: T1 } },
        { header: { name: 'app/lib/old.so', mtime: T1 }, body: Buffer.from('old') },
        { header: { name: 'app/data', mtime: T1 }, body: Buffer.from('data') },
        { header: { name: 'rmdir/a/b', mtime: T1 }, body: Buffer.from('b') },
        { header: { name: 'owned', uid: 10, gid: 10, mode: 0o600, mtime: T1 }, body: Buffer.from('o') },
      ]),
    );
    const upper = join(dir, 'upper');
    const work = join(dir, 'work');
    const merged = join(dir, 'merged');
    await mkdir(upper);
    await mkdir(work);
    await mountOverlay(merged, [lower], { upper, work });
    let expected: Record<string, string>;
    try {
      await unlink(join(merged, 'etc/delete-me'));
      await writeFile(join(merged, 'etc/config'), 'v2 changed');
      await rm(join(merged, 'app/lib'), { recursive: true });
      await mkdir(join(merged, 'app/lib'));
      await writeFile(join(merged, 'app/lib/new.so'), 'new');
      await rm(join(merged, 'rmdir'), { recursive: true });
      await mkdir(join(merged, 'added/deep'), { recursive: true });
      await writeFile(join(merged, 'added/deep/file'), Buffer.alloc(300_000, 'z'));
      await link(join(merged, 'added/deep/file'), join(merged, 'added/hl'));
      await symlink('../etc/config', join(merged, 'added/sym'));
      await chmod(join(merged, 'owned'), 0o640);
      await chown(join(merged, 'owned'), 20, 30);
      await writeFile(join(merged, 'tagged'), 'x');
      execFileSync('setfattr', ['-n', 'user.tag', '-v', 'blue', join(merged, 'tagged')]);
      await utimes(join(merged, 'tagged'), T2, T2);
      expected = await describe(merged);
    } finally {
      execFileSync('umount', [merged]);
    }

    const tarPath = join(dir, 'diff.tar');
    await pipeline(diffLayer(upper), createWriteStream(tarPath));
    const names: string[] = [];
    for await (const e of readTar(createReadStream(tarPath))) {
      names.push(e.header.name);
      // overlayfs' own bookkeeping never leaks into the layer.
      assert.deepEqual(Object.keys(e.header.xattrs).filter((k) => k.startsWith('trusted.overlay.')), [], e.header.name);
    }
    assert.ok(names.includes('etc/.wh.delete-me'), names.join(' '));
    assert.ok(names.includes('.wh.rmdir'), names.join(' '));
    assert.ok(names.includes('app/lib/.wh..wh..opq'), names.join(' '));
    assert.ok(!names.some((n) => n.startsWith('app/lib/old')));
    // Parents always precede their children; the listing is deterministic.
    for (const n of names) {
      const parent = n.replace(/\/?[^/]+\/?$/, '');
      if (parent) assert.ok(names.indexOf(`${parent}/`) < names.indexOf(n), `${parent}/ before ${n}`);
    }
    const again = await collect(diffLayer(upper));
    assert.deepEqual(again, await readFile(tarPath));
    // GNU tar agrees on the format.
    const listing = execFileSync('tar', ['-tvf', tarPath], { encoding: 'utf8' });
    assert.match(listing, /added\/hl link to added\/deep\/file|added\/deep\/file link to added\/hl/);

    const applied = join(dir, 'applied');
    await applyLayer(applied, createReadStream(tarPath));
    assert.ok(await isWhiteout(join(applied, 'etc/delete-me')));
    assert.equal(getXattr(join(applied, 'app/lib'), 'trusted.overlay.opaque'), 'y');
    assert.equal(getXattr(join(applied, 'tagged'), 'user.tag'), 'blue');
    assert.equal((await lstat(join(applied, 'tagged'))).mtimeMs, T2.getTime());

    const view = join(dir, 'view');
    await mountOverlay(view, [applied, lower]);
    try {
      assert.deepEqual(await describe(view), expected);
    } finally {
      execFileSync('umount', [view]);
    }
  });
});

test('tarTree round-trips a tree through applyLayer', async () => {
  await withTmp(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'a/b'), { recursive: true });
    await writeFile(join(src, 'a/b/f'), 'content');
    await writeFile(join(src, `${'n'.repeat(120)}`), 'long');
    await mkdir(join(src, 'p'.repeat(90)));
    await writeFile(join(src, 'p'.repeat(90), 'q'.repeat(90)), 'deep');
    await link(join(src, 'a/b/f'), join(src, 'a/hl'));
    await symlink('/nowhere', join(src, 'dangling'));
    await writeFile(join(src, 'setuid'), '');
    await chmod(join(src, 'setuid'), 0o4711);
    await chown(join(src, 'a'), 33, 44);
    execFileSync('mknod', [join(src, 'fifo'), 'p']);
    execFileSync('mknod', [join(src, 'null'), 'c', '1', '3']);
    for (const p of ['a/b/f', 'a/b', 'a', '']) await utimes(join(src, p), T1, T1);

    const out = join(dir, 'out');
    await applyLayer(out, tarTree(src), { allowDevices: true });
    assert.deepEqual(await describe(out, true), await describe(src, true));
  });
});

test('decompressStream recognises gzip, zstd and plain tar', async () => {
  const plain = await collect(packTar([{ header: { name: 'f' }, body: Buffer.from('payload') }]));
  for (const [label, data] of [
    ['plain', plain],
    ['gzip', gzipSync(plain)],
    ['zstd', zstdCompressSync(plain)],
  ] as const) {
    async function* chunks(): AsyncGenerator<Buffer> {
      // Tiny first chunks: the sniffing must gather enough bytes.
      for (let i = 0; i < data.length; i += 3) yield data.subarray(i, i + 3);
    }
    assert.deepEqual(await collect(decompressStream(chunks())), plain, label);
  }
  assert.deepEqual(await collect(decompressStream((async function* () {})())), Buffer.alloc(0));
  const corrupt = gzipSync(plain);
  corrupt[corrupt.length - 6] ^= 0xff;
  await assert.rejects(collect(decompressStream((async function* () { yield corrupt; })())), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'InvalidParameter');
    return true;
  });
  const truncated = gzipSync(plain).subarray(0, 20);
  await assert.rejects(collect(decompressStream((async function* () { yield truncated; })())), /corrupt gzip/);
});

test('a layer of 10,000 small files extracts completely (its speed is measured in bench/layer-apply.ts)', async () => {
  await withTmp(async (dir) => {
    const src = join(dir, 'src');
    for (let d = 0; d < 100; d++) {
      await mkdir(join(src, `d${d}`), { recursive: true });
      await Promise.all(Array.from({ length: 100 }, (_, f) => writeFile(join(src, `d${d}`, `f${f}`), `file ${d}/${f}\n`.repeat(40))));
    }
    const tarPath = join(dir, 'many.tar.gz');
    execFileSync('tar', ['-C', src, '-czf', tarPath, '.']);
    await applyLayer(join(dir, 'out'), decompressStream(createReadStream(tarPath)));
    assert.equal((await readdir(join(dir, 'out'))).length, 100);
    for (const d of [0, 42, 99]) assert.equal((await readdir(join(dir, 'out', `d${d}`))).length, 100);
    assert.equal(await readFile(join(dir, 'out', 'd42', 'f7'), 'utf8'), 'file 42/7\n'.repeat(40));
  });
});
