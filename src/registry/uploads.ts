/**
 * Blob upload sessions. Each session is a directory under uploads/ with the
 * bytes received so far (`data`) and which repository it belongs to
 * (`info.json`). The running sha256 lives in memory next to the offset, so
 * completing an upload needs no second pass over the data; after a restart
 * it is rebuilt from the file on first use.
 *
 * A chunk is all or nothing: if the client goes away or the chunk does not
 * match its Content-Range, the file is truncated back and the hash restored
 * from a copy taken before the chunk, so the session's offset stays exact
 * and the client can resume. A completed upload becomes visible only after
 * its digest is checked, by one rename into the blob store.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import { isErrno } from '../util/errors.ts';
import { regError } from './errors.ts';
import type { RegistryStorage } from './storage.ts';

interface Session {
  name: string;
  hash: Hash;
  offset: number;
  busy: boolean;
}

interface SessionInfo {
  name: string;
  started: string;
}

export interface ChunkRange {
  start: number;
  end: number;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Lets the file writer batch incoming socket chunks into large writev calls. */
const WRITE_BUFFER = 8 << 20;
/** Sessions whose running hash is kept in memory. */
const MAX_LIVE = 1024;

export class UploadSessions {
  private readonly storage: RegistryStorage;
  private readonly live = new Map<string, Session>();
  /** fsync a blob before it becomes visible. */
  private readonly durable: boolean;

  constructor(storage: RegistryStorage, opts: { durable?: boolean } = {}) {
    this.storage = storage;
    this.durable = opts.durable ?? true;
  }

  private dir(uuid: string): string {
    return join(this.storage.uploadsDir, uuid);
  }

  async create(name: string): Promise<string> {
    const uuid = randomUUID();
    const dir = this.dir(uuid);
    await mkdir(dir);
    await writeFile(join(dir, 'data'), '');
    await writeFile(join(dir, 'info.json'), JSON.stringify({ name, started: new Date().toISOString() } satisfies SessionInfo));
    this.forgetIdle();
    this.live.set(uuid, { name, hash: createHash('sha256'), offset: 0, busy: false });
    return uuid;
  }

  /**
   * Abandoned sessions would keep their hash state in memory forever; past a
   * limit, idle ones are dropped (their data stays, and the hash is rebuilt
   * from it if the client comes back).
   */
  private forgetIdle(): void {
    if (this.live.size < MAX_LIVE) return;
    for (const [uuid, s] of this.live) if (!s.busy) this.live.delete(uuid);
  }

