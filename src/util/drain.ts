import type { EventEmitter } from 'node:events';

/**
 * Resolves when a writable that refused a write can take more ('drain'),
 * or will never take any ('close'): a writer waiting on it must not hang
 * when the other end goes away. (events.once(w, 'drain') would.)
 */
export function drainOrClose(w: EventEmitter): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}
