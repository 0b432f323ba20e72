/**
 * berthd's side of native/berth-launcher.c: a small process that starts
 * monitors, so that berthd never forks itself on the path of a container
 * start (a fork of the Node.js process stalls its event loop).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { systemError } from '../util/errors.ts';

export class MonitorLauncher {
  private readonly path: string;
  private proc?: ChildProcess;
  private buf = '';
  private waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  constructor(path: string) {
    this.path = path;
  }

  private ensure(): ChildProcess {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null && this.proc.stdin?.writable) return this.proc;
    const p = spawn(this.path, [], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.buf = '';
    p.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting.shift();
        if (!w) continue;
        if (line === 'ready') w.resolve();
        else w.reject(systemError(`container monitor failed to start: ${line.replace(/^error: /, '')}`));
      }
    });
    p.on('exit', () => {
      // Requests in flight die with it; the next request starts a new launcher.
      for (const w of this.waiting.splice(0)) w.reject(systemError('the monitor launcher exited'));
    });
    p.stdin!.on('error', () => undefined);
    p.unref();
    (p.stdout as unknown as { unref?: () => void }).unref?.();
    (p.stdin as unknown as { unref?: () => void }).unref?.();
    this.proc = p;
    return p;
  }

  /** Start a monitor with this argv (program first); resolves when it is ready. */
  launch(argv: string[]): Promise<void> {
    const p = this.ensure();
    const payload = Buffer.from(argv.map((a) => `${a}\0`).join(''));
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32BE(payload.length);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      p.stdin!.write(Buffer.concat([hdr, payload]));
    });
  }

  stop(): void {
    this.proc?.stdin?.end();
  }
}
