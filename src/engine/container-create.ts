/**
 * Turning a create request (docker's Config + HostConfig) and an image into a
 * container record: defaults, the image's settings merged in, validation.
 */
import type { ContainerConfig, ContainerRecord, HostConfig } from './container-types.ts';
import type { ImageConfig } from '../image/types.ts';
import { invalid } from '../util/errors.ts';
import { parseSignal } from '../util/signals.ts';
import { ZERO_TIME } from '../util/time.ts';
import { checkHealthcheck, mergeHealthcheck } from './health.ts';

export interface CreateRequest extends Partial<ContainerConfig> {
  HostConfig?: Partial<HostConfig>;
  NetworkingConfig?: { EndpointsConfig?: Record<string, unknown> };
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Merge `KEY=value` lists: later entries replace earlier ones with the same key. */
export function mergeEnv(base: string[], over: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...base, ...over]) {
    const i = e.indexOf('=');
    out.set(i < 0 ? e : e.slice(0, i), e);
  }
  return [...out.values()];
}

function stringList(v: unknown, field: string): string[] | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`invalid ${field}: must be a list of strings`);
  return v as string[];
}

const RESTART_NAMES = new Set(['', 'no', 'always', 'unless-stopped', 'on-failure']);

export function normalizeHostConfig(hc: Partial<HostConfig> | undefined): HostConfig {
  const h: HostConfig = {
    LogConfig: { Type: 'json-file', Config: {} },
    NetworkMode: 'bridge',
    RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
    AutoRemove: false,
    Privileged: false,
    ReadonlyRootfs: false,
    ...hc,
  } as HostConfig;
  if (!h.NetworkMode || h.NetworkMode === 'default') h.NetworkMode = 'bridge';
  if (!h.LogConfig?.Type) h.LogConfig = { Type: 'json-file', Config: h.LogConfig?.Config ?? {} };
  if (!['json-file', 'none', 'local'].includes(h.LogConfig.Type)) throw invalid(`logging driver "${h.LogConfig.Type}" is not supported`);
  const rp = h.RestartPolicy ?? { Name: 'no' };
  if (!RESTART_NAMES.has(rp.Name)) throw invalid(`invalid restart policy '${rp.Name}'`);
  if (rp.Name !== 'on-failure' && (rp.MaximumRetryCount ?? 0) !== 0) throw invalid(`invalid restart policy: maximum retry count can only be used with 'on-failure'`);
  if ((rp.MaximumRetryCount ?? 0) < 0) throw invalid('invalid restart policy: maximum retry count cannot be negative');
  if (rp.Name === '') rp.Name = 'no';
  h.RestartPolicy = { Name: rp.Name, MaximumRetryCount: rp.MaximumRetryCount ?? 0 };
  if (h.AutoRemove && rp.Name !== 'no') throw invalid(`can't create 'AutoRemove' container with restart policy`);
  h.ShmSize = h.ShmSize || 64 * 1024 * 1024;
  if (h.ShmSize < 0) throw invalid('SHM size can not be less than 0');
  const mode = h.NetworkMode;
  if (!['bridge', 'none', 'host'].includes(mode) && !mode.startsWith('container:')) {
    // User-defined networks are resolved by the network service; here only the syntax is checked.
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(mode)) throw invalid(`invalid network mode: ${mode}`);
  }
  return h;
}

