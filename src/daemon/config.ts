import { readFileSync } from 'node:fs';
import { invalid } from '../util/errors.ts';

/** Everything berthd is configured with, from flags and the config file. */
export interface DaemonConfig {
  hosts: string[];
  dataRoot: string;
  execRoot: string;
  registryMirrors: string[];
  insecureRegistries: string[];
  runtime: 'runc' | 'crun';
  runtimePath: string;
  logLevel: string;
  cgroupParent: string;
  /** Where the native helpers (berth-monitor) live. */
  nativeDir: string;
  bridge?: string;
  bip?: string;
  /** Upstream resolvers (ip or ip:port) for embedded DNS, and containers' default --dns. */
  dns?: string[];
  /** Where networks without --subnet get theirs (--default-address-pool base=CIDR,size=N). */
  addressPools?: Array<{ base: string; size: number }>;
  debug: boolean;
  /** Binary mounted as /sbin/docker-init for --init (default: tini-static or catatonit, found on the host). */
  initPath?: string;
}

export function defaultConfig(nativeDir: string): DaemonConfig {
  return {
    hosts: [],
    dataRoot: '/var/lib/berth',
    execRoot: '/run/berth',
    registryMirrors: [],
    insecureRegistries: [],
    runtime: 'runc',
    runtimePath: '/usr/sbin/runc',
    logLevel: 'info',
    cgroupParent: '/berth',
    nativeDir,
    debug: false,
  };
}

const USAGE = `Usage:	berthd [OPTIONS]

A self-sufficient runtime for containers.

Options:
      --bridge string              Attach containers to a network bridge
      --bip string                 Network bridge IP
      --default-address-pool list  Default address pools for node specific local networks
      --dns list                   DNS server to use
      --cgroup-parent string       Parent cgroup for all containers (default "/berth")
      --config-file string         Daemon configuration file
      --data-root string           Root directory of persistent state (default "/var/lib/berth")
  -D, --debug                      Enable debug mode
      --exec-root string           Root directory for execution state files (default "/run/berth")
  -H, --host list                  Daemon socket(s) to connect to
      --insecure-registry list     Enable insecure registry communication
  -l, --log-level string           Set the logging level ("debug"|"info"|"warn"|"error"|"fatal") (default "info")
      --registry-mirror list       Preferred registry mirror
      --runtime string             OCI runtime: runc or crun (default "runc")
      --init-path string           Path to the docker-init binary
  -h, --help                       Print usage
`;

/** Map of daemon.json keys to the flags they stand for. */
const FILE_KEYS: Record<string, string> = {
  hosts: 'host',
  'data-root': 'data-root',
  'exec-root': 'exec-root',
  'registry-mirrors': 'registry-mirror',
  'insecure-registries': 'insecure-registry',
  'default-runtime': 'runtime',
  'log-level': 'log-level',
  'cgroup-parent': 'cgroup-parent',
  bridge: 'bridge',
  bip: 'bip',
  dns: 'dns',
  'default-address-pools': 'default-address-pool',
  debug: 'debug',
  'init-path': 'init-path',
};

/** `base=10.10.0.0/16,size=24` (flag) or `{"base": …, "size": …}` (daemon.json). */
function parsePool(value: unknown): { base: string; size: number } {
  let base = '';
  let size = NaN;
  if (typeof value === 'object' && value !== null) {
    base = String((value as { base?: unknown }).base ?? '');
    size = Number((value as { size?: unknown }).size);
  } else {
    for (const kv of String(value).split(',')) {
      const [k, v = ''] = kv.split('=');
      if (k === 'base') base = v;
      else if (k === 'size') size = Number(v);
    }
  }
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(base);
  if (!m || !Number.isInteger(size) || size < Number(m[2]) || size > 30) throw invalid(`invalid default address pool: ${JSON.stringify(value)}: want base=<CIDR>,size=<prefix length>`);
  return { base, size };
}

function apply(cfg: DaemonConfig, key: string, value: string | boolean | object, fromFile: boolean): void {
  if (key === 'default-address-pool') {
    (cfg.addressPools ??= []).push(parsePool(value));
    return;
  }
  const str = String(value);
  switch (key) {
    case 'host': cfg.hosts.push(str); break;
    case 'data-root': cfg.dataRoot = str; break;
    case 'exec-root': cfg.execRoot = str; break;
    case 'registry-mirror': cfg.registryMirrors.push(str.replace(/\/+$/, '')); break;
    case 'insecure-registry': cfg.insecureRegistries.push(str); break;
    case 'runtime':
      if (str !== 'runc' && str !== 'crun') throw invalid(`unknown runtime: ${str} (choose runc or crun)`);
      cfg.runtime = str;
      cfg.runtimePath = str === 'runc' ? '/usr/sbin/runc' : '/usr/bin/crun';
      break;
    case 'log-level': cfg.logLevel = str; break;
    case 'cgroup-parent': cfg.cgroupParent = str; break;
    case 'bridge': cfg.bridge = str; break;
    case 'bip': cfg.bip = str; break;
    case 'dns': (cfg.dns ??= []).push(str); break;
    case 'init-path': cfg.initPath = str; break;
    case 'debug': cfg.debug = value === true || str === 'true'; if (cfg.debug) cfg.logLevel = 'debug'; break;
    default: throw invalid(fromFile ? `unknown configuration key in config file: ${key}` : `unknown flag: --${key}`);
  }
}

/** Parse berthd's command line (and the config file it names) into a config. */
export function parseDaemonArgs(argv: string[], nativeDir: string): DaemonConfig | 'help' {
  const cfg = defaultConfig(nativeDir);
  const flags: Array<[string, string | boolean]> = [];
  let configFile: string | undefined;
  const short: Record<string, string> = { H: 'host', D: 'debug', l: 'log-level', h: 'help' };
  const boolFlags = new Set(['debug', 'help']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let name: string;
    let value: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      value = eq >= 0 ? arg.slice(eq + 1) : undefined;
    } else if (arg.startsWith('-') && arg.length >= 2) {
      name = short[arg[1]!] ?? arg.slice(1);
      value = arg.length > 2 ? arg.slice(2).replace(/^=/, '') : undefined;
    } else {
      throw invalid(`berthd takes no arguments, got "${arg}"`);
    }
    if (name === 'help') return 'help';
    if (boolFlags.has(name)) {
      flags.push([name, value === undefined ? true : value === 'true']);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw invalid(`flag needs an argument: --${name}`);
    }
    if (name === 'config-file') configFile = value;
    else flags.push([name, value]);
  }
  if (configFile) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw invalid(`unable to configure the daemon from ${configFile}: ${(err as Error).message}`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      const flag = FILE_KEYS[k];
      if (!flag) throw invalid(`the following directives don't match any configuration option: ${k}`);
      for (const item of Array.isArray(v) ? v : [v]) apply(cfg, flag, item as string | boolean | object, true);
    }
  }
  // Flags win over the file, as with dockerd; list flags add to the file's lists.
  for (const [k, v] of flags) apply(cfg, k, v, false);
  if (cfg.hosts.length === 0) cfg.hosts.push(`unix://${cfg.execRoot === '/run/berth' ? '/run/berth/berth.sock' : `${cfg.execRoot}/berth.sock`}`);
  return cfg;
}

export { USAGE as DAEMON_USAGE };
