/**
 * The build context index: what it says about the context (entries, modes,
 * symlinks, content hashes, COPY cache keys) must be what the same tar
 * extracted to disk says, including for archives that override, link and
 * white out entries; bad archives fail as extracting them would; the
 * context is written out only on demand and removed afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packTar } from '../../src/util/tar.ts';
import type { TarBody, TarHeaderInput } from '../../src/util/tar.ts';
import { applyLayer } from '../../src/image/layer.ts';
import { BuildContext } from '../../src/build/context.ts';
import { DiskTree, findSources, hashSources } from '../../src/build/copy.ts';
import type { SourceTree } from '../../src/build/copy.ts';
import { DockerIgnore } from '../../src/build/dockerignore.ts';
import { collect, withTmpDir } from '../helpers/tmp.ts';

type Entry = { header: TarHeaderInput; body?: TarBody };

const tarOf = (entries: Entry[]): Promise<Buffer> => collect(packTar(entries));

/** Bytes as a request body gives them. */
async function* bytes(...chunks: Buffer[]): AsyncGenerator<Buffer> {
  yield* chunks;
}

const withTmp = (fn: (dir: string) => Promise<void>): Promise<void> => withTmpDir('berth-build-context-test-', fn);

const file = (name: string, content: string, mode = 0o644): Entry => ({ header: { name, type: 'file', mode, size: Buffer.byteLength(content), mtime: 1_700_000_000_000 }, body: Buffer.from(content) });
const dir = (name: string, mode = 0o755): Entry => ({ header: { name, type: 'directory', mode, mtime: 1_700_000_000_000 } });
const symlink = (name: string, target: string): Entry => ({ header: { name, type: 'symlink', linkname: target, mode: 0o755 } });

/** Everything a tree says about itself, walked from the root. */
async function describe(tree: SourceTree, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await tree.readdir(rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = (await tree.lstat(p))!;
    const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o';
    let what = `${p} ${kind} ${(st.mode & 0o7777).toString(8)}`;
    if (st.isFile()) what += ` ${await tree.digest(p)}`;
    if (st.isSymbolicLink()) what += ` -> ${await tree.readlink(p)}`;
    out.push(what);
    if (st.isDirectory()) out.push(...(await describe(tree, p)));
  }
  return out;
}

/** The COPY cache hash of `patterns` in a tree. */
async function copyHash(tree: SourceTree, patterns: string[], ignore?: DockerIgnore): Promise<string> {
  const sources = await findSources(tree, patterns, ignore, 'COPY', true);
  const { kind, hash } = await hashSources(sources, ignore);
  return `${kind}:${hash}`;
}

const ENTRIES: Entry[] = [
  file('Dockerfile', 'FROM scratch\n'),
  dir('src/', 0o750),
  file('src/a.txt', 'a\n'),
  file('src/run.sh', '#!/bin/sh\n', 0o755),
  // Implied parents: no entry for deep/ or deep/er/.
  file('deep/er/x.txt', 'x\n', 0o600),
  symlink('src/link', 'a.txt'),
  symlink('abs', '/src'),
  symlink('up', '../../src/a.txt'),
  { header: { name: 'src/hard', type: 'hardlink', linkname: 'src/run.sh' } },
  // A later entry wins: a file over a file, a directory over a directory only changes its mode.
  file('src/a.txt', 'a, again\n', 0o640),
  dir('src/', 0o700),
  file('gone/x', 'x'),
  file('gone', 'now a file\n'),
  // Extraction reads .wh. names as whiteouts.
  file('src/.wh.nothing', ''),
  file('src/.wh..wh.meta', ''),
  { header: { name: 'fifo', type: 'fifo', mode: 0o640 } },
  file('ignored/secret', 'no\n'),
];

test('the index describes the context exactly as extracting it would', async () => {
  await withTmp(async (tmp) => {
    const tar = await tarOf(ENTRIES);
    const ctx = await BuildContext.receive(bytes(gzipSync(tar)), join(tmp, 'ctx'));
    try {
      const disk = join(tmp, 'disk');
      await applyLayer(disk, bytes(tar));
      const onDisk = new DiskTree(disk);
      assert.deepEqual(await describe(ctx), await describe(onDisk));
      assert.ok((await describe(ctx)).includes('src d 700'));
      const ignore = new DockerIgnore('ignored\nsrc/*.sh\n');
      for (const patterns of [['.'], ['src'], ['src/'], ['src/*.txt'], ['src/link'], ['abs/a.txt'], ['up'], ['deep', 'Dockerfile'], ['s?c/[ab]*']]) {
        assert.equal(await copyHash(ctx, patterns), await copyHash(onDisk, patterns), patterns.join(' '));
        assert.equal(await copyHash(ctx, patterns, ignore), await copyHash(onDisk, patterns, ignore), `${patterns.join(' ')} with .dockerignore`);
      }
      await assert.rejects(copyHash(ctx, ['missing']), /file not found in build context/);
      await assert.rejects(copyHash(ctx, ['ignored/secret'], ignore), /excluded by \.dockerignore/);
      // Nothing was written for any of that.
      assert.deepEqual(readdirSync(tmp).sort(), ['disk']);
      assert.equal((await ctx.readFile('Dockerfile'))?.toString(), 'FROM scratch\n');
      assert.equal((await ctx.readFile('src/link'))?.toString(), 'a, again\n');
      assert.equal(await ctx.readFile('src'), undefined);
      assert.equal(await ctx.readFile('nope'), undefined);
      // On demand, the context on disk is the same tree.
      const written = await ctx.directory();
      assert.deepEqual(await describe(new DiskTree(written)), await describe(onDisk));
    } finally {
      await ctx.dispose();
    }
    assert.deepEqual(readdirSync(tmp).sort(), ['disk']);
  });
});

