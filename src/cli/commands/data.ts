/**
 * `export`, `diff`, `system df` and `system prune`.
 */
import { createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { renderFormatted } from '../format/table.ts';
import { parseFilterFlags } from '../filters.ts';
import { confirmRemoval } from '../prompt.ts';
import { humanDuration } from '../../util/time.ts';
import { humanSize } from '../../util/units.ts';

/** units.HumanSize as docker's df uses it: four significant digits. */
const humanSize4 = (bytes: number): string => humanSize(bytes, 4);

function withPercent(reclaimable: number, total: number): string {
  return total > 0 ? `${humanSize4(reclaimable)} (${Math.trunc((reclaimable * 100) / total)}%)` : humanSize4(reclaimable);
}

interface DfImage { Id: string; RepoTags: string[] | null; Created: number; Size: number; SharedSize: number; Containers: number }
interface DfContainer { Id: string; Names: string[]; Image: string; Command: string; Created: number; State: string; Status: string; SizeRw?: number; SizeRootFs?: number; Mounts?: Array<{ Type?: string }> }
interface DfVolume { Name: string; UsageData?: { Size: number; RefCount: number } }
interface DfBuild { ID: string; Type: string; Size: number; CreatedAt: string; LastUsedAt: string | null; UsageCount: number; Shared: boolean; InUse: boolean }
interface Df { LayersSize?: number; Images?: DfImage[] | null; Containers?: DfContainer[] | null; Volumes?: DfVolume[] | null; BuildCache?: DfBuild[] | null }

const activeState = (s: string): boolean => s === 'running' || s === 'paused' || s === 'restarting';

function ellipsis(s: string, n: number): string {
  const chars = [...s];
  return chars.length <= n ? s : `${chars.slice(0, n - 1).join('')}…`;
}

function summaryRows(df: Df): Record<string, unknown>[] {
  const images = df.Images ?? [];
  const containers = df.Containers ?? [];
  const volumes = df.Volumes ?? [];
  const cache = df.BuildCache ?? [];
  const layers = df.LayersSize ?? 0;
  let usedByContainers = 0;
  for (const i of images) if (i.Containers !== 0 && i.Size !== -1 && i.SharedSize !== -1) usedByContainers += i.Size - i.SharedSize;
  const cTotal = containers.reduce((a, c) => a + (c.SizeRw ?? 0), 0);
  const cFree = containers.filter((c) => !activeState(c.State)).reduce((a, c) => a + (c.SizeRw ?? 0), 0);
  const vSize = volumes.reduce((a, v) => a + ((v.UsageData?.Size ?? -1) !== -1 ? v.UsageData!.Size : 0), 0);
  const vFree = volumes.filter((v) => (v.UsageData?.RefCount ?? 0) === 0).reduce((a, v) => a + Math.max(0, v.UsageData?.Size ?? 0), 0);
  const bSize = cache.filter((b) => !b.Shared).reduce((a, b) => a + b.Size, 0);
  const bFree = cache.filter((b) => !b.Shared && !b.InUse).reduce((a, b) => a + b.Size, 0);
  return [
    { Type: 'Images', TotalCount: String(images.length), Active: String(images.filter((i) => i.Containers > 0).length), Size: humanSize4(layers), Reclaimable: withPercent(layers - usedByContainers, layers) },
    { Type: 'Containers', TotalCount: String(containers.length), Active: String(containers.filter((c) => activeState(c.State)).length), Size: humanSize4(cTotal), Reclaimable: withPercent(cFree, cTotal) },
    { Type: 'Local Volumes', TotalCount: String(volumes.length), Active: String(volumes.filter((v) => (v.UsageData?.RefCount ?? 0) > 0).length), Size: humanSize4(vSize), Reclaimable: withPercent(vFree, vSize) },
    { Type: 'Build Cache', TotalCount: String(cache.length), Active: String(cache.filter((b) => b.InUse).length), Size: humanSize4(bSize), Reclaimable: humanSize4(bFree) },
  ];
}

function verbose(ctx: CliContext, df: Df): void {
  const ago = (sec: number): string => `${humanDuration(Date.now() - sec * 1000)} ago`;
  ctx.out.write('Images space usage:\n\n');
  ctx.out.write(renderFormatted(undefined, (df.Images ?? []).map((i) => {
    const tag = i.RepoTags?.[0];
    const colon = tag ? tag.lastIndexOf(':') : -1;
    const [repo, t] = tag && colon > tag.lastIndexOf('/') ? [tag.slice(0, colon), tag.slice(colon + 1)] : ['<none>', '<none>'];
    return {
      Repository: repo, Tag: t, ID: i.Id.replace(/^sha256:/, '').slice(0, 12), CreatedSince: ago(i.Created), Size: humanSize(i.Size),
      SharedSize: i.SharedSize === -1 ? 'N/A' : humanSize(i.SharedSize), UniqueSize: i.SharedSize === -1 ? 'N/A' : humanSize(i.Size - i.SharedSize), Containers: String(i.Containers),
    };
  }), { defaultTable: 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}', headers: { ID: 'IMAGE ID', CreatedSince: 'CREATED', SharedSize: 'SHARED SIZE', UniqueSize: 'UNIQUE SIZE' } }));
  ctx.out.write('\nContainers space usage:\n\n');
  ctx.out.write(renderFormatted(undefined, (df.Containers ?? []).map((c) => ({
    ID: c.Id.slice(0, 12), Image: c.Image, Command: JSON.stringify(ellipsis(c.Command, 20)), LocalVolumes: String((c.Mounts ?? []).filter((m) => m.Type === 'volume').length),
    Size: humanSize(c.SizeRw ?? 0), RunningFor: ago(c.Created), Status: c.Status, Names: c.Names.map((n) => n.replace(/^\//, '')).join(','),
  })), { defaultTable: 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}', headers: { ID: 'CONTAINER ID', LocalVolumes: 'LOCAL VOLUMES', RunningFor: 'CREATED' } }));
  ctx.out.write('\nLocal Volumes space usage:\n\n');
  ctx.out.write(renderFormatted(undefined, (df.Volumes ?? []).map((v) => ({
    Name: v.Name, Links: String(v.UsageData?.RefCount ?? 0), Size: (v.UsageData?.Size ?? -1) === -1 ? 'N/A' : humanSize(v.UsageData!.Size),
  })), { defaultTable: 'table {{.Name}}\t{{.Links}}\t{{.Size}}', headers: { Name: 'VOLUME NAME' } }));
  const cache = df.BuildCache ?? [];
  ctx.out.write(`\nBuild cache usage: ${humanSize4(cache.filter((b) => !b.Shared).reduce((a, b) => a + b.Size, 0))}\n\n`);
  ctx.out.write(renderFormatted(undefined, cache.map((b) => ({
    ID: b.ID.slice(0, 12), CacheType: b.Type, Size: humanSize(b.Size), CreatedSince: `${humanDuration(Date.now() - Date.parse(b.CreatedAt))} ago`,
    LastUsedSince: b.LastUsedAt ? `${humanDuration(Date.now() - Date.parse(b.LastUsedAt))} ago` : '', UsageCount: String(b.UsageCount), Shared: String(b.Shared),
  })), { defaultTable: 'table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}', headers: { ID: 'CACHE ID', CacheType: 'CACHE TYPE', CreatedSince: 'CREATED', LastUsedSince: 'LAST USED', UsageCount: 'USAGE' } }));
}

interface PruneReport { ContainersDeleted?: string[] | null; NetworksDeleted?: string[] | null; VolumesDeleted?: string[] | null; ImagesDeleted?: Array<{ Untagged?: string; Deleted?: string }> | null; CachesDeleted?: string[] | null; SpaceReclaimed?: number }

export const commands: Command[] = [
  {
    name: 'export',
    use: "berth export [OPTIONS] CONTAINER",
    short: "Export a container's filesystem as a tar archive",
    flags: [{ name: 'output', short: 'o', type: 'string', description: 'Write to a file, instead of STDOUT' }],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const output = f.str('output');
      if (!output && process.stdout.isTTY) throw new CliError('cowardly refusing to save to a terminal. Use the -o flag or redirect', 1);
      if (output) {
        const dir = dirname(output);
        if (!existsSync(dir)) throw new CliError(`failed to export container: invalid output path: directory ${JSON.stringify(dir)} does not exist`, 1);
      }
      const res = await ctx.client.raw('GET', `/containers/${encodeURIComponent(args[0]!)}/export`);
      if (!output) {
        await pipeline(res, process.stdout);
        return;
      }
      // Written aside and renamed, so a failed export leaves no partial file.
      const tmp = `${output}.tmp-${process.pid}`;
      try {
        await pipeline(res, createWriteStream(tmp));
        renameSync(tmp, output);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
    },
  },
  {
    name: 'diff',
    use: 'berth diff CONTAINER',
    short: "Inspect changes to files or directories on a container's filesystem",
    flags: [],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, _f, args) {
      const changes = await ctx.client.get<Array<{ Path: string; Kind: number }> | null>(`/containers/${encodeURIComponent(args[0]!)}/changes`);
      for (const c of changes ?? []) println(ctx, `${c.Kind === 0 ? 'C' : c.Kind === 1 ? 'A' : 'D'} ${c.Path}`);
    },
  },
  {
    name: 'system df',
    use: 'berth system df [OPTIONS]',
    short: 'Show berth disk usage',
    flags: [
      { name: 'verbose', short: 'v', type: 'bool', description: 'Show detailed information on space usage' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const df = await ctx.client.get<Df>('/system/df');
      const format = f.str('format');
      if (f.bool('verbose') && !format) {
        verbose(ctx, df);
        return;
      }
      ctx.out.write(renderFormatted(format, summaryRows(df), { defaultTable: 'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}', headers: { TotalCount: 'TOTAL' } }));
    },
  },
  {
    name: 'system prune',
    use: 'berth system prune [OPTIONS]',
    short: 'Remove unused data',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Remove all unused images not just dangling ones' },
      { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
      { name: 'volumes', type: 'bool', description: 'Prune anonymous volumes' },
      { name: 'filter', type: 'list', description: 'Provide filter values (e.g. "label=<key>=<value>")' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const all = f.bool('all');
      if (!f.bool('force')) {
        const items = ['all stopped containers', 'all networks not used by at least one container'];
        if (f.bool('volumes')) items.push('all anonymous volumes not used by at least one container');
        items.push(all ? 'all images without at least one container associated to them' : 'all dangling images');
        items.push(all ? 'all build cache' : 'unused build cache');
        if (!(await confirmRemoval(ctx, `:\n${items.map((i) => `  - ${i}\n`).join('')}`))) return 0;
      }
      const filters = f.list('filter');
      const q = (extra: string[] = []) => ({ filters: parseFilterFlags([...filters, ...extra]) });
      let reclaimed = 0;
      const section = (title: string, lines: string[]): void => {
        if (lines.length) ctx.out.write(`${title}:\n${lines.map((l) => `${l}\n`).join('')}\n`);
      };
      const c = await ctx.client.post<PruneReport>('/containers/prune', undefined, q());
      section('Deleted Containers', c.ContainersDeleted ?? []);
      reclaimed += c.SpaceReclaimed ?? 0;
      const n = await ctx.client.post<PruneReport>('/networks/prune', undefined, q());
      section('Deleted Networks', n.NetworksDeleted ?? []);
      if (f.bool('volumes')) {
        const v = await ctx.client.post<PruneReport>('/volumes/prune', undefined, q());
        section('Deleted Volumes', v.VolumesDeleted ?? []);
        reclaimed += v.SpaceReclaimed ?? 0;
      }
      const i = await ctx.client.post<PruneReport>('/images/prune', undefined, q(all ? ['dangling=false'] : []));
      section('Deleted Images', (i.ImagesDeleted ?? []).map((d) => (d.Untagged ? `untagged: ${d.Untagged}` : `deleted: ${d.Deleted}`)));
      reclaimed += i.SpaceReclaimed ?? 0;
      const b = await ctx.client.post<PruneReport>('/build/prune', undefined, { ...q(), all: all || undefined });
      section('Deleted build cache objects', b.CachesDeleted ?? []);
      reclaimed += b.SpaceReclaimed ?? 0;
      println(ctx, `Total reclaimed space: ${humanSize4(reclaimed)}`);
    },
  },
];
