/**
 * The container service: lifecycle (create, start, stop, kill, remove),
 * attach, wait and logs. Each running container has a monitor process; this
 * service holds one control connection to it and reacts to its exit.
 */
import { mkdir, readFile, rm, readdir } from 'node:fs/promises';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ContainerStore } from './container-store.ts';
import type { ContainerRecord } from './container-types.ts';
import { buildRecord } from './container-create.ts';
import type { CreateRequest } from './container-create.ts';
import type { EventBus } from './events.ts';
import { resolveUser } from './rootfs.ts';
import { readLog } from './logs.ts';
import type { LogOptions, LogRecord } from './logs.ts';
import type { ImageStore } from '../image/image-store.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { chainIds } from '../image/layer-store.ts';
import { parseReference } from '../image/reference.ts';
import { buildSpec } from '../runtime/oci-spec.ts';
import type { OciMount } from '../runtime/oci-spec.ts';
import { MonitorConnection, StartError, spawnMonitor } from '../runtime/monitor.ts';
import type { ExitInfo } from '../runtime/monitor.ts';
import { launcherFor } from '../runtime/launcher.ts';
import type { NativeLauncher } from '../runtime/launcher.ts';
import { computeCapabilities } from '../runtime/capabilities.ts';
import { checkResources } from './limits.ts';
import { shouldRestart } from './restart.ts';
import { applySecurity, checkSecurity } from './security.ts';
import type { ContainerHooks } from './container-hooks.ts';
import { parseSignal } from '../util/signals.ts';
import { conflict, invalid, notModified, BerthError, errorMessage } from '../util/errors.ts';
import { dirSize, ensureDir, removeTree } from '../util/fsutil.ts';
import { newId, randomName } from '../util/ids.ts';
import { log } from '../util/log.ts';
import type { DaemonConfig } from '../daemon/config.ts';
import type { NetworkService, NetworkSetup } from '../network/networks.ts';
import { VolumeService } from '../volume/volume-service.ts';
import { ContainerMounts, volumeUsers } from '../volume/container-mounts.ts';

/** Where attached output goes: an API connection, framed or raw by the API layer. */
export interface AttachSink {
  stdout: boolean;
  stderr: boolean;
  write(stream: 'stdout' | 'stderr', data: Buffer): void;
  /** The container exited (or the attach was ended): flush and close. */
  end(): void;
}

export interface AttachHandle {
  stdin(data: Buffer): void;
  closeStdin(): void;
  detach(): void;
}

/** What berthd holds for a container whose monitor is alive. */
interface Live {
  conn?: MonitorConnection;
  sinks: Set<AttachSink>;
  /** Input that arrived before the monitor was connected. */
  pendingStdin: Buffer[];
  pendingStdinClose: boolean;
  exited: Promise<ExitInfo>;
  resolveExit: (e: ExitInfo) => void;
  starting?: Promise<void>;
}

type WaitCondition = 'not-running' | 'next-exit' | 'removed';

/** How long a monitor spawned at create waits for the container's start. */
const WARM_MONITOR_MS = 60_000;

export class ContainerService {
  readonly store: ContainerStore;
  private readonly live = new Map<string, Live>();
  private readonly removedWaiters = new Map<string, Array<() => void>>();
  private readonly warm = new Map<string, { ready: Promise<void>; timer: NodeJS.Timeout }>();
  /** Containers whose monitor is still releasing runtime state and mounts after the exit. */
  private readonly cleaning = new Map<string, Promise<void>>();
  private readonly purging = new Set<Promise<unknown>>();
  /** Filesystem work (cp, export) on containers that are not running; see claimFilesystem. */
  private readonly fsHolds = new Map<string, Set<Promise<void>>>();
  private readonly exitWaiters = new Map<string, Array<(code: number) => void>>();
  private readonly cfg: DaemonConfig;
  private readonly images: ImageStore;
  private readonly layers: LayerStore;
  private readonly events: EventBus;
  /** Starts monitors; the exec service uses it too. */
  readonly launcher: NativeLauncher;
  readonly volumes: VolumeService;
  private readonly mounts: ContainerMounts;
  /** Restart policies, health checks, pause state: set by the engine (src/engine/container-hooks.ts). */
  hooks?: ContainerHooks;
  /** Networks: namespaces, addresses, ports, DNS (set by the engine). */
  network?: NetworkService;

  constructor(cfg: DaemonConfig, images: ImageStore, layers: LayerStore, events: EventBus) {
    this.cfg = cfg;
    this.images = images;
    this.layers = layers;
    this.events = events;
    this.store = new ContainerStore(cfg.dataRoot);
    this.launcher = launcherFor(cfg.nativeDir);
    this.volumes = new VolumeService(cfg.dataRoot, events, (name) => volumeUsers(this.store.all(), name));
    this.mounts = new ContainerMounts({ volumes: this.volumes, find: (ref) => this.store.find(ref), tmpRoot: join(cfg.dataRoot, 'tmp'), pinRoot: join(cfg.execRoot, 'subpaths'), emptyDir: () => this.emptyLower() });
  }

