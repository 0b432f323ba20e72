/**
 * A queue of small new files from the extraction worker (layer-worker.ts) to
 * a second thread that creates them (file-writer.ts), so file creation, which
 * is most of a layer's cost, runs on two cores. Each record holds a file's
 * absolute path, attributes and contents; the second thread only ever
 * creates that exact path (O_EXCL|O_NOFOLLOW) under a directory the
 * extractor has already verified, and the extractor waits for the queue to
 * empty before it does anything that could change such a path (see
 * LayerApplier.settle).
 *
 * Pushing never waits: when the writer is behind the extractor writes the
 * file itself, which balances the work between the two threads.
 */
import { closeSync, constants as fsc, fchmodSync, fchownSync, futimesSync, openSync, writeSync } from 'node:fs';

/** Control words. */
const USED = 0;
/** Bumped by the consumer after each record and on failure, so the producer can sleep on it. */
const CONSUMER_SEQ = 1;
const PRODUCER_SEQ = 2;
/** Records pushed and records done (both only grow). */
const PUSHED = 3;
const DONE = 4;
/** Set by the consumer when a file could not be written; cleared by the producer between layers. */
const FAILED = 5;
/** Set by the main thread when the consumer's thread died. */
const DEAD = 6;
const ERROR_LEN = 7;
const CTL_WORDS = 8;

const ERROR_BYTES = 4096;
/** Record header: path length (or WRAP), data length, mode, uid, gid, flags (i32), then mtime (f64). */
const HEAD = 32;
const WRAP = -1;
const MAX_BACKLOG = 16;
const CHOWN = 1;
const CHMOD = 2;

export interface FileQueueShared {
  ctl: SharedArrayBuffer;
  data: SharedArrayBuffer;
  error: SharedArrayBuffer;
}

export function createFileQueue(size: number): FileQueueShared {
  return {
    ctl: new SharedArrayBuffer(CTL_WORDS * 4),
    data: new SharedArrayBuffer(size),
    error: new SharedArrayBuffer(ERROR_BYTES),
  };
}

/** Main thread: the consumer's thread is gone; wake a producer waiting for it. */
export function markFileQueueDead(q: FileQueueShared): void {
  const ctl = new Int32Array(q.ctl);
  Atomics.store(ctl, DEAD, 1);
  Atomics.add(ctl, CONSUMER_SEQ, 1);
  Atomics.notify(ctl, CONSUMER_SEQ);
}

const align8 = (n: number): number => (n + 7) & ~7;

export interface QueuedFile {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  chown: boolean;
  chmod: boolean;
  size: number;
}

/** The extractor's side. */
export class FileQueue {
  private readonly ctl: Int32Array;
  private readonly data: Buffer;
  private readonly f64: Float64Array;
  private readonly i32: Int32Array;
  private readonly error: Buffer;
  private pos = 0;

  constructor(q: FileQueueShared) {
    this.ctl = new Int32Array(q.ctl);
    this.data = Buffer.from(q.data);
    this.f64 = new Float64Array(q.data);
    this.i32 = new Int32Array(q.data);
    this.error = Buffer.from(q.error);
  }

  /** True when nothing pushed is still being written. */
  get idle(): boolean {
    return Atomics.load(this.ctl, DONE) === Atomics.load(this.ctl, PUSHED);
  }

  /**
   * Queues a file whose contents `fill` copies into the buffer it is given
   * (exactly f.size bytes). Returns false, having done nothing, when there
   * is no room: the caller then writes the file itself.
   */
  tryPush(f: QueuedFile, fill: (into: Buffer) => void): boolean {
    this.check();
    const cap = this.data.length;
    const pathLen = Buffer.byteLength(f.path);
    const len = align8(HEAD + pathLen + f.size);
    // Big files are about bandwidth, not per-file cost: not worth a copy.
    // Ids that do not fit the record's fields stay with the extractor too.
    if (len > cap >> 2 || !(f.uid >= 0 && f.uid < 2 ** 31 && f.gid >= 0 && f.gid < 2 ** 31)) return false;
    // With this many files waiting, the extractor is ahead of the writer and
    // better spent writing this one itself: both threads then create files.
    if (Atomics.load(this.ctl, PUSHED) - Atomics.load(this.ctl, DONE) >= MAX_BACKLOG) return false;
    const used = Atomics.load(this.ctl, USED);
    const tail = cap - this.pos;
    const waste = tail < len ? tail : 0;
    if (used + waste + len > cap) return false;
    // The record would cross the end: the tail is left unused and it starts over.
    const at = waste > 0 ? 0 : this.pos;
    // The contents first: if reading them fails, nothing has been published.
    fill(this.data.subarray(at + HEAD + pathLen, at + HEAD + pathLen + f.size));
    this.data.write(f.path, at + HEAD, 'utf8');
    const w = at >> 2;
    this.i32[w] = pathLen;
    this.i32[w + 1] = f.size;
    this.i32[w + 2] = f.mode;
    this.i32[w + 3] = f.uid;
    this.i32[w + 4] = f.gid;
    this.i32[w + 5] = (f.chown ? CHOWN : 0) | (f.chmod ? CHMOD : 0);
    this.f64[(at >> 3) + 3] = f.mtime.getTime();
    if (waste > 0) this.i32[this.pos >> 2] = WRAP;
    this.pos = (at + len) % cap;
    const pushed = waste + len;
    Atomics.add(this.ctl, USED, pushed);
    Atomics.add(this.ctl, PUSHED, 1);
    Atomics.add(this.ctl, PRODUCER_SEQ, 1);
    Atomics.notify(this.ctl, PRODUCER_SEQ);
    return true;
  }

