import { writeFileSync } from 'node:fs';
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import type { Flags } from '../flags.ts';
import { ApiError } from '../client.ts';
import { CONTAINER_FLAGS, RUN_ONLY_FLAGS, buildCreateBody } from '../container-opts.ts';
import { openAttach, pumpAttach } from '../attach.ts';
import { checkDetachKeysFlag } from '../tty.ts';

async function createContainer(ctx: CliContext, f: Flags, args: string[], detach: boolean): Promise<string> {
  const [image, ...cmd] = args;
  const { body, name, platform } = buildCreateBody(f, image!, cmd, detach);
  const query = { name, platform };
  const pullMode = f.str('pull') ?? 'missing';
  if (!['always', 'missing', 'never'].includes(pullMode)) throw new CliError(`invalid pull option: '${pullMode}': must be one of "always", "missing" or "never"`, 125);
  // The pull machinery (credentials, progress drawing) loads only when a pull happens.
  const pullImage = async (...a: Parameters<typeof import('../pull.ts').pullImage>) => (await import('../pull.ts')).pullImage(...a);
  if (pullMode === 'always') await pullImage(ctx, image!, { quiet: f.bool('quiet'), platform, out: ctx.err });
  let res: { Id: string; Warnings?: string[] };
  try {
    res = await ctx.client.post<{ Id: string; Warnings?: string[] }>('/containers/create', body, query);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404 || !err.message.startsWith('No such image') || pullMode === 'never') throw err;
    const shown = image!.includes(':') || image!.includes('@') ? image! : `${image}:latest`;
    ctx.err.write(`Unable to find image '${shown}' locally\n`);
    await pullImage(ctx, image!, { quiet: f.bool('quiet'), platform, out: ctx.err });
    res = await ctx.client.post<{ Id: string; Warnings?: string[] }>('/containers/create', body, query);
  }
  for (const w of res.Warnings ?? []) ctx.err.write(`WARNING: ${w}\n`);
  const cidfile = f.str('cidfile');
  if (cidfile) writeFileSync(cidfile, res.Id, { flag: 'wx' });
  return res.Id;
}

export const commands: Command[] = [
  {
    name: 'create',
    use: 'berth create [OPTIONS] IMAGE [COMMAND] [ARG...]',
    short: 'Create a new container',
    flags: CONTAINER_FLAGS,
    interspersed: false,
    minArgs: 1,
    errorExitCode: 125,
    async run(ctx, f, args) {
      println(ctx, await createContainer(ctx, f, args, true));
    },
  },
  {
    name: 'run',
    use: 'berth run [OPTIONS] IMAGE [COMMAND] [ARG...]',
    short: 'Create and run a new container from an image',
    flags: [...CONTAINER_FLAGS, ...RUN_ONLY_FLAGS],
    interspersed: false,
    minArgs: 1,
    errorExitCode: 125,
    async run(ctx, f, args) {
      const detach = f.bool('detach');
      if (f.bool('tty') && f.bool('interactive') && !detach && !process.stdin.isTTY) {
        throw new CliError('the input device is not a TTY', 1);
      }
      checkDetachKeysFlag(f.str('detach-keys'), 125);
      const id = await createContainer(ctx, f, args, detach);
      if (detach) {
        try {
          await ctx.client.post(`/containers/${id}/start`);
        } catch (err) {
          throw new CliError(`berth: Error response from daemon: ${(err as Error).message}.`, exitCodeFor((err as Error).message));
        }
        println(ctx, id);
        return 0;
      }
      const attachList = f.list('attach').map((a) => a.toLowerCase());
      const o = {
        stdin: attachList.length ? attachList.includes('stdin') : f.bool('interactive'),
        stdout: attachList.length ? attachList.includes('stdout') : true,
        stderr: attachList.length ? attachList.includes('stderr') : true,
        tty: f.bool('tty'),
        detachKeys: f.str('detach-keys'),
        sigProxy: f.bool('sig-proxy'),
      };
      // The wait must be registered before the start, or a short-lived
      // container's exit is missed; the start's connection is made meanwhile.
      const ready = Promise.all([openAttach(ctx.client, id, o), ctx.client.waitExit(id, f.bool('rm') ? 'removed' : 'next-exit')]);
      const started = ctx.client.startAfter(id, ready);
      started.catch(() => undefined);
      const [sock, wait] = await ready;
      const pumped = pumpAttach(ctx.client, id, sock, o);
      try {
        await started;
      } catch (err) {
        sock.destroy();
        throw new CliError(`berth: Error response from daemon: ${(err as Error).message}.`, exitCodeFor((err as Error).message));
      }
      // Detached with the keys: the container keeps running, the CLI leaves quietly.
      if ((await pumped) === 'detached') {
        wait.cancel();
        return 0;
      }
      const st = await wait.status;
      if (st.Error?.Message) ctx.err.write(`${st.Error.Message}\n`);
      return st.StatusCode;
    },
  },
];

/** docker's run exit codes for a command that could not be started. */
function exitCodeFor(message: string): number {
  if (/executable file not found|no such file or directory/i.test(message)) return 127;
  if (/permission denied/i.test(message)) return 126;
  return 125;
}
