/**
 * Image layers on disk: applying a layer tar into a fresh snapshot directory
 * (an overlayfs lower), producing a layer tar from an overlayfs upper
 * directory, and archiving a plain tree.
 *
 * Each layer is extracted into its own empty directory and the layers are
 * stacked by overlayfs at mount time, so a whiteout never has to delete
 * anything from a lower layer here: it only has to be written in overlayfs'
 * own form (a 0/0 character device; an opaque directory carries the xattr
 * trusted.overlay.opaque=y).
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, constants as fsc, fchmodSync, fchownSync, futimesSync, lchownSync, lutimesSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { link, lchown, lstat, lutimes, mkdir, open, readdir, readFile, readlink, rm, symlink, unlink, chmod } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { BerthError, invalid, isErrno, systemError } from '../util/errors.ts';
import { encodeEntry, readTar, TAR_TRAILER } from '../util/tar.ts';
import type { ByteSource, TarEntry, TarHeader, TarHeaderInput } from '../util/tar.ts';

export interface ApplyLayerOptions {
  /** Create character and block devices from the layer (refused by default). */
  allowDevices?: boolean;
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
/** Entries with this prefix are other tools' bookkeeping and never extracted, so
 * the name is also safe for our own scratch whiteout device. */
const META_PREFIX = '.wh..wh.';
const WHITEOUT_TEMPLATE = '.wh..wh.berth-whiteout';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** Files up to this size are buffered and written concurrently with the next entries. */
const SMALL_FILE = 256 * 1024;
const MAX_INFLIGHT = 16;
/**
 * Output chunk of the gzip/zstd decoders. Each chunk is a round trip between
 * the thread pool and the main thread, and the decoder waits for the main
 * thread (busy creating files) between chunks: large chunks let it run ahead.
 */
const DECODE_CHUNK = 512 * 1024;

interface OwnIds {
  uid: number;
  gid: number;
  /** New entries in a set-gid root take the root's group, not ours. */
  setgidRoot: boolean;
  /** null when unknown: modes are then always set explicitly. */
  umask: number | null;
}

/**
 * The umask without changing it (process.umask() reads it by writing it).
 * Read per layer, since other code may change it.
 */
async function currentUmask(): Promise<number | null> {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(await readFile('/proc/self/status', 'utf8'));
    return m ? parseInt(m[1]!, 8) : null;
  } catch {
    return null;
  }
}

interface DirAttrs {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

function runFile(cmd: string, args: string[], input?: string | Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

function mknod(path: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('mknod', ['-m', '0', '--', path, ...args], (err, _stdout, stderr) => {
      if (err) reject(systemError(`mknod ${path}: ${String(stderr).trim() || err.message}`, err));
      else resolve();
    });
  });
}

/** Quotes a path for a getfattr/setfattr dump: every byte outside a safe set as \ooo. */
function quoteDumpPath(p: string): string {
  let s = '';
  for (const byte of Buffer.from(p)) {
    const ch = String.fromCharCode(byte);
    s += /[A-Za-z0-9._\/+,:@-]/.test(ch) ? ch : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return s;
}

function unquoteDumpPath(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Splits an entry name into components inside the layer root, the way tar
 * does: a leading slash is dropped and `.`/`..` are resolved lexically. A `..`
 * that would climb above the root is refused rather than clamped.
 */
function cleanPath(name: string, what = 'tar entry'): string[] {
  if (name.includes('\0')) throw invalid(`${what} ${JSON.stringify(name)}: name contains a NUL byte`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) throw invalid(`${what} ${JSON.stringify(name)} points outside the layer`);
      parts.pop();
      continue;
    }
    parts.push(c);
  }
  return parts;
}

/**
 * overlayfs keeps its bookkeeping (opaque, redirect, origin, metacopy…) in
 * these; a layer must never be able to set them, nor a diff leak them.
 */
const isOverlayXattr = (name: string): boolean => name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');

const isWhiteoutDevice = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
}

class LayerApplier {
  readonly root: string;
  readonly allowDevices: boolean;
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

  private readonly ownIds: OwnIds;

