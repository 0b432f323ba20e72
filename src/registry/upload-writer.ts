/**
 * Main-thread side of upload writing: request bodies are copied into a
 * shared ring in large batches, and a worker thread (upload-worker.ts)
 * hashes them and appends them to the session's file. The socket is paused
 * while the ring is full, so memory stays bounded whatever the client sends.
 * Each upload in progress holds its own ring (from a small pool), so a
 * ring's regions are always freed in the order they were filled.
 */
import { Worker } from 'node:worker_threads';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { WorkerReply, WorkerRequest } from './upload-worker.ts';

const RING_SIZE = 8 << 20;
/** Bytes per message to the worker; a message per socket chunk would cost more than the copy. */
const BATCH = 1 << 20;
/** Rings kept for reuse; more uploads than this at once get rings that are dropped afterwards. */
const POOL = 8;

type Pending = { resolve: (v: number | string | undefined) => void; reject: (e: Error) => void };
type Request = WorkerRequest extends infer T ? (T extends { req: number } ? Omit<T, 'req'> : never) : never;

interface Ring {
  id: number;
  bytes: Uint8Array;
  head: number;
  used: number;
  /** Called when the worker frees bytes of this ring. */
  onFree?: () => void;
}

export class UploadWriter {
  private worker?: Worker;
  private nextReq = 1;
  private nextRing = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly idle: Ring[] = [];
  private readonly rings = new Map<number, Ring>();

  private start(): Worker {
    if (this.worker) return this.worker;
    const self = import.meta.url;
    const file = new URL(self.endsWith('.ts') ? './upload-worker.ts' : './upload-worker.js', self);
    const w = new Worker(file);
    w.unref();
    w.on('message', (m: WorkerReply) => {
      if ('free' in m) {
        const ring = this.rings.get(m.ring);
        if (!ring) return;
        ring.used -= m.free;
        ring.onFree?.();
        return;
      }
      const p = this.pending.get(m.req);
      if (!p) return;
      this.pending.delete(m.req);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.value);
    });
    w.on('error', (err) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.rings.clear();
      this.idle.length = 0;
      this.worker = undefined;
    });
    this.worker = w;
    return w;
  }

  /** Stop the worker (server shutdown). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  private call(msg: Request): Promise<number | string | undefined> {
    const w = this.start();
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      w.postMessage({ ...msg, req });
    });
  }

  private acquire(): Ring {
    const reuse = this.idle.pop();
    if (reuse) return reuse;
    const sab = new SharedArrayBuffer(RING_SIZE);
    const ring: Ring = { id: this.nextRing++, bytes: new Uint8Array(sab), head: 0, used: 0 };
    this.rings.set(ring.id, ring);
    this.start().postMessage({ op: 'ring', ring: ring.id, sab } satisfies WorkerRequest);
    return ring;
  }

  private release(ring: Ring): void {
    ring.onFree = undefined;
    // All its bytes are processed once `end` has been answered.
    ring.head = 0;
    ring.used = 0;
    if (this.idle.length < POOL) this.idle.push(ring);
    else this.rings.delete(ring.id);
  }

  /** Start tracking a session; with `rebuild`, hash what its file already holds. Returns that size. */
  async open(id: string, path: string, rebuild: boolean): Promise<number> {
    return (await this.call({ op: 'open', id, path, rebuild })) as number;
  }

  async digest(id: string): Promise<string> {
    return `sha256:${(await this.call({ op: 'digest', id })) as string}`;
  }

  drop(id: string): void {
    this.worker?.postMessage({ op: 'drop', id } satisfies WorkerRequest);
  }

  /**
   * Append `body` to the session's file; resolves with the byte count once
   * it is written. On any failure, or when the body is not `expected` bytes
   * long (the count is then returned but nothing kept), the file and hash
   * are put back as they were before this call.
   */
  async append(id: string, path: string, body: Readable, expected?: number): Promise<{ received: number; kept: boolean }> {
    await this.call({ op: 'begin', id, path });
    const ring = this.acquire();
    let received = 0;
    let failure: Error | undefined;
    try {
      received = await this.pump(id, body, ring);
    } catch (err) {
      failure = err as Error;
    }
    const keep = !failure && (expected === undefined || received === expected);
    let written: number | string | undefined;
    try {
      written = await this.call({ op: 'end', id, ok: keep });
    } finally {
      this.release(ring);
    }
    if (failure) throw failure;
    if (keep && written !== received) throw new Error(`upload ${id}: wrote ${String(written)} of ${received} bytes`);
    return { received, kept: keep };
  }

  private pump(id: string, body: Readable, ring: Ring): Promise<number> {
    const w = this.start();
    return new Promise((resolve, reject) => {
      const queue: Buffer[] = [];
      let received = 0;
      let batchPos = 0;
      let batchLen = 0;
      let batchWaste = 0;
      let ended = false;
      let waiting = false;
      let done = false;
      const flush = () => {
        if (batchLen === 0 && batchWaste === 0) return;
        w.postMessage({ op: 'data', id, ring: ring.id, pos: batchPos, len: batchLen, waste: batchWaste } satisfies WorkerRequest);
        batchLen = 0;
        batchWaste = 0;
      };
      /** Copy queued chunks into the ring; false when it is full. */
      const drain = (): boolean => {
        while (queue.length) {
          const chunk = queue[0]!;
          const n = Math.min(chunk.length, BATCH);
          const wrap = ring.head + n > RING_SIZE;
          const waste = wrap ? RING_SIZE - ring.head : 0;
          if (ring.used + waste + n > RING_SIZE) return false;
          if (wrap) {
            flush();
            ring.used += waste;
            batchWaste = waste;
            ring.head = 0;
          }
          if (batchLen === 0) batchPos = ring.head;
          ring.bytes.set(n === chunk.length ? chunk : chunk.subarray(0, n), ring.head);
          ring.head += n;
          ring.used += n;
          batchLen += n;
          received += n;
          if (n === chunk.length) queue.shift();
          else queue[0] = chunk.subarray(n);
          if (batchLen >= BATCH) flush();
        }
        return true;
      };
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        body.off('data', onData);
        ring.onFree = undefined;
        flush();
        if (err) reject(err);
        else resolve(received);
      };
      ring.onFree = () => {
        if (!waiting || done) return;
        if (!drain()) {
          // Whatever is batched must reach the worker, or nothing is freed.
          flush();
          return;
        }
        waiting = false;
        if (ended) finish();
        else body.resume();
      };
      const onData = (chunk: Buffer) => {
        queue.push(chunk);
        if (!waiting && drain()) return;
        if (!waiting) {
          waiting = true;
          // Whatever is batched must reach the worker, or nothing is freed.
          flush();
          body.pause();
        }
      };
      body.on('data', onData);
      finished(body, (err) => {
        if (err) return finish(err);
        ended = true;
        if (!waiting) finish();
      });
    });
  }
}
