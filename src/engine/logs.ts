import { createReadStream, watch } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { FSWatcher } from 'node:fs';

export interface LogRecord {
  stream: 'stdout' | 'stderr';
  log: string;
  time: string;
}

export interface LogOptions {
  stdout: boolean;
  stderr: boolean;
  /** Seconds since the epoch; 0 means from the start. */
  since: number;
  /** Seconds since the epoch; 0 means no end. */
  until: number;
  /** Number of lines from the end; -1 for all. */
  tail: number;
  follow: boolean;
}

/** Nanosecond-precision timestamp of an RFC 3339 time, in seconds (float). */
export function timeSeconds(t: string): number {
  const m = /\.(\d+)Z$/.exec(t);
  const base = Date.parse(t.replace(/\.\d+Z$/, 'Z')) / 1000;
  return m ? base + Number(`0.${m[1]}`) : base;
}

/** Find where the last `n` lines of a file start, reading backwards in blocks. */
async function tailOffset(path: string, n: number): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    let pos = size;
    let lines = 0;
    const block = Buffer.alloc(64 * 1024);
    while (pos > 0) {
      const len = Math.min(block.length, pos);
      pos -= len;
      await fh.read(block, 0, len, pos);
      for (let i = len - 1; i >= 0; i--) {
        if (block[i] === 0x0a && !(pos + i === size - 1)) {
          lines++;
          if (lines === n) return pos + i + 1;
        }
      }
    }
    return 0;
  } finally {
    await fh.close();
  }
}

/**
 * Stream a container's json-file log. With `follow`, keeps reading as the
 * monitor appends, until `stopped` resolves (the container exited) and the
 * file has been read to its end, or until `signal` aborts.
 */
export async function* readLog(path: string, opts: LogOptions, stopped: Promise<void> | undefined, signal: AbortSignal): AsyncGenerator<LogRecord> {
  let start = 0;
  try {
    if (opts.tail === 0) start = (await stat(path)).size;
    else if (opts.tail > 0) start = await tailOffset(path, opts.tail);
  } catch {
    if (!opts.follow) return;
  }
  let pos = start;
  let partial = '';
  const wanted = (r: LogRecord): boolean => {
    if (r.stream === 'stdout' ? !opts.stdout : !opts.stderr) return false;
    if (opts.since || opts.until) {
      const t = timeSeconds(r.time);
      if (opts.since && t < opts.since) return false;
      if (opts.until && t > opts.until) return false;
    }
    return true;
  };
  const readMore = async function* (): AsyncGenerator<LogRecord> {
    let st;
    try {
      st = await stat(path);
    } catch {
      return;
    }
    if (st.size <= pos) return;
    const rl = createInterface({ input: createReadStream(path, { start: pos, end: st.size - 1 }), crlfDelay: Infinity });
    const end = st.size;
    let consumed = 0;
    for await (const lineRaw of rl) {
      const line = partial + lineRaw;
      partial = '';
      consumed += Buffer.byteLength(lineRaw) + 1;
      if (!line) continue;
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        // The last line may be half-written: read it again next time.
        if (pos + consumed >= end) {
          partial = '';
          consumed -= Buffer.byteLength(lineRaw) + 1;
        }
        continue;
      }
      if (wanted(rec)) yield rec;
    }
    pos += Math.min(consumed, end - pos);
  };
  yield* readMore();
  if (!opts.follow || !stopped || signal.aborted) return;
  let done = false;
  let wake: (() => void) | undefined;
  const nudge = () => { wake?.(); };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path, nudge);
  } catch {
    watcher = undefined;
  }
  stopped?.then(() => { done = true; nudge(); });
  signal.addEventListener('abort', nudge);
  try {
    while (!signal.aborted) {
      yield* readMore();
      if (done) {
        yield* readMore();
        return;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        // fs.watch can miss events on some filesystems; poll as a fallback.
        setTimeout(resolve, 500).unref();
      });
    }
  } finally {
    watcher?.close();
    signal.removeEventListener('abort', nudge);
  }
}
