/** `berth top CONTAINER [ps OPTIONS]`: the container's processes as the host's ps shows them. */
import type { Command } from '../command.ts';
import { tabwrite } from '../format/table.ts';

export const commands: Command[] = [
  {
    name: 'top',
    use: 'berth top CONTAINER [ps OPTIONS]',
    short: 'Display the running processes of a container',
    flags: [],
    interspersed: false,
    minArgs: 1,
    async run(ctx, _f, args) {
      const [container, ...ps] = args as [string, ...string[]];
      const r = await ctx.client.get<{ Titles: string[]; Processes: string[][] | null }>(`/containers/${encodeURIComponent(container)}/top`, ps.length ? { ps_args: ps.join(' ') } : undefined);
      // docker's tabwriter here: minimum width 20, padding 3.
      ctx.out.write(tabwrite([r.Titles, ...(r.Processes ?? [])], 3, 20));
    },
  },
];
