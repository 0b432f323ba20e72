import type { Router } from '../router.ts';
import { qFilters, reply } from '../router.ts';
import { readJsonBody } from '../server.ts';
import type { Engine } from '../../engine/engine.ts';
import type { CreateNetworkRequest, EndpointRequest } from '../../network/networks.ts';
import type { NetworkRecord } from '../../network/types.ts';
import { matchLabel } from '../../engine/container-view.ts';
import { invalid } from '../../util/errors.ts';
import { parseTimeArg } from '../../util/time.ts';

const LIST_FILTERS = new Set(['driver', 'id', 'label', 'name', 'scope', 'type', 'dangling']);

/** docker's network filters (list) and prune filters (label, until). */
function matcher(filters: Map<string, string[]>, allowed: Set<string>, inUse: (n: NetworkRecord) => boolean): (n: NetworkRecord) => boolean {
  for (const k of filters.keys()) if (!allowed.has(k)) throw invalid(`invalid filter '${k}'`);
  return (n) => {
    for (const [k, vals] of filters) {
      if (!vals.length) continue;
      const ok = vals.some((v) => {
        switch (k) {
          case 'driver': return n.Driver === v;
          case 'id': return n.Id.startsWith(v);
          case 'name': return n.Name.includes(v);
          case 'label': return matchLabel(n.Labels, v);
          case 'label!': return !matchLabel(n.Labels, v);
          case 'scope': return v === 'local';
          case 'type':
            if (v !== 'custom' && v !== 'builtin') throw invalid(`invalid filter: 'type'='${v}'`);
            return (v === 'builtin') === !!n.berth.predefined;
          case 'dangling': return (v === 'true' || v === '1') === (!n.berth.predefined && !inUse(n));
          case 'until': return Date.parse(n.Created) / 1000 < parseTimeArg(v);
          default: return false;
        }
      });
      if (!ok) return false;
    }
    return true;
  };
}

export function networkRoutes(r: Router, engine: Engine): void {
  const ns = engine.networks;
  const inUse = (n: NetworkRecord) => engine.containers.list().some((c) => c.State.Running && Object.values(c.NetworkSettings.Networks).some((e) => e.NetworkID === n.Id));

  r.get('/networks', (ctx) => {
    const match = matcher(qFilters(ctx.query), LIST_FILTERS, inUse);
    return ns.list().filter(match).sort((a, b) => a.Name.localeCompare(b.Name)).map((n) => ns.inspect(n));
  });

  r.get('/networks/{id}', (ctx) => {
    return ns.inspect(ns.find(ctx.params.id!));
  });

  r.post('/networks/create', async (ctx) => {
    const body = await readJsonBody<CreateNetworkRequest>(ctx.req);
    if (!body) throw invalid('network create needs a body');
    return reply(201, await ns.create(body));
  });

  r.delete('/networks/{id}', async (ctx) => {
    await ns.remove(ctx.params.id!);
    return reply(204);
  });

  r.post('/networks/{id}/connect', async (ctx) => {
    const body = await readJsonBody<{ Container?: string; EndpointConfig?: EndpointRequest }>(ctx.req);
    if (!body?.Container) throw invalid('container is required');
    await ns.connect(ctx.params.id!, body.Container, body.EndpointConfig ?? {});
    return reply(200, '');
  });

  r.post('/networks/{id}/disconnect', async (ctx) => {
    const body = await readJsonBody<{ Container?: string; Force?: boolean }>(ctx.req);
    if (!body?.Container) throw invalid('container is required');
    await ns.disconnect(ctx.params.id!, body.Container, !!body.Force);
    return reply(200, '');
  });

  r.post('/networks/prune', async (ctx) => {
    const match = matcher(qFilters(ctx.query), new Set(['label', 'label!', 'until']), inUse);
    const deleted = await ns.prune(match);
    engine.events.emit('network', 'prune', '', {});
    return { NetworksDeleted: deleted.length ? deleted : null };
  });
}