  private get monitorPath(): string {
    return join(this.cfg.nativeDir, 'berth-monitor');
  }

  private get runtimeRoot(): string {
    return join(this.cfg.execRoot, 'runtime');
  }

  execDir(id: string): string {
    return join(this.cfg.execRoot, 'containers', id);
  }

  async init(): Promise<void> {
    await ensureDir(this.runtimeRoot, 0o700);
    await ensureDir(join(this.cfg.execRoot, 'containers'), 0o700);
    await this.volumes.store.init();
    const records = await this.store.init();
    for (const rec of records) await this.reconcile(rec);
    await this.network?.reconcile();
    await this.mounts.adopt(this.store.all());
    await this.hooks?.booted(this.store.all());
    // Monitor directories of containers that no longer exist.
    for (const id of await readdir(join(this.cfg.execRoot, 'containers'))) {
      if (!this.store.get(id)) await removeTree(this.execDir(id));
    }
  }

  /**
   * After a restart: re-adopt containers whose monitor still runs, and record
   * the exit of those that stopped while berthd was away.
   */
  private async reconcile(rec: ContainerRecord): Promise<void> {
    if (rec.State.Status === 'removing') {
      this.store.unlist(rec);
      await this.purge(rec);
      return;
    }
    if (!rec.State.Running) {
      await this.coolDown(rec.Id);
      return;
    }
    const dir = this.execDir(rec.Id);
    try {
      const conn = await MonitorConnection.connect(dir);
      const live = this.newLive();
      live.conn = conn;
      this.live.set(rec.Id, live);
      this.wireConnection(rec, live, conn);
      const st = await conn.hello(false, false);
      if (st.status === 'exited') {
        const exit = await this.readExitFile(rec.Id);
        await this.onExit(rec, live, exit ?? { exitCode: st.exitCode ?? 255, signal: 0, finishedAt: new Date().toISOString() });
      }
      if (rec.State.Running) this.hooks?.started(rec, true);
      log.info('re-adopted running container', { id: rec.Id, pid: rec.State.Pid });
    } catch {
      const exit = await this.readExitFile(rec.Id);
      await this.markExited(rec, exit ?? { exitCode: 255, signal: 0, finishedAt: new Date().toISOString() }, exit ? '' : 'container monitor was lost');
      // A monitor that died without its cleanup leaves the runtime's state (and cgroup) and the root mount.
      if (existsSync(join(this.runtimeRoot, rec.Id))) await runtimeDelete(this.cfg.runtimePath, this.runtimeRoot, rec.Id);
      const rootfs = join(this.store.dir(rec.Id), 'rootfs');
      if (isMounted(rootfs)) await umount(rootfs);
      if (rec.HostConfig.AutoRemove) await this.destroy(rec);
    }
  }

  private async readExitFile(id: string): Promise<ExitInfo | undefined> {
    try {
      const raw = JSON.parse(await readFile(join(this.execDir(id), 'exit'), 'utf8')) as Partial<ExitInfo> & { startFailed?: boolean };
      if (raw.startFailed) return undefined;
      return { exitCode: raw.exitCode ?? 255, signal: raw.signal ?? 0, finishedAt: raw.finishedAt ?? new Date().toISOString(), ...(raw.oomKilled ? { oomKilled: true } : {}) };
    } catch {
      return undefined;
    }
  }

  private newLive(): Live {
    let resolveExit!: (e: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((r) => { resolveExit = r; });
    return { sinks: new Set(), pendingStdin: [], pendingStdinClose: false, exited, resolveExit };
  }

  list(): ContainerRecord[] {
    return this.store.all();
  }

  /** docker's SizeRw (the container's own writes) and SizeRootFs (those plus the image). */
  async sizes(rec: ContainerRecord): Promise<{ SizeRw: number; SizeRootFs: number }> {
    const [rw, image] = await Promise.all([dirSize(join(this.store.dir(rec.Id), 'upper')), this.images.size(rec.Image).catch(() => 0)]);
    return { SizeRw: rw, SizeRootFs: rw + image };
  }

  find(ref: string): ContainerRecord {
    return this.store.mustFind(ref);
  }

  // ---------------------------------------------------------------- create

  async create(req: CreateRequest, name?: string): Promise<{ Id: string; Warnings: string[] }> {
    if (typeof req !== 'object' || req === null) throw invalid('config cannot be empty in order to create a container');
    if (!req.Image) throw invalid('Config.Image is required');
    if (!/^(sha256:)?[a-f0-9]{1,64}$/.test(req.Image)) parseReference(req.Image);
    const img = this.images.resolve(req.Image);
    if (!img) throw new BerthError('NotFound', `No such image: ${req.Image.includes(':') || req.Image.includes('@') ? req.Image : `${req.Image}:latest`}`);
    const id = newId();
    const fullName = name ? ContainerStore.validateName(name) : `/${randomName((n) => this.store.nameTaken(n))}`;
    const dir = this.store.dir(id);
    const rec = buildRecord({ id, name: fullName, req, imageId: img.record.id, imageRef: req.Image, image: img.config, layers: chainIds(img.config.rootfs.diff_ids), dir });
    const warnings = this.validateHostConfig(rec);
    this.network?.prepareCreate(rec, req.NetworkingConfig?.EndpointsConfig);
    const mountPlan = this.mounts.plan(rec);
    this.store.reserveName(fullName, id);
    try {
      if (mountPlan.mounts.length) await this.mounts.apply(rec, mountPlan, rec.berth.layers.map((c) => this.layers.diffDir(c)).reverse());
      await this.store.add(rec);
      for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(dir, d), { mode: 0o755 }); // on the path of every run: no thread-pool trips
    } catch (err) {
      await this.store.remove(rec).catch(() => undefined);
      await this.mounts.undo(mountPlan);
      throw err;
    }
    this.events.emit('container', 'create', id, { image: req.Image, name: fullName.slice(1) });
    this.prewarm(rec);
    return { Id: id, Warnings: warnings };
  }

