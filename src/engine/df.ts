/**
 * `system df` (GET /system/df, the API ≤1.51 shape): images with their
 * shared and unique sizes and container counts, containers with the size
 * of their writes, and the volume and build-cache lists. Volumes and the
 * build cache belong to other services: they plug in through `volumes` and
 * `buildCache`; until one does, its list is empty because nothing of that
 * kind exists.
 */
import type { ImageService, ImageSummary } from './images.ts';
import type { ContainerService } from './containers.ts';
import type { ImageStore } from '../image/image-store.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { chainIds } from '../image/layer-store.ts';
import { summary } from './container-view.ts';
import { invalid } from '../util/errors.ts';

export interface VolumeUsage {
  Name: string;
  Driver: string;
  Mountpoint: string;
  CreatedAt?: string;
  Labels: Record<string, string> | null;
  Scope: string;
  Options: Record<string, string> | null;
  UsageData: { Size: number; RefCount: number };
}

export interface BuildCacheUsage {
  ID: string;
  Parents?: string[] | null;
  Type: string;
  Description: string;
  InUse: boolean;
  Shared: boolean;
  Size: number;
  CreatedAt: string;
  LastUsedAt: string | null;
  UsageCount: number;
}

export type DfType = 'container' | 'image' | 'volume' | 'build-cache';
const TYPES = new Set<DfType>(['container', 'image', 'volume', 'build-cache']);

export class DiskUsageService {
  /** Set by the volume service: every volume with its size and reference count. */
  volumes: (() => Promise<VolumeUsage[]>) | undefined;
  /** Set by the builder: the build cache records. */
  buildCache: (() => Promise<BuildCacheUsage[]>) | undefined;
  private readonly images: ImageService;
  private readonly imageStore: ImageStore;
  private readonly layers: LayerStore;
  private readonly containers: ContainerService;

  constructor(images: ImageService, imageStore: ImageStore, layers: LayerStore, containers: ContainerService) {
    this.images = images;
    this.imageStore = imageStore;
    this.layers = layers;
    this.containers = containers;
  }

  async usage(types: string[]): Promise<Record<string, unknown>> {
    for (const t of types) if (!TYPES.has(t as DfType)) throw invalid(`unknown object type: ${t}`);
    const want = (t: DfType): boolean => types.length === 0 || types.includes(t);
    const out: Record<string, unknown> = {};
    if (want('image')) {
      const list: ImageSummary[] = await this.images.list({ all: true, filters: new Map(), digests: true, sharedSize: true, containers: true });
      out.LayersSize = await this.layersSize();
      out.Images = list;
    }
    if (want('container')) {
      const recs = this.containers.list().sort((a, b) => (a.Created < b.Created ? 1 : -1));
      out.Containers = await Promise.all(recs.map(async (r) => ({ ...summary(r, this.imageStore), ...(await this.containers.sizes(r)) })));
    }
    if (want('volume')) out.Volumes = this.volumes ? await this.volumes() : [];
    if (want('build-cache')) out.BuildCache = this.buildCache ? await this.buildCache() : [];
    return out;
  }

  /** Bytes of all layers any image uses, each counted once. */
  private async layersSize(): Promise<number> {
    const seen = new Set<string>();
    let total = 0;
    for (const { config } of this.imageStore.all()) {
      for (const c of chainIds(config.rootfs.diff_ids)) {
        if (seen.has(c)) continue;
        seen.add(c);
        total += (await this.layers.get(c))?.size ?? 0;
      }
    }
    return total;
  }
}
