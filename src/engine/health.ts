/**
 * Health checks: the image's HEALTHCHECK or the --health-* options, probed
 * inside the running container on docker's schedule, with docker's state
 * machine (starting → healthy/unhealthy, failing streak, start period, the
 * last five results) and `health_status: …` events.
 *
 * A probe is a plain `runc exec` (src/runtime/runc-exec.ts) with captured
 * output; it does not need the monitor since nothing is attached to it.
 */
import type { ContainerRecord } from './container-types.ts';
import type { HealthConfig } from '../image/types.ts';
import { runcExec } from '../runtime/runc-exec.ts';
import type { RuncExecResult } from '../runtime/runc-exec.ts';
import { errorMessage, invalid } from '../util/errors.ts';

const SECOND = 1e9;
export const DEFAULT_INTERVAL = 30 * SECOND;
export const DEFAULT_TIMEOUT = 30 * SECOND;
export const DEFAULT_START_INTERVAL = 5 * SECOND;
export const DEFAULT_RETRIES = 3;
/** docker keeps this many probe results in State.Health.Log. */
const LOG_ENTRIES = 5;
/** and this much of each probe's output. */
const MAX_OUTPUT = 4096;

export interface HealthLogEntry {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}

export interface HealthState {
  Status: 'starting' | 'healthy' | 'unhealthy' | 'none';
  FailingStreak: number;
  Log: HealthLogEntry[];
}

export interface HealthDeps {
  runtime: string;
  runtimeRoot: string;
  bundleOf(id: string): string;
  save(rec: ContainerRecord): Promise<void>;
  event(rec: ContainerRecord, action: string): void;
}

/** The probe command for a healthcheck config, or undefined when checks are off. */
export function probeArgs(hc: HealthConfig | undefined, shell?: string[]): string[] | undefined {
  const test = hc?.Test;
  if (!test || test.length === 0 || test[0] === 'NONE') return undefined;
  if (test[0] === 'CMD') return test.length > 1 ? test.slice(1) : undefined;
  if (test[0] === 'CMD-SHELL') return test.length > 1 ? [...(shell?.length ? shell : ['/bin/sh', '-c']), test.slice(1).join(' ')] : undefined;
  return undefined;
}

function dur(ns: number | undefined, def: number): number {
  return ns && ns > 0 ? ns : def;
}

/** Go's duration text for the timeout message ("30s", "1.5s", "500ms"). */
function goDuration(ns: number): string {
  if (ns % SECOND === 0) return `${ns / SECOND}s`;
  if (ns >= SECOND) return `${ns / SECOND}s`;
  return `${ns / 1e6}ms`;
}

interface Watch {
  timer?: NodeJS.Timeout;
  stopped: boolean;
}

export class HealthService {
  private readonly watches = new Map<string, Watch>();
  private readonly deps: HealthDeps;

  constructor(deps: HealthDeps) {
    this.deps = deps;
  }

  /** A container started (or was adopted after a restart): begin probing. */
  start(rec: ContainerRecord, adopted = false): void {
    this.stop(rec.Id);
    const args = probeArgs(rec.Config.Healthcheck, rec.Config.Shell);
    if (!args) return;
    if (!adopted || !rec.State.Health) rec.State.Health = { Status: 'starting', FailingStreak: 0, Log: rec.State.Health?.Log ?? [] };
    const w: Watch = { stopped: false };
    this.watches.set(rec.Id, w);
    this.schedule(rec, w);
  }

  /** The container stopped: no more probes. */
  stop(id: string): void {
    const w = this.watches.get(id);
    if (!w) return;
    w.stopped = true;
    if (w.timer) clearTimeout(w.timer);
    this.watches.delete(id);
  }

  stopAll(): void {
    for (const id of [...this.watches.keys()]) this.stop(id);
  }

  private inStartPeriod(rec: ContainerRecord, at: number): boolean {
    const sp = rec.Config.Healthcheck?.StartPeriod ?? 0;
    return sp > 0 && at - Date.parse(rec.State.StartedAt) < sp / 1e6;
  }

