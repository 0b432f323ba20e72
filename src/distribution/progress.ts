/**
 * docker's JSON progress messages: `{"status","id","progressDetail","progress"}`.
 * The `progress` text is the bar docker's daemon renders; clients on a
 * terminal redraw it from progressDetail themselves.
 */
import { humanSize } from '../util/units.ts';

export interface ProgressDetail {
  current?: number;
  total?: number;
  start?: number;
}

export interface ProgressMessage {
  status?: string;
  id?: string;
  progressDetail?: ProgressDetail;
  progress?: string;
  error?: string;
  errorDetail?: { message: string };
  stream?: string;
  aux?: unknown;
}

export type ProgressSink = (msg: ProgressMessage) => void;

/** The bar and counters, as docker's JSONProgress renders them (`[==>   ]  1.2MB/3.4MB`). */
export function progressBar(d: ProgressDetail, width = 200): string {
  const current = d.current ?? 0;
  const total = d.total ?? 0;
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) return humanSize(current).padStart(8);
  let pct = Math.floor((current / total) * 100 / 2);
  if (pct > 50) pct = 50;
  let bar = '';
  if (width > 110) bar = `[${'='.repeat(pct)}>${' '.repeat(Math.max(0, 50 - pct))}] `;
  const numbers = current > total ? '' : `${humanSize(current).padStart(8)}/${humanSize(total)}`;
  let left = '';
  if (current > 0 && d.start && pct < 50) {
    const elapsed = Date.now() / 1000 - d.start;
    const rate = current / Math.max(elapsed, 0.001);
    const secs = Math.round((total - current) / Math.max(rate, 1));
    left = ` ${secs >= 60 ? `${Math.floor(secs / 60)}m${secs % 60}s` : `${secs}s`}`;
  }
  return bar + numbers + left;
}

/** Sends progress for one id at most every `everyMs`, plus the final state. */
export class Throttled {
  private last = 0;
  private readonly sink: ProgressSink;
  private readonly id: string;
  private readonly status: string;
  private readonly start = Math.floor(Date.now() / 1000);
  private readonly everyMs: number;
  constructor(sink: ProgressSink, id: string, status: string, everyMs = 100) {
    this.sink = sink;
    this.id = id;
    this.status = status;
    this.everyMs = everyMs;
  }
  update(current: number, total: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < this.everyMs) return;
    this.last = now;
    const detail: ProgressDetail = { current, total, start: this.start };
    this.sink({ status: this.status, progressDetail: detail, progress: progressBar(detail), id: this.id });
  }
}