test('the cache hash follows content and mode, not mtime or owner', async () => {
  await withTmp(async (tmp) => {
    const hashOf = async (entries: Entry[]): Promise<string> => {
      const ctx = await BuildContext.receive(bytes(await tarOf(entries)), join(tmp, 'ctx'));
      try {
        return await copyHash(ctx, ['src']);
      } finally {
        await ctx.dispose();
      }
    };
    const base = await hashOf([dir('src/'), file('src/a', 'a'), file('other', '1')]);
    assert.equal(await hashOf([dir('src/'), file('src/a', 'a'), file('other', '2')]), base, 'a file outside the sources');
    const touched = file('src/a', 'a');
    touched.header.mtime = 1_800_000_000_000;
    touched.header.uid = 1000;
    assert.equal(await hashOf([dir('src/'), touched]), base, 'mtime and owner');
    assert.notEqual(await hashOf([dir('src/'), file('src/a', 'b')]), base, 'content');
    assert.notEqual(await hashOf([dir('src/'), file('src/a', 'a', 0o600)]), base, 'mode');
    assert.notEqual(await hashOf([dir('src/'), file('src/b', 'a')]), base, 'name');
    assert.notEqual(await hashOf([dir('src/', 0o700), file('src/a', 'a')]), base, 'directory mode');
  });
});

test('archives extraction refuses are refused, and leave nothing behind', async () => {
  await withTmp(async (tmp) => {
    const cases: Array<[Entry[], RegExp]> = [
      [[symlink('l', '/etc'), file('l/passwd', 'x')], /parent "l" is a symlink; refusing to follow it/],
      [[file('../x', 'x')], /points outside the layer/],
      [[{ header: { name: 'dev', type: 'char', devmajor: 1, devminor: 3 } }], /device nodes are not allowed/],
      [[{ header: { name: 'h', type: 'hardlink', linkname: 'missing' } }], /hardlink target "missing" is not in this layer/],
      [[file('f', 'x'), file('f/g', 'y')], /parent "f" is not a directory/],
    ];
    for (const [entries, message] of cases) {
      const tar = await tarOf(entries);
      await assert.rejects(applyLayer(join(tmp, 'disk'), bytes(tar)), message);
      await rm(join(tmp, 'disk'), { recursive: true, force: true });
      await assert.rejects(BuildContext.receive(bytes(tar), join(tmp, 'ctx')), message);
      assert.deepEqual(readdirSync(tmp), []);
    }
    await assert.rejects(BuildContext.receive(bytes(Buffer.from('not a tar at all'.repeat(64))), join(tmp, 'ctx')), /invalid tar header/);
    assert.deepEqual(readdirSync(tmp), []);
  });
});

test('a context larger than its memory allowance spills to a file, and large files are read back from disk', async () => {
  await withTmp(async (tmp) => {
    const big = Buffer.alloc(600 << 10, 'b');
    const tar = await tarOf([file('Dockerfile', 'FROM scratch\n'), { header: { name: 'big', type: 'file', mode: 0o644, size: big.length }, body: big }, symlink('Dockerfile.big', 'big')]);
    // Fed in small pieces, as a request body arrives.
    const pieces: Buffer[] = [];
    for (let i = 0; i < tar.length; i += 64 << 10) pieces.push(tar.subarray(i, i + (64 << 10)));
    const ctx = await BuildContext.receive(bytes(...pieces), join(tmp, 'ctx'), { memory: 128 << 10 });
    try {
      assert.ok(existsSync(join(tmp, 'ctx.tar')), 'spooled to a file');
      assert.ok(!existsSync(join(tmp, 'ctx')), 'not extracted yet');
      assert.ok((await ctx.readFile('Dockerfile.big'))!.equals(big));
      assert.ok((await readFile(join(await ctx.directory(), 'big'))).equals(big));
    } finally {
      await ctx.dispose();
    }
    assert.deepEqual(readdirSync(tmp), []);
  });
});

test('file contents kept in memory are bounded; the files the caller names are always kept', async () => {
  await withTmp(async (tmp) => {
    const chunk = 'c'.repeat(256 << 10);
    const entries: Entry[] = [];
    for (let i = 0; i < 20; i++) entries.push(file(`big${String(i).padStart(2, '0')}`, chunk));
    entries.push(file('late.txt', 'late\n'), file('sub/Dockerfile', 'FROM scratch\n'));
    const ctx = await BuildContext.receive(bytes(await tarOf(entries)), join(tmp, 'ctx'), { wanted: ['./sub/Dockerfile', '../weird'] });
    try {
      assert.equal((await ctx.readFile('sub/Dockerfile'))?.toString(), 'FROM scratch\n');
      assert.ok(!existsSync(join(tmp, 'ctx')), 'read from memory');
      // Past the allowance: read from the context written out.
      assert.equal((await ctx.readFile('late.txt'))?.toString(), 'late\n');
      assert.ok(existsSync(join(tmp, 'ctx')));
    } finally {
      await ctx.dispose();
    }
    assert.deepEqual(readdirSync(tmp), []);
  });
});
