/**
 * berthd's side of native/berth-launcher.c: a small process that starts
 * monitors and runs short native helpers, so that berthd never forks itself
 * on the path of a container start (a fork of the Node.js process stalls
 * its event loop for several milliseconds).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { systemError } from '../util/errors.ts';

/** How a helper run through the launcher ended. */
export interface HelperResult {
  /** Exit status; 127 when it could not be executed, 128+N when killed by signal N. */
  code: number;
  /** What it wrote to stdout and stderr. */
  output: string;
}

type Waiter =
  | { kind: 'monitor'; resolve: () => void; reject: (e: Error) => void }
  | { kind: 'helper'; resolve: (r: HelperResult) => void; reject: (e: Error) => void };

/** One launcher process with its own reply buffer and queue of requests in flight. */
class LauncherProcess {
  readonly proc: ChildProcess;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiting: Waiter[] = [];

  constructor(path: string) {
    const p = spawn(path, [], { stdio: ['pipe', 'pipe', 'ignore'] });
    p.stdout!.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      while (this.takeReply()) { /* one reply per turn */ }
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
  }

  get usable(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null && !!this.proc.stdin?.writable;
  }

  request(argv: string[], w: Waiter): void {
    const payload = Buffer.from(argv.map((a) => `${a}\0`).join(''));
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32BE(payload.length);
    if (this.waiting.length === 0) this.hold(true);
    this.waiting.push(w);
    this.proc.stdin!.write(Buffer.concat([hdr, payload]));
  }

  /**
   * An idle launcher must not keep berthd's event loop alive, but a request
   * in flight must: berthd may ask before anything else holds the loop
   * (removing namespaces while it starts, before it listens).
   */
  private hold(on: boolean): void {
    const out = this.proc.stdout as unknown as { ref?: () => void; unref?: () => void };
    if (on) {
      this.proc.ref();
      out.ref?.();
    } else {
      this.proc.unref();
      out.unref?.();
    }
  }

  private shift(): void {
    this.waiting.shift();
    if (this.waiting.length === 0) this.hold(false);
  }

  /** Consume one complete reply from the buffer, if there is one. */
  private takeReply(): boolean {
    const nl = this.buf.indexOf(10);
    if (nl < 0) return false;
    const line = this.buf.subarray(0, nl).toString();
    const w = this.waiting[0];
    if (w?.kind === 'helper') {
      const m = /^exit (\d+) (\d+)$/.exec(line);
      const size = m ? Number(m[2]) : 0;
      if (this.buf.length < nl + 1 + size) return false;
      const output = this.buf.subarray(nl + 1, nl + 1 + size).toString();
      this.buf = this.buf.subarray(nl + 1 + size);
      this.shift();
      if (m) w.resolve({ code: Number(m[1]), output });
      else w.reject(systemError(`the launcher said something unexpected: ${line}`));
      return true;
    }
    this.buf = this.buf.subarray(nl + 1);
    this.shift();
    if (!w) return true;
    if (line === 'ready') w.resolve();
    else w.reject(systemError(`container monitor failed to start: ${line.replace(/^error: /, '')}`));
    return true;
  }
}

export class NativeLauncher {
  private readonly path: string;
  private current?: LauncherProcess;

  constructor(path: string) {
    this.path = path;
  }

  private ensure(): LauncherProcess {
    if (!this.current?.usable) this.current = new LauncherProcess(this.path);
    return this.current;
  }

  /** Start a monitor with this argv (program first); resolves when it is ready. */
  launch(argv: string[]): Promise<void> {
    return new Promise((resolve, reject) => this.ensure().request(argv, { kind: 'monitor', resolve, reject }));
  }

  /** Run a short helper (program first) to its end; stdin is /dev/null. */
  runHelper(argv: string[]): Promise<HelperResult> {
    return new Promise((resolve, reject) => this.ensure().request(['--run', ...argv], { kind: 'helper', resolve, reject }));
  }

  /** Close the launcher's stdin: it ends once the requests in flight are answered. */
  stop(): void {
    this.current?.proc.stdin?.end();
  }
}

const shared = new Map<string, NativeLauncher>();

/** The daemon's one launcher for the native programs in `nativeDir`. */
export function launcherFor(nativeDir: string): NativeLauncher {
  let l = shared.get(nativeDir);
  if (!l) shared.set(nativeDir, (l = new NativeLauncher(join(nativeDir, 'berth-launcher'))));
  return l;
}
