/**
 * COPY and ADD: finding the sources (wildcards, the context's .dockerignore),
 * hashing their content for the cache, and writing them into a staging
 * directory that becomes the step's layer, with docker's directory rules:
 * a directory's contents are copied, not the directory; several sources or a
 * destination ending in `/` (or an existing directory) mean "into"; missing
 * parents are created. ADD unpacks local tar archives.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { chmod, copyFile, lchown, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, utimes } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join, posix } from 'node:path';
import { globMatch, hasGlob } from './dockerignore.ts';
import type { DockerIgnore } from './dockerignore.ts';
import { statInLayers } from './rootview.ts';
import { BerthError, invalid, isErrno } from '../util/errors.ts';

/** What the source functions need to know of an entry: fs.Stats has it, and so does the build context's index. */
export interface EntryInfo {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  mode: number;
}

/**
 * A tree the sources are found in and hashed from: a directory on disk (a
 * stage's or image's root, heredocs) or the build context as received,
 * which is hashed without being written out. Paths are relative to the
 * tree's root, no leading slash ('' is the root); nothing follows a symlink.
 */
export interface SourceTree<S extends EntryInfo = EntryInfo> {
  lstat(rel: string): Promise<S | undefined>;
  /** Names in a directory (following symlinks on the way); empty when it is not one. */
  readdir(rel: string): Promise<string[]>;
  readlink(rel: string): Promise<string>;
  /** sha256 (hex) of a regular file's content. */
  digest(rel: string): Promise<string>;
}

/** A directory on disk as a source tree. */
export class DiskTree implements SourceTree<Stats> {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  async lstat(rel: string): Promise<Stats | undefined> {
    try {
      return await lstat(this.abs(rel));
    } catch {
      return undefined;
    }
  }

  async readdir(rel: string): Promise<string[]> {
    try {
      return await readdir(this.abs(rel));
    } catch {
      return [];
    }
  }

  readlink(rel: string): Promise<string> {
    return readlink(this.abs(rel));
  }

  async digest(rel: string): Promise<string> {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(this.abs(rel))) h.update(chunk as Buffer);
    return h.digest('hex');
  }
}

type EntryOf<T> = T extends SourceTree<infer S> ? S : never;

export interface Source<T extends SourceTree = SourceTree> {
  tree: T;
  /** Path relative to the source root as the instruction named it, no leading slash ('' is the root itself). */
  rel: string;
  /** Where it is in the tree, symlinks on the way resolved. */
  path: string;
  st: EntryOf<T>;
}

export class CopyError extends BerthError {
  constructor(message: string) {
    super('InvalidParameter', message);
  }
}

