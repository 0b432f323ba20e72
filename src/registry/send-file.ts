/**
 * Stream a byte range of a file to an HTTP response with two reused
 * buffers: one is filled from the file while the other is being written to
 * the socket. A fresh buffer per read (what fs.ReadStream does) makes the
 * garbage collector the largest cost of serving big blobs.
 */
import { open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

const CHUNK = 1 << 20;

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
  const bufs = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
  let pending: Promise<void> | undefined;
  try {
    let pos = start;
    for (let i = 0; pos <= end; i++) {
      const buf = bufs[i % 2]!;
      const want = Math.min(CHUNK, end - pos + 1);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new Error(`${path} ended at ${pos}, before ${end + 1}`);
      // The other buffer's write must be done before it is refilled next round.
      await pending;
      pending = writeChunk(res, buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    await pending;
    res.end();
  } catch (err) {
    pending?.catch(() => undefined);
    throw err;
  } finally {
    await fh.close();
  }
}