  private validateHostConfig(rec: ContainerRecord): string[] {
    const hc = rec.HostConfig;
    computeCapabilities({ add: hc.CapAdd ?? [], drop: hc.CapDrop ?? [], privileged: hc.Privileged });
    const warnings = checkResources(hc);
    checkSecurity(hc, (ref) => this.store.find(ref), this.cfg.initPath);
    const mode = hc.NetworkMode;
    if (mode.startsWith('container:')) {
      const target = this.store.find(mode.slice(10));
      if (!target) throw invalid(`No such container: ${mode.slice(10)}`); // 400: a 404 from create reads as a missing image
    }
    return warnings;
  }

  // ---------------------------------------------------------------- start

  async start(ref: string): Promise<void> {
    const rec = this.find(ref);
    if (rec.State.Running) throw notModified('container already started');
    const existing = this.live.get(rec.Id);
    if (existing?.starting) return existing.starting;
    if (existing?.conn) throw notModified('container already started');
    // An explicit start clears the user's stop, for restart policies.
    if (rec.berth.manuallyStopped && !rec.State.Restarting) rec.berth.manuallyStopped = false;
    const live = existing ?? this.newLive();
    this.live.set(rec.Id, live);
    const previous = this.startGate(rec.Id);
    live.starting = (previous ? previous.then(() => this.doStart(rec, live)) : this.doStart(rec, live)).finally(() => { live.starting = undefined; });
    return live.starting;
  }

  /** What a start must wait for: the last run's cleanup and filesystem work on the stopped container. */
  private startGate(id: string): Promise<unknown> | undefined {
    const waits = [this.cleaning.get(id), ...(this.fsHolds.get(id) ?? [])].filter((p) => p !== undefined);
    return waits.length ? Promise.all(waits) : undefined;
  }

  /**
   * Claims a container's filesystem for cp, export or diff: `running` while
   * its monitor's mount serves it; otherwise a hold that start and removal
   * wait for until `release` (archive.ts mounts the overlay meanwhile).
   */
  async claimFilesystem(ref: string): Promise<{ rec: ContainerRecord; running: boolean; release: () => void }> {
    const rec = this.find(ref);
    const starting = this.live.get(rec.Id)?.starting;
    if (starting) await starting.catch(() => undefined);
    if (!this.store.get(rec.Id)) throw new BerthError('NotFound', `No such container: ${ref}`);
    if (rec.State.Running) return { rec, running: true, release: () => undefined };
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    const holds = this.fsHolds.get(rec.Id) ?? new Set<Promise<void>>();
    holds.add(held);
    this.fsHolds.set(rec.Id, holds);
    void held.then(() => {
      holds.delete(held);
      if (holds.size === 0 && this.fsHolds.get(rec.Id) === holds) this.fsHolds.delete(rec.Id);
    });
    return { rec, running: false, release };
  }

  private get net(): NetworkService {
    if (!this.network) throw new Error('network service not wired');
    return this.network;
  }

