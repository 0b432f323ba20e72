/**
 * `berth exec`: run a command in a running container, attached (streams,
 * TTY, detach keys, the command's exit code) or detached.
 */
import type { Command } from '../command.ts';
import { CliError } from '../command.ts';
import { expandEnv, parseEnvFile } from '../container-opts.ts';
import { pumpStreams } from '../attach.ts';
import { checkDetachKeysFlag } from '../tty.ts';

interface ExecInspect {
  Running: boolean;
  ExitCode: number | null;
}

export const commands: Command[] = [
  {
    name: 'exec',
    use: 'berth exec [OPTIONS] CONTAINER COMMAND [ARG...]',
    short: 'Execute a command in a running container',
    flags: [
      { name: 'detach', short: 'd', type: 'bool', description: 'Detached mode: run command in the background' },
      { name: 'detach-keys', type: 'string', description: 'Override the key sequence for detaching a container' },
      { name: 'env', short: 'e', type: 'list', description: 'Set environment variables' },
      { name: 'env-file', type: 'list', description: 'Read in a file of environment variables' },
      { name: 'interactive', short: 'i', type: 'bool', description: 'Keep STDIN open even if not attached' },
      { name: 'privileged', type: 'bool', description: 'Give extended privileges to the command' },
      { name: 'tty', short: 't', type: 'bool', description: 'Allocate a pseudo-TTY' },
      { name: 'user', short: 'u', type: 'string', description: 'Username or UID (format: "<name|uid>[:<group|gid>]")' },
      { name: 'workdir', short: 'w', type: 'string', description: 'Working directory inside the container' },
    ],
    interspersed: false,
    minArgs: 2,
    async run(ctx, f, args) {
      const [container, ...cmd] = args as [string, ...string[]];
      const detach = f.bool('detach');
      const tty = f.bool('tty');
      const interactive = f.bool('interactive');
      checkDetachKeysFlag(f.str('detach-keys'));
      const env: string[] = [];
      for (const file of f.list('env-file')) env.push(...parseEnvFile(file));
      for (const e of f.list('env')) env.push(expandEnv(e));
      // An unknown container is reported before anything else, as docker does.
      await ctx.client.get(`/containers/${encodeURIComponent(container)}/json`);
      if (!detach && tty && interactive && !process.stdin.isTTY) throw new CliError('the input device is not a TTY', 1);
      const consoleSize = tty && process.stdout.isTTY ? [process.stdout.rows ?? 0, process.stdout.columns ?? 0] : undefined;
      const { Id: id } = await ctx.client.post<{ Id: string }>(`/containers/${encodeURIComponent(container)}/exec`, {
        User: f.str('user') ?? '',
        Privileged: f.bool('privileged'),
        Tty: tty,
        ConsoleSize: consoleSize,
        AttachStdin: interactive && !detach,
        AttachStdout: !detach,
        AttachStderr: !detach,
        DetachKeys: f.str('detach-keys') ?? '',
        Env: env,
        WorkingDir: f.str('workdir') ?? '',
        Cmd: cmd,
      });
      if (detach) {
        await ctx.client.post(`/exec/${id}/start`, { Detach: true, Tty: tty, ConsoleSize: consoleSize });
        return 0;
      }
      const sock = await ctx.client.hijack(`/exec/${id}/start`, undefined, { Detach: false, Tty: tty, ConsoleSize: consoleSize });
      const how = await pumpStreams(ctx.client, sock, { stdin: interactive, stdout: true, stderr: true, tty, detachKeys: f.str('detach-keys'), resizePath: `/exec/${id}/resize` });
      // docker exec reports a detach as an error, status 1 (the process keeps running).
      if (how === 'detached') throw new CliError('read escape sequence', 1);
      const st = await ctx.client.get<ExecInspect>(`/exec/${id}/json`);
      return st.ExitCode ?? 0;
    },
  },
];
