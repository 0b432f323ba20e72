/**
 * The local volume driver: volumes live under `<data-root>/volumes/<name>/`,
 * their data in `_data` (as docker lays them out) and their record in
 * `volume.json`. A volume created with driver options (`type`, `device`,
 * `o`: a tmpfs, a bind of a host directory, any mount(8) source) gets a real
 * mount on `_data` while a container uses it, and loses it when the last
 * one stops.
 */
import { mkdir, readdir, rmdir, lstat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { EventBus } from '../engine/events.ts';
import { conflict, invalid, isErrno, notFound, systemError } from '../util/errors.ts';
import { ensureDir, readJson, removeTree, writeJsonAtomic } from '../util/fsutil.ts';
import { log } from '../util/log.ts';
import { VOLUME_NAME_RE, invalidVolumeName } from './mount-spec.ts';

/** Label docker puts on volumes created without a name; `volume prune` removes only these by default. */
export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';

export interface VolumeRecord {
  Name: string;
  Driver: 'local';
  CreatedAt: string;
  Labels: Record<string, string> | null;
  Options: Record<string, string> | null;
  Scope: 'local';
}

export interface CreateVolumeRequest {
  Name?: string;
  Driver?: string;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

const VALID_OPTS = new Set(['type', 'device', 'o', 'size']);
const REQUIRED_WITH: Record<string, string[]> = { device: ['type'], type: ['device'], o: ['device', 'type'] };

/** Reject options the local driver does not take, as docker's driver does. */
export function validateDriverOpts(opts: Record<string, string> | null | undefined): void {
  if (!opts) return;
  for (const k of Object.keys(opts)) {
    if (!VALID_OPTS.has(k)) throw invalid(`invalid option: "${k}"`);
    if (k === 'size') throw invalid('quota size requested but no quota support');
    for (const need of REQUIRED_WITH[k] ?? []) if (!(need in opts)) throw invalid(`missing required option: "${need}"`);
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _out, stderr) => {
      if (err) reject(new Error(String(stderr).trim() || err.message));
      else resolve();
    });
  });
}

export function isMountPoint(path: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path.replace(/ /g, '\\040'));
  } catch {
    return false;
  }
}

/** Bytes used by a tree: regular files and symlinks, each inode once (hard links count once). */
export async function treeSize(root: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      let st;
      try {
        st = await lstat(p, { bigint: false });
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        await walk(p);
        continue;
      }
      const key = `${st.dev}:${st.ino}`;
      if (st.nlink > 1) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      total += st.size;
    }
  };
  await walk(root);
  return total;
}

export class VolumeStore {
  readonly root: string;
  private readonly volumes = new Map<string, VolumeRecord>();
  /** Who holds each volume's host mount (container IDs, or a create-time copy). */
  private readonly holders = new Map<string, Set<string>>();
  /** Serialises mount and unmount per volume. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly events: EventBus;
  /** IDs of the containers that reference a volume (any state). */
  private readonly users: (name: string) => string[];

  constructor(dataRoot: string, events: EventBus, users: (name: string) => string[]) {
    this.root = join(dataRoot, 'volumes');
    this.events = events;
    this.users = users;
  }

  /** Load records. `inUse` names volumes running containers still have mounted. */
  async init(): Promise<void> {
    await ensureDir(this.root, 0o701);
    for (const name of await readdir(this.root)) {
      const dir = join(this.root, name);
      const rec = await readJson<VolumeRecord>(join(dir, 'volume.json')).catch(() => undefined);
      if (!rec) {
        // A create that never finished leaves an empty `_data` at most.
        try {
          await rmdir(join(dir, '_data')).catch((e: unknown) => { if (!isErrno(e, 'ENOENT')) throw e; });
          await rmdir(dir);
        } catch {
          log.warn('volume directory without a record kept', { dir });
        }
        continue;
      }
      this.volumes.set(rec.Name, rec);
    }
  }

  /** After containers are reconciled: adopt mounts of running users, drop the others. */
  async adopt(running: Map<string, string[]>): Promise<void> {
    for (const v of this.volumes.values()) {
      if (!needsMount(v)) continue;
      const ids = running.get(v.Name) ?? [];
      if (ids.length) this.holders.set(v.Name, new Set(ids));
      else if (isMountPoint(this.dataDir(v.Name))) await run('umount', [this.dataDir(v.Name)]).catch(() => run('umount', ['-l', this.dataDir(v.Name)]));
    }
  }

  dataDir(name: string): string {
    return join(this.root, name, '_data');
  }

  all(): VolumeRecord[] {
    return [...this.volumes.values()];
  }

  has(name: string): boolean {
    return this.volumes.has(name);
  }

  get(name: string): VolumeRecord {
    const v = this.volumes.get(name);
    if (!v) throw notFound(`get ${name}: no such volume`);
    return v;
  }

