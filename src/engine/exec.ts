/**
 * The exec service: `docker exec` instances. Each started exec gets its own
 * monitor (native/berth-monitor.c in `--exec` mode) that runs `runc exec`,
 * owns the process's stdio and records its exit, so an exec keeps running
 * and its outcome is kept while berthd is away; berthd re-adopts it on start.
 * Records live in memory and in `<exec-root>/containers/<id>/execs/<exec-id>/`.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerService, AttachSink, AttachHandle } from './containers.ts';
import type { ContainerRecord } from './container-types.ts';
import type { EventBus } from './events.ts';
import { buildExecProcess } from './exec-spec.ts';
import { resolveUser } from './rootfs.ts';
import type { ResolvedUser } from './rootfs.ts';
import type { DaemonConfig } from '../daemon/config.ts';
import type { OciSpec } from '../runtime/oci-spec.ts';
import { MonitorConnection, StartError, spawnMonitor } from '../runtime/monitor.ts';
import type { ExitInfo } from '../runtime/monitor.ts';
import { computeCapabilities } from '../runtime/capabilities.ts';
import { parseDetachKeys } from '../util/detach-keys.ts';
import { BerthError, conflict, errorMessage, invalid, notFound } from '../util/errors.ts';
import { removeTree } from '../util/fsutil.ts';
import { newId } from '../util/ids.ts';
import { log } from '../util/log.ts';

/** The body of POST /containers/{id}/exec. */
export interface ExecCreateRequest {
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  DetachKeys?: string;
  Tty?: boolean;
  ConsoleSize?: [number, number] | null;
  Env?: string[] | null;
  Cmd?: string[] | null;
  Privileged?: boolean;
  User?: string;
  WorkingDir?: string;
}

/** What is kept of an exec (also written to exec.json for re-adoption). */
interface ExecConfigRecord {
  id: string;
  containerId: string;
  cmd: string[];
  env: string[];
  user: string;
  workingDir: string;
  tty: boolean;
  privileged: boolean;
  openStdin: boolean;
  openStdout: boolean;
  openStderr: boolean;
  detachKeys: string;
  consoleSize?: [number, number];
}

interface ExecInstance extends ExecConfigRecord {
  started: boolean;
  running: boolean;
  exitCode: number | null;
  pid: number;
  conn?: MonitorConnection;
  sinks: Set<AttachSink>;
  pendingStdin: Buffer[];
  pendingStdinClose: boolean;
  size?: [number, number];
  finished: boolean;
}

/** Finished execs kept per container for inspection; older ones are forgotten. */
const KEEP_FINISHED = 64;

export class ExecService {
  private readonly execs = new Map<string, ExecInstance>();
  private readonly cfg: DaemonConfig;
  private readonly containers: ContainerService;
  private readonly events: EventBus;

  constructor(cfg: DaemonConfig, containers: ContainerService, events: EventBus) {
    this.cfg = cfg;
    this.containers = containers;
    this.events = events;
  }

  private dir(e: ExecConfigRecord): string {
    return join(this.containers.execDir(e.containerId), 'execs', e.id);
  }

  // ---------------------------------------------------------------- create

  async create(ref: string, req: ExecCreateRequest): Promise<{ Id: string }> {
    const rec = this.containers.find(ref);
    this.mustBeRunning(rec);
    if (typeof req !== 'object' || req === null) throw invalid('exec config cannot be empty');
    const cmd = req.Cmd ?? [];
    if (!Array.isArray(cmd) || cmd.length === 0) throw invalid('No exec command specified');
    if (req.DetachKeys) {
      try {
        parseDetachKeys(req.DetachKeys);
      } catch {
        throw invalid(`Invalid escape keys (${req.DetachKeys}) provided`);
      }
    }
    if (req.WorkingDir && !req.WorkingDir.startsWith('/')) throw invalid(`the working directory '${req.WorkingDir}' is invalid, it needs to be an absolute path`);
    this.forgetStale(rec.Id);
    const e: ExecInstance = {
      id: newId(),
      containerId: rec.Id,
      cmd: cmd.map(String),
      env: (req.Env ?? []).map(String),
      user: req.User ?? '',
      workingDir: req.WorkingDir ?? '',
      tty: req.Tty === true,
      privileged: req.Privileged === true,
      openStdin: req.AttachStdin === true,
      openStdout: req.AttachStdout === true,
      openStderr: req.AttachStderr === true,
      detachKeys: req.DetachKeys ?? '',
      consoleSize: validSize(req.ConsoleSize),
      started: false,
      running: false,
      exitCode: null,
      pid: 0,
      sinks: new Set(),
      pendingStdin: [],
      pendingStdinClose: false,
      finished: false,
    };
    this.execs.set(e.id, e);
    this.events.emit('container', `exec_create: ${e.cmd.join(' ')}`, rec.Id, { ...this.attrs(rec), execID: e.id });
    return { Id: e.id };
  }