  /** Start, and on any failure leave the container stopped with the error recorded. */
  private async doStart(rec: ContainerRecord, live: Live): Promise<void> {
    let pid: number;
    try {
      pid = await this.launch(rec, live);
    } catch (err) {
      live.conn?.shutdown();
      live.conn = undefined;
      this.live.delete(rec.Id);
      for (const s of live.sinks) s.end();
      live.sinks.clear();
      throw await this.startFailed(rec, err);
    }
    rec.State = { ...rec.State, Status: 'running', Running: true, Paused: false, Restarting: false, OOMKilled: false, Dead: false, Pid: pid, ExitCode: 0, Error: '', StartedAt: new Date().toISOString(), FinishedAt: rec.State.FinishedAt };
    await this.store.save(rec);
    this.events.emit('container', 'start', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
    this.hooks?.started(rec, false);
    // The container may already have exited while we were recording the start.
    if (live.conn?.exit) await this.onExit(rec, live, live.conn.exit);
  }

  /**
   * Prepare the bundle, reach the monitor and run the container; returns
   * its pid. The network's plumbing (a helper process) and the monitor's
   * readiness are awaited only once the bundle is written: they overlap it.
   */
  private async launch(rec: ContainerRecord, live: Live): Promise<number> {
    const dir = this.store.dir(rec.Id);
    const xdir = this.execDir(rec.Id);
    const layerDirs = rec.berth.layers.map((c) => this.layers.diffDir(c)).reverse();
    const hc = rec.HostConfig;
    const place = this.net.placement(rec);
    const netReady = this.net.setup(rec, place);
    const monitor = this.monitorFor(rec);
    // Both are awaited below; one failing while the other is awaited is not unhandled.
    netReady.catch(() => undefined);
    monitor.catch(() => undefined);
    try {
      const [user, userMounts] = await Promise.all([
        resolveUser([join(dir, 'upper'), ...layerDirs], rec.Config.User, hc.GroupAdd ?? []),
        this.mounts.ociMounts(rec),
        mkdir(xdir, { recursive: true, mode: 0o700 }),
      ]);
      const caps = computeCapabilities({ add: hc.CapAdd ?? [], drop: hc.CapDrop ?? [], privileged: hc.Privileged });
      const env = [...rec.Config.Env];
      if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${place.hostname}`);
      if (rec.Config.Tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
      if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home || '/'}`);
      const etcMounts: OciMount[] = [
        { destination: '/etc/resolv.conf', type: 'bind', source: rec.ResolvConfPath, options: ['rbind', 'rprivate'] },
        { destination: '/etc/hostname', type: 'bind', source: rec.HostnamePath, options: ['rbind', 'rprivate'] },
        { destination: '/etc/hosts', type: 'bind', source: rec.HostsPath, options: ['rbind', 'rprivate'] },
      ];
      const spec = buildSpec({
        rootfs: join(dir, 'rootfs'),
        readonlyRootfs: hc.ReadonlyRootfs,
        args: [rec.Path, ...rec.Args],
        env,
        cwd: rec.Config.WorkingDir || '/',
        user,
        terminal: rec.Config.Tty,
        consoleSize: hc.ConsoleSize && hc.ConsoleSize[0] > 0 ? hc.ConsoleSize : undefined,
        hostname: place.hostname,
        domainname: rec.Config.Domainname,
        capabilities: caps,
        privileged: hc.Privileged,
        noNewPrivileges: (hc.SecurityOpt ?? []).some((o) => /^no-new-privileges(:true|=true)?$/.test(o)),
        namespaces: { network: place.ns, ipc: hc.IpcMode === 'host' ? 'host' : 'private', pid: hc.PidMode === 'host' ? 'host' : 'private', uts: hc.UTSMode === 'host' ? 'host' : 'private' },
        cgroupsPath: `${hc.CgroupParent || this.cfg.cgroupParent}/${rec.Id}`,
        extraMounts: [...etcMounts.filter((m) => !userMounts.destinations.has(m.destination)), ...userMounts.mounts],
        shmSize: hc.ShmSize ?? 64 * 1024 * 1024,
      });
      if (userMounts.rootfsPropagation) spec.linux.rootfsPropagation = userMounts.rootfsPropagation;
      applySecurity(spec, rec, { find: (ref) => this.find(ref), capabilities: caps, initPath: this.cfg.initPath });
      writeFileSync(join(xdir, 'config.json'), JSON.stringify(spec));
      this.writeEtcFiles(rec, await netReady);
      live.conn = await monitor;
    } catch (err) {
      // A monitor that will never get START is told to end.
      void monitor.then((c) => c.shutdown(), () => undefined);
      throw err;
    }
    const conn = live.conn;
    this.wireConnection(rec, live, conn);
    const wantOut = [...live.sinks].some((s) => s.stdout);
    const wantErr = [...live.sinks].some((s) => s.stderr);
    conn.subscribe(wantOut, wantErr);
    for (const chunk of live.pendingStdin) conn.stdin(chunk);
    live.pendingStdin = [];
    if (live.pendingStdinClose) conn.closeStdin();
    return conn.start();
  }

  /** The connection to this container's monitor: the warm one from create, or a new one. */
  private async monitorFor(rec: ContainerRecord): Promise<MonitorConnection> {
    const warm = this.takeWarm(rec.Id);
    const spawned = warm ? await warm.then(() => true, () => false) : false;
    if (!spawned) await this.spawnFor(rec);
    return MonitorConnection.connect(this.execDir(rec.Id));
  }

