/**
 * The extraction worker's own failure modes: a layer larger than the shared
 * ring, a stopped worker, a failing or truncated input, and the layer store
 * leaving nothing behind when extraction fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../../src/util/errors.ts';
import { packTar } from '../../src/util/tar.ts';
import { applyLayer } from '../../src/image/layer.ts';
import { LayerStore } from '../../src/image/layer-store.ts';
import { collect, withTmpDir } from '../helpers/tmp.ts';

const withTmp = (fn: (dir: string) => Promise<void>): Promise<void> => withTmpDir('berth-layer-extract-test-', fn);

/** A tar of `files` small files in a few directories, and one large file. */
async function sampleTar(files: number, big: Buffer): Promise<Buffer> {
  const entries = [{ header: { name: 'big' }, body: big }];
  for (let i = 0; i < files; i++) entries.push({ header: { name: `d${i % 7}/f${i}` }, body: Buffer.from(`file ${i}\n`.repeat(30)) });
  return collect(packTar(entries));
}

/** Hands out `data` in odd-sized chunks, optionally failing or stopping after `limit` bytes. */
async function* chunks(data: Buffer, opts: { limit?: number; fail?: Error; onLimit?: () => void } = {}): AsyncGenerator<Buffer> {
  const limit = opts.limit ?? data.length;
  for (let off = 0; off < limit; off += 100_003) {
    yield data.subarray(off, Math.min(off + 100_003, limit));
    // Let the worker get ahead so a failure lands mid-extraction.
    await new Promise((r) => setTimeout(r, 2));
  }
  opts.onLimit?.();
  if (opts.fail) throw opts.fail;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('a file larger than the shared ring arrives intact, and so do the small files around it', async () => {
  await withTmp(async (dir) => {
    const big = randomBytes(9 << 20);
    const tar = await sampleTar(500, big);
    const { size } = await applyLayer(join(dir, 'out'), chunks(tar));
    assert.equal(sha(await readFile(join(dir, 'out', 'big'))), sha(big));
    assert.equal(await readFile(join(dir, 'out', 'd3', 'f360'), 'utf8'), 'file 360\n'.repeat(30));
    assert.equal((await readdir(join(dir, 'out', 'd0'))).length, 72);
    assert.equal(size, big.length + 500 * 'file 0\n'.length * 30 + [...Array(500).keys()].reduce((n, i) => n + (String(i).length - 1) * 30, 0));
  });
});

test('extractions run side by side, each with its own worker', async () => {
  await withTmp(async (dir) => {
    const tars = await Promise.all([0, 1, 2].map((i) => sampleTar(300 + i, Buffer.alloc(1 << 20, i))));
    await Promise.all(tars.map((t, i) => applyLayer(join(dir, `out${i}`), chunks(t))));
    for (let i = 0; i < 3; i++) assert.equal((await readdir(join(dir, `out${i}`, 'd1'))).length, Math.ceil((300 + i - 1) / 7));
  });
});

test('stopping the worker mid-layer rejects only once it can write nothing more, and the next layer still extracts', async () => {
  await withTmp(async (dir) => {
    const tar = await sampleTar(3000, Buffer.alloc(1 << 20, 1));
    const ac = new AbortController();
    const root = join(dir, 'out');
    await assert.rejects(
      applyLayer(root, chunks(tar, { limit: tar.length >> 1, onLimit: () => ac.abort(new Error('pull cancelled')) }), { signal: ac.signal }),
      /pull cancelled/,
    );
    // Nothing is still writing: the tree stays as it was when the promise settled.
    const count = async (): Promise<number> => (await Promise.all((await readdir(root)).map(async (d) => ((await stat(join(root, d))).isDirectory() ? (await readdir(join(root, d))).length : 1)))).reduce((a, b) => a + b, 0);
    const before = await count();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await count(), before);
    await rm(root, { recursive: true });
    await applyLayer(join(dir, 'again'), chunks(tar));
    assert.equal((await readdir(join(dir, 'again', 'd6'))).length, Math.floor(3000 / 7));
  });
});

test('a failing input is reported as itself; a truncated tar says so', async () => {
  await withTmp(async (dir) => {
    const tar = await sampleTar(2000, Buffer.alloc(1 << 20, 2));
    const boom = new BerthError('InvalidParameter', 'blob digest mismatch');
    await assert.rejects(applyLayer(join(dir, 'a'), chunks(tar, { limit: 400_000, fail: boom })), (err: unknown) => err === boom);
    await assert.rejects(applyLayer(join(dir, 'b'), chunks(tar, { limit: 400_000 })), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, 'InvalidParameter');
      assert.match(err.message, /unexpected EOF/);
      return true;
    });
    await assert.rejects(applyLayer(join(dir, 'c'), chunks(Buffer.alloc(1024, 0x41))), /invalid tar header/);
  });
});