  private mustBeRunning(rec: ContainerRecord): void {
    if (rec.State.Paused) throw conflict(`container ${rec.Id} is paused, unpause the container before exec`);
    if (rec.State.Restarting) throw conflict(`container ${rec.Id} is restarting, wait until the container is running`);
    if (!rec.State.Running) throw conflict(`container ${rec.Id} is not running`);
  }

  private attrs(rec: ContainerRecord): Record<string, string> {
    return { image: rec.Config.Image, name: rec.Name.slice(1) };
  }

  private get(id: string): ExecInstance {
    const e = this.execs.get(id);
    if (!e || !this.containers.store.get(e.containerId)) {
      if (e) this.execs.delete(id);
      throw notFound(`No such exec instance: ${id}`);
    }
    return e;
  }

  /** Drop records of removed containers, and all but the newest finished execs of this one. */
  private forgetStale(containerId: string): void {
    const finished: ExecInstance[] = [];
    for (const e of this.execs.values()) {
      if (!this.containers.store.get(e.containerId)) this.execs.delete(e.id);
      else if (e.containerId === containerId && e.finished) finished.push(e);
    }
    for (const e of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.execs.delete(e.id);
  }

  // ---------------------------------------------------------------- start

  /** Checks that start would be accepted; the API calls this before it takes over the connection. */
  checkStart(id: string): { tty: boolean; openStdin: boolean; detachKeys: string; containerId: string } {
    const e = this.get(id);
    if (e.running) throw conflict(`Error: Exec command ${id} is already running`);
    if (e.started) throw conflict(`Error: Exec command ${id} has already run`);
    this.mustBeRunning(this.containers.find(e.containerId));
    return { tty: e.tty, openStdin: e.openStdin, detachKeys: e.detachKeys, containerId: e.containerId };
  }

  /**
   * Connect a client stream to the exec's stdio. Input is held until the
   * process runs; output flows once it starts; `end` comes after its exit.
   */
  attach(id: string, sink: AttachSink): AttachHandle {
    const e = this.get(id);
    e.sinks.add(sink);
    e.conn?.subscribe(e.openStdout, e.openStderr);
    return {
      stdin: (d) => {
        if (!e.openStdin) return;
        if (e.conn) e.conn.stdin(d);
        else e.pendingStdin.push(d);
      },
      closeStdin: () => {
        if (!e.openStdin) return;
        if (e.conn) e.conn.closeStdin();
        else e.pendingStdinClose = true;
      },
      detach: () => {
        if (!e.sinks.delete(sink)) return;
        // The client is gone: nothing more will come for stdin (docker closes it too; a pty has no end to close).
        if (e.openStdin && !e.tty && e.sinks.size === 0) {
          if (e.conn) e.conn.closeStdin();
          else e.pendingStdinClose = true;
        }
      },
    };
  }

  /** Run the exec's process; resolves once it runs. A failure leaves exit code 126 or 127. */
  async start(id: string, opts: { tty?: boolean; consoleSize?: [number, number] | null } = {}): Promise<void> {
    this.checkStart(id);
    const e = this.get(id);
    const rec = this.containers.find(e.containerId);
    e.started = true;
    e.running = true;
    const size = validSize(opts.consoleSize) ?? e.consoleSize;
    try {
      await this.launch(e, rec, size);
    } catch (err) {
      const msg = errorMessage(err);
      const code = /executable file not found|no such file or directory/i.test(msg) ? 127 : 126;
      e.conn?.shutdown();
      e.conn = undefined;
      let out: Error = err instanceof Error ? err : new Error(msg);
      if (err instanceof StartError) {
        const full = `OCI runtime exec failed: ${msg}: unknown`;
        out = code === 127 || /permission denied/i.test(msg) ? invalid(full) : new BerthError('System', full);
      }
      // An attached client learns why from its stream, as docker writes it there.
      for (const s of e.sinks) s.write('stdout', Buffer.from(`${out.message}\r\n`));
      this.finish(e, rec, code);
      throw out;
    }
    this.events.emit('container', `exec_start: ${e.cmd.join(' ')}`, rec.Id, { ...this.attrs(rec), execID: e.id });
    // The process may have ended while the start was being recorded.
    if (e.conn?.exit) this.onExit(e, e.conn.exit);
  }

  private async launch(e: ExecInstance, rec: ContainerRecord, size: [number, number] | undefined): Promise<void> {
    const cdir = this.containers.execDir(rec.Id);
    const spec = JSON.parse(await readFile(join(cdir, 'config.json'), 'utf8')) as OciSpec;
    let user: ResolvedUser;
    if (e.user) {
      user = await resolveUser([join(this.containers.store.dir(rec.Id), 'rootfs')], e.user, rec.HostConfig.GroupAdd ?? []);
    } else {
      const u = spec.process.user;
      user = { uid: u.uid, gid: u.gid, additionalGids: u.additionalGids ?? [], home: '/' };
    }
    const proc = buildExecProcess({
      base: spec.process,
      containerEnv: rec.Config.Env,
      hostname: spec.hostname ?? rec.Config.Hostname,
      cmd: e.cmd,
      env: e.env,
      workingDir: e.workingDir,
      containerWorkingDir: rec.Config.WorkingDir,
      user,
      tty: e.tty,
      consoleSize: size,
      privilegedCaps: e.privileged ? computeCapabilities({ privileged: true }) : undefined,
    });
    const dir = this.dir(e);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const record: ExecConfigRecord = {
      id: e.id, containerId: e.containerId, cmd: e.cmd, env: e.env, user: e.user, workingDir: e.workingDir, tty: e.tty,
      privileged: e.privileged, openStdin: e.openStdin, openStdout: e.openStdout, openStderr: e.openStderr, detachKeys: e.detachKeys,
    };
    await Promise.all([
      writeFile(join(dir, 'process.json'), JSON.stringify(proc)),
      writeFile(join(dir, 'exec.json'), JSON.stringify(record)),
    ]);
    await spawnMonitor({
      monitorPath: join(this.cfg.nativeDir, 'berth-monitor'),
      id: rec.Id,
      dir,
      runtimePath: this.cfg.runtimePath,
      runtimeRoot: join(this.cfg.execRoot, 'runtime'),
      bundle: dir,
      terminal: e.tty,
      stdin: e.openStdin,
      execProcess: join(dir, 'process.json'),
    }, this.containers.launcher);
    const conn = await MonitorConnection.connect(dir);
    e.conn = conn;
    this.wire(e, conn);
    conn.subscribe(e.openStdout, e.openStderr);
    if (e.size) conn.resize(e.size[0], e.size[1]);
    for (const d of e.pendingStdin) conn.stdin(d);
    e.pendingStdin = [];
    if (e.pendingStdinClose) conn.closeStdin();
    e.pid = await conn.start();
  }

  private wire(e: ExecInstance, conn: MonitorConnection): void {
    conn.on('stdout', (d: Buffer) => { for (const s of e.sinks) if (s.stdout) s.write('stdout', d); });
    conn.on('stderr', (d: Buffer) => { for (const s of e.sinks) if (s.stderr) s.write('stderr', d); });
    conn.on('exit', (x: ExitInfo) => {
      if (e.pid) this.onExit(e, x);
    });
    conn.once('close', () => {
      // The monitor is gone: its directory has served its purpose.
      if (e.finished || !e.running) void removeTree(this.dir(e)).catch(() => undefined);
      else void this.lost(e);
    });
  }

  /** The monitor went away without reporting an exit: take it from the exit file. */
  private async lost(e: ExecInstance): Promise<void> {
    const x = await readExit(this.dir(e));
    const rec = this.containers.store.get(e.containerId);
    if (rec) this.finish(e, rec, x?.exitCode ?? 255);
    await removeTree(this.dir(e)).catch(() => undefined);
  }

  private onExit(e: ExecInstance, x: ExitInfo): void {
    if (e.finished) return;
    const rec = this.containers.store.get(e.containerId);
    e.conn?.shutdown();
    if (rec) this.finish(e, rec, x.exitCode);
    else {
      e.finished = true;
      e.running = false;
      e.exitCode = x.exitCode;
    }
  }

  private finish(e: ExecInstance, rec: ContainerRecord, code: number): void {
    if (e.finished) return;
    e.finished = true;
    e.running = false;
    e.exitCode = code;
    for (const s of e.sinks) s.end();
    e.sinks.clear();
    this.events.emit('container', 'exec_die', rec.Id, { ...this.attrs(rec), execID: e.id, exitCode: String(code) });
  }

  // ---------------------------------------------------------------- resize, inspect

  resize(id: string, h: number, w: number): void {
    const e = this.get(id);
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) throw invalid('invalid terminal size');
    if (e.finished) throw conflict(`Exec process ${id} is not running`);
    e.size = [h, w];
    e.conn?.resize(h, w);
  }

