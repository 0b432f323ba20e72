/**
 * Applying a layer tar: the main thread's side. The tar's bytes (already
 * decompressed, and hashed by the caller as they pass) are copied into a
 * shared ring, and a worker thread (layer-worker.ts) parses the tar and
 * creates the files with synchronous system calls. Decompression (zlib's
 * threads), hashing (here) and file creation (the worker) so run side by
 * side, the daemon's main thread only copies bytes, and each file costs its
 * system calls and nothing more: no trip through libuv's thread pool and
 * back per call, which used to cost more than the calls themselves.
 *
 * The worker hands most small files on to a second thread of its own
 * (file-writer.ts), so creating them takes two cores. A worker pair is kept
 * for the next layer a while (starting one costs tens of milliseconds); a
 * pair runs one layer at a time, and layers extracted at the same time get a
 * pair each.
 */
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { BerthError, invalid, systemError } from '../util/errors.ts';
import { CONSUMER_DONE, createByteRing, RingWriter } from '../util/byte-ring.ts';
import { asBuffer } from '../util/tar.ts';
import type { ByteSource } from '../util/tar.ts';
import type { ApplierOptions } from './layer-applier.ts';
import { createFileQueue, markFileQueueDead } from './file-queue.ts';
import type { ExtractJob, ExtractReply, ExtractWorkerData } from './layer-worker.ts';

export interface ApplyLayerOptions {
  /** Create character and block devices from the layer (refused by default). */
  allowDevices?: boolean;
  /**
   * Stops the extraction: the worker is stopped wherever it is, and the
   * promise settles (rejected) once it can write nothing more.
   */
  signal?: AbortSignal;
}

/** Room for a few of the decoders' 512 KiB chunks, so decoding runs ahead of file creation. */
const RING_SIZE = 4 << 20;
/** Queued small files between the extractor and its writer thread. */
const QUEUE_SIZE = 2 << 20;
/**
 * Worker pairs kept for the next layers once their own is done, and for how
 * long: an idle pair holds ~30 MB (two V8 isolates), which a daemon that is
 * not pulling should not carry, while a pull's or build's next layer should
 * not wait for threads to load.
 */
const KEEP_IDLE = 1;
const IDLE_MS = 60_000;

type Settle = (r: ExtractReply | Error) => void;

const sibling = (name: string): URL => {
  const self = import.meta.url;
  // Under dist/ the siblings are compiled JavaScript; tests run the TypeScript.
  return new URL(self.endsWith('.ts') ? `./${name}.ts` : `./${name}.js`, self);
};

/**
 * An extraction worker and its file writer thread, which share a file queue.
 * One runs one layer at a time. If either thread dies the pair is done for:
 * the other is stopped too, and a layer in progress fails only once both are
 * gone, so nothing writes into its root afterwards.
 */
class Pair {
  private readonly queue = createFileQueue(QUEUE_SIZE);
  private readonly parser: Worker;
  private readonly writer: Worker;
  private settle: Settle | null = null;
  private exited = 0;
  private crash: Error | undefined;
  private stopped = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor() {
    const data: ExtractWorkerData = { queue: this.queue };
    this.parser = new Worker(sibling('layer-worker'), { workerData: data });
    this.writer = new Worker(sibling('file-writer'), { workerData: data });
    this.parser.on('message', (m: ExtractReply) => {
      const settle = this.settle;
      this.settle = null;
      // The reply is the layer's last act: both threads are done with it.
      if (this.stopped || idle.length >= KEEP_IDLE) this.stop();
      else this.park();
      settle?.(m);
    });
    for (const w of [this.parser, this.writer]) {
      w.on('error', (err) => {
        this.crash ??= err;
      });
      w.on('exit', (code) => {
        this.exited++;
        const i = idle.indexOf(this);
        if (i >= 0) idle.splice(i, 1);
        this.stop();
        if (this.exited < 2 || !this.settle) return;
        const settle = this.settle;
        this.settle = null;
        settle(systemError(`layer extraction worker stopped unexpectedly (${this.crash ? this.crash.message : `exit code ${code}`})`, this.crash));
      });
    }
  }

