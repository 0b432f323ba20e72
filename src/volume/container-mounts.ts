/**
 * A container's mounts from create to removal:
 *
 * - create: `plan` checks every request (VolumesFrom, Binds, Mounts, the
 *   image's and the request's Volumes, Tmpfs) and decides what goes where,
 *   touching nothing; `apply` then creates named and anonymous volumes,
 *   missing `-v` bind sources, pre-populates empty volumes from the image,
 *   and fills the record's `Mounts`.
 * - start: `ociMounts` turns them into OCI mounts (volumes with driver
 *   options get their host mount), resolving subpaths inside the volume.
 * - stop: `release`; remove: `removed` (with `-v` or `--rm`: the anonymous
 *   volumes go too).
 */
import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { release } from 'node:os';
import type { ContainerRecord } from '../engine/container-types.ts';
import type { OciMount } from '../runtime/oci-spec.ts';
import { BerthError, invalid, notFound } from '../util/errors.ts';
import { log } from '../util/log.ts';
import { mergeTmpfsOptions, mountPoint, parseBind, parseMountSpec, parseTmpfsOptions, parseVolumesFrom } from './mount-spec.ts';
import type { BerthMount } from './mount-spec.ts';
import type { VolumeService } from './volume-service.ts';
import { prepopulate } from './copy-up.ts';
import { resolveInside } from './safe-path.ts';
import { isMountPoint } from './volume-store.ts';
import { removeTree } from '../util/fsutil.ts';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _out, stderr) => {
      if (err) reject(new Error(String(stderr).trim() || err.message));
      else resolve();
    });
  });
}

const TMPFS_DEFAULTS = ['noexec', 'nosuid', 'nodev'];

export interface MountPlan {
  mounts: BerthMount[];
  /** Volumes `apply` created, removed again if the create fails later. */
  created: string[];
}

/** What the start needs: the OCI mounts and, for shared or slave binds, the root's propagation. */
export interface StartMounts {
  mounts: OciMount[];
  rootfsPropagation?: string;
  /** Destinations the user mounted over (berth's own /etc files step aside). */
  destinations: Set<string>;
}

function depth(p: string): number {
  return p.split('/').filter(Boolean).length;
}

/** The mount (from /proc/self/mountinfo) a host path lives on, with its propagation fields. */
function mountInfoFor(path: string): { mountPoint: string; optional: string } | undefined {
  let best: { mountPoint: string; optional: string } | undefined;
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      if (f.length < 7) continue;
      const mp = f[4]!.replace(/\\040/g, ' ');
      const sep = f.indexOf('-');
      const optional = f.slice(6, sep).join(' ');
      if ((path === mp || path.startsWith(mp === '/' ? '/' : `${mp}/`)) && (!best || mp.length >= best.mountPoint.length)) best = { mountPoint: mp, optional };
    }
  } catch {
    return undefined;
  }
  return best;
}

/**
 * Read-only binds are recursively read-only (runc's `rro`, mount_setattr
 * since Linux 5.12) unless the bind is not recursive or the user asked for
 * the top mount only, as docker does from API 1.44.
 */
function readOnlyOption(m: BerthMount): string {
  if (!m.readOnly) return 'rw';
  if (m.nonRecursive || m.readOnlyNonRecursive || !RRO_SUPPORTED) return 'ro';
  return 'rro';
}

const RRO_SUPPORTED = (() => {
  const [maj = 0, min = 0] = release().split('.').map((x) => parseInt(x, 10));
  return maj > 5 || (maj === 5 && min >= 12);
})();

export class ContainerMounts {
  private readonly volumes: VolumeService;
  private readonly find: (ref: string) => ContainerRecord | undefined;
  private readonly tmpRoot: string;
  private readonly emptyDir: () => Promise<string>;
  /** Where volume subpaths are pinned for runc: `<root>/<container-id>/<n>`. */
  private readonly pinRoot: string;
  /** Containers whose volumes are mounted (started and not yet released). */
  private readonly active = new Set<string>();

  constructor(opts: { volumes: VolumeService; find: (ref: string) => ContainerRecord | undefined; tmpRoot: string; pinRoot: string; emptyDir: () => Promise<string> }) {
    this.volumes = opts.volumes;
    this.find = opts.find;
    this.tmpRoot = opts.tmpRoot;
    this.pinRoot = opts.pinRoot;
    this.emptyDir = opts.emptyDir;
  }

