/**
 * What happens around a container's life cycle beyond start and stop:
 * restart policies, health checks, the freezer (pause/unpause), live
 * resource updates and stats. The container service calls the hooks at its
 * life-cycle points; the API calls the operations directly.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { ContainerRecord } from './container-types.ts';
import type { ContainerService } from './containers.ts';
import type { EventBus } from './events.ts';
import { RestartManager, restartOnBoot } from './restart.ts';
import { HealthService } from './health.ts';
import { applyUpdate, updateResources } from './limits.ts';
import { sampleStats } from './stats.ts';
import { releaseShm } from './security.ts';
import type { StatsJSON } from './stats.ts';
import type { DaemonConfig } from '../daemon/config.ts';
import { conflict, invalid, systemError, errorMessage } from '../util/errors.ts';
import { log } from '../util/log.ts';

/** The points at which the container service calls out. */
export interface ContainerHooks {
  /** The container runs (freshly started, or re-adopted after berthd restarted). */
  started(rec: ContainerRecord, adopted: boolean): void;
  /** Its exit was recorded; may schedule a restart. */
  exited(rec: ContainerRecord, exitCode: number): Promise<void>;
  /** A pending restart is cancelled (stop/kill/rm); true if there was one. */
  cancelRestart(rec: ContainerRecord): boolean;
  /** A signal was sent to a paused container: thaw it so the signal lands. */
  thaw(rec: ContainerRecord): Promise<void>;
  removed(rec: ContainerRecord): void;
  /** berthd finished re-adopting containers. */
  booted(all: ContainerRecord[]): Promise<void>;
  close(): void;
}

