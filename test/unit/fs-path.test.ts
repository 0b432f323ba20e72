/**
 * Safe resolution inside a container root and extraction of hostile
 * archives into it: nothing may be read or written outside the root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BerthError } from '../../src/util/errors.ts';
import { packTar, readTar } from '../../src/util/tar.ts';
import type { TarHeaderInput } from '../../src/util/tar.ts';
import { ScopedFs, goFileMode } from '../../src/engine/fs-path.ts';
import { packLocated, unpackInto } from '../../src/engine/archive-tar.ts';
import type { UnpackOptions } from '../../src/engine/archive-tar.ts';

async function withRoot(fn: (root: string, outside: string) => Promise<void>): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'berth-fspath-test-'));
  const root = join(base, 'root');
  const outside = join(base, 'outside');
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(root, 'etc', 'passwd'), 'inside\n');
  await writeFile(join(outside, 'secret'), 'host secret\n');
  try {
    await fn(root, outside);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

async function readVia(fs: ScopedFs, path: string): Promise<string> {
  const loc = await fs.resolve(path, { followFinal: true });
  return readFile(loc.ref, 'utf8');
}

function tarOf(entries: Array<{ header: TarHeaderInput; body?: Buffer }>): AsyncIterable<Buffer> {
  return packTar(entries);
}

const OPTS: UnpackOptions = { noOverwriteDirNonDir: true, owner: 'archive', refuseDevices: true };

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected a BerthError, got ${String(err)}`);
    assert.match(err.message, re);
    return true;
  });
}

test('absolute symlinks resolve inside the root, not on the host', async () => {
  await withRoot(async (root, outside) => {
    await symlink('/etc', join(root, 'abs'));
    await symlink(outside, join(root, 'hostdir'));
    const fs = await ScopedFs.open(root);
    try {
      assert.equal(await readVia(fs, '/abs/passwd'), 'inside\n');
      // A link naming a host directory lands on the same path inside the root, which does not exist.
      await rejects(fs.resolve(`/hostdir/secret`, { followFinal: true }), /no such file/);
      assert.equal((await fs.resolve('/abs/passwd', { followFinal: true })).path, '/etc/passwd');
    } finally {
      await fs.close();
    }
  });
});

test('.. and relative symlinks never climb above the root', async () => {
  await withRoot(async (root) => {
    await symlink('../../../../../../..', join(root, 'up'));
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await symlink('../../../../etc', join(root, 'a', 'b', 'rel'));
    const fs = await ScopedFs.open(root);
    try {
      assert.equal(await readVia(fs, '/../../../etc/passwd'), 'inside\n');
      assert.equal(await readVia(fs, '/up/etc/passwd'), 'inside\n');
      assert.equal(await readVia(fs, 'a/b/rel/passwd'), 'inside\n');
      assert.equal(await fs.realPath('/up/up/etc/../etc/passwd'), '/etc/passwd');
    } finally {
      await fs.close();
    }
  });
});

test('symlink loops, missing paths and files used as directories are errors', async () => {
  await withRoot(async (root) => {
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
    const fs = await ScopedFs.open(root);
    try {
      await rejects(fs.resolve('/loop1/x'), /too many levels of symbolic links/);
      await rejects(fs.resolve('/nope/x'), /no such file or directory: \/nope/);
      await rejects(fs.resolve('/etc/passwd/x'), /not a directory/);
      // The final component is not followed unless asked.
      const loc = await fs.resolve('/loop1');
      assert.equal(loc.name, 'loop1');
      assert.equal(await fs.realPath('/dangling/../x/y'), '/x/y');
    } finally {
      await fs.close();
    }
  });
});

test('a dangling link reports its target inside the container', async () => {
  await withRoot(async (root) => {
    await symlink('/etc/shadow', join(root, 'link'));
    const fs = await ScopedFs.open(root);
    try {
      assert.equal(await fs.realPath('/link'), '/etc/shadow');
    } finally {
      await fs.close();
    }
  });
});

test('mount table entries are seen at their destination', async () => {
  await withRoot(async (root, outside) => {
    const fs = await ScopedFs.open(root, { mounts: [{ destination: '/data', source: outside, readOnly: true }, { destination: '/etc/hosts', source: join(outside, 'secret'), readOnly: false }] });
    try {
      assert.equal(await readVia(fs, '/data/secret'), 'host secret\n');
      const hosts = await fs.resolve('/etc/hosts');
      assert.equal(hosts.hostFile, join(outside, 'secret'));
      const dest = await fs.resolve('/data', { followFinal: true });
      await rejects(unpackInto(fs, dest.dir!, tarOf([{ header: { name: 'x', size: 1 }, body: Buffer.from('x') }]), OPTS), /read-only/);
    } finally {
      await fs.close();
    }
  });
});

test('hostile archives are refused and write nothing outside', async () => {
  await withRoot(async (root, outside) => {
    const tag = randomBytes(6).toString('hex');
    const fs = await ScopedFs.open(root);
    const dest = (await fs.resolve('/etc', { followFinal: true })).dir!;
    try {
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: `../../outside/${tag}`, size: 1 }, body: Buffer.from('x') }]), OPTS), /is outside of/);
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: 'l', type: 'symlink', linkname: `../../../outside` } }]), OPTS), /points outside/);
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: 'h', type: 'hardlink', linkname: `../../outside/secret` } }]), OPTS), /is outside of/);
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: 'dev', type: 'char', devmajor: 1, devminor: 3 } }]), OPTS), /device nodes/);
      // An absolute link is allowed (it means the container's root), and writing through it stays inside.
      await unpackInto(fs, dest, tarOf([{ header: { name: 'a', type: 'symlink', linkname: '/' } }, { header: { name: `a/tmp/${tag}`, size: 2 }, body: Buffer.from('ok') }]), OPTS);
      assert.equal(await readFile(join(root, 'tmp', tag), 'utf8'), 'ok');
      assert.equal(existsSync(join('/tmp', tag)), false, 'nothing written to the host /tmp');
      // A symlink already in the container pointing at a host path is followed inside the root.
      await symlink(outside, join(root, 'etc', 'planted'));
      await unpackInto(fs, dest, tarOf([{ header: { name: `planted/${tag}`, size: 2 }, body: Buffer.from('in') }]), OPTS);
      assert.equal(existsSync(join(outside, tag)), false, 'nothing written to the host directory the link names');
      assert.equal(await readFile(join(root, outside, tag), 'utf8'), 'in');
    } finally {
      await fs.close();
    }
  });
});

test('replacing a directory with a file, or a file with a directory, is refused when asked', async () => {
  await withRoot(async (root) => {
    await mkdir(join(root, 'd'));
    const fs = await ScopedFs.open(root);
    try {
      const dest = fs.root;
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: 'd', size: 1 }, body: Buffer.from('x') }]), OPTS), /cannot overwrite directory "\/d" with non-directory/);
      await rejects(unpackInto(fs, dest, tarOf([{ header: { name: 'etc/passwd', type: 'directory' } }]), OPTS), /cannot overwrite non-directory "\/etc\/passwd"/);
      assert.ok((await lstat(join(root, 'd'))).isDirectory());
      // Without the option the later entry wins, as with tar.
      await unpackInto(fs, dest, tarOf([{ header: { name: 'd', size: 1 }, body: Buffer.from('x') }]), { ...OPTS, noOverwriteDirNonDir: false });
      assert.equal(await readFile(join(root, 'd'), 'utf8'), 'x');
    } finally {
      await fs.close();
    }
  });
});

test('archives of a tree keep symlinks as links and never read through them', async () => {
  await withRoot(async (root, outside) => {
    await mkdir(join(root, 'src'));
    await writeFile(join(root, 'src', 'f'), 'data');
    await symlink(join(outside, 'secret'), join(root, 'src', 'link'));
    const fs = await ScopedFs.open(root);
    try {
      const names: string[] = [];
      for await (const e of readTar(packLocated(fs, await fs.resolve('/src'), 'src'))) {
        names.push(`${e.header.name}:${e.header.type}`);
        let body = '';
        for await (const c of e.body) body += c.toString();
        assert.doesNotMatch(body, /host secret/);
        if (e.header.type === 'symlink') assert.equal(e.header.linkname, join(outside, 'secret'));
      }
      assert.deepEqual(names, ['src/:directory', 'src/f:file', 'src/link:symlink']);
      assert.equal(await readlink(join(root, 'src', 'link')), join(outside, 'secret'));
    } finally {
      await fs.close();
    }
  });
});

test('Go file modes for the path-stat header', () => {
  assert.equal(goFileMode(0o100644), 0o644);
  assert.equal(goFileMode(0o040755), (2 ** 31 + 0o755) >>> 0);
  assert.equal(goFileMode(0o120777), 2 ** 27 + 0o777);
  assert.equal(goFileMode(0o104755), 2 ** 23 + 0o755);
});
