/**
 * The flags of `run` and `create`, and how they become the Engine API's
 * create body (Config + HostConfig), as docker's CLI builds it.
 */
import { readFileSync } from 'node:fs';
import type { FlagSpec, Flags } from './flags.ts';
import { CliError } from './command.ts';
import { parsePortSpecs } from './port-specs.ts';
import { RESOURCE_FLAGS, applyResourceFlags } from './resource-opts.ts';
import { MOUNT_FLAGS, applyMountFlags } from './mount-opts.ts';

export const CONTAINER_FLAGS: FlagSpec[] = [
  { name: 'name', type: 'string', description: 'Assign a name to the container' },
  { name: 'rm', type: 'bool', description: 'Automatically remove the container and its associated anonymous volumes when it exits' },
  { name: 'env', short: 'e', type: 'list', description: 'Set environment variables' },
  { name: 'env-file', type: 'list', description: 'Read in a file of environment variables' },
  { name: 'workdir', short: 'w', type: 'string', description: 'Working directory inside the container' },
  { name: 'user', short: 'u', type: 'string', description: 'Username or UID (format: <name|uid>[:<group|gid>])' },
  { name: 'group-add', type: 'list', description: 'Add additional groups to join' },
  { name: 'hostname', short: 'h', type: 'string', description: 'Container host name' },
  { name: 'domainname', type: 'string', description: 'Container NIS domain name' },
  { name: 'entrypoint', type: 'string', description: 'Overwrite the default ENTRYPOINT of the image' },
  { name: 'label', short: 'l', type: 'list', description: 'Set meta data on a container' },
  { name: 'label-file', type: 'list', description: 'Read in a line delimited file of labels' },
  { name: 'network', type: 'list', description: 'Connect a container to a network' },
  { name: 'net', type: 'list', hidden: true },
  { name: 'network-alias', type: 'list', description: 'Add network-scoped alias for the container' },
  { name: 'net-alias', type: 'list', hidden: true },
  { name: 'ip', type: 'string', description: 'IPv4 address (e.g., 172.30.100.104)' },
  { name: 'mac-address', type: 'string', description: 'Container MAC address (e.g., 92:d0:c6:0a:29:33)' },
  { name: 'publish', short: 'p', type: 'list', description: "Publish a container's port(s) to the host" },
  { name: 'publish-all', short: 'P', type: 'bool', description: 'Publish all exposed ports to random ports' },
  { name: 'expose', type: 'list', description: 'Expose a port or a range of ports' },
  { name: 'link', type: 'list', description: 'Add link to another container' },
  { name: 'stop-signal', type: 'string', description: 'Signal to stop the container' },
  { name: 'stop-timeout', type: 'int', description: 'Timeout (in seconds) to stop a container' },
  { name: 'interactive', short: 'i', type: 'bool', description: 'Keep STDIN open even if not attached' },
  { name: 'tty', short: 't', type: 'bool', description: 'Allocate a pseudo-TTY' },
  { name: 'attach', short: 'a', type: 'list', description: 'Attach to STDIN, STDOUT or STDERR' },
  { name: 'privileged', type: 'bool', description: 'Give extended privileges to this container' },
  { name: 'cap-add', type: 'list', description: 'Add Linux capabilities' },
  { name: 'cap-drop', type: 'list', description: 'Drop Linux capabilities' },
  { name: 'read-only', type: 'bool', description: "Mount the container's root filesystem as read only" },
  { name: 'security-opt', type: 'list', description: 'Security Options' },
  { name: 'restart', type: 'string', description: 'Restart policy to apply when a container exits', default: 'no' },
  { name: 'dns', type: 'list', description: 'Set custom DNS servers' },
  { name: 'dns-search', type: 'list', description: 'Set custom DNS search domains' },
  { name: 'dns-option', type: 'list', description: 'Set DNS options' },
  { name: 'add-host', type: 'list', description: 'Add a custom host-to-IP mapping (host:ip)' },
  { name: 'ipc', type: 'string', description: 'IPC mode to use' },
  { name: 'pid', type: 'string', description: 'PID namespace to use' },
  { name: 'uts', type: 'string', description: 'UTS namespace to use' },
  { name: 'shm-size', type: 'string', description: 'Size of /dev/shm' },
  { name: 'platform', type: 'string', description: 'Set platform if server is multi-platform capable' },
  { name: 'pull', type: 'string', description: 'Pull image before running ("always", "missing", "never")', default: 'missing' },
  { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress the pull output' },
  { name: 'cidfile', type: 'string', description: 'Write the container ID to the file' },
  { name: 'log-driver', type: 'string', description: 'Logging driver for the container' },
  { name: 'log-opt', type: 'list', description: 'Log driver options' },
  ...RESOURCE_FLAGS,
  ...MOUNT_FLAGS,
];

export const RUN_ONLY_FLAGS: FlagSpec[] = [
  { name: 'detach', short: 'd', type: 'bool', description: 'Run container in background and print container ID' },
  { name: 'detach-keys', type: 'string', description: 'Override the key sequence for detaching a container' },
  { name: 'sig-proxy', type: 'bool', description: 'Proxy received signals to the process', default: true },
];

export function parseEnvFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`open ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, 125);
  }
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/^\s+/, '');
    if (!line || line.startsWith('#')) continue;
    out.push(expandEnv(line));
  }
  return out;
}

/** `-e FOO` without a value takes FOO from the client's environment (or drops it). */
export function expandEnv(e: string): string {
  if (e.includes('=')) return e;
  const v = process.env[e];
  return v === undefined ? e : `${e}=${v}`;
}

function parseRestart(s: string): { Name: string; MaximumRetryCount: number } {
  const [name = 'no', count] = s.split(':');
  if (!['no', 'always', 'unless-stopped', 'on-failure'].includes(name)) throw new CliError(`invalid restart policy: ${s}`, 125);
  if (count !== undefined) {
    if (name !== 'on-failure') throw new CliError(`invalid restart policy format: maximum retry count can only be used with 'on-failure'`, 125);
    if (!/^\d+$/.test(count)) throw new CliError(`invalid restart policy format: maximum retry count must be an integer`, 125);
  }
  return { Name: name, MaximumRetryCount: count ? Number(count) : 0 };
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new CliError(`invalid size: '${s}'`, 125);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}

/** Split a shell-like entrypoint string the way docker does: a single word, no shell parsing. */
export interface CreateBody {
  body: Record<string, unknown>;
  name?: string;
  platform?: string;
}

export function buildCreateBody(f: Flags, image: string, cmd: string[], detach: boolean): CreateBody {
  const env: string[] = [];
  for (const file of f.list('env-file')) env.push(...parseEnvFile(file));
  for (const e of f.list('env')) env.push(expandEnv(e));
  const labels: Record<string, string> = {};
  for (const file of f.list('label-file')) {
    for (const line of readFileSync(file, 'utf8').split('\n')) if (line.trim() && !line.startsWith('#')) f.list('label').unshift(line.trim());
  }
  for (const l of f.list('label')) {
    const i = l.indexOf('=');
    labels[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
  }
  const attach = f.list('attach').map((a) => a.toLowerCase());
  for (const a of attach) if (!['stdin', 'stdout', 'stderr'].includes(a)) throw new CliError(`invalid argument "${a}" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR`, 125);
  if (detach && attach.length) throw new CliError('Conflicting options: -a and -d', 125);
  const interactive = f.bool('interactive');
  const attachStdin = !detach && (attach.length ? attach.includes('stdin') : interactive);
  const attachStdout = !detach && (attach.length ? attach.includes('stdout') : true);
  const attachStderr = !detach && (attach.length ? attach.includes('stderr') : true);
  const entrypoint = f.str('entrypoint');
  const stopTimeout = f.int('stop-timeout');
  const networks = [...f.list('network'), ...f.list('net')];
  const network = networks[0] ?? 'default';
  const ports = parsePortSpecs(f.list('publish'), f.list('expose'));
  const endpoints: Record<string, Record<string, unknown>> = {};
  networks.forEach((n, i) => {
    const ep: Record<string, unknown> = {};
    // --ip, --mac-address and aliases apply to the first network, as with docker.
    if (i === 0) {
      const aliases = [...f.list('network-alias'), ...f.list('net-alias')];
      if (aliases.length) ep.Aliases = aliases;
      if (f.str('ip')) ep.IPAMConfig = { IPv4Address: f.str('ip') };
      if (f.str('mac-address')) ep.MacAddress = f.str('mac-address');
    }
    endpoints[n] = ep;
  });
  if (!networks.length && (f.str('ip') || f.str('mac-address') || f.list('network-alias').length)) {
    endpoints.default = { ...(f.str('ip') ? { IPAMConfig: { IPv4Address: f.str('ip') } } : {}), ...(f.str('mac-address') ? { MacAddress: f.str('mac-address') } : {}), ...(f.list('network-alias').length ? { Aliases: f.list('network-alias') } : {}) };
  }
  const logOpts: Record<string, string> = {};
  for (const o of f.list('log-opt')) {
    const i = o.indexOf('=');
    if (i < 0) throw new CliError(`invalid key/value pair format in logging opts: ${o}`, 125);
    logOpts[o.slice(0, i)] = o.slice(i + 1);
  }
  const hostConfig: Record<string, unknown> = {
    AutoRemove: f.bool('rm'),
    NetworkMode: network,
    RestartPolicy: parseRestart(f.str('restart') ?? 'no'),
    Privileged: f.bool('privileged'),
    ReadonlyRootfs: f.bool('read-only'),
    CapAdd: f.list('cap-add'),
    CapDrop: f.list('cap-drop'),
    SecurityOpt: f.list('security-opt'),
    Dns: f.list('dns'),
    DnsSearch: f.list('dns-search'),
    DnsOptions: f.list('dns-option'),
    ExtraHosts: f.list('add-host'),
    PortBindings: ports.bindings,
    PublishAllPorts: f.bool('publish-all'),
    Links: f.list('link'),
    GroupAdd: f.list('group-add'),
    IpcMode: f.str('ipc') ?? '',
    PidMode: f.str('pid') ?? '',
    UTSMode: f.str('uts') ?? '',
    LogConfig: { Type: f.str('log-driver') ?? '', Config: logOpts },
    ...(f.str('shm-size') ? { ShmSize: parseSize(f.str('shm-size')!) } : {}),
  };
  if (f.bool('tty') && process.stdout.isTTY) hostConfig.ConsoleSize = [process.stdout.rows ?? 0, process.stdout.columns ?? 0];
  const body: Record<string, unknown> = {
    Hostname: f.str('hostname') ?? '',
    Domainname: f.str('domainname') ?? '',
    User: f.str('user') ?? '',
    AttachStdin: attachStdin,
    AttachStdout: attachStdout,
    AttachStderr: attachStderr,
    Tty: f.bool('tty'),
    OpenStdin: interactive,
    StdinOnce: interactive && !detach,
    Env: env,
    Cmd: cmd.length ? cmd : null,
    Image: image,
    WorkingDir: f.str('workdir') ?? '',
    Entrypoint: entrypoint === undefined ? null : entrypoint === '' ? [''] : [entrypoint],
    Labels: labels,
    ...(Object.keys(ports.exposed).length ? { ExposedPorts: ports.exposed } : {}),
    ...(Object.keys(endpoints).length ? { NetworkingConfig: { EndpointsConfig: endpoints } } : {}),
    ...(f.str('stop-signal') ? { StopSignal: f.str('stop-signal') } : {}),
    ...(stopTimeout !== undefined ? { StopTimeout: stopTimeout } : {}),
    HostConfig: hostConfig,
  };
  applyResourceFlags(f, body, hostConfig);
  applyMountFlags(f, body, hostConfig);
  return { body, name: f.str('name'), platform: f.str('platform') };
}
