/**
 * The berth command line: docker's commands and flags, as a plain client of
 * the Engine API. Command modules are loaded on demand so that `berth run`
 * pays only for what it uses.
 */
import { ApiClient, ApiError, parseHost } from './client.ts';
import { Flags, UsageError, parseFlags, usageText } from './flags.ts';
import type { FlagSpec } from './flags.ts';
import type { Command, CliContext } from './command.ts';
import { CliError } from './command.ts';

type Loader = () => Promise<{ commands: Command[] }>;

/** Command modules; literal imports so the build can rewrite their paths. */
const LOADERS: Record<string, Loader> = {
  run: () => import('./commands/run.ts'),
  lifecycle: () => import('./commands/lifecycle.ts'),
  ps: () => import('./commands/ps.ts'),
  logs: () => import('./commands/logs.ts'),
  inspect: () => import('./commands/inspect.ts'),
  images: () => import('./commands/images.ts'),
  system: () => import('./commands/system.ts'),
  network: () => import('./commands/network.ts'),
  stats: () => import('./commands/stats.ts'),
  resources: () => import('./commands/resources.ts'),
  build: () => import('./commands/build.ts'),
  commit: () => import('./commands/commit.ts'),
  registry: () => import('./commands/registry.ts'),
  exec: () => import('./commands/exec.ts'),
  top: () => import('./commands/top.ts'),
  volume: () => import('./commands/volume.ts'),
  cp: () => import('./commands/cp.ts'),
  data: () => import('./commands/data.ts'),
  events: () => import('./commands/events.ts'),
  'registry-server': () => import('./commands/registry-server.ts'),
};

/** Which module holds each top-level command (and `group sub` commands). */
const MODULES: Record<string, string> = {
  run: 'run', create: 'run', start: 'lifecycle', stop: 'lifecycle', restart: 'lifecycle', kill: 'lifecycle',
  rm: 'lifecycle', wait: 'lifecycle', rename: 'lifecycle', attach: 'lifecycle',
  ps: 'ps', logs: 'logs', inspect: 'inspect',
  images: 'images', rmi: 'images', tag: 'images', history: 'images', import: 'images', load: 'images', save: 'images',
  version: 'system', info: 'system',
  stats: 'stats', pause: 'resources', unpause: 'resources', update: 'resources',
  exec: 'exec', top: 'top',
  'container inspect': 'inspect', 'image inspect': 'inspect',
  'container prune': 'lifecycle', 'image prune': 'images', 'system prune': 'data',
  cp: 'cp', export: 'data', diff: 'data', 'system df': 'data', events: 'events',
  port: 'network',
  'network create': 'network', 'network ls': 'network', 'network inspect': 'network', 'network rm': 'network',
  'network prune': 'network', 'network connect': 'network', 'network disconnect': 'network',
  build: 'build', 'builder prune': 'build', commit: 'commit',
  pull: 'registry', push: 'registry', login: 'registry', logout: 'registry', 'manifest inspect': 'registry',
  'volume create': 'volume', 'volume ls': 'volume', 'volume inspect': 'volume', 'volume rm': 'volume', 'volume prune': 'volume',
  'registry serve': 'registry-server', 'registry gc': 'registry-server',
};

/** `berth container ls` → `ps`, `berth image rm` → `rmi`, … */
const GROUPS: Record<string, Record<string, string>> = {
  builder: { build: 'build', prune: 'builder prune' },
  container: { cp: 'cp', export: 'export', diff: 'diff', ls: 'ps', list: 'ps', ps: 'ps', run: 'run', create: 'create', start: 'start', stop: 'stop', restart: 'restart', kill: 'kill', rm: 'rm', remove: 'rm', wait: 'wait', rename: 'rename', attach: 'attach', exec: 'exec', top: 'top', logs: 'logs', inspect: 'container inspect', prune: 'container prune', commit: 'commit', stats: 'stats', pause: 'pause', unpause: 'unpause', update: 'update', port: 'port' },
  image: { ls: 'images', list: 'images', rm: 'rmi', remove: 'rmi', tag: 'tag', history: 'history', import: 'import', load: 'load', save: 'save', inspect: 'image inspect', prune: 'image prune', pull: 'pull', push: 'push', build: 'build' },
  system: { info: 'info', prune: 'system prune', df: 'system df', events: 'events' },
  volume: { create: 'volume create', ls: 'volume ls', list: 'volume ls', inspect: 'volume inspect', rm: 'volume rm', remove: 'volume rm', prune: 'volume prune' },
  manifest: { inspect: 'manifest inspect' },
  registry: { serve: 'registry serve', gc: 'registry gc' },
  network: { create: 'network create', ls: 'network ls', list: 'network ls', inspect: 'network inspect', rm: 'network rm', remove: 'network rm', prune: 'network prune', connect: 'network connect', disconnect: 'network disconnect' },
};

const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'host', short: 'H', type: 'string', description: 'Daemon socket to connect to' },
  { name: 'debug', short: 'D', type: 'bool', description: 'Enable debug mode' },
  { name: 'log-level', short: 'l', type: 'string', description: 'Set the logging level' },
  { name: 'version', short: 'v', type: 'bool', description: 'Print version information and quit' },
  { name: 'help', type: 'bool', description: 'Print usage' },
  { name: 'config', type: 'string', description: 'Location of client config files' },
  { name: 'context', short: 'c', type: 'string', description: 'Name of the context to use' },
];

