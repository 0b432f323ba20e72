import type { Router } from '../router.ts';
import { qBool, qFilters, reply, versionAtLeast } from '../router.ts';
import { readJsonBody } from '../server.ts';
import type { Engine } from '../../engine/engine.ts';
import type { CreateVolumeRequest } from '../../volume/volume-store.ts';
import { BerthError, invalid } from '../../util/errors.ts';

export function volumeRoutes(r: Router, engine: Engine): void {
  const vs = engine.containers.volumes;

  r.get('/volumes', (ctx) => vs.list(qFilters(ctx.query)));

  r.post('/volumes/create', async (ctx) => {
    const body = (await readJsonBody<CreateVolumeRequest>(ctx.req)) ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw invalid('invalid volume create request');
    const v = await vs.create(body);
    return reply(201, vs.inspect(v.Name));
  });

  r.get('/volumes/{name}', (ctx) => vs.inspect(ctx.params.name!));

  r.put('/volumes/{name}', (ctx) => {
    vs.inspect(ctx.params.name!);
    throw new BerthError('Unavailable', 'volume update only valid for cluster volumes, but swarm is not enabled');
  });

  r.delete('/volumes/{name}', async (ctx) => {
    await vs.remove(ctx.params.name!, qBool(ctx.query, 'force'));
    return reply(204);
  });

  r.post('/volumes/prune', async (ctx) => {
    const filters = qFilters(ctx.query);
    // Before API 1.42 prune took every unused volume, named or not.
    if (!versionAtLeast(ctx, '1.42') && !filters.has('all')) filters.set('all', ['true']);
    const res = await vs.prune(filters);
    engine.events.emit('volume', 'prune', '', { reclaimed: String(res.SpaceReclaimed) });
    return res;
  });
}
