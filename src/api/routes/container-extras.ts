/**
 * Routes for stats, pause/unpause and update (the engine side is
 * src/engine/container-hooks.ts).
 */
import type { Router } from '../router.ts';
import { HANDLED, qBool, reply } from '../router.ts';
import { readJsonBody, commonHeaders } from '../server.ts';
import type { Engine } from '../../engine/engine.ts';
import type { StatsJSON } from '../../engine/stats.ts';

/** docker samples once a second. */
const STATS_INTERVAL_MS = 1000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

export function containerExtraRoutes(r: Router, engine: Engine): void {
  const ex = engine.extras;
  const cs = engine.containers;

  r.get('/containers/{id}/stats', async (ctx) => {
    const rec = cs.find(ctx.params.id!);
    const stream = qBool(ctx.query, 'stream', true);
    const oneShot = qBool(ctx.query, 'one-shot');
    if (oneShot && stream) return reply(400, { message: 'cannot have stream=true and one-shot=true' });
    const ac = new AbortController();
    ctx.res.once('close', () => ac.abort());
    if (!stream) {
      let s = ex.sample(rec.Id);
      // Without one-shot, docker answers with a second sample so precpu_stats is filled in.
      if (!oneShot && rec.State.Running) {
        await sleep(STATS_INTERVAL_MS, ac.signal);
        s = ex.sample(rec.Id, s);
      }
      return s;
    }
    ctx.res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/json' });
    let prev: StatsJSON | undefined;
    while (!ac.signal.aborted) {
      const cur = cs.store.get(rec.Id);
      if (!cur) break;
      const s = ex.sample(rec.Id, prev);
      ctx.res.write(JSON.stringify(s) + '\n');
      if (!cur.State.Running && !cur.State.Restarting) break;
      prev = s;
      await sleep(STATS_INTERVAL_MS, ac.signal);
    }
    ctx.res.end();
    return HANDLED;
  });

  r.post('/containers/{id}/pause', async (ctx) => {
    await ex.pause(ctx.params.id!);
    return reply(204);
  });

  r.post('/containers/{id}/unpause', async (ctx) => {
    await ex.unpause(ctx.params.id!);
    return reply(204);
  });

  r.post('/containers/{id}/update', async (ctx) => {
    const body = (await readJsonBody<Record<string, unknown>>(ctx.req)) ?? {};
    return ex.update(ctx.params.id!, body);
  });
}
