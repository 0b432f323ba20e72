import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readFile, readlink, symlink, link, writeFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../../src/util/errors.ts';
import { encodeHeader, packTar, readTar, TarWriter } from '../../src/util/tar.ts';
import type { TarBody, TarHeader, TarHeaderInput } from '../../src/util/tar.ts';
import { collect, withTmpDir } from '../helpers/tmp.ts';

const withTmp = (fn: (dir: string) => Promise<void>): Promise<void> => withTmpDir('berth-tar-test-', fn);

interface ReadEntry {
  header: TarHeader;
  data: Buffer;
}

async function readAll(src: AsyncIterable<Buffer> | NodeJS.ReadableStream): Promise<ReadEntry[]> {
  const out: ReadEntry[] = [];
  for await (const e of readTar(src)) out.push({ header: e.header, data: await collect(e.body) });
  return out;
}

function chunked(buf: Buffer, size: number): AsyncIterable<Buffer> {
  return (async function* () {
    for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
  })();
}

const long150 = `${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(28)}`;
const long300 = `${'d'.repeat(100)}/${'e'.repeat(100)}/${'f'.repeat(98)}`;
const longNoSlash = 'g'.repeat(180);

function sampleEntries(): { header: TarHeaderInput; body?: TarBody }[] {
  const mtime = new Date('2021-05-06T07:08:09Z');
  return [
    { header: { name: 'dir', type: 'directory', mode: 0o1777, mtime } },
    { header: { name: 'dir/small', mode: 0o4755, uid: 1000, gid: 1001, uname: 'alice', gname: 'staff', mtime }, body: Buffer.from('hello\n') },
    { header: { name: long150, mode: 0o644, mtime }, body: Buffer.from('x'.repeat(513)) },
    { header: { name: long300, mode: 0o600, mtime }, body: Buffer.from('long name body') },
    { header: { name: longNoSlash, mtime }, body: Buffer.alloc(0) },
    { header: { name: 'ünïcode/名前.txt', mtime }, body: Buffer.from('utf8') },
    { header: { name: 'sym', type: 'symlink', linkname: `/${'t'.repeat(150)}`, mtime } },
    { header: { name: 'hard', type: 'hardlink', linkname: long300, mtime } },
    { header: { name: 'bigids', uid: 3_000_000, gid: 70_000_000, mtime }, body: Buffer.from('ids') },
    {
      header: { name: 'xattrs', mtime, xattrs: { 'user.text': Buffer.from('value'), 'security.capability': Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) } },
      body: Buffer.from('x'),
    },
    { header: { name: 'fifo', type: 'fifo', mode: 0o640, mtime } },
    { header: { name: 'null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666, mtime } },
    { header: { name: 'old', mtime: new Date('1960-01-01T00:00:00Z') }, body: Buffer.from('pre-epoch') },
  ];
}

test('writer and reader round trip: long names, PAX, xattrs, base-256 ids, links, devices', async () => {
  const entries = sampleEntries();
  const archive = await collect(packTar(entries));
  assert.equal(archive.length % 512, 0);
  // Small and odd chunk sizes exercise the reader's block reassembly.
  for (const size of [archive.length, 7, 511, 4096]) {
    const got = await readAll(chunked(archive, size));
    assert.equal(got.length, entries.length);
    for (let i = 0; i < entries.length; i++) {
      const want = entries[i]!;
      const h = got[i]!.header;
      const type = want.header.type ?? 'file';
      assert.equal(h.name, type === 'directory' ? `${want.header.name}/` : want.header.name);
      assert.equal(h.type, type);
      if (want.header.mode !== undefined) assert.equal(h.mode, want.header.mode);
      assert.equal(h.uid, want.header.uid ?? 0);
      assert.equal(h.gid, want.header.gid ?? 0);
      assert.equal(h.linkname, want.header.linkname ?? '');
      assert.equal(h.mtime.getTime(), (want.header.mtime as Date).getTime());
      assert.deepEqual(got[i]!.data, Buffer.isBuffer(want.body) ? want.body : Buffer.alloc(0));
      assert.equal(h.size, got[i]!.data.length);
      for (const [k, v] of Object.entries(want.header.xattrs ?? {})) assert.deepEqual(h.xattrs[k], v);
    }
  }
  const byName = new Map((await readAll(chunked(archive, 1000))).map((e) => [e.header.name, e.header]));
  assert.equal(byName.get('dir/small')?.uname, 'alice');
  assert.equal(byName.get('dir/small')?.gname, 'staff');
  assert.equal(byName.get('null')?.devmajor, 1);
  assert.equal(byName.get('null')?.devminor, 3);
});

test('a 150-character name uses the ustar prefix, not PAX', () => {
  const hdr = encodeHeader({ name: long150, size: 0 });
  assert.equal(hdr.length, 512);
  assert.equal(hdr.toString('latin1', 345, 345 + 121), `${'a'.repeat(60)}/${'b'.repeat(60)}`);
});

test('base-256 sizes and ids are read', async () => {
  const h = encodeHeader({ name: 'f', size: 5, uid: 1, gid: 2 });
  // Rewrite the size field (and uid) in base-256 by hand, as some writers do.
  h.fill(0, 124, 136);
  h[124] = 0x80;
  h[135] = 5;
  h.fill(0, 108, 116);
  h[108] = 0x80;
  h.writeUInt32BE(5_000_000_000 % 2 ** 32, 112);
  h[111] = Math.floor(5_000_000_000 / 2 ** 32);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  const archive = Buffer.concat([h, Buffer.from('12345'), Buffer.alloc(507), Buffer.alloc(1024)]);
  const [e] = await readAll(chunked(archive, 100));
  assert.equal(e!.header.size, 5);
  assert.equal(e!.header.uid, 5_000_000_000);
  assert.equal(e!.data.toString(), '12345');
});

test('a file larger than the octal size field gets a base-256 and PAX size', async () => {
  const size = 9 * 2 ** 30;
  const hdr = encodeHeader({ name: 'huge', size });
  // The header alone, with no body: the reader must report the size and then
  // fail on the missing data rather than invent it.
  const it = readTar(chunked(hdr, 512));
  const first = await it.next();
  assert.equal(first.done, false);
  assert.equal(first.value!.header.size, size);
  await assert.rejects(collect(first.value!.body), /unexpected EOF/);
});

test('an unconsumed body is skipped when the next entry is requested', async () => {
  const archive = await collect(
    packTar([
      { header: { name: 'a' }, body: Buffer.alloc(10_000, 1) },
      { header: { name: 'b' }, body: Buffer.from('bee') },
    ]),
  );
  const names: string[] = [];
  let bData = '';
  for await (const e of readTar(chunked(archive, 333))) {
    names.push(e.header.name);
    if (e.header.name === 'b') bData = (await collect(e.body)).toString();
  }
  assert.deepEqual(names, ['a', 'b']);
  assert.equal(bData, 'bee');
});

test('a bad checksum is refused', async () => {
  const archive = await collect(packTar([{ header: { name: 'a' }, body: Buffer.from('x') }]));
  archive[0] = 'b'.charCodeAt(0);
  await assert.rejects(readAll(chunked(archive, 512)), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'InvalidParameter');
    assert.match(err.message, /archive\/tar: invalid tar header/);
    return true;
  });
});

