/**
 * Safe access to a container's filesystem from the host.
 *
 * A container's files are hostile input: any directory in them may be a
 * symlink to `/etc` of the host, and a running container can swap a
 * directory for such a symlink at any moment. So nothing here ever hands the
 * kernel a host path that runs through the container's tree. Every directory
 * is opened with O_NOFOLLOW and held as a file descriptor, and the next
 * component is reached as `/proc/self/fd/<fd>/<name>`: the kernel jumps
 * straight to the directory the descriptor pins and looks up one name in it
 * (openat(2) semantics, which Node does not offer directly). Symlinks are
 * resolved here, component by component, as the container would see them:
 * an absolute target starts again at the container's root, and `..` never
 * climbs above it.
 *
 * The walk also consults a mount table (container path → host source), so
 * bind mounts and volumes inside the container are seen where the container
 * sees them. Its entries come from `containerMountTable` (archive.ts).
 */
import { constants as C } from 'node:fs';
import type { Stats } from 'node:fs';
import { open, lstat, readlink, readdir, mkdir, rmdir, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { BerthError, invalid, isErrno, notFound, systemError } from '../util/errors.ts';

/** A host directory or file that appears at `destination` inside the container. */
export interface FsMount {
  destination: string;
  source: string;
  readOnly: boolean;
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
/** Symlinks followed in one resolution, as Linux allows (MAXSYMLINKS). */
const MAX_LINKS = 40;

/** An open directory of the container, and where the container sees it. */
export class DirRef {
  readonly fh: FileHandle;
  /** The directory's path inside the container, symlinks resolved. */
  readonly path: string;
  readonly readOnly: boolean;
  private readonly owner: ScopedFs;
  closed = false;

  constructor(owner: ScopedFs, fh: FileHandle, path: string, readOnly: boolean) {
    this.owner = owner;
    this.fh = fh;
    this.path = path;
    this.readOnly = readOnly;
  }

  /** A path that names `name` in this directory without any other lookup. */
  child(name: string): string {
    return `/proc/self/fd/${this.fh.fd}/${name}`;
  }

  /** The same for a child process, whose /proc/self is not ours. */
  childForProcess(name: string): string {
    return `/proc/${process.pid}/fd/${this.fh.fd}/${name}`;
  }

  /** This directory itself. */
  get self(): string {
    return `/proc/self/fd/${this.fh.fd}/.`;
  }

  async close(): Promise<void> {
    if (this.closed || this === this.owner.root) return;
    this.closed = true;
    this.owner.forget(this);
    await this.fh.close().catch(() => undefined);
  }
}

/** What a resolution found: an entry (not followed) in a directory, or a directory itself. */
export interface Located {
  /** The entry's path inside the container, symlinks before it resolved. */
  path: string;
  /** A path that reaches exactly this entry without following it. */
  ref: string;
  /** The directory holding the entry and its name there; absent for the root and mount points. */
  parent?: DirRef;
  name: string;
  /** Set when the entry is a directory the walk opened (root, mount point, a followed final component). */
  dir?: DirRef;
  /** Set when the entry is a file mounted from the host. */
  hostFile?: string;
  /** With `missingOk`: the path does not exist (from this component on). */
  missing?: boolean;
  readOnly: boolean;
}

export interface ResolveOptions {
  /** Also resolve the last component when it is a symlink (always so with a trailing `/` or `/.`). */
  followFinal?: boolean;
  /** Create missing directories on the way (mode 0755), as extraction does for implied parents. */
  mkdirs?: boolean;
  /** A missing component ends the walk without an error: the answer has `missing` set and the rest of the path appended. */
  missingOk?: boolean;
}

function splitComponents(p: string): string[] {
  if (p.includes('\0')) throw invalid(`invalid path ${JSON.stringify(p)}: it contains a NUL byte`);
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** docker's rule: a path ending in `/` or `/.` means the thing it points to, symlink or not. */
export function asksForContents(p: string): boolean {
  return p === '.' || p.endsWith('/') || p.endsWith('/.');
}

export function notFoundIn(path: string): BerthError {
  return notFound(`no such file or directory: ${path}`);
}

/**
 * A container's root filesystem (a host directory) with its mount table,
 * reachable only through descriptors. Open, use, close: `close` releases
 * every descriptor still held.
 */
export class ScopedFs {
  root!: DirRef;
  private readonly mounts: FsMount[];
  private readonly open = new Set<DirRef>();

  private constructor(mounts: FsMount[]) {
    // Longest destination first, so nested mounts win over their parents.
    this.mounts = mounts
      .map((m) => ({ ...m, destination: posix.resolve('/', m.destination) }))
      .sort((a, b) => b.destination.length - a.destination.length);
  }

  /** `rootDir` is a trusted host path (the container's merged rootfs). */
  static async open(rootDir: string, opts: { mounts?: FsMount[]; readOnly?: boolean } = {}): Promise<ScopedFs> {
    const fs = new ScopedFs(opts.mounts ?? []);
    const fh = await open(rootDir, C.O_RDONLY | C.O_DIRECTORY);
    fs.root = new DirRef(fs, fh, '/', opts.readOnly ?? false);
    return fs;
  }

  async close(): Promise<void> {
    for (const d of [...this.open]) await d.close();
    await this.root.fh.close().catch(() => undefined);
  }

  /** @internal */
  forget(d: DirRef): void {
    this.open.delete(d);
  }

  private track(fh: FileHandle, path: string, readOnly: boolean): DirRef {
    const d = new DirRef(this, fh, path, readOnly);
    this.open.add(d);
    return d;
  }

  mountAt(path: string): FsMount | undefined {
    return this.mounts.find((m) => m.destination === path);
  }

  /** Opens a child directory of `dir` without following a symlink; null when it is not a directory. */
  async openDir(dir: DirRef, name: string): Promise<DirRef | null> {
    const path = posix.join(dir.path, name);
    const m = this.mountAt(path);
    if (m) {
      try {
        return this.track(await open(m.source, C.O_RDONLY | C.O_DIRECTORY), path, m.readOnly);
      } catch (err) {
        if (isErrno(err, 'ENOTDIR') || isErrno(err, 'ENOENT')) return null;
        throw err;
      }
    }
    try {
      return this.track(await open(dir.child(name), DIR_FLAGS), path, dir.readOnly);
    } catch (err) {
      if (isErrno(err, 'ENOTDIR') || isErrno(err, 'ELOOP') || isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  }

  /** lstat of an entry of `dir`; mount points report their source. */
  async lstatChild(dir: DirRef, name: string): Promise<Stats | null> {
    const m = this.mountAt(posix.join(dir.path, name));
    try {
      return m ? await lstat(m.source) : await lstat(dir.child(name));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
  }

  /**
   * Resolves a path inside the container. Intermediate symlinks are always
   * followed (inside the container); the last component only when asked or
   * when the path ends in `/` or `/.`. Missing components are a NotFound
   * error unless `mkdirs` creates them. Descriptors opened on the way and
   * not part of the answer are closed.
   */
  async resolve(path: string, opts: ResolveOptions = {}): Promise<Located> {
    return this.resolveFrom(this.root, path, opts);
  }

  async resolveFrom(start: DirRef, path: string, opts: ResolveOptions = {}): Promise<Located> {
    const followFinal = opts.followFinal === true || asksForContents(path);
    // An absolute path starts at the root whatever the start directory.
    const stack: DirRef[] = path.startsWith('/') || start === this.root ? [this.root] : [start];
    const owned = new Set<DirRef>();
    const push = (d: DirRef): void => {
      stack.push(d);
      owned.add(d);
    };
    const release = async (keep: DirRef | undefined): Promise<void> => {
      for (const d of owned) if (d !== keep) await d.close();
    };
    let todo = splitComponents(path);
    let links = 0;
    try {
      while (todo.length > 0) {
        const comp = todo.shift()!;
        const last = todo.length === 0;
        if (comp === '..') {
          if (stack.length > 1) stack.pop();
          else if (stack[0] !== this.root) {
            // Climbing out of the start directory: continue from its real path at the root.
            todo = [...splitComponents(posix.dirname(stack[0]!.path)), ...todo];
            stack[0] = this.root;
          }
          continue;
        }
        const top = stack[stack.length - 1]!;
        const cpath = posix.join(top.path, comp);
        const mount = this.mountAt(cpath);
        if (mount) {
          let fh: FileHandle | undefined;
          try {
            fh = await open(mount.source, C.O_RDONLY | C.O_DIRECTORY);
          } catch (err) {
            if (!isErrno(err, 'ENOTDIR')) throw systemError(`mount source ${mount.source} of ${cpath}: ${(err as Error).message}`, err);
          }
          if (fh) {
            push(this.track(fh, cpath, mount.readOnly));
            continue;
          }
          if (!last) throw invalid(`${cpath}: not a directory`);
          await release(undefined);
          return { path: cpath, ref: mount.source, name: comp, hostFile: mount.source, readOnly: mount.readOnly };
        }
        if (last && !followFinal) {
          await release(top);
          return { path: cpath, ref: top.child(comp), parent: top, name: comp, readOnly: top.readOnly };
        }
        let st: Stats | null = null;
        try {
          st = await lstat(top.child(comp));
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err;
        }
        if (!st) {
          if (opts.missingOk && !opts.mkdirs) {
            await release(undefined);
            return { path: posix.join(cpath, ...todo), ref: '', name: comp, missing: true, readOnly: top.readOnly };
          }
          if (!opts.mkdirs) throw notFoundIn(cpath);
          if (top.readOnly) throw readOnlyError(cpath);
          await mkdir(top.child(comp), 0o755).catch((err: unknown) => {
            if (!isErrno(err, 'EEXIST')) throw err;
          });
          todo.unshift(comp);
          continue;
        }
        if (st.isSymbolicLink()) {
          if (++links > MAX_LINKS) throw invalid(`${path}: too many levels of symbolic links`);
          const target = await readlink(top.child(comp));
          if (target.startsWith('/')) {
            stack.length = 1;
            stack[0] = this.root;
          }
          todo = [...splitComponents(target), ...todo];
          continue;
        }
        if (st.isDirectory()) {
          const d = await this.openDir(top, comp);
          if (!d) {
            // Swapped for something else since the lstat: look again.
            if (++links > MAX_LINKS) throw invalid(`${path}: changed while being resolved`);
            todo.unshift(comp);
            continue;
          }
          push(d);
          continue;
        }
        if (last) {
          await release(top);
          return { path: cpath, ref: top.child(comp), parent: top, name: comp, readOnly: top.readOnly };
        }
        throw invalid(`${cpath}: not a directory`);
      }
      const dir = stack[stack.length - 1]!;
      await release(dir);
      return { path: dir.path, ref: dir.self, name: posix.basename(dir.path) || '/', dir, readOnly: dir.readOnly };
    } catch (err) {
      await release(undefined);
      throw err;
    }
  }

  /**
   * The container path a path finally points to, following every symlink in
   * the container's scope; components that do not exist are appended as
   * they are (docker reports a dangling link's target this way).
   */
  async realPath(path: string): Promise<string> {
    const loc = await this.resolve(path, { followFinal: true, missingOk: true });
    if (loc.dir) await loc.dir.close();
    else await loc.parent?.close();
    return loc.path;
  }

  /** Opens a directory for an entry found by resolve; null when it is not one. */
  async openLocated(loc: Located): Promise<DirRef | null> {
    if (loc.dir) return loc.dir;
    if (loc.parent) return this.openDir(loc.parent, loc.name);
    return null;
  }

  /** Removes an entry of `dir` and, for a directory, everything below it, without following symlinks. */
  async removeChild(dir: DirRef, name: string): Promise<void> {
    if (this.mountAt(posix.join(dir.path, name))) throw invalid(`cannot remove mount point ${posix.join(dir.path, name)}`);
    const st = await this.lstatChild(dir, name);
    if (!st) return;
    if (dir.readOnly) throw readOnlyError(posix.join(dir.path, name));
    if (!st.isDirectory()) {
      await unlink(dir.child(name));
      return;
    }
    const sub = await this.openDir(dir, name);
    if (sub) {
      try {
        for (const n of await readdir(sub.self)) await this.removeChild(sub, n);
      } finally {
        await sub.close();
      }
    }
    await rmdir(dir.child(name));
  }
}

export function readOnlyError(path: string): BerthError {
  return new BerthError('Forbidden', `container rootfs is marked read-only (${path})`);
}

/** Go's os.FileMode bits for a Unix mode, as docker's path-stat header carries them. */
export function goFileMode(mode: number): number {
  let m = mode & 0o777;
  if (mode & 0o4000) m |= 1 << 23;
  if (mode & 0o2000) m |= 1 << 22;
  if (mode & 0o1000) m |= 1 << 20;
  switch (mode & C.S_IFMT) {
    case C.S_IFDIR:
      m |= 1 << 31;
      break;
    case C.S_IFLNK:
      m |= 1 << 27;
      break;
    case C.S_IFIFO:
      m |= 1 << 25;
      break;
    case C.S_IFSOCK:
      m |= 1 << 24;
      break;
    case C.S_IFBLK:
      m |= 1 << 26;
      break;
    case C.S_IFCHR:
      m |= (1 << 26) | (1 << 21);
      break;
  }
  return m >>> 0;
}