function runtimeCall(runtime: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(runtime, args, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const text = String(stderr).trim();
      // runc logs as `time="…" level=error msg="…"`; keep the message.
      const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(text)?.[1] ?? (text || errorMessage(err));
      reject(new Error(msg.replace(/\\"/g, '"')));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class ContainerExtras implements ContainerHooks {
  readonly restarts: RestartManager;
  readonly health: HealthService;
  private readonly cfg: DaemonConfig;
  private readonly containers: ContainerService;
  private readonly events: EventBus;

  constructor(cfg: DaemonConfig, containers: ContainerService, events: EventBus) {
    this.cfg = cfg;
    this.containers = containers;
    this.events = events;
    const save = (rec: ContainerRecord) => containers.store.save(rec);
    this.restarts = new RestartManager({ start: (id) => containers.start(id), save });
    this.health = new HealthService({
      runtime: cfg.runtimePath,
      runtimeRoot: this.runtimeRoot,
      bundleOf: (id) => containers.execDir(id),
      save,
      event: (rec, action) => this.emit(rec, action),
    });
  }

  private get runtimeRoot(): string {
    return join(this.cfg.execRoot, 'runtime');
  }

  private emit(rec: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    this.events.emit('container', action, rec.Id, { image: rec.Config.Image, name: rec.Name.slice(1), ...extra });
  }

  // ------------------------------------------------------------ hooks

  started(rec: ContainerRecord, adopted: boolean): void {
    this.health.start(rec, adopted);
  }

  async exited(rec: ContainerRecord, exitCode: number): Promise<void> {
    this.health.stop(rec.Id);
    releaseShm(rec);
    if (rec.HostConfig.AutoRemove) return;
    await this.restarts.onExit(rec, exitCode);
  }

  cancelRestart(rec: ContainerRecord): boolean {
    return this.restarts.cancel(rec);
  }

  async thaw(rec: ContainerRecord): Promise<void> {
    if (!rec.State.Paused) return;
    await runtimeCall(this.cfg.runtimePath, ['--root', this.runtimeRoot, 'resume', rec.Id]).catch(() => undefined);
    rec.State = { ...rec.State, Paused: false, Status: rec.State.Running ? 'running' : rec.State.Status };
  }

  removed(rec: ContainerRecord): void {
    this.health.stop(rec.Id);
    releaseShm(rec);
    this.restarts.cancel(rec);
  }

  async booted(all: ContainerRecord[]): Promise<void> {
    for (const rec of all) {
      if (rec.State.Running || rec.State.Status === 'removing') continue;
      if (rec.State.Restarting) rec.State = { ...rec.State, Restarting: false, Status: 'exited' };
      if (!restartOnBoot(rec)) continue;
      // Not awaited: one container that fails to start must not hold up the daemon.
      this.containers.start(rec.Id).catch((err) => log.warn('restarting container at startup failed', { id: rec.Id, error: errorMessage(err) }));
    }
  }

  close(): void {
    this.restarts.close();
    this.health.stopAll();
  }

  // ------------------------------------------------------------ operations

  async pause(ref: string): Promise<void> {
    const rec = this.containers.find(ref);
    if (!rec.State.Running) throw conflict(`Container ${rec.Id} is not running`);
    if (rec.State.Paused) throw conflict(`Container ${rec.Id} is already paused`);
    try {
      await runtimeCall(this.cfg.runtimePath, ['--root', this.runtimeRoot, 'pause', rec.Id]);
    } catch (err) {
      throw systemError(`Cannot pause container ${rec.Id}: ${errorMessage(err)}`);
    }
    rec.State = { ...rec.State, Paused: true, Status: 'paused' };
    await this.containers.store.save(rec);
    this.emit(rec, 'pause');
  }

  async unpause(ref: string): Promise<void> {
    const rec = this.containers.find(ref);
    if (!rec.State.Paused) throw conflict(`Container ${rec.Id} is not paused`);
    try {
      await runtimeCall(this.cfg.runtimePath, ['--root', this.runtimeRoot, 'resume', rec.Id]);
    } catch (err) {
      throw systemError(`Cannot unpause container ${rec.Id}: ${errorMessage(err)}`);
    }
    rec.State = { ...rec.State, Paused: false, Status: 'running' };
    await this.containers.store.save(rec);
    this.emit(rec, 'unpause');
  }

  /** `POST /containers/{id}/update`: new limits (applied at once if running) and restart policy. */
  async update(ref: string, body: Record<string, unknown>): Promise<{ Warnings: string[] }> {
    const rec = this.containers.find(ref);
    if (typeof body !== 'object' || body === null) throw invalid('invalid update body');
    const { hc, warnings } = applyUpdate(rec.HostConfig, body);
    const rp = body.RestartPolicy as { Name?: string; MaximumRetryCount?: number } | undefined;
    if (rp && rp.Name !== undefined) {
      if (!['', 'no', 'always', 'unless-stopped', 'on-failure'].includes(rp.Name)) throw invalid(`invalid restart policy '${rp.Name}'`);
      if (rp.Name !== '' && rp.Name !== 'no' && rec.HostConfig.AutoRemove) throw invalid('Restart policy cannot be updated because AutoRemove is enabled for the container');
      if (rp.Name !== 'on-failure' && (rp.MaximumRetryCount ?? 0) !== 0) throw invalid(`invalid restart policy: maximum retry count can only be used with 'on-failure'`);
      if ((rp.MaximumRetryCount ?? 0) < 0) throw invalid('invalid restart policy: maximum retry count cannot be negative');
      hc.RestartPolicy = { Name: (rp.Name || 'no') as ContainerRecord['HostConfig']['RestartPolicy']['Name'], MaximumRetryCount: rp.MaximumRetryCount ?? 0 };
    }
    if (rec.State.Running) {
      try {
        await runtimeCall(this.cfg.runtimePath, ['--root', this.runtimeRoot, 'update', '--resources', '-', rec.Id], JSON.stringify(updateResources(hc)));
      } catch (err) {
        throw systemError(`Cannot update container ${rec.Id}: ${errorMessage(err)}`);
      }
    }
    rec.HostConfig = hc;
    await this.containers.store.save(rec);
    this.emit(rec, 'update');
    return { Warnings: warnings };
  }

  /** One stats sample; `prev` makes the CPU deltas. */
  sample(ref: string, prev?: StatsJSON): StatsJSON {
    const rec = this.containers.find(ref);
    return sampleStats(rec, `${rec.HostConfig.CgroupParent || this.cfg.cgroupParent}/${rec.Id}`, prev);
  }
}