test('the layer store leaves no partial layer behind when extraction fails', async () => {
  await withTmp(async (dir) => {
    const store = new LayerStore(dir);
    await store.init();
    const good = await sampleTar(200, Buffer.alloc(10));
    const hostile = await collect(packTar([{ header: { name: 'ok' }, body: Buffer.from('x') }, { header: { name: '../evil' }, body: Buffer.from('x') }]));
    await assert.rejects(store.add(null, chunks(hostile)), /points outside the layer/);
    await assert.rejects(store.add(null, chunks(good, { limit: 50_000, fail: new Error('connection reset') })), /connection reset/);
    await assert.rejects(store.add(null, chunks(good), `sha256:${'0'.repeat(64)}`), /does not match its diff ID/);
    assert.deepEqual(await readdir(join(dir, 'layers')), []);
    const meta = await store.add(null, chunks(good));
    assert.equal(meta.diffId, `sha256:${sha(good)}`);
    assert.deepEqual(await readdir(join(dir, 'layers')), [meta.chainId.slice('sha256:'.length)]);
  });
});

test('later entries that meet files still queued for the writer thread see them, in archive order', async () => {
  await withTmp(async (dir) => {
    const root = join(dir, 'out');
    const filler = Array.from({ length: 40 }, (_, i) => ({ header: { name: `fill/f${i}` }, body: Buffer.from(`filler ${i}`) }));
    const { size } = await applyLayer(
      root,
      chunks(
        await collect(
          packTar([
            ...filler,
            { header: { name: 'a' }, body: Buffer.from('file a') },
            { header: { name: 'b' }, body: Buffer.from('file b') },
            { header: { name: 'c' }, body: Buffer.from('file c') },
            { header: { name: 'd' }, body: Buffer.from('file d') },
            { header: { name: 'e' }, body: Buffer.from('first e') },
            // A directory replaces a file, a link shares one, a whiteout leaves
            // this layer's own file alone, a later file replaces an earlier one,
            // a symlink replaces a file.
            { header: { name: 'a', type: 'directory', mode: 0o750 } },
            { header: { name: 'a/inside' }, body: Buffer.from('in a') },
            { header: { name: 'blink', type: 'hardlink', linkname: 'b' } },
            { header: { name: '.wh.c' }, body: Buffer.alloc(0) },
            { header: { name: 'd', type: 'symlink', linkname: '/etc/hostname' } },
            { header: { name: 'e' }, body: Buffer.from('second e') },
            { header: { name: 'fill', type: 'directory', mode: 0o555 } },
          ]),
        ),
      ),
    );
    assert.ok((await stat(join(root, 'a'))).isDirectory());
    assert.equal((await stat(join(root, 'a'))).mode & 0o777, 0o750);
    assert.equal(await readFile(join(root, 'a/inside'), 'utf8'), 'in a');
    assert.equal((await stat(join(root, 'blink'))).ino, (await stat(join(root, 'b'))).ino);
    assert.equal(await readFile(join(root, 'c'), 'utf8'), 'file c');
    assert.equal(await readFile(join(root, 'e'), 'utf8'), 'second e');
    assert.equal((await readdir(join(root, 'fill'))).length, 40);
    assert.equal((await stat(join(root, 'fill'))).mode & 0o777, 0o555);
    assert.equal(size, filler.reduce((n, f) => n + f.body.length, 0) + 6 * 4 + 7 + 4 + 8);
  });
});

test("a file the writer thread cannot create fails the layer with the system's error, and the next layer extracts", async () => {
  await withTmp(async (dir) => {
    const tar = await collect(
      packTar([
        { header: { name: 'ok' }, body: Buffer.from('fine') },
        { header: { name: `${'n'.repeat(300)}` }, body: Buffer.from('name too long for the file system') },
        ...Array.from({ length: 50 }, (_, i) => ({ header: { name: `after/f${i}` }, body: Buffer.from('x') })),
      ]),
    );
    await assert.rejects(applyLayer(join(dir, 'bad'), chunks(tar)), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, 'System');
      assert.match(err.message, /ENAMETOOLONG/);
      return true;
    });
    const good = await sampleTar(100, Buffer.alloc(5));
    await applyLayer(join(dir, 'good'), chunks(good));
    assert.equal((await readdir(join(dir, 'good', 'd2'))).length, 14);
  });
});
