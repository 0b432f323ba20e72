import type { Router } from '../router.ts';
import type { Engine } from '../../engine/engine.ts';

/** Disk usage. */
export function dataRoutes(r: Router, engine: Engine): void {
  r.get('/system/df', async (ctx) => engine.df.usage(ctx.query.getAll('type').filter((t) => t !== '')));
}
