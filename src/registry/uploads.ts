/**
 * Blob upload sessions. Each session is a directory under uploads/ with the
 * bytes received so far (`data`) and which repository it belongs to
 * (`info.json`). The bytes are hashed and written by the upload writer's
 * worker thread (upload-writer.ts), which keeps each session's running
 * sha256, so completing an upload needs no second pass over the data; after
 * a restart the hash is rebuilt from the file on first use.
 *
 * A chunk is all or nothing: if the client goes away or the chunk does not
 * match its Content-Range, the file is truncated back and the hash restored
 * from a copy taken before the chunk, so the session's offset stays exact
 * and the client can resume. A completed upload becomes visible only after
 * its digest is checked, by one rename into the blob store.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isErrno } from '../util/errors.ts';
import { regError } from './errors.ts';
import type { RegistryStorage } from './storage.ts';
import { UploadWriter } from './upload-writer.ts';

interface Session {
  name: string;
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
/** Sessions whose running hash is kept in memory. */
const MAX_LIVE = 1024;

export class UploadSessions {
  private readonly storage: RegistryStorage;
  private readonly live = new Map<string, Session>();
  private readonly writer = new UploadWriter();
  /** fsync a blob before it becomes visible. */
  private readonly durable: boolean;

  constructor(storage: RegistryStorage, opts: { durable?: boolean } = {}) {
    this.storage = storage;
    this.durable = opts.durable ?? true;
  }

  /** Stop hashing in the background (server shutdown); sessions stay on disk. */
  async close(): Promise<void> {
    this.live.clear();
    await this.writer.close();
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
    await this.writer.open(uuid, join(dir, 'data'), false);
    this.live.set(uuid, { name, offset: 0, busy: false });
    return uuid;
  }

  /**
   * Abandoned sessions would keep their hash state in memory forever; past a
   * limit, idle ones are dropped (their data stays, and the hash is rebuilt
   * from it if the client comes back).
   */
  private forgetIdle(): void {
    if (this.live.size < MAX_LIVE) return;
    for (const [uuid, s] of this.live) {
      if (s.busy) continue;
      this.live.delete(uuid);
      this.writer.drop(uuid);
    }
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
    // A session from before a restart (or dropped from memory): rebuild
    // the running hash from its data.
    const offset = await this.writer.open(uuid, join(this.dir(uuid), 'data'), true);
    const again = this.live.get(uuid);
    if (again) return again;
    const s: Session = { name, offset, busy: false };
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
    try {
      const { received, kept } = await this.writer.append(uuid, join(this.dir(uuid), 'data'), body, range && range.end - range.start + 1);
      if (!kept) throw regError('SIZE_INVALID', `chunk of ${received} bytes does not match Content-Range ${range!.start}-${range!.end}`);
      s.offset = start + received;
      return s.offset;
    } catch (err) {
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
    const actual = await this.writer.digest(uuid);
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
      this.writer.drop(uuid);
      await rm(this.dir(uuid), { recursive: true, force: true });
    }
    return { digest, size: s.offset };
  }

  async cancel(uuid: string, name: string): Promise<void> {
    await this.session(uuid, name);
    this.live.delete(uuid);
    this.writer.drop(uuid);
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

