/**
 * The build context as the berth CLI sends it: a tar of the context
 * directory (honouring .dockerignore), produced with synchronous file calls
 * and in large chunks. A context is mostly small files: one walk with
 * lstat/readFile straight from the main thread, and a few large writes to
 * the socket, cost a fraction of an async round trip per call and a socket
 * write per header and per file. Files larger than BIG_FILE are streamed.
 */
import { closeSync, lstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TAR_TRAILER, encodeHeader, tarPad } from '../util/tar.ts';
import type { TarHeaderInput } from '../util/tar.ts';
import type { DockerIgnore } from '../build/dockerignore.ts';

/** Chunks handed to the socket are about this large. */
const CHUNK = 256 << 10;
/** Files up to this size are read whole. */
const BIG_FILE = 1 << 20;

/** One file's content in CHUNK-sized pieces, read synchronously (exactly `size` bytes, as the header said). */
function* fileChunks(path: string, size: number): Generator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    let left = size;
    while (left > 0) {
      const b = Buffer.allocUnsafe(Math.min(CHUNK, left));
      let got = 0;
      while (got < b.length) {
        const n = readSync(fd, b, got, b.length - got, null);
        if (n === 0) throw new Error(`${path}: file shrank while being sent`);
        got += n;
      }
      left -= b.length;
      yield b;
    }
  } finally {
    closeSync(fd);
  }
}

/** Tar pieces (headers, bodies, padding) of the context, in name order, parents first. */
function* entries(dir: string, ignore: DockerIgnore | undefined, keep: Set<string>, extra: Array<{ name: string; data: Buffer }>): Generator<Buffer> {
  for (const e of extra) {
    yield encodeHeader({ name: e.name, type: 'file', mode: 0o600, size: e.data.length, mtime: new Date() });
    yield e.data;
    if (tarPad(e.data.length)) yield Buffer.alloc(tarPad(e.data.length));
  }
  function* walk(rel: string): Generator<Buffer> {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(dir, r);
      const st = lstatSync(abs);
      const skip = ignore && !keep.has(r) && ignore.excluded(r);
      // An excluded directory is still walked when an exception may bring back something below it.
      if (skip && !(st.isDirectory() && ignore.hasExceptions())) continue;
      const base: TarHeaderInput = { name: st.isDirectory() ? `${r}/` : r, mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: st.mtime };
      if (st.isDirectory()) {
        if (!skip) yield encodeHeader({ ...base, type: 'directory', size: 0 });
        yield* walk(r);
      } else if (skip) {
        continue;
      } else if (st.isSymbolicLink()) {
        yield encodeHeader({ ...base, type: 'symlink', linkname: readlinkSync(abs), size: 0 });
      } else if (st.isFile()) {
        yield encodeHeader({ ...base, type: 'file', size: st.size });
        if (st.size <= BIG_FILE) {
          const data = readFileSync(abs);
          if (data.length !== st.size) throw new Error(`${abs}: file changed while being sent`);
          yield data;
        } else yield* fileChunks(abs, st.size);
        if (tarPad(st.size)) yield Buffer.alloc(tarPad(st.size));
      }
    }
  }
  yield* walk('');
  yield TAR_TRAILER;
}

/** Gather small pieces into chunks of about CHUNK bytes. */
function* batched(pieces: Iterable<Buffer>): Generator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for (const p of pieces) {
    pending.push(p);
    size += p.length;
    if (size >= CHUNK) {
      yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, size);
      pending = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}

/**
 * Pack a context directory; `extra` files (a Dockerfile from elsewhere) are
 * added at the top. The walk runs as the stream is read, so a large context
 * is never all in memory.
 */
export function packContext(dir: string, ignore: DockerIgnore | undefined, keep: Set<string>, extra: Array<{ name: string; data: Buffer }>): Readable {
  return Readable.from(batched(entries(dir, ignore, keep, extra)), { objectMode: false });
}