  /**
   * Waits until every queued file is written, then throws what the writer
   * failed on, if anything. It never returns early, failure or not: once it
   * has, nothing more will be written.
   */
  settle(): void {
    for (;;) {
      const seq = Atomics.load(this.ctl, CONSUMER_SEQ);
      if (this.idle) break;
      if (Atomics.load(this.ctl, DEAD) !== 0) break;
      Atomics.wait(this.ctl, CONSUMER_SEQ, seq);
    }
    this.check();
  }

  /** Before a layer: the writer is idle (settle() ran after the last one); forget its last failure. */
  reset(): void {
    Atomics.store(this.ctl, FAILED, 0);
  }

  private check(): void {
    if (Atomics.load(this.ctl, DEAD) !== 0) throw new Error('the file writer thread stopped unexpectedly');
    if (Atomics.load(this.ctl, FAILED) !== 0) {
      const text = this.error.toString('utf8', 0, Atomics.load(this.ctl, ERROR_LEN));
      const { message, code } = JSON.parse(text) as { message: string; code: string | null };
      throw Object.assign(new Error(message), code === null ? {} : { code });
    }
  }
}

/** The writer thread's side: creates queued files forever. */
export function runFileWriter(q: FileQueueShared): never {
  const ctl = new Int32Array(q.ctl);
  const data = Buffer.from(q.data);
  const f64 = new Float64Array(q.data);
  const i32 = new Int32Array(q.data);
  const error = Buffer.from(q.error);
  const cap = data.length;
  let pos = 0;
  for (;;) {
    const seq = Atomics.load(ctl, PRODUCER_SEQ);
    if (Atomics.load(ctl, USED) === 0) {
      Atomics.wait(ctl, PRODUCER_SEQ, seq);
      continue;
    }
    let freed = 0;
    if (i32[pos >> 2] === WRAP) {
      freed = cap - pos;
      pos = 0;
    }
    const w = pos >> 2;
    const pathLen = i32[w]!;
    const size = i32[w + 1]!;
    const len = align8(HEAD + pathLen + size);
    // After a failure the rest of the layer's files are dropped: the layer is lost anyway.
    if (Atomics.load(ctl, FAILED) === 0) {
      try {
        const mtime = new Date(f64[(pos >> 3) + 3]!);
        const path = data.toString('utf8', pos + HEAD, pos + HEAD + pathLen);
        const body = data.subarray(pos + HEAD + pathLen, pos + HEAD + pathLen + size);
        const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, i32[w + 2]! & 0o777);
        try {
          let off = 0;
          while (off < size) off += writeSync(fd, body, off, size - off);
          const flags = i32[w + 5]!;
          if (flags & CHOWN) fchownSync(fd, i32[w + 3]!, i32[w + 4]!);
          // chown clears set-id bits, so the mode comes after it.
          if (flags & CHMOD) fchmodSync(fd, i32[w + 2]! & 0o7777);
          futimesSync(fd, mtime, mtime);
        } finally {
          closeSync(fd);
        }
      } catch (err) {
        const e = err as { message?: unknown; code?: unknown };
        const text = Buffer.from(JSON.stringify({ message: String(e.message ?? err), code: typeof e.code === 'string' ? e.code : null }));
        const n = Math.min(text.length, ERROR_BYTES);
        // A message cut short would not parse: such a long one is replaced.
        const out = n === text.length ? text : Buffer.from(JSON.stringify({ message: 'file write failed', code: typeof e.code === 'string' ? e.code : null }));
        out.copy(error, 0);
        Atomics.store(ctl, ERROR_LEN, out.length);
        Atomics.store(ctl, FAILED, 1);
      }
    }
    pos = (pos + len) % cap;
    Atomics.sub(ctl, USED, freed + len);
    Atomics.add(ctl, DONE, 1);
    Atomics.add(ctl, CONSUMER_SEQ, 1);
    Atomics.notify(ctl, CONSUMER_SEQ);
  }
}
