import type { Router } from '../router.ts';
import type { Engine } from '../../engine/engine.ts';

/** Disk usage. */
export function dataRoutes(r: Router, engine: Engine): void {
  r.get('/system/df', async (ctx) => engine.df.usage(ctx.query.getAll('type').filter((t) => t !== '')));
}

/**
 * `system prune` asks each kind of object to prune itself. Where berth has
 * no module for a kind (yet), nothing of that kind exists, so there is
 * nothing to prune: these answer in docker's shape with empty lists. They
 * are registered last, so a module serving the same path takes precedence.
 */
export function fallbackPruneRoutes(r: Router): void {
  r.post('/networks/prune', () => ({ NetworksDeleted: null }));
}
