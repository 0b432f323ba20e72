/**
 * The layer extraction worker thread. It reads an uncompressed layer tar from
 * a shared ring that the main thread fills (after decompressing and hashing
 * it there, so the three run side by side) and applies it with synchronous
 * system calls, one job at a time. The main thread's side is
 * layer-extract.ts.
 */
import { readdirSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { BerthError } from '../util/errors.ts';
import type { ErrorKind } from '../util/errors.ts';
import { CONSUMER_DONE, CONSUMER_FAILED, RingAborted, RingReader } from '../util/byte-ring.ts';
import type { ByteRing } from '../util/byte-ring.ts';
import { checkEndBlock, TAR_BLOCK, tarPad, TarHeaderDecoder, truncatedTar } from '../util/tar.ts';
import { FileQueue } from './file-queue.ts';
import type { FileQueueShared } from './file-queue.ts';
import { LayerApplier } from './layer-applier.ts';
import type { ApplierOptions, EntryBody } from './layer-applier.ts';

export interface ExtractJob {
  ring: ByteRing;
  root: string;
  opts: ApplierOptions;
}

export type ExtractReply =
  | { ok: true; size: number }
  | { ok: false; aborted: true }
  | { ok: false; aborted: false; kind: ErrorKind | null; message: string; code: string | null };

/** A file's body: the ring's bytes, bounded by the entry's size. */
class RingBody implements EntryBody {
  remaining: number;
  private readonly r: RingReader;
  constructor(r: RingReader, size: number) {
    this.r = r;
    this.remaining = size;
  }
  peek(): Buffer {
    const v = this.r.peek(this.remaining);
    if (v === null) throw truncatedTar();
    return v;
  }
  consume(n: number): void {
    this.r.consume(n);
    this.remaining -= n;
  }
}

function exact(r: RingReader, n: number): Buffer {
  const b = r.readExact(n);
  if (b.length < n) throw truncatedTar();
  return b;
}

function skip(r: RingReader, n: number): void {
  if (r.skip(n) < n) throw truncatedTar();
}

/** Reads the tar to its end marker, applying each entry. Returns the size of the files written. */
function extract(r: RingReader, applier: LayerApplier): number {
  const dec = new TarHeaderDecoder();
  for (;;) {
    const block = r.readExact(TAR_BLOCK);
    if (block.length === 0) {
      if (dec.pending) throw truncatedTar();
      break;
    }
    if (block.length < TAR_BLOCK) throw truncatedTar();
    const step = dec.block(block);
    if (step.kind === 'end') {
      const second = r.readExact(TAR_BLOCK);
      if (second.length > 0 && second.length < TAR_BLOCK) throw truncatedTar();
      checkEndBlock(second.length === 0 ? null : second);
      break;
    }
    if (step.kind === 'meta') {
      const data = exact(r, step.size);
      skip(r, tarPad(step.size));
      dec.meta(step.flag, data);
      continue;
    }
    if (step.kind === 'skip') {
      skip(r, step.size + tarPad(step.size));
      continue;
    }
    const taken = step.header.type === 'file' ? step.bodySize : 0;
    const body = new RingBody(r, taken);
    applier.apply(step.header, body);
    // What the entry left (a whiteout's body, a link's junk data) and the padding.
    skip(r, body.remaining + (step.bodySize - taken) + tarPad(step.bodySize));
  }
  applier.finish();
  return applier.size;
}

/** What the main thread gives this thread when it starts it. */
export interface ExtractWorkerData {
  /** The queue to this thread's file writer. */
  queue: FileQueueShared;
}

const queue = new FileQueue((workerData as ExtractWorkerData).queue);

function runJob(m: ExtractJob): ExtractReply {
  const r = new RingReader(m.ring);
  // The writer is idle: every job ends by waiting for it.
  queue.reset();
  // Queued files must be new, which is only known for certain in an empty root.
  const applier = new LayerApplier(m.root, m.opts, readdirSync(m.root).length === 0 ? queue : null);
  try {
    const size = extract(r, applier);
    r.stop(CONSUMER_DONE);
    return { ok: true, size };
  } catch (err) {
    r.stop(CONSUMER_FAILED);
    try {
      applier.abandon();
    } catch {
      // The caller removes the whole root anyway.
    }
    if (err instanceof RingAborted) return { ok: false, aborted: true };
    const e = err as { code?: unknown; message?: unknown };
    return {
      ok: false,
      aborted: false,
      kind: err instanceof BerthError ? err.kind : null,
      message: typeof e.message === 'string' ? e.message : String(err),
      code: typeof e.code === 'string' ? e.code : null,
    };
  }
}

const port = parentPort;
if (!port) throw new Error('layer-worker.ts runs only as a worker thread');
port.on('message', (m: ExtractJob) => port.postMessage(runJob(m)));
