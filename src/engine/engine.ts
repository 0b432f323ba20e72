import { join } from 'node:path';
import type { DaemonConfig } from '../daemon/config.ts';
import { ContentStore } from '../image/content-store.ts';
import { LayerStore } from '../image/layer-store.ts';
import { ImageStore } from '../image/image-store.ts';
import { ContainerService } from './containers.ts';
import { EventBus } from './events.ts';
import { SystemService } from './system.ts';
import { ImageService } from './images.ts';
import { ensureDir } from '../util/fsutil.ts';
import { NetworkService } from '../network/networks.ts';

/** All of berthd's services, wired together once. API handlers reach them through this. */
export class Engine {
  readonly cfg: DaemonConfig;
  readonly events = new EventBus();
  readonly content: ContentStore;
  readonly layers: LayerStore;
  readonly imageStore: ImageStore;
  readonly containers: ContainerService;
  readonly images: ImageService;
  readonly system: SystemService;
  readonly networks: NetworkService;

  constructor(cfg: DaemonConfig) {
    this.cfg = cfg;
    this.content = new ContentStore(join(cfg.dataRoot, 'content'));
    this.layers = new LayerStore(cfg.dataRoot);
    this.imageStore = new ImageStore(cfg.dataRoot, this.content, this.layers);
    this.containers = new ContainerService(cfg, this.imageStore, this.layers, this.events);
    this.images = new ImageService(cfg, this.imageStore, this.content, this.layers, this.containers, this.events);
    this.system = new SystemService(cfg, this.containers, this.imageStore);
    this.networks = new NetworkService(cfg, this.events);
    this.containers.network = this.networks;
    const cs = this.containers;
    this.networks.containers = { find: (ref) => cs.store.find(ref), list: () => cs.list(), save: (rec) => cs.store.save(rec) };
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
  }
}
