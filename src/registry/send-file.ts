/**
 * Stream a byte range of a file to an HTTP response with a few reused
 * buffers: one is filled from the file while the others are being written
 * to the socket. A fresh buffer per read (what fs.ReadStream does) makes the
 * garbage collector the largest cost of serving big blobs.
 */
import { open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

const CHUNK = 1 << 20;
/** Buffers in rotation: reads run ahead of the socket by up to BUFFERS - 1 chunks. */
const BUFFERS = 4;

function writeChunk(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(Object.assign(new Error('client closed the connection'), { code: 'ECONNRESET' }));
    res.once('close', onClose);
    res.write(chunk, (err) => {
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

export async function sendFileRange(res: ServerResponse, path: string, start: number, end: number): Promise<void> {
  const fh = await open(path, 'r');
  const slots = Array.from({ length: BUFFERS }, () => ({ buf: Buffer.allocUnsafeSlow(CHUNK), written: Promise.resolve() }));
  try {
    let pos = start;
    for (let i = 0; pos <= end; i++) {
      const slot = slots[i % BUFFERS]!;
      // The buffer's previous contents must have reached the socket before it is refilled.
      await slot.written;
      const want = Math.min(CHUNK, end - pos + 1);
      const { bytesRead } = await fh.read(slot.buf, 0, want, pos);
      if (bytesRead === 0) throw new Error(`${path} ended at ${pos}, before ${end + 1}`);
      slot.written = writeChunk(res, slot.buf.subarray(0, bytesRead));
      slot.written.catch(() => undefined);
      pos += bytesRead;
    }
    await Promise.all(slots.map((s) => s.written));
    res.end();
  } finally {
    await fh.close();
  }
}