/** Build a container record from a create request and its image. */
export function buildRecord(opts: {
  id: string;
  name: string;
  req: CreateRequest;
  imageId: string;
  imageRef: string;
  image: ImageConfig;
  layers: string[];
  dir: string;
}): ContainerRecord {
  const { req, image } = opts;
  const ic = image.config ?? {};
  const hostConfig = normalizeHostConfig(req.HostConfig);
  const userEntrypoint = stringList(req.Entrypoint, 'Entrypoint');
  const userCmd = stringList(req.Cmd, 'Cmd');
  // An entrypoint given at create time resets the image's CMD, as docker does.
  const entrypoint = userEntrypoint !== null ? (userEntrypoint.length === 1 && userEntrypoint[0] === '' ? [] : userEntrypoint) : (ic.Entrypoint ?? []);
  const cmd = userCmd !== null && userCmd.length > 0 ? userCmd : userEntrypoint !== null ? [] : (ic.Cmd ?? []);
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0) throw invalid('no command specified');
  if (req.Env !== undefined && req.Env !== null && !Array.isArray(req.Env)) throw invalid('invalid Env: must be a list of strings');
  let env = mergeEnv(ic.Env ?? [], req.Env ?? []);
  if (!env.some((e) => e.startsWith('PATH='))) env = [DEFAULT_PATH, ...env];
  for (const e of env) if (e.startsWith('=') || e === '') throw invalid(`invalid environment variable: ${e}`);
  const stopSignal = req.StopSignal || ic.StopSignal;
  if (stopSignal) parseSignal(stopSignal);
  const hostname = req.Hostname || (hostConfig.NetworkMode === 'host' ? '' : opts.id.slice(0, 12));
  if (hostname && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,252})$/.test(hostname)) throw invalid(`invalid hostname format: ${hostname}`);
  const workdir = req.WorkingDir || ic.WorkingDir || '';
  if (workdir && !workdir.startsWith('/')) throw invalid(`the working directory '${workdir}' is invalid, it needs to be an absolute path`);
  const config: ContainerConfig = {
    Hostname: hostname,
    Domainname: req.Domainname ?? '',
    User: req.User ?? ic.User ?? '',
    AttachStdin: req.AttachStdin ?? false,
    AttachStdout: req.AttachStdout ?? false,
    AttachStderr: req.AttachStderr ?? false,
    ExposedPorts: { ...(ic.ExposedPorts ?? {}), ...(req.ExposedPorts ?? {}) },
    Tty: req.Tty ?? false,
    OpenStdin: req.OpenStdin ?? false,
    StdinOnce: req.StdinOnce ?? false,
    Env: env,
    Cmd: cmd,
    Image: opts.imageRef,
    Volumes: { ...(ic.Volumes ?? {}), ...(req.Volumes ?? {}) },
    WorkingDir: workdir,
    Entrypoint: entrypoint.length ? entrypoint : null,
    OnBuild: null,
    Labels: { ...(ic.Labels ?? {}), ...(req.Labels ?? {}) },
    ...(stopSignal ? { StopSignal: stopSignal } : {}),
    ...(req.StopTimeout !== undefined && req.StopTimeout !== null ? { StopTimeout: req.StopTimeout } : {}),
    ...(mergeHealthcheck(req.Healthcheck, ic.Healthcheck) ? { Healthcheck: mergeHealthcheck(req.Healthcheck, ic.Healthcheck) } : {}),
    ...(req.MacAddress ? { MacAddress: req.MacAddress } : {}),
  };
  checkHealthcheck(config.Healthcheck);
  if (Object.keys(config.ExposedPorts ?? {}).length === 0) delete config.ExposedPorts;
  if (Object.keys(config.Volumes ?? {}).length === 0) config.Volumes = null;
  return {
    Id: opts.id,
    Created: new Date().toISOString(),
    Path: argv[0]!,
    Args: argv.slice(1),
    State: {
      Status: 'created', Running: false, Paused: false, Restarting: false, OOMKilled: false, Dead: false,
      Pid: 0, ExitCode: 0, Error: '', StartedAt: ZERO_TIME, FinishedAt: ZERO_TIME,
    },
    Image: opts.imageId,
    ResolvConfPath: `${opts.dir}/resolv.conf`,
    HostnamePath: `${opts.dir}/hostname`,
    HostsPath: `${opts.dir}/hosts`,
    LogPath: hostConfig.LogConfig.Type === 'none' ? '' : `${opts.dir}/${opts.id}-json.log`,
    Name: opts.name,
    RestartCount: 0,
    Driver: 'overlay2',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: null,
    HostConfig: hostConfig,
    Config: config,
    NetworkSettings: { Bridge: '', SandboxID: '', SandboxKey: '', Ports: {}, Networks: {} },
    Mounts: [],
    berth: { layers: opts.layers, imageRef: opts.imageRef },
  };
}
