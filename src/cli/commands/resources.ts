/**
 * `pause`, `unpause` and `update`: the freezer and live resource changes.
 */
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { UPDATE_FLAGS, updateResourceFields } from '../resource-opts.ts';

async function each(ctx: CliContext, names: string[], op: (n: string) => Promise<void>): Promise<number> {
  const errors: string[] = [];
  for (const n of names) {
    try {
      await op(n);
      println(ctx, n);
    } catch (err) {
      errors.push(`Error response from daemon: ${(err as Error).message}`);
    }
  }
  if (errors.length) throw new CliError(errors.join('\n'), 1);
  return 0;
}

function parseRestart(s: string): { Name: string; MaximumRetryCount: number } {
  const [name = 'no', count] = s.split(':');
  if (!['no', 'always', 'unless-stopped', 'on-failure'].includes(name)) throw new CliError(`invalid restart policy: ${s}`, 1);
  if (count !== undefined && !/^\d+$/.test(count)) throw new CliError('invalid restart policy format: maximum retry count must be an integer', 1);
  return { Name: name, MaximumRetryCount: count ? Number(count) : 0 };
}

export const commands: Command[] = [
  {
    name: 'pause',
    use: 'berth pause CONTAINER [CONTAINER...]',
    short: 'Pause all processes within one or more containers',
    flags: [],
    minArgs: 1,
    run: (ctx, _f, args) => each(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/pause`)),
  },
  {
    name: 'unpause',
    use: 'berth unpause CONTAINER [CONTAINER...]',
    short: 'Unpause all processes within one or more containers',
    flags: [],
    minArgs: 1,
    run: (ctx, _f, args) => each(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/unpause`)),
  },
  {
    name: 'update',
    use: 'berth update [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Update configuration of one or more containers',
    flags: [...UPDATE_FLAGS, { name: 'restart', type: 'string', description: 'Restart policy to apply when a container exits' }],
    minArgs: 1,
    async run(ctx, f, args) {
      let body: Record<string, unknown>;
      try {
        body = updateResourceFields(f);
      } catch (err) {
        throw new CliError((err as Error).message, 1);
      }
      if (f.str('restart') !== undefined) body.RestartPolicy = parseRestart(f.str('restart')!);
      if (Object.keys(body).length === 0) throw new CliError('you must provide one or more flags when using this command', 1);
      return each(ctx, args, async (n) => {
        const res = await ctx.client.post<{ Warnings?: string[] | null }>(`/containers/${encodeURIComponent(n)}/update`, body);
        for (const w of res?.Warnings ?? []) ctx.err.write(`${w}\n`);
      });
    },
  },
];