  inspect(id: string): Record<string, unknown> {
    const e = this.get(id);
    const pc: Record<string, unknown> = { tty: e.tty, entrypoint: e.cmd[0] ?? '', arguments: e.cmd.slice(1) };
    if (e.privileged) pc.privileged = true;
    if (e.user) pc.user = e.user;
    return {
      ID: e.id,
      Running: e.running,
      ExitCode: e.exitCode,
      ProcessConfig: pc,
      OpenStdin: e.openStdin,
      OpenStderr: e.openStderr,
      OpenStdout: e.openStdout,
      CanRemove: false,
      ContainerID: e.containerId,
      DetachKeys: e.detachKeys,
      Pid: e.pid,
    };
  }

  /** Execs of a container that are created or running (container inspect's ExecIDs). */
  idsFor(containerId: string): string[] | null {
    const ids = [...this.execs.values()].filter((e) => e.containerId === containerId && !e.finished).map((e) => e.id);
    return ids.length ? ids : null;
  }

  // ---------------------------------------------------------------- restart

  /** After a berthd restart: adopt execs whose monitors still run, record those that ended. */
  async init(): Promise<void> {
    for (const rec of this.containers.list()) {
      const base = join(this.containers.execDir(rec.Id), 'execs');
      let names: string[];
      try {
        names = await readdir(base);
      } catch {
        continue;
      }
      for (const name of names) await this.adopt(rec, join(base, name));
    }
  }

