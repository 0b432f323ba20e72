/**
 * Volumes as the Engine API shows them: list with docker's filters, inspect,
 * prune, and the volume part of `system df`. Storage and mounts are the
 * store's job (volume-store.ts).
 */
import { ANONYMOUS_LABEL, VolumeStore } from './volume-store.ts';
import type { CreateVolumeRequest, VolumeRecord } from './volume-store.ts';
import type { EventBus } from '../engine/events.ts';
import { invalid } from '../util/errors.ts';

export interface VolumeWithUsage extends VolumeRecord {
  Mountpoint: string;
  UsageData: { Size: number; RefCount: number };
}

/** The volume part of GET /system/df: the legacy `Volumes` list and the v1.52 `VolumesUsage` summary. */
export interface VolumeDiskUsage {
  Volumes: VolumeWithUsage[];
  VolumesUsage: { ActiveCount: number; TotalCount: number; Reclaimable: number; TotalSize: number; Items?: VolumeWithUsage[] };
}

/** `label=k`, `label=k=v` (and `label!=…` when `negated`) against a volume's labels. */
function matchLabel(labels: Record<string, string> | null, want: string): boolean {
  const l = labels ?? {};
  const i = want.indexOf('=');
  if (i < 0) return Object.hasOwn(l, want);
  return l[want.slice(0, i)] === want.slice(i + 1);
}

function parseBoolFilter(key: string, v: string): boolean {
  if (['true', '1'].includes(v.toLowerCase())) return true;
  if (['false', '0'].includes(v.toLowerCase())) return false;
  throw invalid(`invalid filter '${key}=${v}'`);
}

export class VolumeService {
  readonly store: VolumeStore;

  constructor(dataRoot: string, events: EventBus, users: (name: string) => string[]) {
    this.store = new VolumeStore(dataRoot, events, users);
  }

  create(req: CreateVolumeRequest): Promise<VolumeRecord> {
    if (req.Labels !== undefined && req.Labels !== null && (typeof req.Labels !== 'object' || Array.isArray(req.Labels))) throw invalid('invalid Labels: must be an object');
    if (req.DriverOpts !== undefined && req.DriverOpts !== null && (typeof req.DriverOpts !== 'object' || Array.isArray(req.DriverOpts))) throw invalid('invalid DriverOpts: must be an object');
    return this.store.create(req);
  }

  /** docker's inspect shape: fields in its order, the mount point on the host. */
  inspect(name: string): VolumeRecord & { Mountpoint: string } {
    return this.view(this.store.get(name));
  }

  private view(v: VolumeRecord): VolumeRecord & { Mountpoint: string } {
    return { CreatedAt: v.CreatedAt, Driver: v.Driver, Labels: v.Labels, Mountpoint: this.store.dataDir(v.Name), Name: v.Name, Options: v.Options, Scope: v.Scope };
  }

  /** GET /volumes with `dangling`, `driver`, `label`, `name` filters. */
  list(filters: Map<string, string[]>): { Volumes: Array<VolumeRecord & { Mountpoint: string }>; Warnings: string[] } {
    for (const k of filters.keys()) if (!['dangling', 'driver', 'label', 'name'].includes(k)) throw invalid(`invalid filter '${k}'`);
    const dangling = filters.get('dangling');
    const wantDangling = dangling?.length ? parseBoolFilter('dangling', dangling[dangling.length - 1]!) : undefined;
    const out = this.store.all().filter((v) => {
      const names = filters.get('name');
      if (names?.length && !names.some((n) => v.Name.includes(n))) return false;
      const drivers = filters.get('driver');
      if (drivers?.length && !drivers.includes(v.Driver)) return false;
      const labels = filters.get('label');
      if (labels?.length && !labels.every((l) => matchLabel(v.Labels, l))) return false;
      if (wantDangling !== undefined && (this.store.usedBy(v.Name).length === 0) !== wantDangling) return false;
      return true;
    });
    out.sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
    return { Volumes: out.map((v) => this.view(v)), Warnings: [] };
  }

  remove(name: string, force: boolean): Promise<void> {
    return this.store.remove(name, force);
  }

  /**
   * Remove unused volumes: anonymous ones only, unless `all=true`; `label`
   * and `label!` filters narrow the set.
   */
  async prune(filters: Map<string, string[]>): Promise<{ VolumesDeleted: string[] | null; SpaceReclaimed: number }> {
    for (const k of filters.keys()) if (!['label', 'label!', 'all'].includes(k)) throw invalid(`invalid filter '${k}'`);
    const allVals = filters.get('all');
    const all = allVals?.length ? parseBoolFilter('all', allVals[allVals.length - 1]!) : false;
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const v of this.store.all()) {
      if (!all && !Object.hasOwn(v.Labels ?? {}, ANONYMOUS_LABEL)) continue;
      const yes = filters.get('label');
      if (yes?.length && !yes.some((l) => matchLabel(v.Labels, l))) continue;
      const no = filters.get('label!');
      if (no?.length && no.some((l) => matchLabel(v.Labels, l))) continue;
      if (this.store.usedBy(v.Name).length) continue;
      const size = await this.store.size(v.Name);
      try {
        await this.store.remove(v.Name);
      } catch {
        continue;
      }
      deleted.push(v.Name);
      reclaimed += size;
    }
    return { VolumesDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed };
  }

  /**
   * The volume part of `system df`: every volume with its size and the
   * number of containers referencing it. The `system df` endpoint merges
   * this with the image and container parts.
   */
  async diskUsage(): Promise<VolumeDiskUsage> {
    const items: VolumeWithUsage[] = [];
    let active = 0;
    let total = 0;
    let reclaimable = 0;
    for (const v of this.store.all().sort((a, b) => (a.Name < b.Name ? -1 : 1))) {
      const size = await this.store.size(v.Name);
      const refs = this.store.usedBy(v.Name).length;
      items.push({ ...this.view(v), UsageData: { Size: size, RefCount: refs } });
      total += size;
      if (refs > 0) active++;
      else reclaimable += size;
    }
    return { Volumes: items, VolumesUsage: { ActiveCount: active, TotalCount: items.length, Reclaimable: reclaimable, TotalSize: total, Items: items } };
  }
}