test('truncated archives are refused; a clean end at a block boundary is accepted', async () => {
  const archive = await collect(
    packTar([
      { header: { name: 'a' }, body: Buffer.alloc(2000, 7) },
      { header: { name: 'b' }, body: Buffer.from('b') },
    ]),
  );
  // In the middle of a body, in the middle of a header, inside the padding.
  for (const cut of [512 + 1000, 512 + 2048 + 100, 512 + 2001]) {
    await assert.rejects(readAll(chunked(archive.subarray(0, cut), 512)), /unexpected EOF/, `cut at ${cut}`);
  }
  // A PAX header with nothing after it.
  const paxOnly = encodeHeader({ name: 'x'.repeat(300), size: 0 }).subarray(0, 1024);
  await assert.rejects(readAll(chunked(paxOnly, 512)), /unexpected EOF/);
  // No end-of-archive marker at all, but whole entries: tolerated like tar does.
  const noTrailer = archive.subarray(0, 512 + 2048 + 1024);
  assert.deepEqual((await readAll(chunked(noTrailer, 512))).map((e) => e.header.name), ['a', 'b']);
  // One zero block then EOF ends the archive too.
  const oneZero = archive.subarray(0, 512 + 2048 + 1024 + 512);
  assert.equal((await readAll(chunked(oneZero, 512))).length, 2);
  // Garbage after a zero block is not an end marker.
  const junk = Buffer.concat([noTrailer, Buffer.alloc(512), Buffer.alloc(512, 9)]);
  await assert.rejects(readAll(chunked(junk, 512)), /invalid tar header/);
});

test('the reader consumes the input to its end, record padding included', async () => {
  const archive = Buffer.concat([await collect(packTar([{ header: { name: 'a' }, body: Buffer.from('x') }])), Buffer.alloc(8192)]);
  let seen = 0;
  async function* counting(): AsyncGenerator<Buffer> {
    for await (const c of chunked(archive, 1000)) {
      seen += c.length;
      yield c;
    }
  }
  await readAll(counting());
  assert.equal(seen, archive.length);
});

test('TarWriter streams with backpressure and reports a short body', async () => {
  const w = new TarWriter();
  const big = 8 << 20;
  let produced = 0;
  async function* body(): AsyncGenerator<Buffer> {
    for (let i = 0; i < big; i += 65536) {
      produced += 65536;
      yield Buffer.alloc(65536, 3);
    }
  }
  const adding = w.add({ name: 'big', size: big }, body());
  // Nobody reads yet: the producer must stall long before the whole body is queued.
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(produced < big / 2, `produced ${produced} bytes with no reader`);
  const reading = readAll(w);
  await adding;
  await w.add({ name: 'after' }, Buffer.from('z'));
  await w.finish();
  const got = await reading;
  assert.deepEqual(got.map((e) => [e.header.name, e.data.length]), [['big', big], ['after', 1]]);

  const w2 = new TarWriter();
  const r2 = readAll(w2);
  await assert.rejects(w2.add({ name: 'short', size: 10 }, chunked(Buffer.from('abc'), 2)), /3 bytes, header says 10/);
  await assert.rejects(r2);
});