  /** Waits, unref'd, for the next layer, for a while. */
  park(): void {
    this.parser.unref();
    this.writer.unref();
    idle.push(this);
    this.idleTimer = setTimeout(() => {
      const i = idle.indexOf(this);
      if (i >= 0) idle.splice(i, 1);
      this.stop();
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  run(job: ExtractJob, settle: Settle): void {
    clearTimeout(this.idleTimer);
    this.settle = settle;
    // Keeps the process alive while the threads work and the feed waits for room.
    this.parser.ref();
    this.writer.ref();
    this.parser.postMessage(job);
  }

  /** Stops both threads wherever they are; a layer in progress fails once both are gone. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    markFileQueueDead(this.queue);
    void this.parser.terminate();
    void this.writer.terminate();
  }
}

const idle: Pair[] = [];

/**
 * The umask without changing it (process.umask() reads it by writing it).
 * Read per layer, since other code may change it.
 */
async function currentUmask(): Promise<number | null> {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(await readFile('/proc/self/status', 'utf8'));
    return m ? parseInt(m[1]!, 8) : null;
  } catch {
    return null;
  }
}

/** The worker's failure as the error the caller would have seen from the tar reader or the file system. */
function replyError(r: Extract<ExtractReply, { ok: false }>): BerthError {
  if (r.aborted) return systemError('applying layer: the input was abandoned');
  if (r.kind !== null) return new BerthError(r.kind, r.message);
  if (r.code === 'ERR_INVALID_ARG_VALUE' || r.code === 'ERR_INVALID_ARG_TYPE') return invalid(`invalid layer: ${r.message}`);
  return systemError(`applying layer: ${r.message}`, Object.assign(new Error(r.message), { code: r.code ?? undefined }));
}

/**
 * Extracts an uncompressed layer tar into `root` (created if missing; meant to
 * be a fresh, empty snapshot directory). Hostile entries are refused and
 * nothing is ever written outside `root`; on failure the caller removes
 * `root`, and nothing is still writing into it once this has settled.
 * Returns the total size of the regular files written.
 */
export async function applyLayer(root: string, tar: ByteSource, opts: ApplyLayerOptions = {}): Promise<{ size: number }> {
  opts.signal?.throwIfAborted();
  await mkdir(root, { recursive: true });
  const st = await lstat(root);
  if (!st.isDirectory()) throw invalid(`layer root ${root} is not a directory`);
  const applier: ApplierOptions = {
    allowDevices: opts.allowDevices ?? false,
    uid: process.geteuid?.() ?? -1,
    gid: process.getegid?.() ?? -1,
    setgidRoot: (st.mode & 0o2000) !== 0,
    umask: await currentUmask(),
  };

  const ring = createByteRing(RING_SIZE);
  const writer = new RingWriter(ring);
  const pair = idle.pop() ?? new Pair();
  const reply = new Promise<ExtractReply | Error>((resolve) => pair.run({ ring, root, opts: applier }, resolve)).then((r) => {
    // Threads that died never said they stopped reading: free a write waiting for room.
    writer.consumerGone();
    return r;
  });
  const stop = (): void => {
    writer.abort();
    pair.stop();
  };
  opts.signal?.addEventListener('abort', stop, { once: true });

  let feedError: { err: unknown } | null = null;
  try {
    for await (const chunk of tar as AsyncIterable<Buffer | Uint8Array | string>) {
      if (await writer.write(asBuffer(chunk))) continue;
      // Once the tar has ended the rest is record padding, still read to the
      // end so a digest computed on the same stream sees every byte; after a
      // failure the source is left at once.
      if (writer.consumer !== CONSUMER_DONE) break;
    }
    writer.end();
  } catch (err) {
    feedError = { err };
    writer.abort();
  }
  const r = await reply;
  opts.signal?.removeEventListener('abort', stop);

  if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : systemError('layer extraction aborted');
  if (feedError) {
    const err = feedError.err;
    if (err instanceof BerthError) throw err;
    throw systemError(`applying layer: ${(err as Error).message ?? String(err)}`, err);
  }
  if (r instanceof Error) throw r;
  if (!r.ok) throw replyError(r);
  return { size: r.size };
}