  constructor(root: string, opts: ApplyLayerOptions, ownIds: OwnIds) {
    this.root = root;
    this.allowDevices = opts.allowDevices ?? false;
    this.ownIds = ownIds;
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /**
   * Makes sure every component of `parts` is a real directory inside the
   * root, creating missing ones (as tar does for implied parents). A symlink
   * or any other non-directory on the way is refused: following it could
   * write outside the layer.
   */
  private async ensureDirs(parts: string[], entryName: string, create: boolean): Promise<void> {
    let rel = '';
    for (const c of parts) {
      rel = rel ? `${rel}/${c}` : c;
      if (this.safeDirs.has(rel)) continue;
      const abs = this.abs(rel);
      const st = await lstatOrNull(abs);
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
        await unlink(abs);
      }
      await mkdir(abs, 0o755);
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
  private async prepare(rel: string, isDir: boolean): Promise<boolean> {
    const abs = this.abs(rel);
    const st = await lstatOrNull(abs);
    if (!st) return false;
    if (st.isDirectory()) {
      if (isDir) return true;
      this.forget(rel);
      await rm(abs, { recursive: true, force: true });
      return false;
    }
    await unlink(abs);
    return false;
  }

  /**
   * Small files are written concurrently: creating a file costs a trip or
   * more through the thread pool per syscall, and a layer is mostly small
   * files. Anything else waits until the writes in flight are done, and so
   * does a file whose path is, contains or lies under one in flight, so the
   * archive's order of effects is kept and no path is changed (a directory
   * replaced, a symlink put in its place) while a write below it is under way.
   */
  private inflight = new Map<string, Promise<void>>();
  private failure: { err: unknown } | null = null;

  private conflicts(rel: string): boolean {
    if (this.inflight.has(rel)) return true;
    for (const p of this.inflight.keys()) {
      if (p.startsWith(`${rel}/`) || rel.startsWith(`${p}/`)) return true;
    }
    return false;
  }

  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight.values());
    if (this.failure) throw this.failure.err;
  }