test('GNU tar archives are read (posix with xattrs, and gnu long names)', async () => {
  await withTmp(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, long300.split('/').slice(0, 2).join('/')), { recursive: true });
    await writeFile(join(src, long300), 'deep');
    await mkdir(join(src, 'sub'));
    await writeFile(join(src, 'sub', 'file'), 'content\n');
    await link(join(src, 'sub', 'file'), join(src, 'hl'));
    await symlink(`../${'y'.repeat(120)}`, join(src, 'longlink'));
    await writeFile(join(src, longNoSlash), 'nos');
    execFileSync('setfattr', ['-n', 'user.comment', '-v', 'hi there', join(src, 'sub', 'file')]);
    await utimes(join(src, 'sub', 'file'), 1_600_000_000, 1_600_000_000);

    for (const format of ['posix', 'gnu']) {
      const tarPath = join(dir, `${format}.tar`);
      execFileSync('tar', [`--format=${format}`, '--xattrs', '--xattrs-include=*', '--owner=someone:3000000', '--group=grp:4000000', '-C', src, '-cf', tarPath, '.']);
      const got = new Map((await readAll(createReadStream(tarPath))).map((e) => [e.header.name.replace(/^\.\//, ''), e]));
      assert.equal(got.get(long300)?.data.toString(), 'deep', format);
      assert.equal(got.get(longNoSlash)?.data.toString(), 'nos', format);
      assert.equal(got.get('longlink')?.header.type, 'symlink');
      assert.equal(got.get('longlink')?.header.linkname, `../${'y'.repeat(120)}`);
      // Whichever of the two names tar met first carries the data.
      const pair = [got.get('sub/file'), got.get('hl')];
      const file = pair.find((e) => e?.header.type === 'file');
      const other = pair.find((e) => e !== file);
      assert.equal(file?.data.toString(), 'content\n');
      assert.equal(other?.header.type, 'hardlink');
      assert.equal(file?.header.mtime.getTime(), 1_600_000_000_000);
      // GNU format spells such ids in base-256, posix in PAX records.
      assert.equal(file?.header.uid, 3_000_000, format);
      assert.equal(file?.header.gid, 4_000_000, format);
      if (format === 'posix') assert.equal(file?.header.xattrs['user.comment']?.toString(), 'hi there');
      assert.equal(got.get('sub/')?.header.type, 'directory');
    }
  });
});

test('archives written by TarWriter are listed and extracted by GNU tar', async () => {
  await withTmp(async (dir) => {
    const w = new TarWriter();
    const tarPath = join(dir, 'out.tar');
    const { createWriteStream } = await import('node:fs');
    const { pipeline } = await import('node:stream/promises');
    const done = pipeline(w.stream(), createWriteStream(tarPath));
    const srcFile = join(dir, 'from-disk');
    await writeFile(srcFile, Buffer.alloc(100_000, 'q'));
    for (const e of sampleEntries()) {
      if (e.header.type === 'char' || e.header.name === 'old') continue;
      await w.add(e.header, e.body);
    }
    await w.add({ name: 'dir/from-disk', mode: 0o640 }, srcFile);
    await w.finish();
    await done;

    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tarPath], { encoding: 'utf8' });
    assert.match(listing, new RegExp(`${long300}`));
    assert.match(listing, / 3000000\/70000000 /);
    assert.match(listing, /sym -> \/t{150}/);

    const out = join(dir, 'x');
    await mkdir(out);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', out, '-xf', tarPath]);
    assert.equal(await readFile(join(out, long300), 'utf8'), 'long name body');
    assert.equal(await readFile(join(out, long150), 'utf8'), 'x'.repeat(513));
    assert.equal((await readFile(join(out, longNoSlash))).length, 0);
    assert.equal(await readFile(join(out, 'ünïcode/名前.txt'), 'utf8'), 'utf8');
    assert.equal((await readFile(join(out, 'dir/from-disk'))).length, 100_000);
    assert.equal(await readlink(join(out, 'sym')), `/${'t'.repeat(150)}`);
    const a = await lstat(join(out, 'hard'));
    const b = await lstat(join(out, long300));
    assert.equal(a.ino, b.ino);
    const ids = await lstat(join(out, 'bigids'));
    assert.equal(ids.uid, 3_000_000);
    assert.equal(ids.gid, 70_000_000);
    assert.equal((await lstat(join(out, 'dir/small'))).mode & 0o7777, 0o4755);
    assert.equal((await lstat(join(out, 'dir/small'))).mtimeMs, Date.parse('2021-05-06T07:08:09Z'));
    assert.equal((await lstat(join(out, 'dir'))).mode & 0o7777, 0o1777);
    assert.ok((await lstat(join(out, 'fifo'))).isFIFO());
    const xa = execFileSync('getfattr', ['--absolute-names', '-n', 'user.text', '--only-values', join(out, 'xattrs')], { encoding: 'utf8' });
    assert.equal(xa, 'value');
  });
});
