/**
 * The rules of applying one layer tar entry by entry into a fresh snapshot
 * directory (an overlayfs lower), with synchronous system calls. It runs in
 * the extraction worker (layer-worker.ts), where blocking is free: each file
 * then costs only its own system calls, with no round trip through libuv's
 * thread pool and no promise per call. Small new files may be handed to the
 * worker's file writer thread instead (file-queue.ts).
 *
 * Each layer is extracted into its own empty directory and the layers are
 * stacked by overlayfs at mount time, so a whiteout never has to delete
 * anything from a lower layer here: it only has to be written in overlayfs'
 * own form (a 0/0 character device; an opaque directory carries the xattr
 * trusted.overlay.opaque=y).
 *
 * Nothing is ever written outside the root: names are resolved lexically and
 * a `..` above the root is refused, every parent directory is checked to be a
 * real directory (never a symlink) before anything is created below it, and
 * files are created with O_EXCL|O_NOFOLLOW.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, constants as fsc, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, rmSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { resolve } from 'node:path';
import { invalid, isErrno, systemError } from '../util/errors.ts';
import { archivePathParts } from '../util/tar.ts';
import type { TarHeader } from '../util/tar.ts';
import type { FileQueue } from './file-queue.ts';
import { isOverlayXattr, META_PREFIX, OPAQUE_MARKER, OPAQUE_XATTR, quoteDumpPath, WHITEOUT_PREFIX, WHITEOUT_TEMPLATE } from './layer-format.ts';

export interface ApplierOptions {
  /** Create character and block devices from the layer (refused by default). */
  allowDevices: boolean;
  /** Our effective ids: a new file already has them, so chown can be skipped. */
  uid: number;
  gid: number;
  /** New entries in a set-gid root take the root's group, not ours. */
  setgidRoot: boolean;
  /** null when unknown: modes are then always set explicitly. */
  umask: number | null;
}

/** An entry's body as the extractor reads it: views of the input, at most `remaining` bytes. */
export interface EntryBody {
  readonly remaining: number;
  /** The next bytes of the body (at least one); an error if the input ends first. */
  peek(): Buffer;
  consume(n: number): void;
}

interface DirAttrs {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}


const isWhiteoutDevice = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;

const lstatOrNull = (path: string): Stats | null => lstatSync(path, { throwIfNoEntry: false }) ?? null;

const depth = (rel: string): number => (rel === '' ? 0 : rel.split('/').length);