  private async spawnWrite(rel: string, h: TarHeader, data: Buffer): Promise<void> {
    while (this.inflight.size >= MAX_INFLIGHT) await Promise.race(this.inflight.values());
    if (this.failure) throw this.failure.err;
    const task = this.writeFile(rel, h, [data])
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => this.inflight.delete(rel));
    this.inflight.set(rel, task);
  }

  async apply(entry: TarEntry): Promise<void> {
    if (this.failure) throw this.failure.err;
    const h = entry.header;
    const parts = cleanPath(h.name);
    const base = parts.length > 0 ? parts[parts.length - 1]! : '';
    const plainFile = h.type === 'file' && parts.length > 0 && !base.startsWith(WHITEOUT_PREFIX);
    if (!plainFile || this.conflicts(parts.join('/'))) await this.drain();

    if (base.startsWith(WHITEOUT_PREFIX)) {
      const dirParts = parts.slice(0, -1);
      if (base === OPAQUE_MARKER) {
        await this.ensureDirs(dirParts, h.name, true);
        this.opaque.add(dirParts.join('/'));
        return;
      }
      if (base.startsWith(META_PREFIX)) return;
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') {
        throw invalid(`tar entry ${JSON.stringify(h.name)}: invalid whiteout`);
      }
      await this.ensureDirs(dirParts, h.name, true);
      await this.whiteout([...dirParts, victim].join('/'));
      return;
    }

    if (parts.length === 0) {
      if (h.type !== 'directory') throw invalid(`tar entry ${JSON.stringify(h.name)}: only a directory can stand for the layer root`);
      this.dirAttrs.set('', { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
      this.setXattrs('', h);
      return;
    }

    await this.ensureDirs(parts.slice(0, -1), h.name, true);
    const rel = parts.join('/');
    const abs = this.abs(rel);
    // Attributes of an earlier entry at this path die with it.
    this.xattrs.delete(rel);

    switch (h.type) {
      case 'directory': {
        // Creating first and looking only on a clash saves a stat per entry;
        // synchronously, since a thread-pool round trip costs more than mkdir(2).
        let made = true;
        try {
          mkdirSync(abs, 0o700);
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
          made = false;
        }
        if (!made && !(await this.prepare(rel, true))) await mkdir(abs, 0o700);
        this.safeDirs.add(rel);
        this.dirAttrs.set(rel, { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime });
        break;
      }
      case 'file': {
        if (h.size <= SMALL_FILE && !this.safeDirs.has(rel)) {
          const chunks: Buffer[] = [];
          for await (const c of entry.body) chunks.push(c);
          const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          if (!this.writeSmallSync(rel, h, data)) await this.spawnWrite(rel, h, data);
        } else {
          await this.writeFile(rel, h, entry.body);
        }
        this.size += h.size;
        break;
      }
      case 'symlink': {
        if (h.linkname === '') throw invalid(`tar entry ${JSON.stringify(h.name)}: symlink without a target`);
        // The target is only ever resolved inside the container, so it may say anything.
        let made = true;
        try {
          symlinkSync(h.linkname, abs);
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
          made = false;
        }
        if (!made) {
          await this.prepare(rel, false);
          await symlink(h.linkname, abs);
        }
        lchownSync(abs, h.uid, h.gid);
        lutimesSync(abs, h.mtime, h.mtime);
        break;
      }
      case 'hardlink': {
        const target = cleanPath(h.linkname, `hardlink ${JSON.stringify(h.name)} ->`);
        if (target.length === 0) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to the layer root`);
        const trel = target.join('/');
        if (trel === rel || trel.startsWith(`${rel}/`)) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to itself or into the path it replaces`);
        // The target's parents must be real directories of this layer, so the
        // kernel never resolves a symlink on the way to it; link(2) itself does
        // not follow a final symlink, so linking one just copies the link.
        await this.ensureDirs(target.slice(0, -1), h.name, false);
        const tst = await lstatOrNull(this.abs(trel));
        if (!tst || isWhiteoutDevice(tst)) {
          throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink target ${JSON.stringify(h.linkname)} is not in this layer`);
        }
        if (tst.isDirectory()) throw invalid(`tar entry ${JSON.stringify(h.name)}: hardlink to a directory`);
        await this.prepare(rel, false);
        await link(this.abs(trel), abs);
        break;
      }
      case 'char':
      case 'block': {
        if (h.type === 'char' && h.devmajor === 0 && h.devminor === 0) {
          // Some producers ship overlayfs' own whiteout form.
          await this.whiteout(rel);
          return;
        }
        if (!this.allowDevices) {
          throw invalid(`tar entry ${JSON.stringify(h.name)}: device nodes are not allowed in image layers`);
        }
        await this.prepare(rel, false);
        await mknod(abs, [h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)]);
        await this.setNodeAttrs(abs, h);
        break;
      }
      case 'fifo': {
        await this.prepare(rel, false);
        await mknod(abs, ['p']);
        await this.setNodeAttrs(abs, h);
        break;
      }
    }
    this.setXattrs(rel, h);
  }

  private setXattrs(rel: string, h: TarHeader): void {
    if (Object.keys(h.xattrs).length > 0) this.xattrs.set(rel, h.xattrs);
  }

  private async setNodeAttrs(abs: string, h: TarHeader): Promise<void> {
    // The node was just created by us at a verified path, so following it is moot.
    await lchown(abs, h.uid, h.gid);
    await chmod(abs, h.mode & 0o7777);
    await lutimes(abs, h.mtime, h.mtime);
  }

  /**
   * Writes a small new file with synchronous calls. A layer is mostly small
   * files, and for them the four or five round trips through libuv's thread
   * pool cost far more than the system calls themselves (measured: a 200 MB
   * Debian layer extracts in well under half the time). Returns false when
   * the path is taken, leaving the replacement to the async path.
   */
  private writeSmallSync(rel: string, h: TarHeader, data: Buffer): boolean {
    const abs = this.abs(rel);
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    const perm = h.mode & 0o777;
    let fd: number;
    try {
      fd = openSync(abs, flags, perm);
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false;
      throw err;
    }
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      if (h.uid !== this.ownIds.uid || h.gid !== this.ownIds.gid || this.ownIds.setgidRoot) fchownSync(fd, h.uid, h.gid);
      if ((h.mode & 0o7000) !== 0 || this.ownIds.umask === null || (perm & this.ownIds.umask) !== 0) fchmodSync(fd, h.mode & 0o7777);
      futimesSync(fd, h.mtime, h.mtime);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  private async writeFile(rel: string, h: TarHeader, body: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<void> {
    const abs = this.abs(rel);
    // O_EXCL never follows a symlink at the final component; a clash means an
    // earlier entry of this layer is being replaced.
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
    const perm = h.mode & 0o777;
    const fh = await open(abs, flags, perm).catch(async (err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
      await this.prepare(rel, false);
      return open(abs, flags, perm);
    });
    try {
      // Small writes are batched: a layer is mostly small files arriving in
      // many small chunks, and each write is a trip through the thread pool.
      let pending: Buffer[] = [];
      let pendingLen = 0;
      const flush = async (): Promise<void> => {
        if (pendingLen === 0) return;
        const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLen);
        pending = [];
        pendingLen = 0;
        let off = 0;
        while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
      };
      for await (const chunk of body) {
        pending.push(chunk);
        pendingLen += chunk.length;
        if (pendingLen >= 1 << 20) await flush();
      }
      await flush();
      // Each call saved matters with thousands of files: a new file already
      // has our ids (unless a set-gid directory says otherwise) and the
      // permission bits asked of open(2) minus the umask.
      if (h.uid !== this.ownIds.uid || h.gid !== this.ownIds.gid || this.ownIds.setgidRoot) await fh.chown(h.uid, h.gid);
      // chown clears set-id bits, so the mode comes after it.
      if ((h.mode & 0o7000) !== 0 || this.ownIds.umask === null || (perm & this.ownIds.umask) !== 0) await fh.chmod(h.mode & 0o7777);
      await fh.utimes(h.mtime, h.mtime);
    } finally {
      await fh.close();
    }
  }

  /**
   * Marks `rel` as deleted from the layers below. Whiteouts only ever hide
   * lower layers: an entry of this same layer at that path wins, whichever
   * comes first in the archive.
   */
  private async whiteout(rel: string): Promise<void> {
    const abs = this.abs(rel);
    if (await lstatOrNull(abs)) return;
    // One device node is made per layer and hard-linked for every whiteout,
    // as overlayfs does itself: a process per whiteout would be far slower.
    for (;;) {
      if (this.whiteoutTemplate === null) {
        const t = this.abs(`${WHITEOUT_TEMPLATE}.${this.whiteoutTemplateN++}`);
        await rm(t, { force: true });
        await mknod(t, ['c', '0', '0']);
        this.whiteoutTemplate = t;
      }
      try {
        await link(this.whiteoutTemplate, abs);
        return;
      } catch (err) {
        if (!isErrno(err, 'EMLINK')) throw err;
        await unlink(this.whiteoutTemplate);
        this.whiteoutTemplate = null;
      }
    }
  }

  async finish(): Promise<void> {
    await this.drain();
    if (this.whiteoutTemplate !== null) {
      await unlink(this.whiteoutTemplate);
      this.whiteoutTemplate = null;
    }
    await this.applyXattrs();
    // Deepest first, so setting a parent's times is the last change to it.
    const dirs = [...this.dirAttrs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, a] of dirs) {
      if (!this.parentSafe(rel)) continue;
      const fh = await open(this.abs(rel), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
      try {
        await fh.chown(a.uid, a.gid);
        await fh.chmod(a.mode & 0o7777);
        await fh.utimes(a.mtime, a.mtime);
      } finally {
        await fh.close();
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
  private async applyXattrs(): Promise<void> {
    const opaque: string[] = [];
    for (const rel of this.opaque) {
      if (!this.parentSafe(rel) || !this.safeDirs.has(rel)) continue;
      opaque.push(`# file: ${quoteDumpPath(this.abs(rel))}\n${OPAQUE_XATTR}=0s${Buffer.from('y').toString('base64')}\n`);
    }
    if (opaque.length > 0) {
      const r = await setfattrRestore(opaque.join('\n'));
      if (r.code !== 0) throw systemError(`cannot mark opaque directories: ${r.stderr.trim()}`);
    }
    const others: string[] = [];
    for (const [rel, attrs] of this.xattrs) {
      if (!this.parentSafe(rel)) continue;
      const st = await lstatOrNull(this.abs(rel));
      if (!st || isWhiteoutDevice(st)) continue;
      const lines = Object.entries(attrs)
        .filter(([k]) => /^[\x21-\x7e]+$/.test(k) && !isOverlayXattr(k))
        .map(([k, v]) => `${k}=0s${v.toString('base64')}\n`);
      if (lines.length > 0) others.push(`# file: ${quoteDumpPath(this.abs(rel))}\n${lines.join('')}`);
    }
    if (others.length > 0) await setfattrRestore(others.join('\n'));
  }
}

async function setfattrRestore(dump: string): Promise<{ code: number; stderr: string }> {
  try {
    // -h: never follow a symlink named in the dump; its parents were verified.
    return await runFile('setfattr', ['-h', '--restore=-'], dump);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw systemError('setfattr not found: install the attr package', err);
    throw err;
  }
}

const depth = (rel: string): number => (rel === '' ? 0 : rel.split('/').length);

/**
 * Extracts an uncompressed layer tar into `root` (created if missing; meant to
 * be a fresh, empty snapshot directory). Hostile entries are refused and
 * nothing is ever written outside `root`; on failure the caller removes
 * `root`. Returns the total size of the regular files written.
 */
export async function applyLayer(root: string, tar: ByteSource, opts: ApplyLayerOptions = {}): Promise<{ size: number }> {
  await mkdir(root, { recursive: true });
  const st = await lstat(root);
  if (!st.isDirectory()) throw invalid(`layer root ${root} is not a directory`);
  const applier = new LayerApplier(root, opts, {
    uid: process.geteuid?.() ?? -1,
    gid: process.getegid?.() ?? -1,
    setgidRoot: (st.mode & 0o2000) !== 0,
    umask: await currentUmask(),
  });
  try {
    for await (const entry of readTar(tar)) await applier.apply(entry);
    await applier.finish();
  } catch (err) {
    // No write may still be running when the caller starts removing `root`.
    await applier.drain().catch(() => {});
    if (err instanceof BerthError) throw err;
    const e = err as { code?: string; message?: string };
    if (e.code === 'ERR_INVALID_ARG_VALUE' || e.code === 'ERR_INVALID_ARG_TYPE') throw invalid(`invalid layer: ${e.message ?? String(err)}`);
    throw systemError(`applying layer: ${e.message ?? String(err)}`, err);
  }
  return { size: applier.size };
}

// ---------------------------------------------------------------------------
// Producing tars from directories

/** Linux's dev_t layout: the major in bits 8-19 and 32-63, the minor in bits 0-7 and 20-31 (and up). */
function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * Reads all extended attributes below `dir` with a single getfattr run.
 * Returns a map from path relative to `dir` ('' for dir itself).
 */
async function readXattrs(dir: string, required: boolean): Promise<Map<string, Record<string, Buffer>>> {
  const out = new Map<string, Record<string, Buffer>>();
  // getfattr names files by extending the path it was given, so give it the
  // same canonical form the names are matched against below.
  const top = resolve(dir);
  let r: { code: number; stdout: Buffer; stderr: string };
  try {
    r = await runFile('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', top]);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) {
      if (required) throw systemError('getfattr not found: install the attr package', err);
      return out;
    }
    throw err;
  }
  // A file that vanished mid-walk makes getfattr complain but the rest is good.
  if (r.code !== 0 && r.stdout.length === 0 && r.stderr.trim() !== '') {
    throw systemError(`getfattr ${dir}: ${r.stderr.trim()}`);
  }
  const under = top.endsWith('/') ? top : `${top}/`;
  let current: Record<string, Buffer> | null = null;
  for (const line of r.stdout.toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unquoteDumpPath(line.slice('# file: '.length));
      let rel: string | null = null;
      if (path === top) rel = '';
      else if (path.startsWith(under)) rel = path.slice(under.length);
      current = rel === null ? null : {};
      if (current && rel !== null) out.set(rel, current);
      continue;
    }
    if (!current || line === '') continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq);
    const raw = eq < 0 ? '' : line.slice(eq + 1);
    let value: Buffer;
    if (raw.startsWith('0s')) value = Buffer.from(raw.slice(2), 'base64');
    else if (raw.startsWith('0x')) value = Buffer.from(raw.slice(2), 'hex');
    else if (raw.startsWith('"') && raw.endsWith('"')) value = Buffer.from(unquoteDumpPath(raw.slice(1, -1)));
    else value = Buffer.from(raw);
    current[key] = value;
  }
  return out;
}