  /** Containers referencing the volume. */
  usedBy(name: string): string[] {
    return this.users(name);
  }

  /** Create a volume, or return the existing one of that name (docker's `volume create` is idempotent). */
  async create(req: CreateVolumeRequest, anonymous = false): Promise<VolumeRecord> {
    const driver = req.Driver || 'local';
    if (driver !== 'local') throw notFound(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const name = req.Name || randomBytes(32).toString('hex');
    if (!VOLUME_NAME_RE.test(name)) throw invalidVolumeName(name);
    const existing = this.volumes.get(name);
    if (existing) return existing;
    validateDriverOpts(req.DriverOpts);
    const labels = req.Labels ?? (anonymous ? {} : null);
    if (anonymous && labels) labels[ANONYMOUS_LABEL] = '';
    const rec: VolumeRecord = {
      Name: name,
      Driver: 'local',
      CreatedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      Labels: labels,
      Options: req.DriverOpts ?? null,
      Scope: 'local',
    };
    const dir = join(this.root, name);
    await mkdir(dir, { recursive: true, mode: 0o701 });
    await mkdir(join(dir, '_data'), { recursive: true, mode: 0o755 });
    await writeJsonAtomic(join(dir, 'volume.json'), rec);
    this.volumes.set(name, rec);
    this.events.emit('volume', 'create', name, { driver: 'local' });
    return rec;
  }

  /**
   * Remove a volume. In use by any container: refused, even with force
   * (force only hides "no such volume", as docker's does).
   */
  async remove(name: string, force = false): Promise<void> {
    const v = this.volumes.get(name);
    if (!v) {
      if (force) return;
      throw notFound(`get ${name}: no such volume`);
    }
    const users = this.users(name);
    if (users.length) throw conflict(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    await this.withLock(name, async () => {
      const data = this.dataDir(name);
      this.holders.delete(name);
      if (isMountPoint(data)) await this.unmount(data);
      // The data dir must not be a mount any more: removing would empty the mounted source.
      if (isMountPoint(data)) throw systemError(`remove ${name}: volume data is still mounted at ${data}`);
      this.volumes.delete(name);
      await removeTree(join(this.root, name));
    });
    this.events.emit('volume', 'destroy', name, { driver: 'local' });
  }

  /** Size of the data a volume holds (a mounted option volume: what its mount shows). */
  async size(name: string): Promise<number> {
    return treeSize(this.dataDir(name));
  }

  /**
   * Make the volume's data available at its data dir for `holder`: for a
   * volume with driver options, mount it if nobody holds it yet.
   */
  async acquire(name: string, holder: string): Promise<string> {
    const v = this.get(name);
    const data = this.dataDir(name);
    if (!needsMount(v)) return data;
    await this.withLock(name, async () => {
      const set = this.holders.get(name) ?? new Set<string>();
      if (set.size === 0 && !isMountPoint(data)) {
        const o = v.Options!;
        const args = ['-t', o.type!];
        if (o.o) args.push('-o', o.o);
        args.push('--', o.device!, data);
        try {
          await run('mount', args);
        } catch (err) {
          throw systemError(`error while mounting volume '${data}': failed to mount local volume: mount ${o.device}:${data}, type ${o.type}${o.o ? `, data ${o.o}` : ''}: ${(err as Error).message.split('\n')[0]!.replace(/^mount: /, '')}`);
        }
      }
      set.add(holder);
      this.holders.set(name, set);
    });
    return data;
  }

  /** `holder` no longer needs the volume; the last one out unmounts it. */
  async release(name: string, holder: string): Promise<void> {
    const v = this.volumes.get(name);
    if (!v || !needsMount(v)) return;
    await this.withLock(name, async () => {
      const set = this.holders.get(name);
      if (!set?.delete(holder) || set.size > 0) return;
      this.holders.delete(name);
      const data = this.dataDir(name);
      if (isMountPoint(data)) await this.unmount(data);
    });
  }

  /** A volume event (docker's `mount` and `unmount` carry the container's details). */
  event(action: string, name: string, attributes: Record<string, string>): void {
    this.events.emit('volume', action, name, { driver: 'local', ...attributes });
  }

  private async unmount(path: string): Promise<void> {
    try {
      await run('umount', [path]);
    } catch {
      // Busy (a process still has it open, e.g. a container in its last moments): detach it.
      await run('umount', ['-l', path]).catch((err: unknown) => log.error('unmounting volume failed', { path, error: String(err) }));
    }
  }

  private async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.locks.set(name, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(name) === next) this.locks.delete(name);
    }
  }
}

/** A volume whose data is a mount of its own (a tmpfs, a bind of a host directory, a device). */
export function needsMount(v: VolumeRecord): boolean {
  return !!v.Options && !!v.Options.type && !!v.Options.device;
}
