import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { openAttach, pumpAttach } from '../attach.ts';
import { checkDetachKeysFlag } from '../tty.ts';
import { humanSize } from '../../util/units.ts';
import { confirmRemoval } from '../prompt.ts';
import { parseFilterFlags } from '../filters.ts';

interface InspectLite {
  Id: string;
  Config: { Tty: boolean; OpenStdin: boolean };
  State: { Running: boolean };
}

/**
 * Apply an operation to each named container, printing each name on success
 * and collecting failures, as docker's multi-container commands do.
 */
async function forEach(ctx: CliContext, names: string[], op: (name: string) => Promise<void>, echo = true): Promise<number> {
  const errors: string[] = [];
  for (const n of names) {
    try {
      await op(n);
      if (echo) println(ctx, n);
    } catch (err) {
      errors.push(`Error response from daemon: ${(err as Error).message}`);
    }
  }
  if (errors.length) throw new CliError(errors.join('\n'), 1);
  return 0;
}

const timeFlags = [
  { name: 'signal', short: 's', type: 'string' as const, description: 'Signal to send to the container' },
  { name: 'timeout', short: 't', type: 'int' as const, description: 'Seconds to wait before killing the container' },
  { name: 'time', type: 'int' as const, hidden: true },
];

export const commands: Command[] = [
  {
    name: 'start',
    use: 'berth start [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Start one or more stopped containers',
    flags: [
      { name: 'attach', short: 'a', type: 'bool', description: "Attach STDOUT/STDERR and forward signals" },
      { name: 'interactive', short: 'i', type: 'bool', description: "Attach container's STDIN" },
      { name: 'detach-keys', type: 'string', description: 'Override the key sequence for detaching a container' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      if (f.bool('attach') || f.bool('interactive')) {
        if (args.length > 1) throw new CliError('you cannot start and attach multiple containers at once', 1);
        checkDetachKeysFlag(f.str('detach-keys'));
        const c = await ctx.client.get<InspectLite>(`/containers/${encodeURIComponent(args[0]!)}/json`);
        if (f.bool('interactive') && c.Config.Tty && !process.stdin.isTTY) throw new CliError('the input device is not a TTY', 1);
        const o = { stdin: f.bool('interactive') && c.Config.OpenStdin, stdout: true, stderr: true, tty: c.Config.Tty, detachKeys: f.str('detach-keys'), sigProxy: true };
        const sock = await openAttach(ctx.client, c.Id, o);
        const wait = await ctx.client.waitExit(c.Id, 'next-exit');
        const pumped = pumpAttach(ctx.client, c.Id, sock, o);
        await ctx.client.post(`/containers/${c.Id}/start`);
        if ((await pumped) === 'detached') {
          wait.cancel();
          return 0;
        }
        return (await wait.status).StatusCode;
      }
      return forEach(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/start`));
    },
  },
  {
    name: 'stop',
    use: 'berth stop [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Stop one or more running containers',
    flags: timeFlags,
    minArgs: 1,
    async run(ctx, f, args) {
      const t = f.int('timeout') ?? f.int('time');
      return forEach(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/stop`, undefined, { t, signal: f.str('signal') }));
    },
  },
  {
    name: 'restart',
    use: 'berth restart [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Restart one or more containers',
    flags: timeFlags,
    minArgs: 1,
    async run(ctx, f, args) {
      const t = f.int('timeout') ?? f.int('time');
      return forEach(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/restart`, undefined, { t, signal: f.str('signal') }));
    },
  },
  {
    name: 'kill',
    use: 'berth kill [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Kill one or more running containers',
    flags: [{ name: 'signal', short: 's', type: 'string', description: 'Signal to send to the container' }],
    minArgs: 1,
    async run(ctx, f, args) {
      return forEach(ctx, args, (n) => ctx.client.post(`/containers/${encodeURIComponent(n)}/kill`, undefined, { signal: f.str('signal') }));
    },
  },
  {
    name: 'rm',
    use: 'berth rm [OPTIONS] CONTAINER [CONTAINER...]',
    short: 'Remove one or more containers',
    flags: [
      { name: 'force', short: 'f', type: 'bool', description: 'Force the removal of a running container (uses SIGKILL)' },
      { name: 'volumes', short: 'v', type: 'bool', description: 'Remove anonymous volumes associated with the container' },
      { name: 'link', short: 'l', type: 'bool', description: 'Remove the specified link' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      return forEach(ctx, args, async (n) => {
        await ctx.client.delete(`/containers/${encodeURIComponent(n)}`, { force: f.bool('force'), v: f.bool('volumes') });
      });
    },
  },
  {
    name: 'wait',
    use: 'berth wait CONTAINER [CONTAINER...]',
    short: 'Block until one or more containers stop, then print their exit codes',
    flags: [],
    minArgs: 1,
    async run(ctx, _f, args) {
      return forEach(ctx, args, async (n) => {
        const r = await ctx.client.post<{ StatusCode: number }>(`/containers/${encodeURIComponent(n)}/wait`);
        println(ctx, String(r.StatusCode));
      }, false);
    },
  },
  {
    name: 'rename',
    use: 'berth rename CONTAINER NEW_NAME',
    short: 'Rename a container',
    flags: [],
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, _f, args) {
      await ctx.client.post(`/containers/${encodeURIComponent(args[0]!)}/rename`, undefined, { name: args[1] });
    },
  },
  {
    name: 'attach',
    use: 'berth attach [OPTIONS] CONTAINER',
    short: "Attach local standard input, output, and error streams to a running container",
    flags: [
      { name: 'no-stdin', type: 'bool', description: 'Do not attach STDIN' },
      { name: 'sig-proxy', type: 'bool', description: 'Proxy all received signals to the process', default: true },
      { name: 'detach-keys', type: 'string', description: 'Override the key sequence for detaching a container' },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const c = await ctx.client.get<InspectLite>(`/containers/${encodeURIComponent(args[0]!)}/json`);
      if (!c.State.Running) throw new CliError('You cannot attach to a stopped container, start it first', 1);
      if (!f.bool('no-stdin') && c.Config.Tty && !process.stdin.isTTY) throw new CliError('the input device is not a TTY', 1);
      checkDetachKeysFlag(f.str('detach-keys'));
      const o = { stdin: !f.bool('no-stdin') && c.Config.OpenStdin, stdout: true, stderr: true, tty: c.Config.Tty, detachKeys: f.str('detach-keys'), sigProxy: f.bool('sig-proxy') };
      const sock = await openAttach(ctx.client, c.Id, o);
      if ((await pumpAttach(ctx.client, c.Id, sock, o, true)) === 'detached') throw new CliError('read escape sequence', 1);
      const r = await ctx.client.get<{ State: { Running: boolean; ExitCode: number } }>(`/containers/${c.Id}/json`);
      return r.State.Running ? 0 : r.State.ExitCode;
    },
  },
  {
    name: 'container prune',
    use: 'berth container prune [OPTIONS]',
    short: 'Remove all stopped containers',
    flags: [
      { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
      { name: 'filter', type: 'list', description: 'Provide filter values (e.g. "until=<timestamp>")' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      if (!f.bool('force') && !(await confirmRemoval(ctx, ' all stopped containers.'))) return 0;
      const r = await ctx.client.post<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }>('/containers/prune', undefined, { filters: parseFilterFlags(f.list('filter')) });
      if (r.ContainersDeleted?.length) {
        println(ctx, 'Deleted Containers:');
        for (const id of r.ContainersDeleted) println(ctx, id);
        println(ctx);
      }
      println(ctx, `Total reclaimed space: ${humanSize(r.SpaceReclaimed)}`);
    },
  },
];
