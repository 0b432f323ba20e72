/**
 * Running one build command (RUN) in a real container: a fresh overlay upper
 * over the step's layers, an OCI bundle from the same spec builder the engine
 * uses, and a berth-monitor that runs runc and streams the output. No
 * container record is made: the container exists only for the step, and
 * `release()` leaves no mount, runtime state or directory behind whatever
 * happened.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { hostname as osHostname } from 'node:os';
import { join, posix } from 'node:path';
import type { DaemonConfig } from '../daemon/config.ts';
import { hostsFile, resolveUser, resolvConf } from '../engine/rootfs.ts';
import { buildSpec } from '../runtime/oci-spec.ts';
import type { OciMount } from '../runtime/oci-spec.ts';
import { MonitorConnection, spawnMonitor } from '../runtime/monitor.ts';
import type { ExitInfo } from '../runtime/monitor.ts';
import { launcherFor } from '../runtime/launcher.ts';
import type { NativeLauncher } from '../runtime/launcher.ts';
import { computeCapabilities } from '../runtime/capabilities.ts';
import { statInLayers } from './rootview.ts';
import { ensureDir, removeTree } from '../util/fsutil.ts';
import { systemError, errorMessage } from '../util/errors.ts';

export type BuildNetwork = 'default' | 'none' | 'host';

export interface RunStepOptions {
  id: string;
  layerDirsTopFirst: string[];
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  network: BuildNetwork;
  mounts: OciMount[];
  onOutput: (stream: 'stdout' | 'stderr', data: Buffer) => void;
}

export interface RunStepResult {
  exitCode: number;
  /** The container's changes, in overlay upper form. */
  upper: string;
  release(): Promise<void>;
}

export class BuildRunner {
  private readonly cfg: DaemonConfig;
  private readonly launcher: NativeLauncher;
  private readonly emptyDir: string;
  private hostResolv?: string;

  constructor(cfg: DaemonConfig, emptyDir: string) {
    this.cfg = cfg;
    this.emptyDir = emptyDir;
    this.launcher = launcherFor(cfg.nativeDir);
  }

  private get runtimeRoot(): string {
    return join(this.cfg.execRoot, 'runtime');
  }

  /** Where build containers keep their files; anything left here at startup is a crash's leftover. */
  get workRoot(): string {
    return join(this.cfg.dataRoot, 'build', 'run');
  }

  async init(): Promise<void> {
    await ensureDir(join(this.cfg.dataRoot, 'build'), 0o700);
    await ensureDir(this.workRoot, 0o700);
    await ensureDir(this.emptyDir, 0o755);
    // A berthd killed in the middle of a step: its container's pieces go now.
    const { readdir } = await import('node:fs/promises');
    for (const id of await readdir(this.workRoot)) await this.releaseById(id);
  }

  private async releaseById(id: string): Promise<void> {
    const dir = join(this.workRoot, id);
    if (existsSync(join(this.runtimeRoot, id))) await runQuiet(this.cfg.runtimePath, ['--root', this.runtimeRoot, 'delete', '-f', id]);
    const rootfs = join(dir, 'rootfs');
    for (const m of mountsUnder(dir)) await runQuiet('umount', ['-l', m]);
    if (isMounted(rootfs)) await runQuiet('umount', ['-l', rootfs]);
    await removeTree(dir);
    await removeTree(join(this.cfg.execRoot, 'build', id));
  }

