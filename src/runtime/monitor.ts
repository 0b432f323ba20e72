/**
 * berthd's side of the per-container monitor (native/berth-monitor.c): spawn
 * it, talk to it over its control socket, and find it again after berthd
 * restarts. The frame format is in native/PROTOCOL.md.
 */
import type { NativeLauncher } from './launcher.ts';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { openSync, closeSync, constants } from 'node:fs';
import {
  encodeFrame, FrameDecoder, FRAME_STDOUT, FRAME_STDERR, FRAME_EXIT, FRAME_STARTED, FRAME_START_FAILED, FRAME_STATE, FRAME_CLEANED,
  FRAME_HELLO, FRAME_START, FRAME_STDIN, FRAME_STDIN_CLOSE, FRAME_RESIZE, FRAME_SHUTDOWN,
} from './monitor-protocol.ts';


export interface ExitInfo {
  exitCode: number;
  signal: number;
  finishedAt: string;
  /** The kernel's OOM killer struck in the container's memory cgroup. */
  oomKilled?: boolean;
}

export interface MonitorState {
  status: 'created' | 'running' | 'exited';
  pid: number;
  exitCode?: number;
}

export interface SpawnOptions {
  monitorPath: string;
  id: string;
  /** The monitor's own directory: control socket, pid and exit files. */
  dir: string;
  runtimePath: string;
  runtimeRoot: string;
  bundle: string;
  logPath?: string;
  terminal: boolean;
  stdin: boolean;
  overlay?: { lowers: string[]; upper: string; work: string; target: string };
  /** Exec mode: path of the process.json for `runtime exec`. */
  execProcess?: string;
}

export class StartError extends Error {}

/**
 * One control connection to a monitor. Events: `stdout`/`stderr` (Buffer),
 * `exit` (ExitInfo), `cleaned` (runtime state and root mount released),
 * `close`.
 */
export class MonitorConnection extends EventEmitter {
  private readonly sock: Socket;
  private readonly decoder = new FrameDecoder();
  private pendingStart?: { resolve: (pid: number) => void; reject: (e: Error) => void };
  private pendingState?: (s: MonitorState) => void;
  exit?: ExitInfo;

  private constructor(sock: Socket) {
    super();
    this.sock = sock;
    sock.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) this.onFrame(f.type, f.payload);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.pendingStart?.reject(new StartError('monitor went away before the container started'));
      this.pendingStart = undefined;
      this.emit('close');
    });
  }

  private onFrame(type: number, payload: Buffer): void {
    switch (type) {
      case FRAME_STDOUT: this.emit('stdout', payload); break;
      case FRAME_STDERR: this.emit('stderr', payload); break;
      case FRAME_STARTED:
        this.pendingStart?.resolve((JSON.parse(payload.toString()) as { pid: number }).pid);
        this.pendingStart = undefined;
        break;
      case FRAME_START_FAILED:
        this.pendingStart?.reject(new StartError((JSON.parse(payload.toString()) as { message: string }).message));
        this.pendingStart = undefined;
        break;
      case FRAME_EXIT:
        this.exit = JSON.parse(payload.toString()) as ExitInfo;
        this.emit('exit', this.exit);
        break;
      case FRAME_CLEANED:
        this.emit('cleaned');
        break;
      case FRAME_STATE: {
        const st = JSON.parse(payload.toString()) as MonitorState;
        this.pendingState?.(st);
        this.pendingState = undefined;
        break;
      }
    }
  }

  static async connect(dir: string): Promise<MonitorConnection> {
    let path = join(dir, 'monitor.sock');
    let dirFd: number | undefined;
    // A unix socket path holds at most 107 bytes; reach a longer one through
    // an open descriptor of its directory.
    if (Buffer.byteLength(path) > 107) {
      dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      path = `/proc/self/fd/${dirFd}/monitor.sock`;
    }
    let sock: Socket;
    try {
      sock = await new Promise<Socket>((resolve, reject) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } finally {
      if (dirFd !== undefined) closeSync(dirFd);
    }
    sock.setNoDelay?.(true);
    return new MonitorConnection(sock);
  }

  /** Subscribe to output (or not) and learn the container's state. */
  hello(stdout: boolean, stderr: boolean): Promise<MonitorState> {
    return new Promise((resolve) => {
      this.pendingState = resolve;
      this.sock.write(encodeFrame(FRAME_HELLO, JSON.stringify({ stdout, stderr })));
    });
  }

  subscribe(stdout: boolean, stderr: boolean): void {
    this.sock.write(encodeFrame(FRAME_HELLO, JSON.stringify({ stdout, stderr })));
  }

  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pendingStart = { resolve, reject };
      this.sock.write(encodeFrame(FRAME_START, Buffer.alloc(0)));
    });
  }

  stdin(data: Buffer): void {
    this.sock.write(encodeFrame(FRAME_STDIN, data));
  }

  closeStdin(): void {
    this.sock.write(encodeFrame(FRAME_STDIN_CLOSE, Buffer.alloc(0)));
  }

  resize(h: number, w: number): void {
    this.sock.write(encodeFrame(FRAME_RESIZE, JSON.stringify({ h, w })));
  }

  /**
   * Ask the monitor to exit once its work is done. The socket stays open:
   * half-closing it would make the monitor drop this client at once, and the
   * `close` that callers wait for would come before the runtime's state and
   * the mount are released (a restart then races the old cleanup).
   */
  shutdown(): void {
    if (!this.sock.destroyed) this.sock.write(encodeFrame(FRAME_SHUTDOWN, Buffer.alloc(0)));
  }

  close(): void {
    this.sock.destroy();
  }
}

/** The monitor's command line for these options (program path first). */
export function monitorArgv(o: SpawnOptions): string[] {
  const args = [o.monitorPath, '--id', o.id, '--dir', o.dir, '--runtime', o.runtimePath, '--runtime-root', o.runtimeRoot, '--bundle', o.bundle];
  if (o.logPath) args.push('--log', o.logPath);
  if (o.terminal) args.push('--terminal');
  if (o.stdin) args.push('--stdin');
  if (o.overlay) args.push('--overlay', [...o.overlay.lowers, o.overlay.upper, o.overlay.work, o.overlay.target].join(':'));
  if (o.execProcess) args.push('--exec', o.execProcess);
  return args;
}

/** Start a monitor through the launcher and wait until its control socket is ready. */
export async function spawnMonitor(o: SpawnOptions, launcher: NativeLauncher): Promise<void> {
  await launcher.launch(monitorArgv(o));
}