  /** Validate and lay out the container's mounts; nothing is created yet. */
  plan(rec: ContainerRecord): MountPlan {
    const hc = rec.HostConfig;
    const byDest = new Map<string, BerthMount>();
    for (const spec of hc.VolumesFrom ?? []) {
      const { container, mode } = parseVolumesFrom(spec);
      const other = this.find(container);
      if (!other) throw invalid(`No such container: ${container}`);
      for (const m of other.berth.mounts ?? []) {
        if (m.type === 'tmpfs') continue;
        byDest.set(m.destination, { ...m, readOnly: mode === 'ro' ? true : mode === 'rw' ? false : m.readOnly, copyData: false });
      }
    }
    const explicit = new Set<string>();
    const take = (m: BerthMount) => {
      if (explicit.has(m.destination)) throw invalid(`Duplicate mount point: ${m.destination}`);
      explicit.add(m.destination);
      // A named local volume shows mode `z` when the user gave none, as docker's does.
      if (m.type === 'volume' && m.mode === '') m.mode = 'z';
      byDest.set(m.destination, m);
    };
    for (const b of hc.Binds ?? []) {
      if (typeof b !== 'string') throw invalid('invalid Binds: must be a list of strings');
      const m = parseBind(b);
      if (m.type === 'bind') m.createSource = true;
      take(m);
    }
    for (const spec of hc.Mounts ?? []) {
      const m = parseMountSpec(spec);
      if (m.type === 'bind' && spec.BindOptions?.CreateMountpoint) m.createSource = true;
      take(m);
    }
    for (const dest of Object.keys(rec.Config.Volumes ?? {})) {
      const m = parseBind(dest);
      if (m.type !== 'volume' || m.name) throw invalid(`invalid volume specification: '${dest}'`);
      if (byDest.has(m.destination)) continue;
      m.mode = '';
      byDest.set(m.destination, m);
    }
    for (const [dest, opts] of Object.entries(hc.Tmpfs ?? {})) {
      const t = parseTmpfsOptions(dest, opts);
      if (explicit.has(t.destination)) throw invalid(`Duplicate mount point: ${t.destination}`);
      // A --tmpfs replaces an image volume or an inherited mount at the same place.
      byDest.delete(t.destination);
    }
    const driver = hc.VolumeDriver;
    if (driver && driver !== 'local' && [...byDest.values()].some((m) => m.type === 'volume' && !(m.name && this.volumes.store.has(m.name)))) {
      throw notFound(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    }
    return { mounts: [...byDest.values()].sort((a, b) => (a.destination < b.destination ? -1 : 1)), created: [] };
  }

  /**
   * Create what the plan needs and record it: volumes, `-v` bind sources,
   * pre-populated data. `layers` are the image's layer dirs, topmost first.
   */
  async apply(rec: ContainerRecord, plan: MountPlan, layers: string[]): Promise<void> {
    const store = this.volumes.store;
    for (const m of plan.mounts) {
      if (m.type === 'volume') {
        if (!m.name || !store.has(m.name)) {
          const v = await store.create({ Name: m.name, DriverOpts: m.volumeOptions?.options, Labels: m.volumeOptions?.labels ? { ...m.volumeOptions.labels } : undefined }, m.anonymous);
          plan.created.push(v.Name);
          m.name = v.Name;
        }
        m.source = store.dataDir(m.name);
        delete m.volumeOptions;
      } else if (m.type === 'bind' && m.createSource && !existsSync(m.source)) {
        await mkdir(m.source, { recursive: true, mode: 0o755 });
      }
    }
    for (const m of plan.mounts) {
      if (m.type !== 'volume' || !m.copyData || m.subpath) continue;
      const holder = `create:${rec.Id}`;
      const dir = await store.acquire(m.name!, holder);
      try {
        await prepopulate({ volumeDir: dir, destination: m.destination, layers, emptyDir: await this.emptyDir(), tmpRoot: this.tmpRoot });
      } finally {
        await store.release(m.name!, holder);
      }
    }
    rec.berth.mounts = plan.mounts;
    rec.Mounts = plan.mounts.map(mountPoint);
  }

  /** A create failed after `apply`: the volumes it made go again. */
  async undo(plan: MountPlan): Promise<void> {
    for (const name of plan.created) {
      await this.volumes.store.remove(name).catch((err: unknown) => log.warn('removing volume of a failed create', { name, error: String(err) }));
    }
  }

  /** The container's mounts as OCI mounts, volume mounts made ready on the host. */
  async ociMounts(rec: ContainerRecord): Promise<StartMounts> {
    const out: OciMount[] = [];
    const destinations = new Set<string>();
    let propagation: string | undefined;
    const acquired: string[] = [];
    let pins = 0;
    const mounted: BerthMount[] = [];
    try {
      for (const m of rec.berth.mounts ?? []) {
        destinations.add(m.destination);
        if (m.type === 'tmpfs') {
          out.push({ destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: mergeTmpfsOptions(TMPFS_DEFAULTS, [...(m.tmpfsOptions ?? []), ...(m.readOnly ? ['ro'] : [])]) });
          continue;
        }
        let source = m.source;
        if (m.type === 'volume') {
          if (!this.volumes.store.has(m.name!)) throw notFound(`get ${m.name}: no such volume`);
          source = await this.volumes.store.acquire(m.name!, rec.Id);
          acquired.push(m.name!);
          if (m.subpath) source = await this.subpath(rec.Id, pins++, m.name!, source, m.subpath);
        } else if (!existsSync(source)) {
          if (!m.createSource) throw invalid(`invalid mount config for type "bind": bind source path does not exist: ${source}`);
          await mkdir(source, { recursive: true, mode: 0o755 });
        }
        if (m.readOnlyForceRecursive && !RRO_SUPPORTED) throw invalid(`invalid mount config for type "bind": recursive read-only mounts need Linux 5.12 or later (${m.destination})`);
        const prop = m.type === 'bind' ? m.propagation || 'rprivate' : 'rprivate';
        if (/shared$/.test(prop)) {
          const info = mountInfoFor(source);
          if (info && !/shared:/.test(info.optional)) throw invalid(`path ${source} is mounted on ${info.mountPoint} but it is not a shared mount`);
          propagation = 'rshared';
        } else if (/slave$/.test(prop)) {
          const info = mountInfoFor(source);
          if (info && !/shared:|master:/.test(info.optional)) throw invalid(`path ${source} is mounted on ${info.mountPoint} but it is not a shared or slave mount`);
          propagation ??= 'rslave';
        }
        out.push({ destination: m.destination, type: 'bind', source, options: [m.nonRecursive ? 'bind' : 'rbind', prop, readOnlyOption(m)] });
        if (m.type === 'volume') mounted.push(m);
      }
      for (const [dest, opts] of Object.entries(rec.HostConfig.Tmpfs ?? {})) {
        const t = parseTmpfsOptions(dest, opts);
        destinations.add(t.destination);
        out.push({ destination: t.destination, type: 'tmpfs', source: 'tmpfs', options: mergeTmpfsOptions(TMPFS_DEFAULTS, t.tmpfsOptions ?? []) });
      }
    } catch (err) {
      await this.unpin(rec.Id);
      for (const name of acquired) await this.volumes.store.release(name, rec.Id);
      throw err;
    }
    this.active.add(rec.Id);
    for (const m of mounted) {
      this.volumes.store.event('mount', m.name!, { container: rec.Id, destination: m.destination, propagation: '', 'read/write': String(!m.readOnly) });
    }
    // Parents before children, so a mount inside another mount lands on top of it.
    out.sort((a, b) => depth(a.destination) - depth(b.destination));
    return { mounts: out, destinations, ...(propagation ? { rootfsPropagation: propagation } : {}) };
  }

  /**
   * A volume subpath resolved inside the volume; it must exist and must not
   * lead out. A container sharing the volume could swap a checked directory
   * for a symlink before runc mounts it, so the checked file is opened, its
   * path verified through the open descriptor, and that very inode bind
   * mounted (via /proc/self/fd, without path canonicalisation) onto a pin
   * point that runc then mounts.
   */
  private async subpath(id: string, n: number, name: string, root: string, sub: string): Promise<string> {
    const fail = (why: string) => invalid(`invalid mount config for type "volume": subpath "${sub}" ${why}`);
    let r;
    try {
      r = await resolveInside(root, sub, 'beneath');
    } catch (err) {
      throw fail(`of volume "${name}": ${(err as Error).message}`);
    }
    if (!r.exists) throw fail(`does not exist in volume "${name}"`);
    let fd: number;
    try {
      fd = openSync(r.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (err) {
      throw fail(`of volume "${name}": ${(err as Error).message}`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isDirectory() && !st.isFile()) throw fail(`of volume "${name}" is neither a file nor a directory`);
      const real = readlinkSync(`/proc/self/fd/${fd}`);
      const base = realpathSync(root);
      if (real !== base && !real.startsWith(`${base}/`)) throw fail(`of volume "${name}": path escapes its root`);
      const pin = join(this.pinRoot, id, String(n));
      await mkdir(join(this.pinRoot, id), { recursive: true, mode: 0o700 });
      if (st.isDirectory()) await mkdir(pin, { recursive: true, mode: 0o700 });
      else writeFileSync(pin, '', { mode: 0o600 });
      await run('mount', ['--no-canonicalize', '--bind', `/proc/${process.pid}/fd/${fd}`, pin]);
      return pin;
    } finally {
      closeSync(fd);
    }
  }

  /** Drop a container's pinned subpaths. */
  private async unpin(id: string): Promise<void> {
    const dir = join(this.pinRoot, id);
    if (!existsSync(dir)) return;
    for (const n of await readdir(dir)) {
      const p = join(dir, n);
      if (isMountPoint(p)) await run('umount', [p]).catch(() => run('umount', ['-l', p]).catch((err: unknown) => log.error('unmounting subpath pin', { path: p, error: String(err) })));
    }
    if (!(await readdir(dir)).some((n) => isMountPoint(join(dir, n)))) await removeTree(dir);
  }

  /** The container stopped: its hold on volumes with host mounts ends. */
  async release(rec: ContainerRecord): Promise<void> {
    const emit = this.active.delete(rec.Id);
    if (rec.berth.mounts?.some((m) => m.subpath)) await this.unpin(rec.Id);
    for (const m of rec.berth.mounts ?? []) {
      if (m.type !== 'volume' || !m.name) continue;
      await this.volumes.store.release(m.name, rec.Id).catch((err: unknown) => log.warn('releasing volume', { name: m.name, error: String(err) }));
      if (emit) this.volumes.store.event('unmount', m.name, { container: rec.Id });
    }
  }

  /**
   * The container is gone (already unlisted). With `removeVolumes`, its
   * anonymous volumes go too, unless another container still uses them.
   */
  async removed(rec: ContainerRecord, removeVolumes: boolean): Promise<void> {
    const mounts = rec.berth.mounts;
    if (!mounts?.length) return;
    // Stopped containers released their volumes when they exited.
    await this.release(rec);
    if (!removeVolumes) return;
    for (const m of mounts) {
      if (m.type !== 'volume' || !m.anonymous || !m.name) continue;
      try {
        await this.volumes.store.remove(m.name);
      } catch (err) {
        // In use by another container (volumes-from): it stays, as docker's does.
        if (!(err instanceof BerthError && (err.kind === 'Conflict' || err.kind === 'NotFound'))) log.warn('removing anonymous volume', { name: m.name, error: String(err) });
      }
    }
  }

  /** After a restart: volumes with host mounts stay mounted for the containers still running. */
  async adopt(records: ContainerRecord[]): Promise<void> {
    // Scratch mounts of a pre-population interrupted by a crash.
    if (existsSync(this.tmpRoot)) {
      for (const n of await readdir(this.tmpRoot)) {
        if (!n.startsWith('copyup-')) continue;
        const p = join(this.tmpRoot, n);
        if (isMountPoint(p)) await run('umount', ['-l', p]).catch(() => undefined);
        if (!isMountPoint(p)) await removeTree(p);
      }
    }
    // Pins of containers that are no longer running (or no longer exist).
    if (existsSync(this.pinRoot)) {
      const live = new Set(records.filter((r) => r.State.Running).map((r) => r.Id));
      for (const id of await readdir(this.pinRoot)) if (!live.has(id)) await this.unpin(id);
    }
    const running = new Map<string, string[]>();
    for (const r of records) {
      if (!r.State.Running) continue;
      this.active.add(r.Id);
      for (const m of r.berth.mounts ?? []) if (m.type === 'volume' && m.name) running.set(m.name, [...(running.get(m.name) ?? []), r.Id]);
    }
    await this.volumes.store.adopt(running);
  }
}

/** Which containers reference a volume, for `volume rm`, `dangling` and `system df`. */
export function volumeUsers(records: ContainerRecord[], name: string): string[] {
  return records.filter((r) => r.berth.mounts?.some((m) => m.type === 'volume' && m.name === name)).map((r) => r.Id);
}

