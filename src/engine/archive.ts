/**
 * The container filesystem service behind `cp` (HEAD/GET/PUT
 * /containers/{id}/archive), `export` and `diff`.
 *
 * A running container's merged root is the overlay its monitor mounted at
 * containers/<id>/rootfs. A created or stopped container has none, so one
 * is mounted here for the duration of the operation (shared by concurrent
 * operations, refcounted) under <data-root>/tmp, and the container service
 * holds back start and removal until it is released. Every path is then
 * resolved and every file touched through fs-path.ts, never by host path.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, rmdir } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import type { DaemonConfig } from '../daemon/config.ts';
import type { ContainerService } from './containers.ts';
import type { ContainerRecord } from './container-types.ts';
import type { EventBus } from './events.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { ScopedFs, goFileMode, asksForContents } from './fs-path.ts';
import type { FsMount, Located } from './fs-path.ts';
import { packLocated, packTree, unpackInto } from './archive-tar.ts';
import { resolveUser } from './rootfs.ts';
import { decompressStream } from '../image/layer.ts';
import type { ByteSource } from '../util/tar.ts';
import { BerthError, invalid, isErrno, notFound, systemError } from '../util/errors.ts';
import { ensureDir } from '../util/fsutil.ts';
import { log } from '../util/log.ts';

/** docker's X-Docker-Container-Path-Stat. */
export interface ContainerPathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

/**
 * The mounts a container sees, for cp: its network files and whatever the
 * record lists in `Mounts` (docker's inspect shape: Source, Destination,
 * RW), which is where volumes and binds appear once they are set up. This
 * is the one place to extend when other kinds of mounts exist.
 */
export function containerMountTable(rec: ContainerRecord): FsMount[] {
  const out: FsMount[] = [];
  for (const m of rec.Mounts ?? []) {
    const source = typeof m.Source === 'string' ? m.Source : '';
    const destination = typeof m.Destination === 'string' ? m.Destination : '';
    if (source && destination && existsSync(source)) out.push({ source, destination, readOnly: m.RW === false });
  }
  const own = new Set(out.map((m) => posix.resolve('/', m.destination)));
  const files: Array<[string, string]> = [['/etc/resolv.conf', rec.ResolvConfPath], ['/etc/hostname', rec.HostnamePath], ['/etc/hosts', rec.HostsPath]];
  for (const [destination, source] of files) {
    if (source && !own.has(destination) && existsSync(source)) out.push({ source, destination, readOnly: false });
  }
  return out;
}

/** Answer of a docker-style "not found" for a path in a container. */
function fileNotFound(path: string, ref: string): BerthError {
  return notFound(`Could not find the file ${path} in container ${ref}`);
}

/** docker's absPath: the path made absolute, keeping a trailing `/` or `/.`. */
function absPath(path: string): string {
  let p = posix.join('/', path);
  if (path.endsWith('/.') || path === '.') p = p === '/' ? '/.' : `${p}/.`;
  else if (path.endsWith('/') && !p.endsWith('/')) p += '/';
  return p;
}

function basename(p: string): string {
  const b = posix.basename(p);
  if (b === '' || p === '/') return '/';
  return b;
}

interface Access {
  fs: ScopedFs;
  rec: ContainerRecord;
  release: () => Promise<void>;
}

interface TempMount {
  users: number;
  target: string;
  ready: Promise<void>;
  closing?: Promise<void>;
}

export class ArchiveService {
  private readonly cfg: DaemonConfig;
  private readonly containers: ContainerService;
  private readonly layers: LayerStore;
  private readonly events: EventBus;
  private readonly temp = new Map<string, TempMount>();

  constructor(cfg: DaemonConfig, containers: ContainerService, layers: LayerStore, events: EventBus) {
    this.cfg = cfg;
    this.containers = containers;
    this.layers = layers;
    this.events = events;
  }

  private get tmpRoot(): string {
    return join(this.cfg.dataRoot, 'tmp');
  }

