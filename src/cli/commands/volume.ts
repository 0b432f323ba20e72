import type { Command } from '../command.ts';
import { CliError, println } from '../command.ts';
import { ApiError } from '../client.ts';
import { renderFormatted } from '../format/table.ts';
import { printInspected } from './inspect.ts';
import { parseFilterFlags } from '../filters.ts';
import { humanSize } from '../../util/units.ts';
import { confirmRemoval } from '../prompt.ts';

export interface VolumeView {
  Name: string;
  Driver: string;
  Mountpoint: string;
  Labels: Record<string, string> | null;
  Scope: string;
  Options: Record<string, string> | null;
  CreatedAt?: string;
  UsageData?: { Size: number; RefCount: number } | null;
}

export const VOLUME_HEADERS: Record<string, string> = {
  Name: 'VOLUME NAME', Driver: 'DRIVER', Scope: 'SCOPE', Mountpoint: 'MOUNTPOINT', Labels: 'LABELS', Links: 'LINKS', Size: 'SIZE',
  Group: 'GROUP', Availability: 'AVAILABILITY', Status: 'STATUS',
};

/** The row `volume ls --format` sees, with docker's field names and `N/A` where it has no data. */
export function volumeRow(v: VolumeView): Record<string, unknown> {
  const labels = v.Labels ?? {};
  return {
    Availability: 'N/A',
    Driver: v.Driver,
    Group: 'N/A',
    Labels: Object.entries(labels).map(([k, val]) => `${k}=${val}`).join(','),
    Links: v.UsageData && v.UsageData.RefCount >= 0 ? String(v.UsageData.RefCount) : 'N/A',
    Mountpoint: v.Mountpoint,
    Name: v.Name,
    Scope: v.Scope,
    Size: v.UsageData && v.UsageData.Size >= 0 ? humanSize(v.UsageData.Size) : 'N/A',
    Status: 'N/A',
    Label: (k: string) => labels[k] ?? '',
  };
}

/** `k=v` flags into a map; a bare `k` maps to ''. */
function keyValues(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const i = l.indexOf('=');
    out[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
  }
  return out;
}

export const commands: Command[] = [
  {
    name: 'volume create',
    use: 'berth volume create [OPTIONS] [VOLUME]',
    short: 'Create a volume',
    flags: [
      { name: 'driver', short: 'd', type: 'string', description: 'Specify volume driver name', default: 'local' },
      { name: 'label', type: 'list', description: 'Set metadata for a volume' },
      { name: 'opt', short: 'o', type: 'list', description: 'Set driver specific options' },
      { name: 'name', type: 'string', hidden: true },
    ],
    maxArgs: 1,
    async run(ctx, f, args) {
      if (args[0] && f.str('name') && args[0] !== f.str('name')) throw new CliError('conflicting options: either specify --name or provide positional arg, not both', 1);
      for (const o of f.list('opt')) if (!o.includes('=')) throw new CliError(`invalid argument "${o}" for "-o, --opt" flag: bad format for opt, expected key=value`, 1);
      const v = await ctx.client.post<VolumeView>('/volumes/create', {
        Name: args[0] ?? f.str('name') ?? '',
        Driver: f.str('driver') ?? 'local',
        // Empty maps are left out, as docker's CLI does, so inspect shows null.
        ...(f.list('opt').length ? { DriverOpts: keyValues(f.list('opt')) } : {}),
        ...(f.list('label').length ? { Labels: keyValues(f.list('label')) } : {}),
      });
      println(ctx, v.Name);
    },
  },
  {
    name: 'volume ls',
    use: 'berth volume ls [OPTIONS]',
    short: 'List volumes',
    flags: [
      { name: 'filter', short: 'f', type: 'list', description: "Provide filter values (e.g. 'dangling=true')" },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Only display volume names' },
      { name: 'cluster', type: 'bool', hidden: true },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const res = await ctx.client.get<{ Volumes: VolumeView[] | null }>('/volumes', { filters: parseFilterFlags(f.list('filter')) });
      const list = [...(res.Volumes ?? [])].sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
      ctx.out.write(renderFormatted(f.str('format'), list.map(volumeRow), {
        defaultTable: 'table {{.Driver}}\t{{.Name}}',
        quiet: f.bool('quiet'),
        quietFormat: '{{.Name}}',
        headers: VOLUME_HEADERS,
      }));
    },
  },
  {
    name: 'volume inspect',
    use: 'berth volume inspect [OPTIONS] VOLUME [VOLUME...]',
    short: 'Display detailed information on one or more volumes',
    flags: [{ name: 'format', short: 'f', type: 'string', description: 'Format output using a custom template' }],
    minArgs: 1,
    async run(ctx, f, args) {
      const found: unknown[] = [];
      const errors: string[] = [];
      for (const name of args) {
        try {
          found.push(await ctx.client.get(`/volumes/${encodeURIComponent(name)}`));
        } catch (err) {
          if (!(err instanceof ApiError) || err.status !== 404) throw err;
          errors.push(`Error response from daemon: ${err.message}`);
        }
      }
      printInspected(ctx, f.str('format'), found, errors);
    },
  },
  {
    name: 'volume rm',
    use: 'berth volume rm [OPTIONS] VOLUME [VOLUME...]',
    short: 'Remove one or more volumes',
    flags: [{ name: 'force', short: 'f', type: 'bool', description: 'Force the removal of one or more volumes' }],
    minArgs: 1,
    async run(ctx, f, args) {
      const errors: string[] = [];
      for (const name of args) {
        try {
          await ctx.client.delete(`/volumes/${encodeURIComponent(name)}`, { force: f.bool('force') || undefined });
          println(ctx, name);
        } catch (err) {
          errors.push(`Error response from daemon: ${(err as Error).message}`);
        }
      }
      if (errors.length) throw new CliError(errors.join('\n'), 1);
    },
  },
  {
    name: 'volume prune',
    use: 'berth volume prune [OPTIONS]',
    short: 'Remove unused local volumes',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Remove all unused volumes, not just anonymous ones' },
      { name: 'filter', type: 'list', description: "Provide filter values (e.g. 'label=<label>')" },
      { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const filters = [...f.list('filter')];
      if (f.bool('all')) {
        if (filters.some((x) => x.startsWith('all='))) throw new CliError('conflicting options: cannot specify both --all and --filter all=1', 1);
        filters.push('all=true');
      }
      if (!f.bool('force')) {
        const what = f.bool('all') ? 'all local volumes' : 'anonymous local volumes';
        if (!(await confirmRemoval(ctx, ` ${what} not used by at least one container.`))) return 0;
      }
      // `label!=x` parses as the key `label!`, which is how the API names it.
      const res = await ctx.client.post<{ VolumesDeleted: string[] | null; SpaceReclaimed: number }>('/volumes/prune', undefined, { filters: parseFilterFlags(filters) });
      if (res.VolumesDeleted?.length) {
        println(ctx, 'Deleted Volumes:');
        for (const v of res.VolumesDeleted) println(ctx, v);
        println(ctx);
      }
      println(ctx, `Total reclaimed space: ${humanSize(res.SpaceReclaimed)}`);
    },
  },
];