  private unknown(uuid: string) {
    return regError('BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { detail: { uuid } });
  }

  private async session(uuid: string, name: string): Promise<Session> {
    if (!UUID_RE.test(uuid)) throw this.unknown(uuid);
    const known = this.live.get(uuid);
    if (known) {
      if (known.name !== name) throw this.unknown(uuid);
      return known;
    }
    let info: SessionInfo;
    try {
      info = JSON.parse(await readFile(join(this.dir(uuid), 'info.json'), 'utf8')) as SessionInfo;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw this.unknown(uuid);
      throw err;
    }
    if (info.name !== name) throw this.unknown(uuid);
    // A session from before a restart: rebuild the running hash from its data.
    const hash = createHash('sha256');
    let offset = 0;
    for await (const c of createReadStream(join(this.dir(uuid), 'data'), { highWaterMark: 1 << 20 })) {
      hash.update(c as Buffer);
      offset += (c as Buffer).length;
    }
    const again = this.live.get(uuid);
    if (again) return again;
    const s: Session = { name, hash, offset, busy: false };
    this.live.set(uuid, s);
    return s;
  }

  /** Bytes received so far. */
  async offset(uuid: string, name: string): Promise<number> {
    return (await this.session(uuid, name)).offset;
  }

  /** `Range` header value for a session at `offset` (distribution's spelling: 0-0 when empty). */
  static rangeHeader(offset: number): string {
    return `0-${Math.max(offset - 1, 0)}`;
  }

  /** Append a chunk; returns the new offset. */
  async append(uuid: string, name: string, body: Readable, range?: ChunkRange): Promise<number> {
    const s = await this.session(uuid, name);
    if (s.busy) {
      throw regError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is in progress', { status: 416, headers: { Range: UploadSessions.rangeHeader(s.offset) } });
    }
    if (range && range.start !== s.offset) {
      throw regError('BLOB_UPLOAD_INVALID', `chunk starts at ${range.start}, upload is at ${s.offset}`, { status: 416, headers: { Range: UploadSessions.rangeHeader(s.offset) } });
    }
    s.busy = true;
    const start = s.offset;
    const before = s.hash.copy();
    const path = join(this.dir(uuid), 'data');
    let received = 0;
    try {
      received = await appendHashed(body, path, s.hash);
      if (range && received !== range.end - range.start + 1) {
        throw regError('SIZE_INVALID', `chunk of ${received} bytes does not match Content-Range ${range.start}-${range.end}`);
      }
      s.offset = start + received;
      return s.offset;
    } catch (err) {
      // All or nothing: forget whatever part of the chunk arrived.
      s.hash = before;
      s.offset = start;
      await truncate(path, start).catch(() => undefined);
      if (!this.live.has(uuid)) throw this.unknown(uuid);
      throw err;
    } finally {
      s.busy = false;
    }
  }

  /**
   * Finish an upload: append the last chunk (if any), check the digest, and
   * move the data into the blob store linked into `name`. A digest mismatch
   * ends the session: its data is deleted and never becomes visible.
   */
  async complete(uuid: string, name: string, digest: string, body?: Readable, range?: ChunkRange): Promise<{ digest: string; size: number }> {
    if (body) await this.append(uuid, name, body, range);
    const s = await this.session(uuid, name);
    if (s.busy) throw regError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is in progress', { status: 416 });
    const actual = `sha256:${s.hash.copy().digest('hex')}`;
    if (actual !== digest) {
      await this.cancel(uuid, name);
      throw regError('DIGEST_INVALID', 'provided digest did not match uploaded content', { detail: { expected: digest, actual, size: s.offset } });
    }
    const data = join(this.dir(uuid), 'data');
    if (this.durable) {
      const fh = await open(data, 'r+');
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
    }
    s.busy = true;
    try {
      await rename(data, this.storage.blobs.path(digest));
      await this.storage.linkBlob(name, digest);
    } finally {
      this.live.delete(uuid);
      await rm(this.dir(uuid), { recursive: true, force: true });
    }
    return { digest, size: s.offset };
  }

  async cancel(uuid: string, name: string): Promise<void> {
    await this.session(uuid, name);
    this.live.delete(uuid);
    await rm(this.dir(uuid), { recursive: true, force: true });
  }

  /** Remove sessions untouched for longer than `ageMs` (gc); returns their ids. */
  async purge(ageMs: number, dryRun: boolean): Promise<string[]> {
    const out: string[] = [];
    const now = Date.now();
    for (const uuid of await readdir(this.storage.uploadsDir).catch(() => [] as string[])) {
      const dir = this.dir(uuid);
      const st = await stat(join(dir, 'data')).catch(() => stat(dir).catch(() => undefined));
      if (!st || now - st.mtimeMs < ageMs) continue;
      out.push(uuid);
      if (!dryRun) await rm(dir, { recursive: true, force: true });
    }
    return out;
  }
}

/**
 * Append a request body to a file while hashing it; resolves with the byte
 * count once everything is on disk. Plain 'data' events and write() (not an
 * async pipeline): per-chunk promises cost more than the copying when the
 * socket hands over 64 KiB at a time.
 */
function appendHashed(body: Readable, path: string, hash: Hash): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = createWriteStream(path, { flags: 'a', highWaterMark: WRITE_BUFFER });
    let received = 0;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      body.off('data', onData);
      ws.destroy();
      // The file must be closed before the caller truncates it.
      ws.once('close', () => reject(err));
    };
    const onData = (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      if (!ws.write(chunk)) body.pause();
    };
    body.on('data', onData);
    ws.on('drain', () => body.resume());
    ws.on('error', fail);
    finished(body, (err) => {
      if (err) fail(err);
      else if (!failed) ws.end();
    });
    ws.on('close', () => {
      if (!failed) resolve(received);
    });
  });
}