  /** Start a monitor for a container; it waits for START. */
  private async spawnFor(rec: ContainerRecord): Promise<void> {
    const dir = this.store.dir(rec.Id);
    const xdir = this.execDir(rec.Id);
    await mkdir(xdir, { recursive: true, mode: 0o700 });
    await rm(join(xdir, 'exit'), { force: true });
    const layerDirs = rec.berth.layers.map((c) => this.layers.diffDir(c)).reverse();
    const lowers = layerDirs.length ? layerDirs : [await this.emptyLower()];
    await spawnMonitor({
      monitorPath: this.monitorPath,
      id: rec.Id,
      dir: xdir,
      runtimePath: this.cfg.runtimePath,
      runtimeRoot: this.runtimeRoot,
      bundle: xdir,
      logPath: rec.LogPath || undefined,
      terminal: rec.Config.Tty,
      stdin: rec.Config.OpenStdin,
      overlay: { lowers, upper: join(dir, 'upper'), work: join(dir, 'work'), target: join(dir, 'rootfs') },
    }, this.launcher);
  }

  /**
   * A new container's monitor is spawned right after create, off the path
   * of the request, so that start finds it ready: spawning a process from
   * Node costs several milliseconds that `run` would otherwise wait for. A
   * container not started within a minute gets its monitor shut down.
   */
  private prewarm(rec: ContainerRecord): void {
    const ready = this.spawnFor(rec);
    ready.catch(() => undefined);
    const timer = setTimeout(() => void this.coolDown(rec.Id), WARM_MONITOR_MS);
    timer.unref();
    this.warm.set(rec.Id, { ready, timer });
  }

  private takeWarm(id: string): Promise<void> | undefined {
    const w = this.warm.get(id);
    if (!w) return undefined;
    this.warm.delete(id);
    clearTimeout(w.timer);
    return w.ready;
  }

  /** Shut down a monitor that never got START (a warm one, or one left by an earlier berthd). */
  private async coolDown(id: string): Promise<void> {
    const w = this.takeWarm(id);
    if (w) await w.catch(() => undefined);
    if (!existsSync(join(this.execDir(id), 'monitor.sock'))) return;
    try {
      const conn = await MonitorConnection.connect(this.execDir(id));
      const closed = new Promise((r) => conn.once('close', r));
      conn.shutdown();
      await closed;
    } catch {
      // already gone
    }
  }

  private emptyDir?: string;
  private async emptyLower(): Promise<string> {
    if (!this.emptyDir) {
      this.emptyDir = join(this.layers.root, 'empty');
      await ensureDir(this.emptyDir, 0o755);
    }
    return this.emptyDir;
  }

  /** Docker's exit codes for a process that could not be started: 127 not found, 126 not executable. */
  private async startFailed(rec: ContainerRecord, err: unknown): Promise<Error> {
    const msg = errorMessage(err);
    await this.network?.teardown(rec).catch((e) => log.error('releasing the network failed', { id: rec.Id, error: errorMessage(e) }));
    const code = /executable file not found|no such file or directory/i.test(msg) ? 127 : /permission denied/i.test(msg) ? 126 : 128;
    rec.State = { ...rec.State, Status: rec.State.Status === 'running' ? 'exited' : rec.State.Status, Running: false, Pid: 0, ExitCode: code, Error: msg };
    await this.store.save(rec);
    await this.mounts.release(rec);
    this.events.emit('container', 'die', rec.Id, { exitCode: String(code), image: rec.Config.Image, name: rec.Name.slice(1) });
    if (rec.HostConfig.AutoRemove) await this.remove(rec.Id, { force: true }).catch(() => undefined);
    else this.notifyExit(rec.Id, code);
    if (!(err instanceof StartError)) return err instanceof Error ? err : new Error(msg);
    const full = `failed to create task for container: OCI runtime create failed: ${msg}: unknown`;
    return code !== 128 ? invalid(full) : new BerthError('System', full);
  }

  private wireConnection(rec: ContainerRecord, live: Live, conn: MonitorConnection): void {
    conn.on('stdout', (d: Buffer) => { for (const s of live.sinks) if (s.stdout) s.write('stdout', d); });
    conn.on('stderr', (d: Buffer) => { for (const s of live.sinks) if (s.stderr) s.write('stderr', d); });
    conn.on('exit', (e: ExitInfo) => {
      // While start() is still recording the start, it handles the exit itself.
      if (!live.starting || rec.State.Running) void this.onExit(rec, live, e);
    });
  }

  /** Small files on the path of every start: synchronous writes beat three thread-pool round trips each. */
  private writeEtcFiles(rec: ContainerRecord, net: NetworkSetup): void {
    writeFileSync(rec.HostnamePath, `${net.hostname}\n`);
    writeFileSync(rec.HostsPath, net.hosts);
    writeFileSync(rec.ResolvConfPath, net.resolv);
  }

  // ---------------------------------------------------------------- exit

  private async markExited(rec: ContainerRecord, exit: ExitInfo, error = '', persist = true): Promise<void> {
    rec.State = { ...rec.State, Status: 'exited', Running: false, Paused: false, Restarting: false, OOMKilled: exit.oomKilled ?? false, Pid: 0, ExitCode: exit.exitCode, Error: error, FinishedAt: exit.finishedAt };
    if (persist) await this.store.save(rec);
  }

