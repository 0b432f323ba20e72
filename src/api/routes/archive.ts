import type { Router } from '../router.ts';
import { qBool, reply } from '../router.ts';
import { sendTar } from './images.ts';
import type { Engine } from '../../engine/engine.ts';
import type { ContainerPathStat } from '../../engine/archive.ts';
import { containerChanges } from '../../engine/changes.ts';
import { join } from 'node:path';

const STAT_HEADER = 'X-Docker-Container-Path-Stat';

function statHeader(stat: ContainerPathStat): Record<string, string> {
  return { [STAT_HEADER]: Buffer.from(JSON.stringify(stat)).toString('base64') };
}

/** cp's archive endpoints, export and diff. */
export function archiveRoutes(r: Router, engine: Engine): void {
  const archive = engine.archive;

  // HEAD first: the GET route would answer HEAD requests otherwise.
  r.head('/containers/{id}/archive', async (ctx) => {
    const stat = await archive.stat(ctx.params.id!, ctx.query.get('path') ?? '');
    return reply(200, undefined, statHeader(stat));
  });

  r.get('/containers/{id}/archive', async (ctx) => {
    const { stat, body } = await archive.get(ctx.params.id!, ctx.query.get('path') ?? '');
    return sendTar(ctx, body, statHeader(stat));
  });

  r.put('/containers/{id}/archive', async (ctx) => {
    await archive.put(ctx.params.id!, ctx.query.get('path') ?? '', ctx.req, {
      noOverwriteDirNonDir: qBool(ctx.query, 'noOverwriteDirNonDir'),
      copyUIDGID: qBool(ctx.query, 'copyUIDGID'),
    });
    return reply(200);
  });

  r.get('/containers/{id}/export', async (ctx) => sendTar(ctx, await archive.export(ctx.params.id!)));

  r.get('/containers/{id}/changes', async (ctx) => {
    const rec = engine.containers.find(ctx.params.id!);
    const lowers = rec.berth.layers.map((c) => engine.layers.diffDir(c)).reverse();
    const changes = await containerChanges(join(engine.containers.store.dir(rec.Id), 'upper'), lowers);
    return changes.length ? changes : null;
  });
}