  /** Mounts a berthd killed mid-operation left behind. */
  async init(): Promise<void> {
    const prefix = join(this.tmpRoot, 'rootfs-');
    let mounts: string[] = [];
    try {
      mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(prefix));
    } catch {
      return;
    }
    for (const m of mounts) {
      await run('umount', ['-l', m]).catch(() => undefined);
      await rmdir(m).catch(() => undefined);
    }
  }

  /**
   * Opens a container's filesystem: the running container's mount, or a
   * temporary one. With `mounts`, its volumes and network files are seen
   * where the container sees them.
   */
  private async access(ref: string, opts: { mounts: boolean }): Promise<Access> {
    const claim = await this.containers.claimFilesystem(ref);
    const rec = claim.rec;
    try {
      let root: string;
      if (claim.running) {
        root = join(this.containers.store.dir(rec.Id), 'rootfs');
        if (!(await isMountPoint(root))) throw new BerthError('Conflict', `container ${rec.Id} is running but its root filesystem is not mounted`);
      } else {
        root = await this.mountTemp(rec);
      }
      let fs: ScopedFs;
      try {
        fs = await ScopedFs.open(root, { mounts: opts.mounts ? containerMountTable(rec) : [], readOnly: rec.HostConfig.ReadonlyRootfs });
      } catch (err) {
        if (!claim.running) await this.unmountTemp(rec.Id);
        throw err;
      }
      return {
        fs,
        rec,
        release: async () => {
          await fs.close();
          if (!claim.running) await this.unmountTemp(rec.Id);
          claim.release();
        },
      };
    } catch (err) {
      claim.release();
      throw err;
    }
  }

  private async mountTemp(rec: ContainerRecord): Promise<string> {
    for (;;) {
      const cur = this.temp.get(rec.Id);
      if (cur?.closing) {
        await cur.closing;
        continue;
      }
      if (cur) {
        cur.users++;
        try {
          await cur.ready;
        } catch (err) {
          cur.users--;
          throw err;
        }
        return cur.target;
      }
      const target = join(this.tmpRoot, `rootfs-${rec.Id}`);
      const entry: TempMount = { users: 1, target, ready: this.overlayMount(rec, target) };
      this.temp.set(rec.Id, entry);
      try {
        await entry.ready;
      } catch (err) {
        this.temp.delete(rec.Id);
        throw err;
      }
      return target;
    }
  }

  private async unmountTemp(id: string): Promise<void> {
    const e = this.temp.get(id);
    if (!e || --e.users > 0) return;
    e.closing = (async () => {
      await run('umount', [e.target]).catch(() => run('umount', ['-l', e.target]).catch(() => undefined));
      await rmdir(e.target).catch(() => undefined);
    })().finally(() => {
      if (this.temp.get(id) === e) this.temp.delete(id);
    });
    await e.closing;
  }

  /** The container's overlay, as its monitor would mount it, at `target`. */
  private async overlayMount(rec: ContainerRecord, target: string): Promise<void> {
    await ensureDir(this.tmpRoot, 0o700);
    await mkdir(target, { mode: 0o700 }).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
    const dir = this.containers.store.dir(rec.Id);
    let lowers = rec.berth.layers.map((c) => this.layers.diffDir(c)).reverse();
    if (lowers.length === 0) {
      const empty = join(this.layers.root, 'empty');
      await ensureDir(empty, 0o755);
      lowers = [empty];
    }
    // Paths relative to the data root keep the options within a page for deep images.
    const base = this.cfg.dataRoot;
    const rel = (p: string): string => relative(base, p);
    const opts = `lowerdir=${lowers.map(rel).join(':')},upperdir=${rel(join(dir, 'upper'))},workdir=${rel(join(dir, 'work'))},index=off`;
    try {
      await run('mount', ['-t', 'overlay', 'overlay', '-o', opts, target], base);
    } catch (err) {
      await rmdir(target).catch(() => undefined);
      throw systemError(`mounting the filesystem of container ${rec.Id}: ${(err as Error).message}`, err);
    }
  }

  // ------------------------------------------------------------ stat / get

  private async statLocated(fs: ScopedFs, loc: Located, abs: string): Promise<ContainerPathStat> {
    const st = loc.dir ? await loc.dir.fh.stat() : await lstat(loc.ref);
    let linkTarget = '';
    if (st.isSymbolicLink()) linkTarget = await fs.realPath(abs);
    return { name: basename(abs), size: st.size, mode: goFileMode(st.mode), mtime: st.mtime.toISOString(), linkTarget };
  }

  private async locate(fs: ScopedFs, path: string, ref: string): Promise<Located> {
    try {
      const loc = await fs.resolve(absPath(path));
      if (asksForContents(path) && !loc.dir) throw invalid(`${absPath(path)}: not a directory`);
      return loc;
    } catch (err) {
      if (err instanceof BerthError && err.kind === 'NotFound') throw fileNotFound(path, ref);
      throw err;
    }
  }

  async stat(ref: string, path: string): Promise<ContainerPathStat> {
    if (!path) throw invalid('path is required');
    const a = await this.access(ref, { mounts: true });
    try {
      const loc = await this.locate(a.fs, path, ref);
      try {
        return await this.statLocated(a.fs, loc, absPath(path));
      } catch (err) {
        if (isErrno(err, 'ENOENT')) throw fileNotFound(path, ref);
        throw err;
      }
    } finally {
      await a.release();
    }
  }

  /**
   * A tar of a path: the stat is known before the first byte, so failures
   * to find it are proper HTTP errors; the filesystem stays claimed until
   * the stream ends or is abandoned.
   */
  async get(ref: string, path: string): Promise<{ stat: ContainerPathStat; body: AsyncGenerator<Buffer> }> {
    if (!path) throw invalid('path is required');
    const a = await this.access(ref, { mounts: true });
    let handedOver = false;
    try {
      const abs = absPath(path);
      const loc = await this.locate(a.fs, path, ref);
      let stat: ContainerPathStat;
      try {
        stat = await this.statLocated(a.fs, loc, abs);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) throw fileNotFound(path, ref);
        throw err;
      }
      // Entries are named after the path asked for: "etc/..." for /etc,
      // "./..." for /etc/. , the link's own name for a final symlink.
      // The root is archived as "/" and "/bin", ..., as docker names it.
      const base = basename(abs);
      const events = this.events;
      const rec = a.rec;
      async function* body(): AsyncGenerator<Buffer> {
        try {
          yield* packLocated(a.fs, loc, base);
          events.emit('container', 'archive-path', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
        } finally {
          await a.release();
        }
      }
      handedOver = true;
      return { stat, body: body() };
    } finally {
      if (!handedOver) await a.release();
    }
  }

  // ------------------------------------------------------------ put

  /** Extracts a tar (plain, gzip or zstd) into a directory of the container. */
  async put(ref: string, path: string, tar: ByteSource, opts: { noOverwriteDirNonDir: boolean; copyUIDGID: boolean }): Promise<void> {
    if (!path) throw invalid('path is required');
    const a = await this.access(ref, { mounts: true });
    try {
      let loc: Located;
      try {
        loc = await a.fs.resolve(absPath(path), { followFinal: true });
      } catch (err) {
        if (err instanceof BerthError && err.kind === 'NotFound') throw fileNotFound(path, ref);
        throw err;
      }
      const dest = await a.fs.openLocated(loc);
      if (!dest) throw invalid('extraction point is not a directory');
      let owner: 'archive' | { uid: number; gid: number } = 'archive';
      if (opts.copyUIDGID && a.rec.Config.User) {
        const dirs = [join(this.containers.store.dir(a.rec.Id), 'upper'), ...a.rec.berth.layers.map((c) => this.layers.diffDir(c)).reverse()];
        const u = await resolveUser(dirs, a.rec.Config.User);
        owner = { uid: u.uid, gid: u.gid };
      }
      await unpackInto(a.fs, dest, decompressStream(tar), { noOverwriteDirNonDir: opts.noOverwriteDirNonDir, owner, refuseDevices: true });
      this.events.emit('container', 'extract-to-dir', a.rec.Id, { image: a.rec.Config.Image, name: a.rec.Name.slice(1) });
    } finally {
      await a.release();
    }
  }

  // ------------------------------------------------------------ export

  /** The container's whole filesystem (without its mounts) as a tar. */
  async export(ref: string): Promise<AsyncGenerator<Buffer>> {
    const a = await this.access(ref, { mounts: false });
    const events = this.events;
    async function* body(): AsyncGenerator<Buffer> {
      try {
        yield* packTree(a.fs);
        events.emit('container', 'export', a.rec.Id, { image: a.rec.Config.Image, name: a.rec.Name.slice(1) });
      } finally {
        await a.release();
      }
    }
    return body();
  }
}

async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([lstat(dir), lstat(join(dir, '..'))]);
    return a.dev !== b.dev;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd }, (err, _out, stderr) => {
      if (err) {
        log.debug(`${cmd} failed`, { args, stderr: String(stderr) });
        reject(new Error(String(stderr).trim() || err.message));
      } else resolve();
    });
  });
}
