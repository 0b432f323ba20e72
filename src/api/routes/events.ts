import type { Router } from '../router.ts';
import { HANDLED, qFilters } from '../router.ts';
import { commonHeaders } from '../server.ts';
import type { Engine } from '../../engine/engine.ts';
import { eventJSON } from '../../engine/events.ts';
import type { EngineEvent } from '../../engine/events.ts';
import { eventFilter, parseEventTime } from '../../engine/event-filter.ts';
import { invalid } from '../../util/errors.ts';

/**
 * GET /events: the retained events between `since` and `until` first, then
 * live ones until `until` passes or the client goes away.
 */
export function eventRoutes(r: Router, engine: Engine): void {
  r.get('/events', (ctx) => {
    const q = ctx.query;
    const since = parseEventTime(q.get('since'), 'since');
    const until = parseEventTime(q.get('until'), 'until');
    if (since !== undefined && until !== undefined && until < since) {
      throw invalid(`\`since\` time (${q.get('since')}) cannot be after \`until\` time (${q.get('until')})`);
    }
    const match = eventFilter(qFilters(q));
    const res = ctx.res;
    res.writeHead(200, { ...commonHeaders(), 'Content-Type': 'application/json' });
    res.flushHeaders();
    const send = (ev: EngineEvent): void => {
      if (match(ev)) res.write(eventJSON(ev) + '\n');
    };
    // Replayed and subscribed in one step: nothing lost or sent twice in between.
    const past = since !== undefined || until !== undefined ? engine.events.between(since, until) : [];
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    for (const ev of past) send(ev);
    if (until !== undefined && until <= nowNs) {
      res.end();
      return HANDLED;
    }
    const unsubscribe = engine.events.subscribe(send);
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      unsubscribe();
      if (timer) clearTimeout(timer);
      if (!res.writableEnded) res.end();
    };
    if (until !== undefined) timer = setTimeout(done, Number((until - nowNs) / 1_000_000n) + 1);
    res.once('close', done);
    return HANDLED;
  });
}