  private exiting = new Set<string>();
  private async onExit(rec: ContainerRecord, live: Live, exit: ExitInfo): Promise<void> {
    if (this.exiting.has(rec.Id)) return;
    this.exiting.add(rec.Id);
    try {
      // The monitor reports the exit before it releases the runtime state and
      // the root mount; whatever needs those waits for `cleaning`.
      const conn = live.conn;
      if (conn) {
        // The monitor exits (closing the connection) right after its
        // cleanup; waiting for that, not just CLEANED, keeps a restarted
        // container's new monitor clear of the old one's last steps.
        this.cleaning.set(rec.Id, new Promise<void>((resolve) => {
          conn.once('close', resolve);
        }).finally(() => this.cleaning.delete(rec.Id)));
        conn.shutdown();
      }
      await this.network?.teardown(rec, { background: true }).catch((e) => log.error('releasing the network failed', { id: rec.Id, error: errorMessage(e) }));
      // An auto-remove container's next write is its removal; one write saves a step of `run --rm`.
      await this.markExited(rec, exit, '', !rec.HostConfig.AutoRemove);
      await this.mounts.release(rec);
      this.live.delete(rec.Id);
      for (const s of live.sinks) s.end();
      live.sinks.clear();
      live.resolveExit(exit);
      if (exit.oomKilled) this.events.emit('container', 'oom', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
      const ran = Math.max(0, Math.floor((Date.parse(exit.finishedAt) - Date.parse(rec.State.StartedAt)) / 1000));
      this.events.emit('container', 'die', rec.Id, { execDuration: String(Number.isFinite(ran) ? ran : 0), exitCode: String(exit.exitCode), image: rec.Config.Image, name: rec.Name.slice(1) });
      await this.hooks?.exited(rec, exit.exitCode);
      if (rec.HostConfig.AutoRemove) {
        await this.destroy(rec);
      }
      this.notifyExit(rec.Id, exit.exitCode);
    } catch (err) {
      log.error('handling container exit failed', { id: rec.Id, error: errorMessage(err) });
    } finally {
      this.exiting.delete(rec.Id);
    }
  }

  private notifyExit(id: string, code: number): void {
    const ws = this.exitWaiters.get(id);
    this.exitWaiters.delete(id);
    for (const w of ws ?? []) w(code);
  }

  // ---------------------------------------------------------------- wait

  /** docker's wait: resolve with the exit code once the condition holds. */
  async wait(ref: string, condition: WaitCondition = 'not-running', signal?: AbortSignal): Promise<{ StatusCode: number; Error: { Message: string } | null }> {
    const rec = this.find(ref);
    if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw invalid(`invalid condition: "${condition}"`);
    const running = rec.State.Running || this.live.get(rec.Id)?.starting !== undefined;
    if (condition === 'not-running' && !running) return { StatusCode: rec.State.ExitCode, Error: null };
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new Error('client went away'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (code: number) => {
        signal?.removeEventListener('abort', onAbort);
        resolve({ StatusCode: code, Error: null });
      };
      if (condition === 'removed') {
        const ws = this.removedWaiters.get(rec.Id) ?? [];
        ws.push(() => done(rec.State.ExitCode));
        this.removedWaiters.set(rec.Id, ws);
      } else {
        const ws = this.exitWaiters.get(rec.Id) ?? [];
        ws.push(done);
        this.exitWaiters.set(rec.Id, ws);
      }
    });
  }

  // ---------------------------------------------------------------- attach

  /**
   * Attach a sink to a container's streams. Works before start (output from
   * the first byte is delivered) and while running.
   */
  async attach(ref: string, sink: AttachSink, opts: { stdin: boolean; logs: boolean; stream: boolean }): Promise<AttachHandle> {
    const rec = this.find(ref);
    if (opts.logs && rec.LogPath) {
      const ac = new AbortController();
      for await (const r of readLog(rec.LogPath, { stdout: sink.stdout, stderr: sink.stderr, since: 0, until: 0, tail: -1, follow: false }, undefined, ac.signal)) {
        sink.write(r.stream, Buffer.from(r.log));
      }
    }
    if (!opts.stream) {
      sink.end();
      return { stdin: () => undefined, closeStdin: () => undefined, detach: () => undefined };
    }
    this.events.emit('container', 'attach', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
    let live = this.live.get(rec.Id);
    if (!live) {
      if (rec.State.Running) throw conflict(`container ${rec.Id} is running but its monitor is not connected`);
      live = this.newLive();
      this.live.set(rec.Id, live);
    }
    const l = live;
    l.sinks.add(sink);
    if (l.conn) l.conn.subscribe([...l.sinks].some((s) => s.stdout), [...l.sinks].some((s) => s.stderr));
    const stdinOpen = opts.stdin && rec.Config.OpenStdin;
    return {
      stdin: (data) => {
        if (!stdinOpen) return;
        if (l.conn) l.conn.stdin(data);
        else l.pendingStdin.push(data);
      },
      closeStdin: () => {
        if (!stdinOpen || !rec.Config.StdinOnce) return;
        if (l.conn) l.conn.closeStdin();
        else l.pendingStdinClose = true;
      },
      detach: () => {
        l.sinks.delete(sink);
        // A StdinOnce client that went away (even without a half-close) ends stdin, as docker does.
        if (stdinOpen && rec.Config.StdinOnce && !rec.Config.Tty) {
          if (l.conn) l.conn.closeStdin();
          else l.pendingStdinClose = true;
        }
        if (l.conn) l.conn.subscribe([...l.sinks].some((s) => s.stdout), [...l.sinks].some((s) => s.stderr));
        else if (l.sinks.size === 0 && !l.starting && !rec.State.Running) this.live.delete(rec.Id);
      },
    };
  }

  resize(ref: string, h: number, w: number): void {
    const rec = this.find(ref);
    const live = this.live.get(rec.Id);
    if (!rec.State.Running || !live?.conn) throw conflict(`Container ${rec.Id} is not running`);
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) throw invalid('invalid terminal size');
    live.conn.resize(h, w);
    this.events.emit('container', 'resize', rec.Id, { height: String(h), width: String(w), image: rec.Config.Image, name: rec.Name.slice(1) });
  }

