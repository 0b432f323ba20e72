import type { Command } from '../command.ts';
import { println } from '../command.ts';
import { renderFormatted } from '../format/table.ts';
import { humanDuration } from '../../util/time.ts';
import { humanSize } from '../../util/units.ts';
import { parseFilterFlags } from '../filters.ts';

interface Summary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Command: string;
  Created: number;
  Ports: Array<{ IP?: string; PrivatePort: number; PublicPort?: number; Type: string }>;
  Labels: Record<string, string>;
  State: string;
  Status: string;
  SizeRw?: number;
  SizeRootFs?: number;
  Mounts: Array<{ Name?: string; Source?: string }>;
  NetworkSettings: { Networks: Record<string, unknown> };
}

const HEADERS: Record<string, string> = {
  ID: 'CONTAINER ID', Image: 'IMAGE', Command: 'COMMAND', CreatedAt: 'CREATED AT', RunningFor: 'CREATED', Status: 'STATUS',
  Ports: 'PORTS', Names: 'NAMES', Size: 'SIZE', Labels: 'LABELS', Mounts: 'MOUNTS', Networks: 'NETWORKS', State: 'STATE', LocalVolumes: 'LOCAL VOLUMES',
};

function portsString(ports: Summary['Ports']): string {
  return ports.map((p) => (p.PublicPort ? `${p.IP === '::' ? '[::]' : p.IP ?? '0.0.0.0'}:${p.PublicPort}->${p.PrivatePort}/${p.Type}` : `${p.PrivatePort}/${p.Type}`)).join(', ');
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** The fields `--format` templates see, with docker's names and formatting. */
function row(c: Summary, noTrunc: boolean) {
  const cmd = noTrunc ? JSON.stringify(c.Command) : JSON.stringify(truncate(c.Command, 20));
  return {
    ID: noTrunc ? c.Id : c.Id.slice(0, 12),
    Image: noTrunc || !c.Image.startsWith('sha256:') ? c.Image : c.Image.slice(7, 19),
    Command: cmd,
    CreatedAt: new Date(c.Created * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' +0000 UTC'),
    RunningFor: `${humanDuration(Date.now() - c.Created * 1000)} ago`,
    Status: c.Status,
    State: c.State,
    Ports: portsString(c.Ports),
    Names: c.Names.map((n) => n.slice(1)).join(','),
    Size: c.SizeRw !== undefined ? `${humanSize(c.SizeRw)} (virtual ${humanSize(c.SizeRootFs ?? 0)})` : '0B',
    Labels: Object.entries(c.Labels).map(([k, v]) => `${k}=${v}`).join(','),
    Mounts: c.Mounts.map((m) => m.Name ?? m.Source ?? '').join(','),
    Networks: Object.keys(c.NetworkSettings?.Networks ?? {}).join(','),
    LocalVolumes: String(c.Mounts.filter((m) => m.Name).length),
    Label: (k: string) => c.Labels[k] ?? '',
  };
}

export const commands: Command[] = [
  {
    name: 'ps',
    aliases: ['container ls'],
    use: 'berth ps [OPTIONS]',
    short: 'List containers',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Show all containers (default shows just running)' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Only display container IDs' },
      { name: 'last', short: 'n', type: 'int', description: 'Show n last created containers (includes all states)', default: -1 },
      { name: 'latest', short: 'l', type: 'bool', description: 'Show the latest created container (includes all states)' },
      { name: 'size', short: 's', type: 'bool', description: 'Display total file sizes' },
      { name: 'filter', short: 'f', type: 'list', description: 'Filter output based on conditions provided' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      let limit = f.int('last') ?? -1;
      if (f.bool('latest')) limit = 1;
      const list = await ctx.client.get<Summary[]>('/containers/json', {
        all: f.bool('all') || undefined,
        limit: limit > 0 ? limit : undefined,
        size: f.bool('size') || undefined,
        filters: parseFilterFlags(f.list('filter')),
      });
      const noTrunc = f.bool('no-trunc');
      if (f.bool('quiet')) {
        for (const c of list) println(ctx, noTrunc ? c.Id : c.Id.slice(0, 12));
        return;
      }
      const def = `table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}${f.bool('size') ? '\t{{.Size}}' : ''}`;
      ctx.out.write(renderFormatted(f.str('format'), list.map((c) => row(c, noTrunc)), { defaultTable: def, headers: HEADERS }));
    },
  },
];
