import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { PassThrough, Readable } from 'node:stream';
import { invalid, isErrno, notFound, systemError } from '../util/errors.ts';
import { ensureDir } from '../util/fsutil.ts';
import { drainOrClose } from '../util/drain.ts';

export interface BlobInfo {
  digest: string;
  size: number;
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Blobs named by their sha256 digest. A blob is written to an ingest file,
 * its size and digest checked, and only then renamed into place: a partial or
 * corrupt blob is never visible under its name.
 */
export class ContentStore {
  readonly root: string;
  private readonly ingestDir: string;
  constructor(root: string) {
    this.root = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
  }

  async init(): Promise<void> {
    await ensureDir(this.root);
    await ensureDir(this.ingestDir);
    // Ingest files left by a crash are garbage: nothing refers to them.
    for (const f of await readdir(this.ingestDir)) await rm(join(this.ingestDir, f), { force: true });
  }

  path(digest: string): string {
    if (!DIGEST_RE.test(digest)) throw invalid(`invalid digest: ${digest}`);
    return join(this.root, digest.slice(7));
  }

  async has(digest: string): Promise<boolean> {
    try {
      await stat(this.path(digest));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  async size(digest: string): Promise<number> {
    try {
      return (await stat(this.path(digest))).size;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw notFound(`blob ${digest} not found`);
      throw err;
    }
  }

  async read(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw notFound(`blob ${digest} not found`);
      throw err;
    }
  }

  stream(digest: string, opts: { start?: number; end?: number } = {}): Readable {
    return createReadStream(this.path(digest), opts);
  }

  /** Store a small blob held in memory (configs, manifests). */
  async putBytes(data: Buffer | string, expected?: string): Promise<BlobInfo> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
    if (expected && expected !== digest) throw invalid(`digest mismatch: expected ${expected}, got ${digest}`);
    if (!(await this.has(digest))) {
      const tmp = join(this.ingestDir, randomBytes(8).toString('hex'));
      const { writeFile } = await import('node:fs/promises');
      await writeFile(tmp, buf);
      await rename(tmp, this.path(digest));
    }
    return { digest, size: buf.length };
  }

  /**
   * Stream a blob in, verifying it. `onData` sees every chunk (used to feed a
   * layer extractor or a progress bar while the blob is written).
   */
  async ingest(source: Readable | AsyncIterable<Buffer>, expected?: { digest?: string; size?: number }): Promise<BlobInfo> {
    const tmp = join(this.ingestDir, randomBytes(8).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        if (expected?.size !== undefined && size > expected.size) {
          cb(invalid(`blob is larger than its declared size ${expected.size}`));
          return;
        }
        cb(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp));
      const digest = `sha256:${hash.digest('hex')}`;
      if (expected?.size !== undefined && size !== expected.size) {
        throw invalid(`blob size mismatch: expected ${expected.size} bytes, got ${size}`);
      }
      if (expected?.digest && expected.digest !== digest) {
        throw invalid(`digest mismatch: expected ${expected.digest}, got ${digest}`);
      }
      await rename(tmp, this.path(digest));
      return { digest, size };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async delete(digest: string): Promise<void> {
    try {
      await unlink(this.path(digest));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }

  async list(): Promise<string[]> {
    return (await readdir(this.root)).filter((f) => /^[a-f0-9]{64}$/.test(f)).map((f) => `sha256:${f}`);
  }
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${sha256Hex(data)}`;
}

/**
 * Hands each chunk of `src` on while copying it into `pass`, the stream an
 * `ingest` reads (so a layer is stored as a blob and extracted in one
 * pass), waiting when `pass` is full. If the blob write stops, its error
 * (or a plain one) ends the stream. Ending `pass`, which commits the blob,
 * is the caller's choice.
 */
export async function* teeIntoIngest(src: AsyncIterable<Buffer>, pass: PassThrough, ingest: Promise<unknown>): AsyncGenerator<Buffer> {
  for await (const chunk of src) {
    if (pass.destroyed) {
      await ingest;
      throw systemError('layer blob writer stopped');
    }
    if (!pass.write(chunk)) await drainOrClose(pass);
    yield chunk;
  }
}