  // ---------------------------------------------------------------- signals

  async kill(ref: string, signal = 'KILL'): Promise<void> {
    const rec = this.find(ref);
    const sig = parseSignal(signal);
    if (sig.number === 9 && this.hooks?.cancelRestart(rec)) {
      rec.berth.manuallyStopped = true;
      await this.store.save(rec);
      return;
    }
    if (!rec.State.Running) throw conflict(`Cannot kill container: ${ref}: Container ${rec.Id} is not running`);
    if (sig.number === 9) rec.berth.manuallyStopped = true;
    try {
      process.kill(rec.State.Pid, sig.number);
    } catch (err) {
      throw conflict(`Cannot kill container: ${ref}: ${errorMessage(err)}`);
    }
    if (sig.number === 9) await this.hooks?.thaw(rec);
    this.events.emit('container', 'kill', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1), signal: String(sig.number) });
  }

  async stop(ref: string, opts: { signal?: string; timeout?: number } = {}): Promise<void> {
    const rec = this.find(ref);
    // A start under way (a restart policy's, say) finishes first; then it is stopped like any running container.
    await this.live.get(rec.Id)?.starting?.catch(() => undefined);
    // A pending restart is cancelled; so is one still to be decided: a
    // container that exited on its own a moment ago, its exit still being
    // handled, must not be brought back by its policy once the user has
    // stopped it. Without such a policy it is simply already stopped (304).
    if (this.hooks?.cancelRestart(rec) || (!rec.State.Running && this.exiting.has(rec.Id) && shouldRestart(rec, rec.State.ExitCode))) {
      rec.berth.manuallyStopped = true;
      await this.store.save(rec);
      this.events.emit('container', 'stop', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
      return;
    }
    if (!rec.State.Running) throw notModified('container already stopped');
    const live = this.live.get(rec.Id);
    const sig = parseSignal(opts.signal || rec.Config.StopSignal || 'SIGTERM');
    const timeout = opts.timeout ?? rec.Config.StopTimeout ?? 10;
    rec.berth.manuallyStopped = true;
    const pid = rec.State.Pid;
    try {
      process.kill(pid, sig.number);
      this.events.emit('container', 'kill', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1), signal: String(sig.number) });
    } catch {
      // Already gone: the monitor reports the exit.
    }
    const exited = live?.exited ?? Promise.resolve();
    const timedOut = timeout < 0 ? false : await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), timeout * 1000).unref())]);
    if (timedOut) {
      try {
        process.kill(pid, 9);
        await this.hooks?.thaw(rec);
        this.events.emit('container', 'kill', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1), signal: '9' });
      } catch {
        // exited meanwhile
      }
      await exited;
    } else if (timeout < 0) {
      await exited;
    }
    this.events.emit('container', 'stop', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
  }

  async restart(ref: string, opts: { signal?: string; timeout?: number } = {}): Promise<void> {
    const rec = this.find(ref);
    if (rec.State.Running) await this.stop(ref, opts);
    await this.start(rec.Id);
    this.events.emit('container', 'restart', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
  }

  // ---------------------------------------------------------------- remove

  async remove(ref: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const rec = this.find(ref);
    if (rec.State.Status === 'removing') throw conflict(`removal of container ${rec.Id} is already in progress`);
    if (rec.State.Restarting) {
      if (!opts.force) throw conflict(`cannot remove container "${rec.Name}": container is restarting: stop the container before removing or force remove`);
      this.hooks?.cancelRestart(rec);
    }
    if (rec.State.Paused && !opts.force) throw conflict(`cannot remove container "${rec.Name}": container is paused and must be unpaused first`);
    if (rec.State.Running) {
      if (!opts.force) throw conflict(`cannot remove container "${rec.Name}": container is running: stop the container before removing or force remove`);
      const live = this.live.get(rec.Id);
      const wasAuto = rec.HostConfig.AutoRemove;
      try {
        process.kill(rec.State.Pid, 9);
      } catch {
        // gone already
      }
      await this.hooks?.thaw(rec);
      if (live) await live.exited;
      // An auto-remove container is removed by its exit handler.
      if (wasAuto && !this.store.get(rec.Id)) return;
    }
    if (!this.store.get(rec.Id)) return;
    // An explicit removal answers once the files are gone too, as docker's
    // does (cgroup, mount, runtime state); auto-removal does not wait.
    const { purged } = await this.destroy(rec, opts.volumes);
    await purged;
  }

  /**
   * Remove a container. It leaves the API at once (name freed, gone from
   * lists, `removed` waiters answered); its files follow as soon as the
   * monitor has released the runtime state and the mount. The record is
   * saved as `removing` first, so a restart finishes the job.
   */
  private async destroy(rec: ContainerRecord, removeVolumes = false): Promise<{ purged: Promise<void> }> {
    if (!this.store.get(rec.Id)) return { purged: Promise.resolve() };
    rec.State.Status = 'removing';
    await this.store.save(rec).catch(() => undefined);
    this.store.unlist(rec);
    // `rm -v` and `--rm` take the container's anonymous volumes with it.
    await this.mounts.removed(rec, removeVolumes || rec.HostConfig.AutoRemove).catch((err: unknown) => log.error('releasing container volumes failed', { id: rec.Id, error: errorMessage(err) }));
    this.live.delete(rec.Id);
    this.hooks?.removed(rec);
    this.events.emit('container', 'destroy', rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1) });
    const ws = this.removedWaiters.get(rec.Id);
    this.removedWaiters.delete(rec.Id);
    for (const w of ws ?? []) w();
    const purge = this.purge(rec).catch((err) => log.error('removing container files failed', { id: rec.Id, error: errorMessage(err) }));
    this.purging.add(purge);
    void purge.finally(() => this.purging.delete(purge));
    return { purged: purge };
  }

  private async purge(rec: ContainerRecord): Promise<void> {
    await this.cleaning.get(rec.Id);
    await Promise.all([...(this.fsHolds.get(rec.Id) ?? [])]);
    if (!rec.State.Running) await this.coolDown(rec.Id);
    // A monitor killed before its cleanup leaves the runtime's state behind.
    if (existsSync(join(this.runtimeRoot, rec.Id))) await runtimeDelete(this.cfg.runtimePath, this.runtimeRoot, rec.Id);
    const rootfs = join(this.store.dir(rec.Id), 'rootfs');
    if (isMounted(rootfs)) await umount(rootfs);
    await this.network?.teardown(rec).catch(() => undefined);
    await removeTree(this.execDir(rec.Id));
    await this.store.removeFiles(rec.Id);
  }

  /** Wait for removals still releasing files (tests and shutdown use this). */
  async settle(): Promise<void> {
    await Promise.all([...this.purging]);
  }

  async rename(ref: string, newName: string): Promise<void> {
    const rec = this.find(ref);
    if (!newName) throw invalid('Neither old nor new names may be empty');
    const name = ContainerStore.validateName(newName);
    if (name === rec.Name) throw invalid(`Renaming a container with the same name as its current name`);
    this.store.reserveName(name, rec.Id);
    const old = rec.Name;
    rec.Name = name;
    await this.store.save(rec, true);
    this.store.releaseName(old, rec.Id);
    this.events.emit('container', 'rename', rec.Id, { name: name.slice(1), oldName: old, image: rec.Config.Image });
  }

  // ---------------------------------------------------------------- logs

  async *logs(ref: string, opts: LogOptions, signal: AbortSignal): AsyncGenerator<LogRecord> {
    const rec = this.find(ref);
    if (rec.HostConfig.LogConfig.Type === 'none' || !rec.LogPath) {
      throw invalid(`configured logging driver does not support reading`);
    }
    const live = this.live.get(rec.Id);
    const stopped = opts.follow && rec.State.Running && live ? live.exited.then(() => undefined) : undefined;
    yield* readLog(rec.LogPath, { ...opts, follow: opts.follow && !!stopped }, stopped, signal);
  }

  /** Stop watching monitors (berthd shutting down): containers keep running. */
  detachAll(): void {
    this.hooks?.close();
    for (const live of this.live.values()) live.conn?.close();
  }

  /** The launcher's last use is over (berthd shutting down, after the network's clean-up, which runs berth-netns through it). */
  stopLauncher(): void {
    this.launcher.stop();
  }
}

function isMounted(path: string): boolean {
  try {
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    return mounts.split('\n').some((l) => l.split(' ')[1] === path);
  } catch {
    return false;
  }
}

function runtimeDelete(runtime: string, root: string, id: string): Promise<void> {
  return new Promise((resolve) => execFile(runtime, ['--root', root, 'delete', '-f', id], () => resolve()));
}

async function umount(path: string): Promise<void> {
  await new Promise<void>((resolve) => execFile('umount', ['-l', path], () => resolve()));
}