function clean(p: string): string {
  return posix.normalize(posix.join('/', p)).replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Resolves a path inside the tree following symlinks without ever leaving it. */
async function resolveInRoot(tree: SourceTree, rel: string): Promise<string> {
  const parts = rel === '' ? [] : rel.split('/');
  let cur = '';
  for (let i = 0; i < parts.length; i++) {
    const next = cur ? `${cur}/${parts[i]}` : parts[i]!;
    const st = await tree.lstat(next);
    if (!st) return [next, ...parts.slice(i + 1)].join('/');
    if (st.isSymbolicLink()) {
      const target = await tree.readlink(next);
      const resolved = target.startsWith('/') ? clean(target) : clean(posix.join(cur, target));
      return resolveInRoot(tree, [resolved, ...parts.slice(i + 1)].filter(Boolean).join('/'));
    }
    cur = next;
  }
  return cur;
}

/** Expand the source patterns (wildcards, the ignore file for context sources); none found is docker's error. */
export async function findSources<T extends SourceTree>(tree: T, patterns: string[], ignore: DockerIgnore | undefined, cmd: string, fromContext: boolean, exclude?: DockerIgnore): Promise<Array<Source<T>>> {
  const out: Array<Source<T>> = [];
  for (const pat of patterns) {
    const p = clean(pat);
    const matches: string[] = [];
    if (hasGlob(p)) {
      await walkGlob(tree, '', p.split('/'), matches);
      matches.sort();
    } else matches.push(p);
    let found = 0;
    for (const rel of matches) {
      if (fromContext && ignore && rel !== '' && ignore.excluded(rel)) continue;
      if (exclude && rel !== '' && (exclude.excluded(rel) || exclude.excluded(posix.basename(rel)))) continue;
      const path = await resolveInRoot(tree, rel);
      const st = await tree.lstat(path) as EntryOf<T> | undefined;
      if (!st) continue;
      found++;
      out.push({ tree, rel, path, st });
    }
    if (found === 0) {
      if (fromContext) throw new CopyError(`${cmd} failed: file not found in build context or excluded by .dockerignore: stat ${p || '.'}: file does not exist`);
      throw new CopyError(`${cmd} failed: stat ${posix.join('/', p)}: file does not exist`);
    }
  }
  return out;
}

async function walkGlob(tree: SourceTree, prefix: string, segs: string[], out: string[]): Promise<void> {
  if (segs.length === 0) {
    out.push(prefix);
    return;
  }
  const [seg, ...rest] = segs as [string, ...string[]];
  if (!hasGlob(seg)) {
    const next = prefix ? `${prefix}/${seg}` : seg;
    if (rest.length === 0) out.push(next);
    else await walkGlob(tree, next, rest, out);
    return;
  }
  const names = await tree.readdir(prefix);
  for (const n of names.sort()) {
    if (!globMatch(seg, n)) continue;
    await walkGlob(tree, prefix ? `${prefix}/${n}` : n, rest, out);
  }
}

/** Every path under a source (itself first), relative to the source, honouring the ignore file; `path` is where it is in the tree. */
async function walk<T extends SourceTree>(src: Source<T>, ignore: DockerIgnore | undefined, visit: (rel: string, path: string, st: EntryOf<T>) => Promise<void>, exclude?: DockerIgnore): Promise<void> {
  const tree = src.tree;
  const st = await tree.lstat(src.path) as EntryOf<T> | undefined;
  if (!st) throw new CopyError(`stat ${src.rel}: file does not exist`);
  await visit('', src.path, st);
  if (!st.isDirectory()) return;
  const under = (r: string): string => (src.path ? `${src.path}/${r}` : r);
  const rec = async (rel: string): Promise<void> => {
    for (const name of (await tree.readdir(under(rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const ctxPath = src.rel ? `${src.rel}/${r}` : r;
      const s = await tree.lstat(under(r)) as EntryOf<T> | undefined;
      if (!s) continue;
      if (ignore && ignore.excluded(ctxPath) && !(s.isDirectory() && ignore.hasExceptions())) continue;
      // COPY --exclude patterns are relative to the source.
      if (exclude && exclude.excluded(r)) continue;
      await visit(r, under(r), s);
      if (s.isDirectory()) await rec(r);
    }
  };
  await rec('');
}

/** A content hash of the sources, and docker's history label kind (file:, dir:, multi:). */
export async function hashSources(sources: Source[], ignore: DockerIgnore | undefined, exclude?: DockerIgnore): Promise<{ kind: 'file' | 'dir' | 'multi'; hash: string }> {
  const all = createHash('sha256');
  for (const s of sources) {
    const h = createHash('sha256');
    const tree = s.tree;
    await walk(s, ignore, async (rel, path, st) => {
      const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o';
      h.update(`${rel}\0${type}\0${(st.mode & 0o7777).toString(8)}\0`);
      if (st.isFile()) h.update(await tree.digest(path));
      else if (st.isSymbolicLink()) h.update(await tree.readlink(path));
      h.update('\n');
    }, exclude);
    all.update(`${s.rel}:${h.digest('hex')}\n`);
  }
  const kind = sources.length > 1 ? 'multi' : sources[0]!.st.isDirectory() ? 'dir' : 'file';
  return { kind, hash: all.digest('hex') };
}

export interface CopyInto {
  /** The staging directory: the new layer's content. */
  stage: string;
  /** The image's layers (top first), to learn whether the destination is a directory. */
  lowerTopFirst: string[];
  dest: string;
  chown?: { uid: number; gid: number };
  chmod?: number;
  /** ADD: unpack local archives. */
  unpack: boolean;
  ignore?: DockerIgnore;
  /** COPY --exclude. */
  exclude?: DockerIgnore;
  /** COPY --parents: sources keep their path below the source root. */
  parents?: boolean;
}

/** Create `dir` (absolute in the image) in the stage, parents taking the image's metadata when they exist there. */
async function ensureDirIn(c: CopyInto, dir: string, own?: { uid: number; gid: number }): Promise<void> {
  const parts = clean(dir).split('/').filter(Boolean);
  let cur = '';
  for (const p of parts) {
    cur = cur ? `${cur}/${p}` : p;
    const target = join(c.stage, cur);
    try {
      const st = await lstat(target);
      if (st.isDirectory()) continue;
      await rm(target, { force: true });
    } catch {
      // create below
    }
    const existing = await statInLayers(c.lowerTopFirst, cur);
    await mkdir(target, { mode: 0o755 });
    if (existing?.isDirectory()) {
      await chmod(target, existing.mode & 0o7777);
      await lchown(target, existing.uid, existing.gid);
      await utimes(target, existing.atime, existing.mtime);
    } else {
      await chmod(target, 0o755);
      await lchown(target, own?.uid ?? 0, own?.gid ?? 0);
    }
  }
}

function isArchiveMagic(b: Buffer): boolean {
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return true;
  if (b.length >= 3 && b.toString('latin1', 0, 3) === 'BZh') return true;
  if (b.length >= 6 && b[0] === 0xfd && b.toString('latin1', 1, 5) === '7zXZ') return true;
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return true;
  return b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar';
}

async function readHead(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(512);
    const { bytesRead } = await fh.read(b, 0, 512, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function untar(archive: string, dest: string): Promise<boolean> {
  return new Promise((resolve) => execFile('tar', ['-x', '-f', archive, '-C', dest, '--same-owner', '-p', '--no-overwrite-dir'], (err) => resolve(!err)));
}

/** Copy the sources into the stage at the destination, with docker's rules. */
export async function copyInto(c: CopyInto, sources: Array<Source<DiskTree>>, destIsDir: boolean): Promise<void> {
  const dest = c.dest;
  const existing = await statInLayers(c.lowerTopFirst, dest);
  const intoDir = destIsDir || sources.length > 1 || existing?.isDirectory() === true || c.parents === true;
  for (const s of sources) {
    if (s.st.isDirectory()) {
      const d = c.parents && s.rel ? posix.join(dest, s.rel) : dest;
      await ensureDirIn(c, d, c.chown);
      await copyTree(c, s, clean(d));
      continue;
    }
    const abs = s.tree.abs(s.path);
    if (c.unpack && s.st.isFile() && isArchiveMagic(await readHead(abs))) {
      // A local archive is unpacked into the destination directory.
      await ensureDirIn(c, dest, c.chown);
      const target = join(c.stage, clean(dest));
      if (await untar(abs, target)) continue;
    }
    const name = c.parents ? s.rel : posix.basename(s.rel || s.path);
    const target = intoDir ? posix.join(clean(dest), name) : clean(dest);
    await ensureDirIn(c, posix.dirname(posix.join('/', target)), c.chown);
    await copyEntry(c, abs, s.st, join(c.stage, target));
  }
}

async function copyTree(c: CopyInto, s: Source<DiskTree>, destRel: string): Promise<void> {
  await walk(s, c.ignore, async (rel, path, st) => {
    if (rel === '') return;
    const target = join(c.stage, destRel, rel);
    await copyEntry(c, s.tree.abs(path), st, target);
  }, c.exclude);
}

async function copyEntry(c: CopyInto, abs: string, st: Stats, target: string): Promise<void> {
  const uid = c.chown?.uid ?? 0;
  const gid = c.chown?.gid ?? 0;
  const mode = c.chmod ?? st.mode & 0o7777;
  if (st.isDirectory()) {
    try {
      const t = await lstat(target);
      if (!t.isDirectory()) await rm(target, { recursive: true, force: true });
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    await mkdir(target, { recursive: true });
    await chmod(target, mode);
    await lchown(target, uid, gid);
    await utimes(target, st.atime, st.mtime);
    return;
  }
  await rm(target, { recursive: true, force: true });
  if (st.isSymbolicLink()) {
    await symlink(await readlink(abs), target);
    await lchown(target, uid, gid);
    await lutimes(target, st.atime, st.mtime).catch(() => undefined);
    return;
  }
  if (!st.isFile()) return;
  await copyFile(abs, target);
  await chmod(target, mode);
  await lchown(target, uid, gid);
  await utimes(target, st.atime, st.mtime);
}

/** A destination as docker reads it: relative ones are under the working directory. */
export function resolveDest(dest: string, workdir: string): { path: string; isDir: boolean } {
  const isDir = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
  const abs = dest.startsWith('/') ? dest : posix.join(workdir || '/', dest);
  return { path: posix.normalize(abs), isDir };
}

export function parseChmod(v: string): number {
  if (!/^[0-7]{3,4}$/.test(v)) throw invalid(`invalid chmod parameter: '${v}'. it should be octal string and between 0 and 07777`);
  return parseInt(v, 8);
}
