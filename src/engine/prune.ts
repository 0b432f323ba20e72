/**
 * `container prune` with docker's filters (`until`, `label`, `label!`), and
 * the size each removed container gave back.
 */
import type { ContainerService } from './containers.ts';
import type { EventBus } from './events.ts';
import { invalid } from '../util/errors.ts';
import { parseTimeArg } from '../util/time.ts';

const CONTAINER_FILTERS = new Set(['until', 'label', 'label!']);

/** docker's MatchKVList: every `key` or `key=value` must hold. */
export function matchAllLabels(labels: Record<string, string>, wants: string[]): boolean {
  return wants.every((w) => {
    const i = w.indexOf('=');
    if (i < 0) return Object.hasOwn(labels, w);
    return labels[w.slice(0, i)] === w.slice(i + 1);
  });
}

/** The `until` prune filter in seconds since the epoch, if given. */
export function pruneUntil(filters: Map<string, string[]>): number | undefined {
  const u = filters.get('until') ?? [];
  if (u.length > 1) throw invalid('more than one until filter specified');
  if (u.length === 0) return undefined;
  try {
    return parseTimeArg(u[0]!);
  } catch {
    throw invalid(`invalid filter 'until=${u[0]}'`);
  }
}

export class PruneService {
  private readonly containers: ContainerService;
  private readonly events: EventBus;

  constructor(containers: ContainerService, events: EventBus) {
    this.containers = containers;
    this.events = events;
  }

  async containersPrune(filters: Map<string, string[]>): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }> {
    for (const k of filters.keys()) if (!CONTAINER_FILTERS.has(k)) throw invalid(`invalid filter '${k}'`);
    const until = pruneUntil(filters);
    const labels = filters.get('label') ?? [];
    const notLabels = filters.get('label!') ?? [];
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const c of this.containers.list()) {
      if (c.State.Running || c.State.Paused || c.State.Restarting || c.State.Status === 'removing') continue;
      if (until !== undefined && Date.parse(c.Created) / 1000 > until) continue;
      const l = c.Config.Labels ?? {};
      if (!matchAllLabels(l, labels)) continue;
      if (notLabels.length > 0 && matchAllLabels(l, notLabels)) continue;
      const { SizeRw } = await this.containers.sizes(c);
      try {
        await this.containers.remove(c.Id);
      } catch {
        // Started or removed meanwhile: not pruned.
        continue;
      }
      reclaimed += SizeRw;
      deleted.push(c.Id);
    }
    this.events.emit('container', 'prune', '', { reclaimed: String(reclaimed) });
    return { ContainersDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed };
  }
}