  private async adopt(rec: ContainerRecord, dir: string): Promise<void> {
    let cfg: ExecConfigRecord;
    try {
      cfg = JSON.parse(await readFile(join(dir, 'exec.json'), 'utf8')) as ExecConfigRecord;
    } catch {
      await removeTree(dir).catch(() => undefined);
      return;
    }
    const e: ExecInstance = { ...cfg, started: true, running: true, exitCode: null, pid: 0, sinks: new Set(), pendingStdin: [], pendingStdinClose: false, finished: false };
    const pid = Number((await readFile(join(dir, 'pid'), 'utf8').catch(() => '0')).trim()) || 0;
    e.pid = pid;
    this.execs.set(e.id, e);
    try {
      const conn = await MonitorConnection.connect(dir);
      e.conn = conn;
      this.wire(e, conn);
      const st = await conn.hello(false, false);
      if (st.status === 'exited') {
        const x = await readExit(dir);
        this.onExit(e, x ?? { exitCode: st.exitCode ?? 255, signal: 0, finishedAt: new Date().toISOString() });
      }
      log.info('re-adopted exec', { id: e.id, container: rec.Id });
    } catch {
      const x = await readExit(dir);
      e.finished = true;
      e.running = false;
      e.exitCode = x?.exitCode ?? 255;
      await removeTree(dir).catch(() => undefined);
    }
  }
}

function validSize(s: unknown): [number, number] | undefined {
  if (!Array.isArray(s) || s.length !== 2) return undefined;
  const [h, w] = s as unknown[];
  if (typeof h !== 'number' || typeof w !== 'number' || h <= 0 || w <= 0) return undefined;
  return [h, w];
}

async function readExit(dir: string): Promise<ExitInfo | undefined> {
  try {
    const raw = JSON.parse(await readFile(join(dir, 'exit'), 'utf8')) as Partial<ExitInfo> & { startFailed?: boolean };
    if (raw.startFailed) return undefined;
    return { exitCode: raw.exitCode ?? 255, signal: raw.signal ?? 0, finishedAt: raw.finishedAt ?? '' };
  } catch {
    return undefined;
  }
}
