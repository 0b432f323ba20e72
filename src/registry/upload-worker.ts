/**
 * The upload writer's worker thread: it owns each session's running sha256
 * and appends the bytes the main thread copied into a shared ring to the
 * session's data file. Hashing and writing here leaves the main thread only
 * the socket, so a push uses two cores instead of one.
 *
 * Messages arrive in order; every `data` message is answered with the ring
 * bytes it frees, every request carrying `req` with a reply. Each ring is
 * used by one upload at a time, so its bytes are freed in the order they
 * were filled.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

export type WorkerRequest =
  | { op: 'open'; id: string; path: string; rebuild: boolean; req: number }
  | { op: 'begin'; id: string; path: string; req: number }
  | { op: 'ring'; ring: number; sab: SharedArrayBuffer }
  | { op: 'data'; id: string; ring: number; pos: number; len: number; waste: number }
  | { op: 'end'; id: string; ok: boolean; req: number }
  | { op: 'digest'; id: string; req: number }
  | { op: 'drop'; id: string };

export type WorkerReply = { req: number; value?: number | string; error?: string } | { ring: number; free: number };

interface Session {
  hash: Hash;
  fd?: number;
  start: number;
  written: number;
  saved?: Hash;
  error?: string;
}

const port = parentPort!;
const rings = new Map<number, Uint8Array>();
const sessions = new Map<string, Session>();

function session(id: string): Session {
  const s = sessions.get(id);
  if (!s) throw new Error(`upload ${id} is not open`);
  return s;
}

function hashFile(path: string, hash: Hash): number {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let total = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) return total;
      hash.update(buf.subarray(0, n));
      total += n;
    }
  } finally {
    closeSync(fd);
  }
}

function handle(m: WorkerRequest): number | string | undefined {
  switch (m.op) {
    case 'open': {
      const hash = createHash('sha256');
      const size = m.rebuild ? hashFile(m.path, hash) : 0;
      sessions.set(m.id, { hash, start: 0, written: 0 });
      return size;
    }
    case 'begin': {
      const s = session(m.id);
      s.fd = openSync(m.path, 'a');
      s.start = fstatSync(s.fd).size;
      s.written = 0;
      s.saved = s.hash.copy();
      s.error = undefined;
      return undefined;
    }
    case 'ring':
      rings.set(m.ring, new Uint8Array(m.sab));
      return undefined;
    case 'data': {
      const s = sessions.get(m.id);
      try {
        if (s && s.fd !== undefined && !s.error) {
          const view = rings.get(m.ring)!.subarray(m.pos, m.pos + m.len);
          s.hash.update(view);
          for (let off = 0; off < m.len; ) off += writeSync(s.fd, view, off, m.len - off);
          s.written += m.len;
        }
      } catch (err) {
        if (s) s.error = (err as Error).message;
      }
      port.postMessage({ ring: m.ring, free: m.len + m.waste } satisfies WorkerReply);
      return undefined;
    }
    case 'end': {
      const s = session(m.id);
      const fd = s.fd;
      s.fd = undefined;
      if (fd === undefined) throw new Error(`upload ${m.id} has no chunk in progress`);
      try {
        if (m.ok && !s.error) return s.written;
        // All or nothing: forget this chunk.
        ftruncateSync(fd, s.start);
        s.hash = s.saved!;
        if (s.error) throw new Error(s.error);
        return undefined;
      } finally {
        s.saved = undefined;
        closeSync(fd);
      }
    }
    case 'digest':
      return session(m.id).hash.copy().digest('hex');
    case 'drop': {
      const s = sessions.get(m.id);
      if (s?.fd !== undefined) closeSync(s.fd);
      sessions.delete(m.id);
      return undefined;
    }
  }
}

port.on('message', (m: WorkerRequest) => {
  let reply: WorkerReply | undefined;
  try {
    const value = handle(m);
    if ('req' in m) reply = { req: m.req, value };
  } catch (err) {
    if ('req' in m) reply = { req: m.req, error: (err as Error).message };
  }
  if (reply) port.postMessage(reply);
});
