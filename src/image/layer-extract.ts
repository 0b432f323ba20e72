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
 * Workers are kept between layers (starting one costs tens of
 * milliseconds); one runs one layer at a time, and layers extracted at the
 * same time get a worker each.
 */
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { BerthError, invalid, systemError } from '../util/errors.ts';
import { CONSUMER_DONE, createByteRing, RingWriter } from '../util/byte-ring.ts';
import type { ByteSource } from '../util/tar.ts';
import type { ApplierOptions } from './layer-applier.ts';
import type { ExtractJob, ExtractReply } from './layer-worker.ts';

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
/** Workers kept for the next layers once their own is done. */
const KEEP_IDLE = 2;

type Settle = (r: ExtractReply | Error) => void;

const idle: Worker[] = [];
const busy = new Map<Worker, Settle>();
let nextJob = 1;

function startWorker(): Worker {
  const self = import.meta.url;
  // Under dist/ the sibling is compiled JavaScript; tests run the TypeScript.
  const w = new Worker(new URL(self.endsWith('.ts') ? './layer-worker.ts' : './layer-worker.js', self));
  let crash: Error | undefined;
  w.on('message', (m: ExtractReply) => {
    const settle = busy.get(w);
    busy.delete(w);
    // The reply is the job's last act: nothing more will be written.
    if (idle.length < KEEP_IDLE) {
      w.unref();
      idle.push(w);
    } else {
      void w.terminate();
    }
    settle?.(m);
  });
  w.on('error', (err) => {
    crash = err;
  });
  w.on('exit', (code) => {
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
    const settle = busy.get(w);
    busy.delete(w);
    // Settled only now that the thread is gone, so the caller may remove the root.
    settle?.(systemError(`layer extraction worker stopped unexpectedly (${crash ? crash.message : `exit code ${code}`})`, crash));
  });
  return w;
}

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

function asBytes(chunk: Buffer | Uint8Array | string): Uint8Array {
  return typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
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
  const w = idle.pop() ?? startWorker();
  const reply = new Promise<ExtractReply | Error>((resolve) => busy.set(w, resolve)).then((r) => {
    // A worker that died never said it stopped reading: free a write waiting for room.
    writer.consumerGone();
    return r;
  });
  // Keeps the process alive while the worker works and the feed below waits for room.
  w.ref();
  const job: ExtractJob = { job: nextJob++, ring, root, opts: applier };
  w.postMessage(job);
  const stop = (): void => {
    writer.abort();
    void w.terminate();
  };
  opts.signal?.addEventListener('abort', stop, { once: true });

  let feedError: { err: unknown } | null = null;
  try {
    for await (const chunk of tar as AsyncIterable<Buffer | Uint8Array | string>) {
      if (await writer.write(asBytes(chunk))) continue;
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
