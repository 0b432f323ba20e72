import type { Command } from '../command.ts';
import { demux } from '../client.ts';

export const commands: Command[] = [
  {
    name: 'logs',
    use: 'berth logs [OPTIONS] CONTAINER',
    short: 'Fetch the logs of a container',
    flags: [
      { name: 'follow', short: 'f', type: 'bool', description: 'Follow log output' },
      { name: 'tail', short: 'n', type: 'string', description: 'Number of lines to show from the end of the logs', default: 'all' },
      { name: 'since', type: 'string', description: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
      { name: 'until', type: 'string', description: 'Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)' },
      { name: 'timestamps', short: 't', type: 'bool', description: 'Show timestamps' },
      { name: 'details', type: 'bool', description: 'Show extra details provided to logs' },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const c = await ctx.client.get<{ Id: string; Config: { Tty: boolean } }>(`/containers/${encodeURIComponent(args[0]!)}/json`);
      const res = await ctx.client.raw('GET', `/containers/${c.Id}/logs`, {
        query: { stdout: true, stderr: true, follow: f.bool('follow') || undefined, tail: f.str('tail'), since: f.str('since'), until: f.str('until'), timestamps: f.bool('timestamps') || undefined },
      });
      const onChunk = c.Config.Tty ? (d: Buffer) => ctx.out.write(d) : demux((s, d) => (s === 2 ? ctx.err : ctx.out).write(d));
      for await (const chunk of res) onChunk(chunk as Buffer);
    },
  },
];
