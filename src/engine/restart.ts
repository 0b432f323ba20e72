/**
 * Restart policies (`no`, `on-failure[:N]`, `always`, `unless-stopped`) with
 * docker's back-off: the first restart after 100 ms, the delay doubling on
 * each quick failure up to a minute, and reset once a run lasted 10 s.
 */
import type { ContainerRecord } from './container-types.ts';
import { errorMessage } from '../util/errors.ts';
import { log } from '../util/log.ts';

export const INITIAL_DELAY_MS = 100;
export const MAX_DELAY_MS = 60_000;
/** A run this long resets the back-off. */
export const RESET_AFTER_MS = 10_000;

/** Whether the policy wants a restart after this exit (the user's stop always wins). */
export function shouldRestart(rec: ContainerRecord, exitCode: number): boolean {
  if (rec.berth.manuallyStopped) return false;
  const p = rec.HostConfig.RestartPolicy;
  switch (p.Name) {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure': {
      if (exitCode === 0) return false;
      const max = p.MaximumRetryCount ?? 0;
      return max === 0 || rec.RestartCount < max;
    }
    default:
      return false;
  }
}

/** Whether berthd starting up should start this stopped container again. */
export function restartOnBoot(rec: ContainerRecord): boolean {
  const name = rec.HostConfig.RestartPolicy.Name;
  return name === 'always' || (name === 'unless-stopped' && !rec.berth.manuallyStopped);
}

/** The next delay: doubled after a short run, reset after a long one. */
export function nextDelay(previous: number | undefined, ranMs: number): number {
  if (previous === undefined || ranMs >= RESET_AFTER_MS) return INITIAL_DELAY_MS;
  return Math.min(previous * 2, MAX_DELAY_MS);
}

export interface RestartDeps {
  start(id: string): Promise<void>;
  save(rec: ContainerRecord): Promise<void>;
}

export class RestartManager {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly delays = new Map<string, number>();
  private readonly deps: RestartDeps;
  private closed = false;

  constructor(deps: RestartDeps) {
    this.deps = deps;
  }

  /** Called once an exit is recorded; schedules a restart if the policy says so. */
  async onExit(rec: ContainerRecord, exitCode: number): Promise<boolean> {
    if (this.closed || !shouldRestart(rec, exitCode)) {
      this.delays.delete(rec.Id);
      return false;
    }
    const ran = Date.parse(rec.State.FinishedAt) - Date.parse(rec.State.StartedAt);
    const delay = nextDelay(this.delays.get(rec.Id), Number.isFinite(ran) ? ran : 0);
    this.delays.set(rec.Id, delay);
    rec.State = { ...rec.State, Status: 'restarting', Restarting: true };
    await this.deps.save(rec).catch(() => undefined);
    const timer = setTimeout(() => {
      this.timers.delete(rec.Id);
      void this.fire(rec);
    }, delay);
    timer.unref();
    this.timers.set(rec.Id, timer);
    return true;
  }

  private async fire(rec: ContainerRecord): Promise<void> {
    if (!rec.State.Restarting || this.closed) return;
    rec.RestartCount++;
    try {
      await this.deps.start(rec.Id);
    } catch (err) {
      log.warn('restarting container failed', { id: rec.Id, error: errorMessage(err) });
      // The failed start is recorded as an exit of its own; the policy decides again.
      rec.State = { ...rec.State, Restarting: false, Status: 'exited' };
      if (!(await this.onExit(rec, rec.State.ExitCode || 1))) await this.deps.save(rec).catch(() => undefined);
    }
  }

  /** Cancel a pending restart (stop, kill or remove by the user). True if one was pending. */
  cancel(rec: ContainerRecord): boolean {
    const t = this.timers.get(rec.Id);
    this.delays.delete(rec.Id);
    if (!t && !rec.State.Restarting) return false;
    if (t) clearTimeout(t);
    this.timers.delete(rec.Id);
    rec.State = { ...rec.State, Status: 'exited', Restarting: false };
    return true;
  }

  isPending(id: string): boolean {
    return this.timers.has(id);
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