/** Runs a helper program to completion (mknod, setfattr: Node has no call for either). */
function run(cmd: string, args: string[], input?: string): { code: number; stderr: string } {
  const r = spawnSync(cmd, args, { input: input ?? '', stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.error) {
    if (isErrno(r.error, 'ENOENT')) throw systemError(`${cmd} not found: install the ${cmd === 'mknod' ? 'coreutils' : 'attr'} package`, r.error);
    throw r.error;
  }
  return { code: r.status ?? 1, stderr: r.stderr ?? '' };
}

function mknod(path: string, args: string[]): void {
  const r = run('mknod', ['-m', '0', '--', path, ...args]);
  if (r.code !== 0) throw systemError(`mknod ${path}: ${r.stderr.trim() || `exit status ${r.code}`}`);
}

export class LayerApplier {
  readonly root: string;
  /** Total size of the regular files written. */
  size = 0;
  /** Directories (relative, '' is the root) verified to be real directories, not symlinks. */
  private safeDirs = new Set<string>(['']);
  /** Mode, owner and times of directories, applied last so a read-only or
   * freshly-timestamped directory is not disturbed by its own contents. */
  private dirAttrs = new Map<string, DirAttrs>();
  private opaque = new Set<string>();
  private xattrs = new Map<string, Record<string, Buffer>>();
  private whiteoutTemplate: string | null = null;
  private whiteoutTemplateN = 0;
  private readonly opts: ApplierOptions;
  /**
   * Hands small new files to the writer thread (file-queue.ts); null when
   * there is none, or when the root was not empty to begin with, since a
   * queued file must be new.
   */
  private readonly queue: FileQueue | null;
  /** Every path an entry of this layer has named, so anything else is known not to exist yet. */
  private seen = new Set<string>();
  /** Paths queued since the writer last went idle. */
  private queued = new Set<string>();

  constructor(root: string, opts: ApplierOptions, queue: FileQueue | null = null) {
    this.root = resolve(root);
    this.opts = opts;
    this.queue = queue;
  }

  /**
   * Waits for the queued files. Called before anything that looks at or
   * changes a path that may be queued, or a directory above one: the writer
   * only ever creates the exact path it was given, so this keeps the
   * archive's order of effects and leaves no write under a path that is
   * being replaced.
   */
  settle(): void {
    if (this.queued.size === 0) return;
    this.queued.clear();
    this.queue!.settle();
  }

  /** `rel` is made of clean components (see archivePathParts), so no path.join is needed. */
  private abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  /**
   * Makes sure every component of `parts` is a real directory inside the
   * root, creating missing ones (as tar does for implied parents). A symlink
   * or any other non-directory on the way is refused: following it could
   * write outside the layer.
   */
  private ensureDirs(parts: string[], entryName: string, create: boolean): void {
    let rel = '';
    for (const c of parts) {
      rel = rel ? `${rel}/${c}` : c;
      if (this.safeDirs.has(rel)) continue;
      if (this.queued.has(rel)) this.settle();
      const abs = this.abs(rel);
      const st = lstatOrNull(abs);
      if (st?.isDirectory()) {
        this.safeDirs.add(rel);
        continue;
      }
      if (st?.isSymbolicLink()) {
        throw invalid(`tar entry ${JSON.stringify(entryName)}: parent ${JSON.stringify(rel)} is a symlink; refusing to follow it`);
      }
      if (!create) throw invalid(`tar entry ${JSON.stringify(entryName)}: ${JSON.stringify(rel)} is not a directory in this layer`);
      if (st) {
        // A whiteout written earlier by this same layer gives way to a later
        // entry that needs the path as a directory.
        if (!isWhiteoutDevice(st)) {
          throw invalid(`tar entry ${JSON.stringify(entryName)}: parent ${JSON.stringify(rel)} is not a directory`);
        }
        unlinkSync(abs);
      }
      mkdirSync(abs, 0o755);
      this.safeDirs.add(rel);
    }
  }

  /** Forgets everything recorded at or below `rel`, which is being replaced. */
  private forget(rel: string): void {
    const under = (p: string): boolean => p === rel || p.startsWith(`${rel}/`);
    for (const p of this.safeDirs) if (p !== '' && under(p)) this.safeDirs.delete(p);
    for (const p of this.dirAttrs.keys()) if (under(p)) this.dirAttrs.delete(p);
    for (const p of this.opaque) if (under(p)) this.opaque.delete(p);
    for (const p of this.xattrs.keys()) if (p.startsWith(`${rel}/`)) this.xattrs.delete(p);
  }

  /**
   * Clears the way for a new entry at `rel`: a later entry replaces an
   * earlier one, except that a directory over a directory only updates the
   * attributes. Returns true when an existing directory is kept.
   */
  private prepare(rel: string, isDir: boolean): boolean {
    // A directory removed here may hold queued files.
    this.settle();
    const abs = this.abs(rel);
    const st = lstatOrNull(abs);
    if (!st) return false;
    if (st.isDirectory()) {
      if (isDir) return true;
      this.forget(rel);
      rmSync(abs, { recursive: true, force: true });
      return false;
    }
    unlinkSync(abs);
    return false;
  }

  /** Applies one entry; a file's body is read to its end. */
  apply(h: TarHeader, body: EntryBody): void {
    const parts = archivePathParts(h.name);
    const base = parts.length > 0 ? parts[parts.length - 1]! : '';

    if (base.startsWith(WHITEOUT_PREFIX)) {
      const dirParts = parts.slice(0, -1);
      if (base === OPAQUE_MARKER) {
        this.ensureDirs(dirParts, h.name, true);
        this.opaque.add(dirParts.join('/'));
        return;
      }
      if (base.startsWith(META_PREFIX)) return;
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') {
        throw invalid(`tar entry ${JSON.stringify(h.name)}: invalid whiteout`);
      }
      this.ensureDirs(dirParts, h.name, true);
      this.whiteout([...dirParts, victim].join('/'));
      return;
    }

    if (parts.length === 0) {
      if (h.type !== 'directory') throw invalid(`tar entry ${JSON.stringify(h.name)}: only a directory can stand for the layer root`);
      this.dirAttrs.set('', { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
      this.setXattrs('', h);
      return;
    }

    this.ensureDirs(parts.slice(0, -1), h.name, true);
    const rel = parts.join('/');
    const abs = this.abs(rel);
    if (this.queued.has(rel)) this.settle();
    const fresh = !this.seen.has(rel) && !this.safeDirs.has(rel);
    this.seen.add(rel);
    // Attributes of an earlier entry at this path die with it.
    this.xattrs.delete(rel);

    switch (h.type) {
      case 'directory': {
        // Creating first and looking only on a clash saves a stat per entry.
        try {
          mkdirSync(abs, 0o700);
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
          if (!this.prepare(rel, true)) mkdirSync(abs, 0o700);
        }
        this.safeDirs.add(rel);
        this.dirAttrs.set(rel, { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
        break;
      }
      case 'file':
        if (!(fresh && this.enqueue(rel, h, body))) this.writeFile(rel, h, body);
        this.size += h.size;
        break;
      case 'symlink': {
        if (h.linkname === '') throw invalid(`tar entry ${JSON.stringify(h.name)}: symlink without a target`);
        // The target is only ever resolved inside the container, so it may say anything.
        try {
          symlinkSync(h.linkname, abs);
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
          this.prepare(rel, false);
          symlinkSync(h.linkname, abs);
        }
        lchownSync(abs, h.uid, h.gid);
        lutimesSync(abs, h.mtime, h.mtime);
        break;
      }
      case 'hardlink': {
        const target = archivePathParts(h.linkname, `hardlink ${JSON.stringify(h.name)} ->`);
        if (target.length === 0) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to the layer root`);
        const trel = target.join('/');
        if (trel === rel || trel.startsWith(`${rel}/`)) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to itself or into the path it replaces`);
        if (this.queued.has(trel)) this.settle();
        // The target's parents must be real directories of this layer, so the
        // kernel never resolves a symlink on the way to it; link(2) itself does
        // not follow a final symlink, so linking one just copies the link.
        this.ensureDirs(target.slice(0, -1), h.name, false);
        const tst = lstatOrNull(this.abs(trel));
        if (!tst || isWhiteoutDevice(tst)) {
          throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink target ${JSON.stringify(h.linkname)} is not in this layer`);
        }
        if (tst.isDirectory()) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to a directory`);
        this.prepare(rel, false);
        linkSync(this.abs(trel), abs);
        break;
      }
      case 'char':
      case 'block': {
        if (h.type === 'char' && h.devmajor === 0 && h.devminor === 0) {
          // Some producers ship overlayfs' own whiteout form.
          this.whiteout(rel);
          return;
        }
        if (!this.opts.allowDevices) {
          throw invalid(`tar entry ${JSON.stringify(h.name)}: device nodes are not allowed in image layers`);
        }
        this.prepare(rel, false);
        mknod(abs, [h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)]);
        this.setNodeAttrs(abs, h);
        break;
      }
      case 'fifo': {
        this.prepare(rel, false);
        mknod(abs, ['p']);
        this.setNodeAttrs(abs, h);
        break;
      }
    }
    this.setXattrs(rel, h);
  }

  private setXattrs(rel: string, h: TarHeader): void {
    if (Object.keys(h.xattrs).length > 0) this.xattrs.set(rel, h.xattrs);
  }

  private setNodeAttrs(abs: string, h: TarHeader): void {
    // The node was just created by us at a verified path, so following it is moot.
    lchownSync(abs, h.uid, h.gid);
    chmodSync(abs, h.mode & 0o7777);
    lutimesSync(abs, h.mtime, h.mtime);
  }

  /** Queues a new small file for the writer thread; false when the queue has no room. */
  private enqueue(rel: string, h: TarHeader, body: EntryBody): boolean {
    if (!this.queue) return false;
    const o = this.opts;
    const perm = h.mode & 0o777;
    const ok = this.queue.tryPush(
      {
        path: this.abs(rel),
        mode: h.mode & 0o7777,
        uid: h.uid,
        gid: h.gid,
        mtime: h.mtime,
        // The same savings as writeFile's.
        chown: h.uid !== o.uid || h.gid !== o.gid || o.setgidRoot,
        chmod: (h.mode & 0o7000) !== 0 || o.umask === null || (perm & o.umask) !== 0,
        size: h.size,
      },
      (into) => {
        let off = 0;
        while (body.remaining > 0) {
          const piece = body.peek();
          piece.copy(into, off);
          off += piece.length;
          body.consume(piece.length);
        }
      },
    );
    if (ok) this.queued.add(rel);
    return ok;
  }

  /**
   * Writes a new file straight from the input's buffers: a body that lies in
   * one piece of the input (most small files) is a single write(2).
   */
  private writeFile(rel: string, h: TarHeader, body: EntryBody): void {
    const abs = this.abs(rel);
    // O_EXCL never follows a symlink at the final component; a clash means an
    // earlier entry of this layer is being replaced.
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    const perm = h.mode & 0o777;
    let fd: number;
    try {
      fd = openSync(abs, flags, perm);
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      this.prepare(rel, false);
      fd = openSync(abs, flags, perm);
    }
    try {
      while (body.remaining > 0) {
        const piece = body.peek();
        let off = 0;
        while (off < piece.length) off += writeSync(fd, piece, off, piece.length - off);
        body.consume(piece.length);
      }
      // Each call saved matters with thousands of files: a new file already
      // has our ids (unless a set-gid directory says otherwise) and the
      // permission bits asked of open(2) minus the umask.
      const o = this.opts;
      if (h.uid !== o.uid || h.gid !== o.gid || o.setgidRoot) fchownSync(fd, h.uid, h.gid);
      // chown clears set-id bits, so the mode comes after it.
      if ((h.mode & 0o7000) !== 0 || o.umask === null || (perm & o.umask) !== 0) fchmodSync(fd, h.mode & 0o7777);
      futimesSync(fd, h.mtime, h.mtime);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Marks `rel` as deleted from the layers below. Whiteouts only ever hide
   * lower layers: an entry of this same layer at that path wins, whichever
   * comes first in the archive.
   */
  private whiteout(rel: string): void {
    if (this.queued.has(rel)) this.settle();
    this.seen.add(rel);
    const abs = this.abs(rel);
    if (lstatOrNull(abs)) return;
    // One device node is made per layer and hard-linked for every whiteout,
    // as overlayfs does itself: a process per whiteout would be far slower.
    for (;;) {
      if (this.whiteoutTemplate === null) {
        const t = this.abs(`${WHITEOUT_TEMPLATE}.${this.whiteoutTemplateN++}`);
        rmSync(t, { force: true });
        mknod(t, ['c', '0', '0']);
        this.whiteoutTemplate = t;
      }
      try {
        linkSync(this.whiteoutTemplate, abs);
        return;
      } catch (err) {
        if (!isErrno(err, 'EMLINK')) throw err;
        unlinkSync(this.whiteoutTemplate);
        this.whiteoutTemplate = null;
      }
    }
  }

  /**
   * After a failure: waits for the queued files (the caller removes the root
   * next) and removes the scratch whiteout device.
   */
  abandon(): void {
    try {
      this.queued.clear();
      this.queue?.settle();
    } catch {
      // Its own failure is moot now; it has stopped writing either way.
    }
    this.cleanup();
  }

  private cleanup(): void {
    if (this.whiteoutTemplate !== null) {
      rmSync(this.whiteoutTemplate, { force: true });
      this.whiteoutTemplate = null;
    }
  }

  /** After the last entry: extended attributes, then directory attributes. */
  finish(): void {
    this.settle();
    this.cleanup();
    this.applyXattrs();
    // Deepest first, so setting a parent's times is the last change to it.
    const dirs = [...this.dirAttrs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, a] of dirs) {
      if (!this.parentSafe(rel)) continue;
      const fd = openSync(this.abs(rel), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
      try {
        fchownSync(fd, a.uid, a.gid);
        fchmodSync(fd, a.mode & 0o7777);
        futimesSync(fd, a.mtime, a.mtime);
      } finally {
        closeSync(fd);
      }
    }
  }

  private parentSafe(rel: string): boolean {
    if (rel === '') return true;
    const i = rel.lastIndexOf('/');
    return this.safeDirs.has(i < 0 ? '' : rel.slice(0, i));
  }

  /**
   * Extended attributes go through one `setfattr --restore` run per layer (Node
   * has no xattr API). The opaque markers are part of the layer's meaning and
   * must succeed; other attributes are best effort, since some namespaces are
   * not settable on every filesystem.
   */
  private applyXattrs(): void {
    const opaque: string[] = [];
    for (const rel of this.opaque) {
      if (!this.parentSafe(rel) || !this.safeDirs.has(rel)) continue;
      opaque.push(`# file: ${quoteDumpPath(this.abs(rel))}\n${OPAQUE_XATTR}=0s${Buffer.from('y').toString('base64')}\n`);
    }
    if (opaque.length > 0) {
      const r = setfattrRestore(opaque.join('\n'));
      if (r.code !== 0) throw systemError(`cannot mark opaque directories: ${r.stderr.trim()}`);
    }
    const others: string[] = [];
    for (const [rel, attrs] of this.xattrs) {
      if (!this.parentSafe(rel)) continue;
      const st = lstatOrNull(this.abs(rel));
      if (!st || isWhiteoutDevice(st)) continue;
      const lines = Object.entries(attrs)
        .filter(([k]) => /^[\x21-\x7e]+$/.test(k) && !isOverlayXattr(k))
        .map(([k, v]) => `${k}=0s${v.toString('base64')}\n`);
      if (lines.length > 0) others.push(`# file: ${quoteDumpPath(this.abs(rel))}\n${lines.join('')}`);
    }
    if (others.length > 0) setfattrRestore(others.join('\n'));
  }
}

/** -h: never follow a symlink named in the dump; its parents were verified. */
const setfattrRestore = (dump: string): { code: number; stderr: string } => run('setfattr', ['-h', '--restore=-'], dump);