/** Attributes worth carrying in an image: not overlayfs internals, not the host's labels or ACLs. */
function keepXattr(name: string): boolean {
  if (isOverlayXattr(name)) return false;
  if (name === 'security.selinux') return false;
  if (name.startsWith('system.')) return false;
  return true;
}

interface WalkOptions {
  /** Treat `dir` as an overlayfs upper directory: emit whiteouts in layer form. */
  overlayUpper: boolean;
}

async function* walkTree(dir: string, opts: WalkOptions): AsyncGenerator<Buffer> {
  const allXattrs = await readXattrs(dir, opts.overlayUpper);
  const links = new Map<string, string>();

  const xattrsOf = (rel: string): Record<string, Buffer> | undefined => {
    const all = allXattrs.get(rel);
    if (!all) return undefined;
    const kept: Record<string, Buffer> = {};
    let any = false;
    for (const [k, v] of Object.entries(all)) {
      if (keepXattr(k)) {
        kept[k] = v;
        any = true;
      }
    }
    return any ? kept : undefined;
  };

  async function* visit(absDir: string, relDir: string): AsyncGenerator<Buffer> {
    let names: string[];
    try {
      names = await readdir(absDir);
    } catch (err) {
      // A directory removed while we walk (a running container) is simply gone.
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw err;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const abs = join(absDir, name);
      const rel = relDir ? `${relDir}/${name}` : name;
      const st = await lstat(abs, { bigint: true }).catch((err: unknown) => {
        if (isErrno(err, 'ENOENT')) return null;
        throw err;
      });
      if (!st) continue;
      const base: TarHeaderInput = {
        name: rel,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: Number(st.mtimeMs),
      };
      const xattrs = xattrsOf(rel);
      if (xattrs) base.xattrs = xattrs;

      if (st.isCharacterDevice() && st.rdev === 0n && opts.overlayUpper) {
        const dirPart = relDir ? `${relDir}/` : '';
        yield* encodeEntry({ name: `${dirPart}${WHITEOUT_PREFIX}${name}`, type: 'file', mode: 0o600, uid: base.uid, gid: base.gid, mtime: base.mtime, size: 0 });
        continue;
      }
      if (st.isDirectory()) {
        yield* encodeEntry({ ...base, type: 'directory' });
        if (opts.overlayUpper && allXattrs.get(rel)?.[OPAQUE_XATTR]?.toString() === 'y') {
          yield* encodeEntry({ name: `${rel}/${OPAQUE_MARKER}`, type: 'file', mode: 0o600, uid: base.uid, gid: base.gid, mtime: base.mtime, size: 0 });
        }
        yield* visit(abs, rel);
        continue;
      }
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = links.get(key);
        if (first !== undefined) {
          yield* encodeEntry({ ...base, type: 'hardlink', linkname: first });
          continue;
        }
        links.set(key, rel);
      }
      if (st.isFile()) {
        yield* encodeEntry({ ...base, type: 'file', size: Number(st.size) }, abs);
      } else if (st.isSymbolicLink()) {
        yield* encodeEntry({ ...base, type: 'symlink', linkname: await readlink(abs) });
      } else if (st.isFIFO()) {
        yield* encodeEntry({ ...base, type: 'fifo' });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = splitDev(st.rdev);
        yield* encodeEntry({ ...base, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor });
      }
      // Sockets have no tar form; like tar, leave them out.
    }
  }

  yield* visit(dir, '');
  yield TAR_TRAILER;
}