const TOP_USAGE = `Usage:  berth [OPTIONS] COMMAND

A Docker-compatible container engine

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  images      List images
  logs        Fetch the logs of a container
  inspect     Return low-level information on berth objects
  version     Show the berth version information
  info        Display system-wide information

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  builder     Manage builds
  registry    Run berth's registry server
  system      Manage berth
  volume      Manage volumes
  manifest    Manage image manifests

Commands:
  attach, build, commit, cp, create, diff, events, export, history,
  import, kill, load, login, logout, pause, port, pull, push, rename, restart,
  rm, rmi, save, start, stats, stop, tag, top, unpause, update, wait

Global Options:
  -H, --host string      Daemon socket to connect to (also DOCKER_HOST)
  -D, --debug            Enable debug mode
  -v, --version          Print version information and quit

Run 'berth COMMAND --help' for more information on a command.
`;

async function loadCommand(name: string): Promise<Command | undefined> {
  const mod = MODULES[name];
  if (!mod) return undefined;
  const load = LOADERS[mod];
  if (!load) return undefined;
  const m = await load();
  return m.commands.find((c) => c.name === name || c.aliases?.includes(name));
}

/** Split global flags from the command and its arguments. */
function splitGlobal(argv: string[]): { global: string[]; rest: string[] } {
  const global: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) {
    const a = argv[i]!;
    global.push(a);
    const spec = GLOBAL_FLAGS.find((s) => a === `--${s.name}` || a === `-${s.short}`);
    if (spec && spec.type !== 'bool' && !a.includes('=')) global.push(argv[++i]!);
    i++;
  }
  return { global, rest: argv.slice(i) };
}

export async function main(argv: string[]): Promise<number> {
  const { global, rest } = splitGlobal(argv);
  let g: Flags;
  try {
    g = new Flags(parseFlags(global, GLOBAL_FLAGS).flags);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\nSee 'berth --help'.\n`);
    return 125;
  }
  if (g.bool('version')) {
    process.stdout.write('berth version 0.1.0\n');
    return 0;
  }
  if (rest.length === 0 || g.bool('help') || rest[0] === 'help') {
    process.stdout.write(TOP_USAGE);
    return 0;
  }
  let name = rest[0]!;
  let args = rest.slice(1);
  const group = GROUPS[name];
  if (group) {
    const sub = args[0];
    if (!sub || sub === '--help') {
      process.stdout.write(`Usage:  berth ${name} COMMAND\n\nCommands:\n${Object.keys(group).map((k) => `  ${k}`).join('\n')}\n`);
      return sub ? 0 : 1;
    }
    const target = group[sub];
    if (!target) {
      process.stderr.write(`berth: '${name} ${sub}' is not a berth command.\nSee 'berth ${name} --help'\n`);
      return 1;
    }
    name = target;
    args = args.slice(1);
  }
  const cmd = await loadCommand(name);
  if (!cmd) {
    process.stderr.write(`berth: '${name}' is not a berth command.\nSee 'berth --help'\n`);
    return 1;
  }
  let parsed;
  try {
    if (args.includes('--help') && (cmd.interspersed !== false || args[0] === '--help')) {
      process.stdout.write(usageText(cmd.use, cmd.short, cmd.flags));
      return 0;
    }
    parsed = parseFlags(args, cmd.flags, { interspersed: cmd.interspersed });
    const n = parsed.args.length;
    if ((cmd.minArgs !== undefined && n < cmd.minArgs) || (cmd.maxArgs !== undefined && n > cmd.maxArgs)) {
      const want = cmd.minArgs === cmd.maxArgs ? `exactly ${cmd.minArgs} argument${cmd.minArgs === 1 ? '' : 's'}` : n < (cmd.minArgs ?? 0) ? `at least ${cmd.minArgs} argument${cmd.minArgs === 1 ? '' : 's'}` : `at most ${cmd.maxArgs} argument${cmd.maxArgs === 1 ? '' : 's'}`;
      throw new UsageError(`"berth ${name}" requires ${want}.\nSee 'berth ${name} --help'.\n\nUsage:  ${cmd.use}\n\n${cmd.short}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return cmd.errorExitCode ?? 1;
    }
    throw err;
  }
  // `--config DIR` is where the credentials live (read by the registry commands).
  if (g.str('config')) process.env.DOCKER_CONFIG = g.str('config');
  const client = new ApiClient(parseHost(g.str('host')));
  const ctx: CliContext = { client, out: process.stdout, err: process.stderr };
  try {
    const code = await cmd.run(ctx, new Flags(parsed.flags), parsed.args);
    return code ?? 0;
  } catch (err) {
    if (err instanceof CliError) {
      if (err.message) process.stderr.write(`${err.message}\n`);
      return err.code;
    }
    if (err instanceof ApiError) {
      process.stderr.write(`Error response from daemon: ${err.message}\n`);
      return cmd.errorExitCode ?? 1;
    }
    process.stderr.write(`${(err as Error).message}\n`);
    return cmd.errorExitCode ?? 1;
  } finally {
    client.close();
  }
}
