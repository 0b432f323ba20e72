/**
 * Tar archives of and into a ScopedFs: what `cp`, the archive endpoints and
 * `export` stream. Everything goes through descriptors (fs-path.ts), so a
 * hostile tree or a hostile archive never gets a write or a read outside the
 * filesystem it was given. The same code serves the CLI on the host side of
 * `cp`, with the host's `/` as the root.
 */
import { constants as C } from 'node:fs';
import type { Stats } from 'node:fs';
import { open, readdir, readlink, lstat, mkdir, symlink, lchown, lutimes, link } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { posix } from 'node:path';
import { encodeEntry, readTar, TAR_TRAILER } from '../util/tar.ts';
import type { ByteSource, TarHeader, TarHeaderInput } from '../util/tar.ts';
import { BerthError, invalid, isErrno, systemError } from '../util/errors.ts';
import { readOnlyError } from './fs-path.ts';
import type { DirRef, Located, ScopedFs } from './fs-path.ts';

const READ_CHUNK = 256 * 1024;
const FILE_FLAGS = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

/** Linux's dev_t layout. */
function splitDev(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  return { major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)), minor: Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n)) };
}

/** Exactly `size` bytes of an open file: a file that shrank is padded, one that grew is cut, as tar does. */
async function* fileBody(fh: FileHandle, size: number): AsyncGenerator<Buffer> {
  try {
    let pos = 0;
    while (pos < size) {
      const want = Math.min(READ_CHUNK, size - pos);
      const buf = Buffer.alloc(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) {
        yield Buffer.alloc(size - pos);
        return;
      }
      pos += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function baseHeader(name: string, st: Stats): TarHeaderInput {
  return { name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtimeMs };
}

type LinkMap = Map<string, string>;

/** One non-directory entry, given how to reach it. */
async function* packLeaf(name: string, st: Stats, ref: string, links: LinkMap): AsyncGenerator<Buffer> {
  const h = baseHeader(name, st);
  if (st.nlink > 1 && !st.isDirectory()) {
    const key = `${st.dev}:${st.ino}`;
    const first = links.get(key);
    if (first !== undefined) {
      yield* encodeEntry({ ...h, type: 'hardlink', linkname: first });
      return;
    }
    links.set(key, name);
  }
  if (st.isFile()) {
    let fh: FileHandle;
    try {
      fh = await open(ref, FILE_FLAGS);
    } catch (err) {
      // Gone or swapped for a symlink since the lstat: left out, as tar leaves out vanished files.
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP')) return;
      throw err;
    }
    const fst = await fh.stat();
    if (!fst.isFile()) {
      await fh.close();
      return;
    }
    yield* encodeEntry({ ...h, type: 'file', size: fst.size }, fileBody(fh, fst.size));
  } else if (st.isSymbolicLink()) {
    yield* encodeEntry({ ...h, type: 'symlink', linkname: await readlink(ref) });
  } else if (st.isFIFO()) {
    yield* encodeEntry({ ...h, type: 'fifo' });
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    const { major, minor } = splitDev(st.rdev);
    yield* encodeEntry({ ...h, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor });
  }
  // Sockets have no tar form.
}

/** The entries below an open directory, names prefixed with `prefix` ('' for none), in name order. */
async function* packChildren(fs: ScopedFs, dir: DirRef, prefix: string, links: LinkMap): AsyncGenerator<Buffer> {
  let names: string[];
  try {
    names = await readdir(dir.self);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const n of names) {
    const name = prefix ? (prefix.endsWith('/') ? `${prefix}${n}` : `${prefix}/${n}`) : n;
    const st = await fs.lstatChild(dir, n);
    if (!st) continue;
    if (st.isDirectory()) {
      const sub = await fs.openDir(dir, n);
      if (!sub) continue;
      try {
        const dst = await sub.fh.stat();
        yield* encodeEntry({ ...baseHeader(name, dst), type: 'directory' });
        yield* packChildren(fs, sub, name, links);
      } finally {
        await sub.close();
      }
      continue;
    }
    const m = fs.mountAt(posix.join(dir.path, n));
    yield* packLeaf(name, st, m ? m.source : dir.child(n), links);
  }
}

/**
 * A tar of one resolved entry, named `base` in the archive (a directory's
 * contents follow as `base/...`). The trailer is included.
 */
export async function* packLocated(fs: ScopedFs, loc: Located, base: string): AsyncGenerator<Buffer> {
  const links: LinkMap = new Map();
  const dir = await fs.openLocated(loc);
  if (dir) {
    try {
      const st = await dir.fh.stat();
      yield* encodeEntry({ ...baseHeader(base, st), type: 'directory' });
      yield* packChildren(fs, dir, base, links);
    } finally {
      if (dir !== loc.dir) await dir.close();
    }
  } else {
    const st = await lstat(loc.ref);
    yield* packLeaf(base, st, loc.ref, links);
  }
  yield TAR_TRAILER;
}

/** A tar of everything below the root, names relative to it (docker export's layout). */
export async function* packTree(fs: ScopedFs): AsyncGenerator<Buffer> {
  yield* packChildren(fs, fs.root, '', new Map());
  yield TAR_TRAILER;
}

// ---------------------------------------------------------------------------
// Extraction

export interface UnpackOptions {
  /** Refuse to replace a directory with a non-directory or the reverse. */
  noOverwriteDirNonDir: boolean;
  /** Ownership of what is written: the archive's ids, fixed ids, or untouched (the writer's own). */
  owner: 'archive' | 'none' | { uid: number; gid: number };
  /** Refuse device nodes (true in containers: an upload must not create host device access). */
  refuseDevices: boolean;
  /** Renames entries (and hard link targets) before they are placed: cp's rebasing. */
  rename?: (name: string) => string;
}

/** Splits an entry name into components below the extraction directory; `..` may not climb above it. */
function entryParts(name: string, dest: string): string[] {
  if (name.includes('\0')) throw invalid(`invalid tar entry ${JSON.stringify(name)}: the name contains a NUL byte`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) throw invalid(`invalid tar entry: ${JSON.stringify(name)} is outside of ${JSON.stringify(dest)}`);
      parts.pop();
      continue;
    }
    parts.push(c);
  }
  return parts;
}

class Unpacker {
  private readonly fs: ScopedFs;
  private readonly dest: DirRef;
  private readonly opts: UnpackOptions;
  /** Parent directories already resolved, by their path relative to dest. */
  private readonly dirs = new Map<string, DirRef>();
  private readonly dirTimes = new Map<string, Date>();

  constructor(fs: ScopedFs, dest: DirRef, opts: UnpackOptions) {
    this.fs = fs;
    this.dest = dest;
    this.opts = opts;
  }

  private async dirFor(parts: string[]): Promise<DirRef> {
    const rel = parts.join('/');
    if (rel === '') return this.dest;
    const cached = this.dirs.get(rel);
    if (cached && !cached.closed) return cached;
    if (this.dirs.size >= 256) await this.dropCache('');
    // Existing symlinks on the way are followed inside the container, as a
    // chrooted tar would; missing directories are created.
    const loc = await this.fs.resolveFrom(this.dest, rel, { followFinal: true, mkdirs: true });
    if (!loc.dir) {
      await loc.parent?.close();
      throw invalid(`cannot extract into ${posix.join(this.dest.path, rel)}: not a directory`);
    }
    this.dirs.set(rel, loc.dir);
    return loc.dir;
  }

  /** Forgets cached directories at or below `rel` ('' for all): they are being replaced. */
  private async dropCache(rel: string): Promise<void> {
    for (const [k, d] of [...this.dirs]) {
      if (rel === '' || k === rel || k.startsWith(`${rel}/`)) {
        this.dirs.delete(k);
        if (d !== this.dest) await d.close();
      }
    }
  }

  private owner(h: TarHeader): { uid: number; gid: number } | null {
    const o = this.opts.owner;
    if (o === 'none') return null;
    if (o === 'archive') return { uid: h.uid, gid: h.gid };
    return o;
  }

  /** Clears the way for a new entry; returns true when an existing directory stays (dir over dir). */
  private async clear(parent: DirRef, name: string, rel: string, isDir: boolean, shown: string): Promise<boolean> {
    const st = await this.fs.lstatChild(parent, name);
    if (!st) return false;
    if (st.isDirectory() && isDir) return true;
    if (this.opts.noOverwriteDirNonDir && st.isDirectory() && !isDir) {
      throw invalid(`cannot overwrite directory ${JSON.stringify(shown)} with non-directory ${JSON.stringify(this.dest.path)}`);
    }
    if (this.opts.noOverwriteDirNonDir && !st.isDirectory() && isDir) {
      throw invalid(`cannot overwrite non-directory ${JSON.stringify(shown)} with directory ${JSON.stringify(this.dest.path)}`);
    }
    await this.dropCache(rel);
    await this.fs.removeChild(parent, name);
    return false;
  }

  async entry(h: TarHeader, body: AsyncIterable<Buffer>): Promise<void> {
    const parts = entryParts(h.name, this.dest.path);
    if (parts.length === 0) {
      // "." stands for the destination, which exists: nothing to do.
      if (h.type !== 'directory') throw invalid(`invalid tar entry ${JSON.stringify(h.name)}: only a directory can stand for the destination`);
      return;
    }
    const rel = parts.join('/');
    const name = parts[parts.length - 1]!;
    const parent = await this.dirFor(parts.slice(0, -1));
    const shown = posix.join(parent.path, name);
    if (this.fs.mountAt(shown)) {
      if (h.type === 'directory') return;
      throw invalid(`cannot overwrite mount point ${shown}`);
    }
    if (parent.readOnly) throw readOnlyError(shown);
    const owner = this.owner(h);
    switch (h.type) {
      case 'directory': {
        if (!(await this.clear(parent, name, rel, true, shown))) {
          await mkdir(parent.child(name), 0o700);
        }
        const fh = await open(parent.child(name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
        try {
          if (owner) await fh.chown(owner.uid, owner.gid);
          await fh.chmod(h.mode & 0o7777);
        } finally {
          await fh.close();
        }
        this.dirTimes.set(rel, h.mtime);
        return;
      }
      case 'file': {
        await this.clear(parent, name, rel, false, shown);
        const fh = await open(parent.child(name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
        try {
          let pos = 0;
          for await (const chunk of body) {
            await fh.write(chunk, 0, chunk.length, pos);
            pos += chunk.length;
          }
          if (owner) await fh.chown(owner.uid, owner.gid);
          // After chown, which clears set-id bits.
          await fh.chmod(h.mode & 0o7777);
          await fh.utimes(h.mtime, h.mtime);
        } finally {
          await fh.close();
        }
        return;
      }
      case 'symlink': {
        if (h.linkname === '') throw invalid(`invalid tar entry ${JSON.stringify(h.name)}: symlink without a target`);
        if (!h.linkname.startsWith('/')) {
          const target = posix.normalize(posix.join(posix.dirname(rel), h.linkname));
          if (target === '..' || target.startsWith('../')) {
            throw invalid(`invalid symlink ${JSON.stringify(shown)} -> ${JSON.stringify(h.linkname)}: it points outside of ${JSON.stringify(this.dest.path)}`);
          }
        }
        await this.clear(parent, name, rel, false, shown);
        await symlink(h.linkname, parent.child(name));
        if (owner) await lchown(parent.child(name), owner.uid, owner.gid);
        await lutimes(parent.child(name), h.mtime, h.mtime);
        return;
      }
      case 'hardlink': {
        const tparts = entryParts(h.linkname, this.dest.path);
        if (tparts.length === 0) throw invalid(`invalid hardlink ${JSON.stringify(h.name)} -> ${JSON.stringify(h.linkname)}`);
        const target = await this.fs.resolveFrom(this.dest, tparts.join('/'), { followFinal: false });
        try {
          const tst = target.parent ? await this.fs.lstatChild(target.parent, target.name) : null;
          if (!tst || tst.isDirectory() || !target.parent) throw invalid(`invalid hardlink ${JSON.stringify(h.name)} -> ${JSON.stringify(h.linkname)}: no such file in the archive's destination`);
          if (target.path === shown) return;
          await this.clear(parent, name, rel, false, shown);
          await link(target.ref, parent.child(name));
        } finally {
          if (target.parent !== this.dest) await target.parent?.close();
        }
        return;
      }
      case 'fifo': {
        await this.clear(parent, name, rel, false, shown);
        await mkfifo(parent.childForProcess(name), h.mode & 0o7777);
        if (owner) await lchown(parent.child(name), owner.uid, owner.gid);
        await lutimes(parent.child(name), h.mtime, h.mtime);
        return;
      }
      case 'char':
      case 'block':
        if (this.opts.refuseDevices) throw invalid(`invalid tar entry ${JSON.stringify(h.name)}: device nodes cannot be copied into a container`);
        throw invalid(`invalid tar entry ${JSON.stringify(h.name)}: device nodes are not extracted`);
    }
  }

  /** Directory times last, deepest first, so writing their contents does not change them again. */
  async finish(): Promise<void> {
    await this.dropCache('');
    const dirs = [...this.dirTimes.entries()].sort((a, b) => b[0].split('/').length - a[0].split('/').length);
    for (const [rel, mtime] of dirs) {
      let loc: Located;
      try {
        loc = await this.fs.resolveFrom(this.dest, rel, { followFinal: false });
      } catch {
        continue;
      }
      const d = await this.fs.openLocated(loc);
      if (d) {
        await d.fh.utimes(mtime, mtime).catch(() => undefined);
        if (d !== this.dest) await d.close();
      }
      if (loc.parent !== this.dest) await loc.parent?.close();
    }
  }

  async abort(): Promise<void> {
    await this.dropCache('');
  }
}

function mkfifo(path: string, mode: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('mknod', ['-m', mode.toString(8), '--', path, 'p'], (err, _o, stderr) => {
      if (err) reject(systemError(`mknod ${path}: ${String(stderr).trim() || err.message}`, err));
      else resolve();
    });
  });
}

/**
 * Extracts a tar into an open directory of a ScopedFs. Entries that would
 * land outside the directory, symlinks and hard links pointing out of it,
 * and device nodes are refused with an InvalidParameter error; what was
 * extracted before a refused entry stays, as with docker.
 */
export async function unpackInto(fs: ScopedFs, dest: DirRef, tar: ByteSource, opts: UnpackOptions): Promise<void> {
  if (dest.readOnly) throw readOnlyError(dest.path);
  const u = new Unpacker(fs, dest, opts);
  try {
    for await (const { header, body } of readTar(tar)) {
      if (opts.rename) {
        header.name = opts.rename(header.name);
        if (header.type === 'hardlink') header.linkname = opts.rename(header.linkname);
      }
      await u.entry(header, body);
    }
    await u.finish();
  } catch (err) {
    await u.abort();
    if (err instanceof BerthError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EROFS') throw readOnlyError(dest.path);
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') throw systemError(`extracting archive: ${e.message}`, err);
    throw systemError(`extracting archive: ${e.message ?? String(err)}`, err);
  }
}