/**
 * A layer tar from an overlayfs upper directory: whiteout devices become
 * `.wh.<name>` entries and opaque directories get a `.wh..wh..opq` entry.
 * Entries come in name order, parents first, so the output is reproducible.
 */
export function diffLayer(upper: string): AsyncGenerator<Buffer> {
  return walkTree(upper, { overlayUpper: true });
}

/** A plain tar of a whole directory tree (export, save of a flattened rootfs). */
export function tarTree(dir: string): AsyncGenerator<Buffer> {
  return walkTree(dir, { overlayUpper: false });
}

// ---------------------------------------------------------------------------
// Compression

/**
 * Decompresses a layer or archive stream, recognising gzip and zstd by their
 * magic numbers; anything else passes through untouched as a plain tar.
 */
export async function* decompressStream(input: ByteSource): AsyncGenerator<Buffer> {
  const it = (input as AsyncIterable<Buffer | Uint8Array | string>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLen = 0;
  let done = false;
  try {
    while (headLen < 4) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      head.push(b);
      headLen += b.length;
    }
  } catch (err) {
    await it.return?.();
    throw err;
  }
  const first = Buffer.concat(head);
  let sourceError: unknown = undefined;
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (first.length > 0) yield first;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      }
    } catch (err) {
      sourceError = err;
      throw err;
    } finally {
      await it.return?.();
    }
  }
  let decoder: NodeJS.ReadWriteStream | null = null;
  let format = '';
  if (first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) {
    decoder = createGunzip({ chunkSize: DECODE_CHUNK });
    format = 'gzip';
  } else if (first.length >= 4 && first.readUInt32LE(0) === 0xfd2fb528) {
    decoder = createZstdDecompress({ chunkSize: DECODE_CHUNK });
    format = 'zstd';
  }
  if (!decoder) {
    yield* all();
    return;
  }
  const d = decoder;
  pipeline(Readable.from(all()), d, () => {
    // Errors surface through the iteration of `d` below.
  });
  try {
    for await (const chunk of d) yield chunk as Buffer;
  } catch (err) {
    // Failures of the source are the source's business; a decoder failure
    // means the data itself is corrupt.
    if (err === sourceError || err instanceof BerthError) throw err;
    throw invalid(`corrupt ${format} stream: ${(err as Error).message ?? String(err)}`);
  }
}