  async run(o: RunStepOptions): Promise<RunStepResult> {
    const dir = join(this.workRoot, o.id);
    const xdir = join(this.cfg.execRoot, 'build', o.id);
    const release = () => this.releaseById(o.id);
    try {
      const upper = join(dir, 'upper');
      await Promise.all(['upper', 'work', 'rootfs', 'etc'].map((d) => mkdir(join(dir, d), { recursive: true, mode: 0o755 })));
      await mkdir(xdir, { recursive: true, mode: 0o700 });
      const lowers = o.layerDirsTopFirst.length ? o.layerDirsTopFirst : [this.emptyDir];
      // The working directory exists before the command runs, as docker makes it.
      const cwd = posix.normalize(o.cwd || '/');
      if (cwd !== '/' && !(await statInLayers(o.layerDirsTopFirst, cwd))) await mkdir(join(upper, cwd), { recursive: true, mode: 0o755 });
      const user = await resolveUser([upper, ...o.layerDirsTopFirst], o.user || '', []);
      const host = o.network === 'host';
      const hostname = host ? osHostname() : o.id.slice(0, 12);
      this.hostResolv ??= await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
      const etc = join(dir, 'etc');
      await Promise.all([
        writeFile(join(etc, 'hostname'), `${hostname}\n`),
        writeFile(join(etc, 'hosts'), host ? await readFile('/etc/hosts', 'utf8').catch(() => hostsFile(hostname)) : hostsFile(hostname)),
        writeFile(join(etc, 'resolv.conf'), host ? this.hostResolv : resolvConf(this.hostResolv, {})),
      ]);
      const env = [...o.env];
      if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${hostname}`);
      if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home || '/'}`);
      const caps = computeCapabilities({ add: [], drop: [], privileged: false });
      const spec = buildSpec({
        rootfs: join(dir, 'rootfs'),
        readonlyRootfs: false,
        args: o.args,
        env,
        cwd,
        user,
        terminal: false,
        hostname,
        capabilities: caps,
        privileged: false,
        noNewPrivileges: false,
        namespaces: { network: host ? 'host' : 'private', uts: host ? 'host' : 'private' },
        cgroupsPath: `${this.cfg.cgroupParent}/${o.id}`,
        extraMounts: [
          { destination: '/etc/resolv.conf', type: 'bind', source: join(etc, 'resolv.conf'), options: ['rbind', 'rprivate'] },
          { destination: '/etc/hostname', type: 'bind', source: join(etc, 'hostname'), options: ['rbind', 'rprivate'] },
          { destination: '/etc/hosts', type: 'bind', source: join(etc, 'hosts'), options: ['rbind', 'rprivate'] },
          ...o.mounts,
        ],
        shmSize: 64 * 1024 * 1024,
      });
      await writeFile(join(xdir, 'config.json'), JSON.stringify(spec));
      await spawnMonitor({
        monitorPath: join(this.cfg.nativeDir, 'berth-monitor'),
        id: o.id,
        dir: xdir,
        runtimePath: this.cfg.runtimePath,
        runtimeRoot: this.runtimeRoot,
        bundle: xdir,
        terminal: false,
        stdin: false,
        overlay: { lowers, upper, work: join(dir, 'work'), target: join(dir, 'rootfs') },
      }, this.launcher);
      const conn = await MonitorConnection.connect(xdir);
      const closed = new Promise<void>((r) => conn.once('close', r));
      const exited = new Promise<ExitInfo>((r) => conn.once('exit', r));
      conn.on('stdout', (d: Buffer) => o.onOutput('stdout', d));
      conn.on('stderr', (d: Buffer) => o.onOutput('stderr', d));
      conn.subscribe(true, true);
      try {
        await conn.start();
      } catch (err) {
        conn.shutdown();
        await closed;
        throw systemError(`failed to create task for container: OCI runtime create failed: ${errorMessage(err)}: unknown`);
      }
      const exit = await exited;
      // The monitor unmounts the root and deletes the runtime state before it goes.
      conn.shutdown();
      await closed;
      return { exitCode: exit.exitCode, upper, release };
    } catch (err) {
      await release();
      throw err;
    }
  }

  stop(): void {
    this.launcher.stop();
  }
}

function runQuiet(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve) => execFile(cmd, args, () => resolve()));
}

function isMounted(path: string): boolean {
  return mountsUnder(path).includes(path);
}

function mountsUnder(dir: string): string[] {
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`)).sort().reverse();
  } catch {
    return [];
  }
}

export async function removeQuiet(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
