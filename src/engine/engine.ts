import { join } from 'node:path';
import type { DaemonConfig } from '../daemon/config.ts';
import { ContentStore } from '../image/content-store.ts';
import { LayerStore } from '../image/layer-store.ts';
import { ImageStore } from '../image/image-store.ts';
import { ContainerService } from './containers.ts';
import { ContainerExtras } from './container-hooks.ts';
import { EventBus } from './events.ts';
import { SystemService } from './system.ts';
import { ImageService } from './images.ts';
import { ExecService } from './exec.ts';
import { ensureDir } from '../util/fsutil.ts';
import { NetworkService } from '../network/networks.ts';
import { BuildService } from '../build/service.ts';
import { DistributionService } from '../distribution/service.ts';
import { ArchiveService } from './archive.ts';
import { DiskUsageService } from './df.ts';
import { PruneService } from './prune.ts';

/** All of berthd's services, wired together once. API handlers reach them through this. */
export class Engine {
  readonly cfg: DaemonConfig;
  readonly events = new EventBus();
  readonly content: ContentStore;
  readonly layers: LayerStore;
  readonly imageStore: ImageStore;
  readonly containers: ContainerService;
  /** Restart policies, health checks, pause/unpause, update, stats. */
  readonly extras: ContainerExtras;
  readonly images: ImageService;
  readonly system: SystemService;
  readonly networks: NetworkService;
  readonly builder: BuildService;
  readonly distribution: DistributionService;
  readonly execs: ExecService;
  readonly archive: ArchiveService;
  readonly df: DiskUsageService;
  readonly prune: PruneService;

  constructor(cfg: DaemonConfig) {
    this.cfg = cfg;
    this.content = new ContentStore(join(cfg.dataRoot, 'content'));
    this.layers = new LayerStore(cfg.dataRoot);
    this.imageStore = new ImageStore(cfg.dataRoot, this.content, this.layers);
    this.containers = new ContainerService(cfg, this.imageStore, this.layers, this.events);
    this.extras = new ContainerExtras(cfg, this.containers, this.events);
    this.containers.hooks = this.extras;
    this.images = new ImageService(cfg, this.imageStore, this.content, this.layers, this.containers, this.events);
    this.system = new SystemService(cfg, this.containers, this.imageStore);
    this.networks = new NetworkService(cfg, this.events);
    this.containers.network = this.networks;
    const cs = this.containers;
    this.networks.containers = { find: (ref) => cs.store.find(ref), list: () => cs.list(), save: (rec) => cs.store.save(rec) };
    this.builder = new BuildService(this);
    this.distribution = new DistributionService(cfg, this.images, this.imageStore, this.content, this.layers);
    this.execs = new ExecService(cfg, this.containers, this.events);
    this.archive = new ArchiveService(cfg, this.containers, this.layers, this.events);
    this.df = new DiskUsageService(this.images, this.imageStore, this.layers, this.containers);
    this.df.volumes = async () => (await this.containers.volumes.diskUsage()).Volumes;
    this.prune = new PruneService(this.containers, this.events);
    this.events.enrich('container', containerLabels(this.containers));
  }

  async init(): Promise<void> {
    await ensureDir(this.cfg.dataRoot, 0o711);
    await ensureDir(this.cfg.execRoot, 0o700);
    await ensureDir(join(this.cfg.dataRoot, 'tmp'), 0o700);
    await this.content.init();
    await this.layers.init();
    await this.imageStore.init();
    await this.networks.init();
    await this.containers.init();
    await this.builder.init();
    await this.execs.init();
    await this.archive.init();
  }
}

/**
 * docker adds a container's labels to each of its events (the given
 * attributes win for image and name). Labels are remembered so a destroy
 * event, emitted once the record is gone, still carries them.
 */
function containerLabels(containers: ContainerService): (id: string, attrs: Record<string, string>) => Record<string, string> {
  const known = new Map<string, Record<string, string>>();
  return (id, attrs) => {
    const rec = containers.store.get(id);
    let labels = rec?.Config.Labels;
    if (labels) known.set(id, labels);
    else {
      labels = known.get(id);
      known.delete(id);
    }
    const out = { ...attrs, ...(labels ?? {}) };
    if (attrs.image !== undefined) out.image = attrs.image;
    if (attrs.name !== undefined) out.name = attrs.name;
    return out;
  };
}
