import { cpus, hostname, totalmem, release, arch } from 'node:os';
import { readFileSync } from 'node:fs';
import type { DaemonConfig } from '../daemon/config.ts';
import type { ContainerService } from './containers.ts';
import type { ImageStore } from '../image/image-store.ts';

export const BERTH_VERSION = '0.1.0';

function goArch(): string {
  const a = arch();
  return a === 'x64' ? 'amd64' : a === 'ia32' ? '386' : a;
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m?.[1] ?? 'Linux';
  } catch {
    return 'Linux';
  }
}

/** `version` and `info`: what the daemon is and what it holds. */
export class SystemService {
  private readonly cfg: DaemonConfig;
  private readonly containers: ContainerService;
  private readonly images: ImageStore;
  private readonly started = new Date().toISOString();
  constructor(cfg: DaemonConfig, containers: ContainerService, images: ImageStore) {
    this.cfg = cfg;
    this.containers = containers;
    this.images = images;
  }

  version(apiVersion: string, minApiVersion: string) {
    const runtimeVersion = this.cfg.runtime;
    return {
      Platform: { Name: 'berth' },
      Components: [
        { Name: 'Engine', Version: BERTH_VERSION, Details: { ApiVersion: apiVersion, MinAPIVersion: minApiVersion, Os: 'linux', Arch: goArch(), KernelVersion: release(), BuildTime: this.started, Experimental: 'false' } },
        { Name: runtimeVersion, Version: runtimeVersion, Details: { Path: this.cfg.runtimePath } },
      ],
      Version: BERTH_VERSION,
      ApiVersion: apiVersion,
      MinAPIVersion: minApiVersion,
      GitCommit: 'berth',
      GoVersion: `node${process.versions.node}`,
      Os: 'linux',
      Arch: goArch(),
      KernelVersion: release(),
      BuildTime: this.started,
    };
  }

  info() {
    const all = this.containers.list();
    const running = all.filter((c) => c.State.Running && !c.State.Paused).length;
    const paused = all.filter((c) => c.State.Paused).length;
    const cgroupVersion = (() => {
      try {
        return readFileSync('/proc/self/mounts', 'utf8').includes(' /sys/fs/cgroup cgroup2 ') ? '2' : '1';
      } catch {
        return '1';
      }
    })();
    return {
      ID: this.cfg.dataRoot,
      Containers: all.length,
      ContainersRunning: running,
      ContainersPaused: paused,
      ContainersStopped: all.length - running - paused,
      Images: this.images.all().length,
      Driver: 'overlay2',
      DriverStatus: [['Backing Filesystem', 'extfs'], ['Supports d_type', 'true']],
      Plugins: { Volume: ['local'], Network: ['bridge', 'host', 'macvlan', 'null'], Authorization: null, Log: ['json-file', 'local'] },
      MemoryLimit: true,
      SwapLimit: true,
      CpuCfsPeriod: true,
      CpuCfsQuota: true,
      CPUShares: true,
      CPUSet: true,
      PidsLimit: true,
      IPv4Forwarding: true,
      Debug: this.cfg.debug,
      NFd: 0,
      OomKillDisable: true,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'json-file',
      CgroupDriver: 'cgroupfs',
      CgroupVersion: cgroupVersion,
      NEventsListener: 0,
      KernelVersion: release(),
      OperatingSystem: osName(),
      OSVersion: '',
      OSType: 'linux',
      Architecture: arch() === 'x64' ? 'x86_64' : arch(),
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: registryConfig(this.cfg),
      NCPU: cpus().length,
      MemTotal: totalmem(),
      DockerRootDir: this.cfg.dataRoot,
      Name: hostname(),
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: BERTH_VERSION,
      Runtimes: { runc: { path: '/usr/sbin/runc' }, crun: { path: '/usr/bin/crun' } },
      DefaultRuntime: this.cfg.runtime,
      LiveRestoreEnabled: true,
      Isolation: '',
      InitBinary: 'tini',
      SecurityOptions: ['name=seccomp,profile=builtin'],
      Warnings: [],
    };
  }
}

/** docker's RegistryConfig: CIDR entries of --insecure-registry are ranges, others are registry names. */
function registryConfig(cfg: DaemonConfig) {
  const cidrs = ['127.0.0.0/8', ...cfg.insecureRegistries.filter((r) => /^[0-9.]+\/\d+$|^[0-9a-f:]+\/\d+$/i.test(r))];
  const indexConfigs: Record<string, { Name: string; Mirrors: string[]; Secure: boolean; Official: boolean }> = {
    'docker.io': { Name: 'docker.io', Mirrors: cfg.registryMirrors.map((m) => `${m}/`), Secure: true, Official: true },
  };
  for (const r of cfg.insecureRegistries) {
    if (!cidrs.includes(r)) indexConfigs[r] = { Name: r, Mirrors: [], Secure: false, Official: false };
  }
  return { InsecureRegistryCIDRs: [...new Set(cidrs)], IndexConfigs: indexConfigs, Mirrors: cfg.registryMirrors.map((m) => `${m}/`) };
}
