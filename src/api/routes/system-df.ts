/**
 * GET /system/df: disk usage by images, containers, volumes and build cache,
 * in the shape API 1.51 clients read (`LayersSize`, `Images`, `Containers`,
 * `Volumes`, `BuildCache`). `type` limits the work to the kinds asked for.
 */
import { join } from 'node:path';
import type { Router } from '../router.ts';
import type { Engine } from '../../engine/engine.ts';
import { summary } from '../../engine/container-view.ts';
import { treeSize } from '../../volume/volume-store.ts';
import { invalid } from '../../util/errors.ts';

const TYPES = ['container', 'image', 'volume', 'build-cache'];

export function diskUsageRoutes(r: Router, engine: Engine): void {
  r.get('/system/df', async (ctx) => {
    const types = ctx.query.getAll('type');
    for (const t of types) if (!TYPES.includes(t)) throw invalid(`unknown object type: ${t}`);
    const want = (t: string) => types.length === 0 || types.includes(t);
    const out: Record<string, unknown> = {};
    if (want('image')) {
      const images = await engine.images.list({ all: false, filters: new Map(), sharedSize: true, containers: true });
      let layersSize = 0;
      for (const chain of await engine.layers.list()) layersSize += (await engine.layers.get(chain))?.size ?? 0;
      out.LayersSize = layersSize;
      out.Images = images;
    }
    if (want('container')) {
      const recs = engine.containers.list();
      out.Containers = await Promise.all(recs.map(async (c) => ({
        ...summary(c, engine.imageStore),
        SizeRw: await treeSize(join(engine.containers.store.dir(c.Id), 'upper')),
      })));
    }
    if (want('volume')) out.Volumes = (await engine.containers.volumes.diskUsage()).Volumes;
    if (want('build-cache')) out.BuildCache = [];
    return out;
  });
}
