/**
 * `system df`: the summary table, or with `-v` one table per kind, as
 * docker's CLI prints them from GET /system/df.
 */
import type { Command } from '../command.ts';
import { renderFormatted, tabwrite } from '../format/table.ts';
import { humanDuration } from '../../util/time.ts';
import { humanSize } from '../../util/units.ts';
import type { VolumeView } from './volume.ts';

interface DfImage { Id: string; RepoTags: string[] | null; Created: number; Size: number; SharedSize: number; Containers: number }
interface DfContainer { Id: string; Image: string; Command: string; Created: number; State: string; Status: string; Names: string[]; SizeRw?: number; Mounts?: Array<{ Name?: string }> }
interface DiskUsage {
  LayersSize?: number;
  Images?: DfImage[] | null;
  Containers?: DfContainer[] | null;
  Volumes?: VolumeView[] | null;
  BuildCache?: Array<{ Size: number; InUse: boolean; Shared: boolean }> | null;
}

function withPercent(part: number, total: number): string {
  return total > 0 ? `${humanSize(part)} (${Math.trunc((part * 100) / total)}%)` : humanSize(part);
}

function ago(seconds: number): string {
  return `${humanDuration(Date.now() - seconds * 1000)} ago`;
}

function truncate(s: string, n: number): string {
  return [...s].length > n ? `${[...s].slice(0, n - 1).join('')}…` : s;
}

/** The `Local Volumes space usage` table of `system df -v`. */
export function volumeUsageTable(volumes: VolumeView[]): string {
  const rows = [['VOLUME NAME', 'LINKS', 'SIZE']];
  for (const v of volumes) rows.push([v.Name, String(v.UsageData?.RefCount ?? -1), v.UsageData && v.UsageData.Size >= 0 ? humanSize(v.UsageData.Size) : 'N/A']);
  return tabwrite(rows);
}

export const commands: Command[] = [
  {
    name: 'system df',
    use: 'berth system df [OPTIONS]',
    short: 'Show berth disk usage',
    flags: [
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'verbose', short: 'v', type: 'bool', description: 'Show detailed information on space usage' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const du = await ctx.client.get<DiskUsage>('/system/df');
      const images = du.Images ?? [];
      const containers = du.Containers ?? [];
      const volumes = du.Volumes ?? [];
      const cache = du.BuildCache ?? [];
      if (f.bool('verbose')) {
        const img = [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS']];
        for (const i of images) {
          const id = i.Id.replace(/^sha256:/, '').slice(0, 12);
          const tags = i.RepoTags?.length ? i.RepoTags : ['<none>:<none>'];
          for (const t of tags) {
            const c = t.lastIndexOf(':');
            img.push([t.slice(0, c), t.slice(c + 1), id, ago(i.Created), humanSize(i.Size), humanSize(i.SharedSize), humanSize(i.Size - i.SharedSize), String(i.Containers)]);
          }
        }
        const ctr = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'LOCAL VOLUMES', 'SIZE', 'CREATED', 'STATUS', 'NAMES']];
        for (const c of containers) {
          ctr.push([c.Id.slice(0, 12), c.Image, JSON.stringify(truncate(c.Command, 20)), String((c.Mounts ?? []).filter((m) => m.Name).length), humanSize(c.SizeRw ?? 0), ago(c.Created), c.Status, c.Names.map((n) => n.replace(/^\//, '')).join(',')]);
        }
        const cacheSize = cache.reduce((s, b) => s + b.Size, 0);
        ctx.out.write(`Images space usage:\n\n${tabwrite(img)}\nContainers space usage:\n\n${tabwrite(ctr)}\nLocal Volumes space usage:\n\n${volumeUsageTable(volumes)}\nBuild cache usage: ${humanSize(cacheSize)}\n\n${tabwrite([['CACHE ID', 'CACHE TYPE', 'SIZE', 'CREATED', 'LAST USED', 'USAGE', 'SHARED']])}`);
        return;
      }
      const layers = du.LayersSize ?? 0;
      let imgUsed = 0;
      for (const i of images) if (i.Containers > 0 && i.Size >= 0 && i.SharedSize >= 0) imgUsed += i.Size - i.SharedSize;
      const active = (c: DfContainer) => ['running', 'paused', 'restarting'].includes(c.State);
      const ctrSize = containers.reduce((s, c) => s + (c.SizeRw ?? 0), 0);
      const ctrFree = containers.filter((c) => !active(c)).reduce((s, c) => s + (c.SizeRw ?? 0), 0);
      const volSize = volumes.reduce((s, v) => s + Math.max(v.UsageData?.Size ?? 0, 0), 0);
      const volFree = volumes.filter((v) => (v.UsageData?.RefCount ?? 0) === 0).reduce((s, v) => s + Math.max(v.UsageData?.Size ?? 0, 0), 0);
      const cacheSize = cache.reduce((s, b) => s + b.Size, 0);
      const cacheFree = cache.filter((b) => !b.InUse && !b.Shared).reduce((s, b) => s + b.Size, 0);
      const rows = [
        { Type: 'Images', TotalCount: String(images.length), Active: String(images.filter((i) => i.Containers > 0).length), Size: humanSize(layers), Reclaimable: withPercent(layers - imgUsed, layers) },
        { Type: 'Containers', TotalCount: String(containers.length), Active: String(containers.filter(active).length), Size: humanSize(ctrSize), Reclaimable: withPercent(ctrFree, ctrSize) },
        { Type: 'Local Volumes', TotalCount: String(volumes.length), Active: String(volumes.filter((v) => (v.UsageData?.RefCount ?? 0) > 0).length), Size: humanSize(volSize), Reclaimable: withPercent(volFree, volSize) },
        { Type: 'Build Cache', TotalCount: String(cache.length), Active: String(cache.filter((b) => b.InUse).length), Size: humanSize(cacheSize), Reclaimable: humanSize(cacheFree) },
      ];
      ctx.out.write(renderFormatted(f.str('format'), rows, {
        defaultTable: 'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}',
        headers: { Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' },
      }));
    },
  },
];