  private schedule(rec: ContainerRecord, w: Watch): void {
    const hc = rec.Config.Healthcheck;
    const starting = rec.State.Health?.Status === 'starting' && this.inStartPeriod(rec, Date.now());
    const next = starting ? dur(hc?.StartInterval, DEFAULT_START_INTERVAL) : dur(hc?.Interval, DEFAULT_INTERVAL);
    w.timer = setTimeout(() => void this.probe(rec, w), next / 1e6);
    w.timer.unref();
  }

  private async probe(rec: ContainerRecord, w: Watch): Promise<void> {
    if (w.stopped) return;
    if (!rec.State.Running || rec.State.Paused) {
      this.schedule(rec, w);
      return;
    }
    const hc = rec.Config.Healthcheck;
    const args = probeArgs(hc, rec.Config.Shell);
    if (!args) return;
    const timeout = dur(hc?.Timeout, DEFAULT_TIMEOUT);
    const start = new Date();
    let res: RuncExecResult;
    try {
      res = await runcExec({
        runtime: this.deps.runtime, runtimeRoot: this.deps.runtimeRoot, id: rec.Id, bundle: this.deps.bundleOf(rec.Id),
        args, timeoutMs: timeout / 1e6, maxOutput: MAX_OUTPUT,
      });
    } catch (err) {
      res = { exitCode: -1, output: errorMessage(err), timedOut: false };
    }
    if (w.stopped) return;
    if (res.timedOut) res = { exitCode: -1, output: `Health check exceeded timeout (${goDuration(timeout)})`, timedOut: true };
    await this.record(rec, { Start: start.toISOString(), End: new Date().toISOString(), ExitCode: res.exitCode, Output: res.output }, start.getTime());
    if (!w.stopped) this.schedule(rec, w);
  }

  /** docker's bookkeeping of one probe result. */
  private async record(rec: ContainerRecord, entry: HealthLogEntry, startedMs: number): Promise<void> {
    const h = (rec.State.Health ??= { Status: 'starting', FailingStreak: 0, Log: [] }) as HealthState;
    const before = h.Status;
    h.Log = [...h.Log, entry].slice(-LOG_ENTRIES);
    if (entry.ExitCode === 0) {
      h.FailingStreak = 0;
      h.Status = 'healthy';
    } else if (!(h.Status === 'starting' && this.inStartPeriod(rec, startedMs))) {
      // Failures inside the start period do not count while the container has never been healthy.
      h.FailingStreak++;
      if (h.FailingStreak >= (rec.Config.Healthcheck?.Retries || DEFAULT_RETRIES)) h.Status = 'unhealthy';
    }
    await this.deps.save(rec).catch(() => undefined);
    if (h.Status !== before) this.deps.event(rec, `health_status: ${h.Status}`);
  }
}

/** docker's merge of a create request's healthcheck with the image's: unset fields come from the image. */
export function mergeHealthcheck(user: HealthConfig | undefined | null, image: HealthConfig | undefined): HealthConfig | undefined {
  if (!user) return image;
  if (!image) return user;
  return {
    Test: user.Test?.length ? user.Test : image.Test,
    ...(user.Interval || image.Interval ? { Interval: user.Interval || image.Interval } : {}),
    ...(user.Timeout || image.Timeout ? { Timeout: user.Timeout || image.Timeout } : {}),
    ...(user.StartPeriod || image.StartPeriod ? { StartPeriod: user.StartPeriod || image.StartPeriod } : {}),
    ...(user.StartInterval || image.StartInterval ? { StartInterval: user.StartInterval || image.StartInterval } : {}),
    ...(user.Retries || image.Retries ? { Retries: user.Retries || image.Retries } : {}),
  };
}

/** Reject negative or too short durations as docker's daemon does. */
export function checkHealthcheck(hc: HealthConfig | undefined): void {
  if (!hc) return;
  const min = 1_000_000; // 1ms
  for (const [k, v] of [['Interval', hc.Interval], ['Timeout', hc.Timeout], ['StartPeriod', hc.StartPeriod], ['StartInterval', hc.StartInterval]] as const) {
    if (v !== undefined && v !== 0 && v < min) throw invalid(`${k} in Healthcheck cannot be less than 1ms`);
  }
  if (hc.Retries !== undefined && hc.Retries < 0) throw invalid('Retries in Healthcheck cannot be negative');
}
