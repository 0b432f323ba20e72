/**
 * Drives the native container monitor for real: compiled from
 * native/berth-monitor.c into a temp dir, running busybox containers with runc
 * under a private runtime root. Needs root, gcc, runc and a static busybox.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FRAME_EXIT,
  FRAME_CLEANED,
  FRAME_HELLO,
  FRAME_RESIZE,
  FRAME_SHUTDOWN,
  FRAME_START,
  FRAME_STARTED,
  FRAME_START_FAILED,
  FRAME_STATE,
  FRAME_STDERR,
  FRAME_STDIN,
  FRAME_STDIN_CLOSE,
  FRAME_STDOUT,
  FrameDecoder,
  encodeFrame,
  encodeJsonFrame,
  parsePayload,
} from '../../src/runtime/monitor-protocol.ts';
import type {
  ExitPayload,
  ExitRecord,
  Frame,
  StartFailedPayload,
  StartedPayload,
  StatePayload,
} from '../../src/runtime/monitor-protocol.ts';

const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';
const SOURCE = fileURLToPath(new URL('../../native/berth-monitor.c', import.meta.url));
const TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;

function missingPrerequisite(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(RUNC)) return `needs ${RUNC}`;
  if (!existsSync(BUSYBOX)) return `needs ${BUSYBOX} (busybox-static)`;
  if (spawnSync('gcc', ['--version']).status !== 0) return 'needs gcc';
  return false;
}

// ---------------------------------------------------------------- the client

class MonitorClient {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  closed = false;
  #decoder = new FrameDecoder();
  #wake: Array<() => void> = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.#decoder.push(chunk));
      this.#notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#notify();
    });
    socket.on('error', () => {});
  }

  static connect(sockPath: string): Promise<MonitorClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(sockPath);
      s.once('connect', () => resolve(new MonitorClient(s)));
      s.once('error', reject);
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const f of w) f();
  }

  send(type: number, payload: Buffer | string = ''): void {
    this.socket.write(encodeFrame(type, payload));
  }

  sendJson(type: number, value: unknown): void {
    this.socket.write(encodeJsonFrame(type, value));
  }

  hello(stdout = true, stderr = true): void {
    this.sendJson(FRAME_HELLO, { stdout, stderr });
  }

  async waitFor(pred: (f: Frame) => boolean, what: string, timeoutMs = 15000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(pred);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) {
        throw new Error(`${this.closed ? 'connection closed' : 'timed out'} waiting for ${what}; got ${describeFrames(this.frames)}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitType<T>(type: number, timeoutMs = 15000): Promise<T> {
    return parsePayload<T>(await this.waitFor((f) => f.type === type, `frame type ${type}`, timeoutMs));
  }

  text(type: number): string {
    return Buffer.concat(this.frames.filter((f) => f.type === type).map((f) => f.payload)).toString('utf8');
  }

  async waitText(type: number, needle: string, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.text(type).includes(needle)) {
      if (Date.now() > deadline || this.closed) {
        throw new Error(`waiting for ${JSON.stringify(needle)}; have ${JSON.stringify(this.text(type))}`);
      }
      await this.waitFor(() => false, 'more output', 50).catch(() => {});
    }
  }

  async waitClosed(timeoutMs = 10000): Promise<void> {
    await this.waitFor(() => false, 'close', timeoutMs).catch(() => {});
    assert.ok(this.closed, 'monitor should have closed the connection');
  }

  close(): void {
    this.socket.destroy();
  }
}

function describeFrames(frames: Frame[]): string {
  return JSON.stringify(frames.map((f) => [f.type, f.payload.toString('utf8').slice(0, 200)]));
}

// ------------------------------------------------------------------ fixtures

let tmp = '';
let bin = '';
let rootfs = '';
let runtimeRoot = '';
let baseConfig: Record<string, unknown> & { process: Record<string, unknown>; root: Record<string, unknown> };
const monitors: Monitor[] = [];
const containerIds = new Set<string>();
const mountTargets = new Set<string>();
let seq = 0;

interface Monitor {
  name: string;
  id: string;
  dir: string;
  sock: string;
  bundle: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  isRunning: () => boolean;
}

interface BundleOptions {
  terminal?: boolean;
  rootPath?: string;
}

function makeBundle(name: string, args: string[], opts: BundleOptions = {}): string {
  const bundle = path.join(tmp, name, 'bundle');
  mkdirSync(bundle, { recursive: true });
  const config = structuredClone(baseConfig);
  config.process.terminal = opts.terminal ?? false;
  config.process.args = args;
  // A shared read-only-by-convention rootfs; runc accepts an absolute root path.
  config.root = { path: opts.rootPath ?? rootfs, readonly: false };
  writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(config, null, 1));
  return bundle;
}

function processJson(name: string, args: string[]): string {
  const p = path.join(tmp, name, 'process.json');
  mkdirSync(path.dirname(p), { recursive: true });
  const proc = structuredClone(baseConfig.process);
  proc.terminal = false;
  proc.args = args;
  writeFileSync(p, JSON.stringify(proc));
  return p;
}

interface StartOptions {
  id?: string;
  bundle?: string;
  extra?: string[];
  log?: boolean;
}

async function startMonitor(name: string, opts: StartOptions): Promise<Monitor> {
  const dir = path.join(tmp, name, 'state');
  mkdirSync(dir, { recursive: true });
  const id = opts.id ?? `bmt-${process.pid}-${++seq}`;
  containerIds.add(id);
  const bundle = opts.bundle ?? '';
  const args = ['--id', id, '--dir', dir, '--runtime', RUNC, '--runtime-root', runtimeRoot];
  if (bundle) args.push('--bundle', bundle);
  if (opts.log !== false) args.push('--log', path.join(dir, 'container.log'));
  args.push(...(opts.extra ?? []));
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  let running = true;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      running = false;
      resolve(code);
    }),
  );
  const line = await new Promise<string>((resolve, reject) => {
    let got = '';
    child.stdout!.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.includes('\n')) resolve(got);
    });
    child.stdout!.on('end', () => resolve(got));
    child.on('error', reject);
  });
  child.stdout!.destroy();
  child.unref();
  assert.equal(line, 'ready\n');
  const m: Monitor = {
    name,
    id,
    dir,
    sock: path.join(dir, 'monitor.sock'),
    bundle,
    pid: child.pid!,
    child,
    exited,
    isRunning: () => running,
  };
  monitors.push(m);
  return m;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

function runcList(): string[] {
  const r = spawnSync(RUNC, ['--root', runtimeRoot, 'list', '-q'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean);
}

function mountedUnder(prefix: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((mp) => mp.startsWith(prefix));
}

function readLog(m: Monitor): Array<{ log: string; stream: string; time: string }> {
  const p = path.join(m.dir, 'container.log');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { log: string; stream: string; time: string });
}

function readExitFile(m: Monitor): ExitRecord {
  return JSON.parse(readFileSync(path.join(m.dir, 'exit'), 'utf8')) as ExitRecord;
}

function vmRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) : NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Connect, subscribe, start, and wait for STARTED. */
async function startContainer(m: Monitor): Promise<{ client: MonitorClient; pid: number }> {
  const client = await MonitorClient.connect(m.sock);
  client.hello();
  const state = await client.waitType<StatePayload>(FRAME_STATE);
  assert.equal(state.status, 'created');
  client.send(FRAME_START);
  const started = await client.waitType<StartedPayload>(FRAME_STARTED);
  assert.ok(started.pid > 1);
  return { client, pid: started.pid };
}

async function finishAndShutdown(m: Monitor, client: MonitorClient): Promise<ExitPayload> {
  const exit = await client.waitType<ExitPayload>(FRAME_EXIT);
  client.send(FRAME_SHUTDOWN);
  await withTimeout(m.exited, 7000, 'monitor exit after SHUTDOWN');
  client.close();
  return exit;
}

// --------------------------------------------------------------------- tests

const skip = missingPrerequisite();

describe('berth-monitor', { skip, timeout: 120_000 }, () => {
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'bmt-'));
    bin = path.join(tmp, 'berth-monitor');
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, SOURCE], { stdio: 'inherit' });
    rootfs = path.join(tmp, 'rootfs');
    mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
    for (const applet of ['sh', 'echo', 'cat', 'sleep', 'true', 'false', 'stty', 'printf', 'grep', 'head', 'yes']) {
      symlinkSync('busybox', path.join(rootfs, 'bin', applet));
    }
    runtimeRoot = path.join(tmp, 'runc-root');
    mkdirSync(runtimeRoot);
    const specDir = path.join(tmp, 'spec');
    mkdirSync(specDir);
    execFileSync(RUNC, ['spec'], { cwd: specDir });
    baseConfig = JSON.parse(readFileSync(path.join(specDir, 'config.json'), 'utf8')) as typeof baseConfig;
  });

  after(() => {
    for (const m of monitors) {
      if (m.isRunning()) {
        try {
          process.kill(m.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const id of containerIds) {
      spawnSync(RUNC, ['--root', runtimeRoot, 'delete', '-f', id], { stdio: 'ignore' });
    }
    if (tmp) {
      for (const mp of mountedUnder(tmp + '/').reverse()) spawnSync('umount', ['-l', mp], { stdio: 'ignore' });
      for (const t of mountTargets) spawnSync('umount', ['-l', t], { stdio: 'ignore' });
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('stdout and stderr arrive as ordered frames and land in a json-file log', async () => {
    const script = 'echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo "q\\"<&>\\\\ é"; printf partial';
    const m = await startMonitor('streams', { bundle: makeBundle('streams', ['sh', '-c', script]) });
    const { client } = await startContainer(m);
    const exit = await finishAndShutdown(m, client);
    assert.equal(exit.exitCode, 0);
    assert.equal(exit.signal, 0);
    assert.match(exit.finishedAt, TIME_RE);

    const types = client.frames.map((f) => f.type);
    assert.equal(types[0], FRAME_STATE);
    assert.equal(types[1], FRAME_STARTED);
    // EXIT comes as soon as the process is gone; CLEANED once the runtime state is released.
    assert.deepEqual(types.slice(-2), [FRAME_EXIT, FRAME_CLEANED]);
    assert.equal(client.text(FRAME_STDOUT), 'out1\nq"<&>\\ é\npartial');
    assert.equal(client.text(FRAME_STDERR), 'err1\n');
    const firstErr = client.frames.findIndex((f) => f.type === FRAME_STDERR);
    const out1 = client.frames.findIndex((f) => f.type === FRAME_STDOUT && f.payload.includes('out1'));
    const q = client.frames.findIndex((f) => f.type === FRAME_STDOUT && f.payload.includes('q"'));
    assert.ok(out1 < firstErr && firstErr < q, `order: ${describeFrames(client.frames)}`);

    const log = readLog(m);
    assert.deepEqual(
      log.map((r) => [r.stream, r.log]),
      [
        ['stdout', 'out1\n'],
        ['stderr', 'err1\n'],
        ['stdout', 'q"<&>\\ é\n'],
        ['stdout', 'partial'],
      ],
    );
    for (const r of log) assert.match(r.time, TIME_RE);
    const raw = readFileSync(path.join(m.dir, 'container.log'), 'utf8');
    assert.ok(raw.includes('\\u003c\\u0026\\u003e'), 'HTML characters are escaped as in json-file logs');
    assert.deepEqual(readExitFile(m), exit);
    assert.ok(!existsSync(m.sock), 'control socket removed on exit');
    assert.deepEqual(runcList(), []);
  });

  test('the log cuts lines at 16 KiB and keeps invalid UTF-8 as U+FFFD', async () => {
    const script = "s=a; i=0; while [ $i -lt 15 ]; do s=$s$s; i=$((i+1)); done; printf '%s\\n' \"$s\"; printf 'x\\377y\\n'";
    const m = await startMonitor('longline', { bundle: makeBundle('longline', ['sh', '-c', script]) });
    const { client } = await startContainer(m);
    await finishAndShutdown(m, client);
    assert.equal(client.text(FRAME_STDOUT).length, 32768 + 1 + 4);
    const log = readLog(m).map((r) => r.log);
    assert.deepEqual(
      log.map((l) => l.length),
      [16384, 16384, 1, 4],
    );
    assert.equal(log.slice(0, 3).join(''), 'a'.repeat(32768) + '\n');
    assert.equal(log[3], 'x\ufffdy\n');
  });

  test('exit code 3, and the monitor leaves on its own once no client is connected', async () => {
    const m = await startMonitor('exit3', { bundle: makeBundle('exit3', ['sh', '-c', 'exit 3']) });
    const { client } = await startContainer(m);
    const exit = await client.waitType<ExitPayload>(FRAME_EXIT);
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, 0);
    client.close();
    await withTimeout(m.exited, 3000, 'monitor exit without clients');
    assert.deepEqual(readExitFile(m), exit);
  });

  test('exit code 137 after SIGKILL, and a second START is refused', async () => {
    const m = await startMonitor('kill9', { bundle: makeBundle('kill9', ['sleep', '100']) });
    const { client, pid } = await startContainer(m);
    const other = await MonitorClient.connect(m.sock);
    other.send(FRAME_START);
    const refused = await other.waitType<StartFailedPayload>(FRAME_START_FAILED);
    assert.equal(refused.message, 'already started');
    assert.ok(!client.frames.some((f) => f.type === FRAME_START_FAILED), 'only the asker hears the refusal');
    // Nothing of the monitor's own leaks into the container.
    assert.deepEqual(readdirSync(`/proc/${pid}/fd`).sort(), ['0', '1', '2']);
    process.kill(pid, 'SIGKILL');
    const exit = await client.waitType<ExitPayload>(FRAME_EXIT);
    assert.deepEqual([exit.exitCode, exit.signal], [137, 9]);
    // EXIT goes to every client, subscribed or not.
    await other.waitType<ExitPayload>(FRAME_EXIT);
    other.close();
    await finishAndShutdown(m, client);
  });

  test('stdin round trip through cat, including more than the buffers hold', async () => {
    const m = await startMonitor('stdin', {
      bundle: makeBundle('stdin', ['cat']),
      extra: ['--stdin'],
      log: false,
    });
    const client = await MonitorClient.connect(m.sock);
    client.hello(true, false);
    await client.waitType<StatePayload>(FRAME_STATE);
    // Input sent before START is kept until the container can read it.
    client.send(FRAME_STDIN, 'hello\n');
    client.send(FRAME_START);
    await client.waitType<StartedPayload>(FRAME_STARTED);
    const big = Buffer.alloc(3 << 20);
    for (let i = 0; i < big.length; i++) big[i] = 97 + ((i * 7) % 26);
    for (let off = 0; off < big.length; off += 60_000) client.send(FRAME_STDIN, big.subarray(off, off + 60_000));
    client.send(FRAME_STDIN, 'world\n');
    client.send(FRAME_STDIN_CLOSE);
    const exit = await finishAndShutdown(m, client);
    assert.equal(exit.exitCode, 0);
    const out = Buffer.concat(client.frames.filter((f) => f.type === FRAME_STDOUT).map((f) => f.payload));
    const expected = Buffer.concat([Buffer.from('hello\n'), big, Buffer.from('world\n')]);
    assert.equal(out.length, expected.length);
    assert.equal(createHash('sha256').update(out).digest('hex'), createHash('sha256').update(expected).digest('hex'));
  });

  test('a missing executable gives START_FAILED with the runtime error text', async () => {
    for (const variant of ['stderr', 'runtime-log']) {
      const name = `missing-${variant}`;
      const extra = variant === 'runtime-log' ? ['--log-runtime', path.join(tmp, name, 'runc.log')] : [];
      const m = await startMonitor(name, { bundle: makeBundle(name, ['no-such-binary']), extra });
      const client = await MonitorClient.connect(m.sock);
      client.hello();
      client.send(FRAME_START);
      const failed = await client.waitType<StartFailedPayload>(FRAME_START_FAILED);
      assert.match(failed.message, /executable file not found/);
      assert.match(failed.message, /no-such-binary/);
      assert.doesNotMatch(failed.message, /level=|time=/, 'the message is the error, not the log line');
      const rec = readExitFile(m);
      assert.deepEqual(rec, { startFailed: true, message: failed.message });
      assert.deepEqual(readLog(m), [], 'runtime errors are not container output');
      assert.ok(!client.frames.some((f) => f.type === FRAME_STDERR || f.type === FRAME_STDOUT));
      // A late client still learns what happened.
      const late = await MonitorClient.connect(m.sock);
      const st = await late.waitType<StatePayload>(FRAME_STATE);
      assert.equal(st.status, 'exited');
      assert.equal(st.startFailed, true);
      late.close();
      client.send(FRAME_SHUTDOWN);
      await withTimeout(m.exited, 7000, 'monitor exit after failed start');
      client.close();
    }
    assert.deepEqual(runcList(), []);
  });

  test('terminal mode: input is echoed, RESIZE changes stty size, output is logged as stdout', async () => {
    const m = await startMonitor('tty', {
      bundle: makeBundle('tty', ['sh'], { terminal: true }),
      extra: ['--terminal', '--stdin'],
    });
    const client = await MonitorClient.connect(m.sock);
    client.hello();
    await client.waitType<StatePayload>(FRAME_STATE);
    client.sendJson(FRAME_RESIZE, { h: 40, w: 100 }); // before START: applied when the pty arrives
    client.send(FRAME_START);
    await client.waitType<StartedPayload>(FRAME_STARTED);
    client.send(FRAME_STDIN, 'stty size\n');
    await client.waitText(FRAME_STDOUT, '40 100');
    client.sendJson(FRAME_RESIZE, { h: 50, w: 132 });
    client.send(FRAME_STDIN, 'echo tty-$((40+2))\n');
    await client.waitText(FRAME_STDOUT, 'tty-42\r\n');
    assert.ok(client.text(FRAME_STDOUT).includes('echo tty-$((40+2))'), 'the pty echoes input');
    client.send(FRAME_STDIN, 'stty size\n');
    await client.waitText(FRAME_STDOUT, '50 132');
    client.send(FRAME_STDIN, 'exit 7\n');
    const exit = await finishAndShutdown(m, client);
    assert.equal(exit.exitCode, 7);
    assert.equal(client.text(FRAME_STDERR), '');
    const log = readLog(m);
    assert.ok(log.length > 0 && log.every((r) => r.stream === 'stdout'));
    assert.ok(log.some((r) => r.log === 'tty-42\r\n'), JSON.stringify(log));
    assert.ok(!existsSync(path.join(m.dir, 'console.sock')));
  });

  test('a state dir too long for a socket address still works, terminal mode included', async () => {
    const name = `long-${'x'.repeat(120)}`;
    const m = await startMonitor(name, {
      bundle: makeBundle(name, ['sh', '-c', 'echo long-tty'], { terminal: true }),
      extra: ['--terminal'],
    });
    assert.ok(m.sock.length > 108);
    // connect(2) follows symlinks, which is how a client reaches such a socket.
    const link = path.join(tmp, 'long.sock');
    symlinkSync(m.sock, link);
    const client = await MonitorClient.connect(link);
    client.hello();
    await client.waitType<StatePayload>(FRAME_STATE);
    client.send(FRAME_START);
    await client.waitType<StartedPayload>(FRAME_STARTED);
    const exit = await finishAndShutdown(m, client);
    assert.equal(exit.exitCode, 0);
    assert.equal(client.text(FRAME_STDOUT), 'long-tty\r\n');
  });

  test('the monitor outlives its client; a new client sees running, then exited', async () => {
    const m = await startMonitor('detach', { bundle: makeBundle('detach', ['sh', '-c', 'sleep 1; echo done']) });
    const { client: first, pid } = await startContainer(m);
    first.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(m.isRunning(), 'monitor still running after the client left');
    const second = await MonitorClient.connect(m.sock);
    second.hello(true, true);
    const st = await second.waitType<StatePayload>(FRAME_STATE);
    assert.deepEqual([st.status, st.pid], ['running', pid]);
    const exit = await second.waitType<ExitPayload>(FRAME_EXIT);
    assert.equal(exit.exitCode, 0);
    assert.equal(second.text(FRAME_STDOUT), 'done\n');
    // After EXIT a newcomer is told the outcome without asking.
    const third = await MonitorClient.connect(m.sock);
    const st3 = await third.waitType<StatePayload>(FRAME_STATE);
    assert.equal(st3.status, 'exited');
    assert.equal(st3.exitCode, 0);
    assert.equal(st3.finishedAt, exit.finishedAt);
    third.close();
    second.close();
    await withTimeout(m.exited, 3000, 'monitor exit once every client left');
    assert.deepEqual(readLog(m).map((r) => r.log), ['done\n']);
  });

  test('exec mode runs a second process in a running container', async () => {
    const main = await startMonitor('exec-main', { bundle: makeBundle('exec-main', ['sleep', '100']) });
    const { client: mainClient, pid: mainPid } = await startContainer(main);
    const proc = processJson('exec-proc', ['sh', '-c', 'echo from-exec; echo exec-err >&2; exit 5']);
    const ex = await startMonitor('exec-proc', { id: main.id, extra: ['--exec', proc], log: false });
    const { client, pid } = await startContainer(ex);
    assert.notEqual(pid, mainPid);
    const exit = await finishAndShutdown(ex, client);
    assert.equal(exit.exitCode, 5);
    assert.equal(client.text(FRAME_STDOUT), 'from-exec\n');
    assert.equal(client.text(FRAME_STDERR), 'exec-err\n');
    assert.ok(!existsSync(path.join(ex.dir, 'container.log')));
    const missing = processJson('exec-missing', ['no-such-binary']);
    const bad = await startMonitor('exec-missing', { id: main.id, extra: ['--exec', missing], log: false });
    const badClient = await MonitorClient.connect(bad.sock);
    badClient.send(FRAME_START);
    const failed = await badClient.waitType<StartFailedPayload>(FRAME_START_FAILED);
    assert.match(failed.message, /executable file not found/);
    badClient.send(FRAME_SHUTDOWN);
    await withTimeout(bad.exited, 7000, 'failed exec monitor exit');
    badClient.close();
    // The exec's end leaves the container alone.
    assert.ok(runcList().includes(main.id));
    assert.ok(!mainClient.frames.some((f) => f.type === FRAME_EXIT));
    process.kill(mainPid, 'SIGKILL');
    const mainExit = await finishAndShutdown(main, mainClient);
    assert.equal(mainExit.exitCode, 137);
    assert.ok(!runcList().includes(main.id));
  });

  test('a slow client is dropped without holding up the container or other clients', async () => {
    const line = '0123456789abcdef'.repeat(4);
    const m = await startMonitor('slow', {
      bundle: makeBundle('slow', ['sh', '-c', `yes ${line} | head -c 8000000`]),
      log: false,
    });
    const slow = await MonitorClient.connect(m.sock);
    slow.hello(true, true);
    await slow.waitType<StatePayload>(FRAME_STATE);
    slow.socket.pause();
    const fast = await MonitorClient.connect(m.sock);
    fast.hello(false, false);
    await fast.waitType<StatePayload>(FRAME_STATE);
    fast.send(FRAME_START);
    const exit = await fast.waitType<ExitPayload>(FRAME_EXIT, 20_000);
    assert.equal(exit.exitCode, 0);
    assert.ok(!fast.frames.some((f) => f.type === FRAME_STDOUT), 'unsubscribed clients get no output');
    slow.socket.resume();
    await slow.waitClosed();
    const got = slow.text(FRAME_STDOUT).length;
    assert.ok(got > 0 && got < 8_000_000, `slow client received ${got} bytes before being dropped`);
    assert.ok(!slow.frames.some((f) => f.type === FRAME_EXIT));
    await finishAndShutdown(m, fast);
  });

  test('with a shared pid namespace: orphans are reaped, a held pipe delays EXIT by at most the drain time', async () => {
    const bundle = makeBundle('hostpid', ['sh', '-c', 'sleep 31.5 & echo hi']);
    const cfgPath = path.join(bundle, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { linux: { namespaces: Array<{ type: string }> } };
    cfg.linux.namespaces = cfg.linux.namespaces.filter((n) => n.type !== 'pid');
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const m = await startMonitor('hostpid', { bundle });
    const { client } = await startContainer(m);
    const t0 = Date.now();
    const exit = await client.waitType<ExitPayload>(FRAME_EXIT);
    assert.equal(exit.exitCode, 0);
    assert.ok(Date.now() - t0 < 3000, `EXIT took ${Date.now() - t0} ms`);
    assert.equal(client.text(FRAME_STDOUT), 'hi\n');
    // `delete -f` killed what was left in the container's cgroup.
    const left = spawnSync('pgrep', ['-f', '^sleep 31.5$'], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '');
    await finishAndShutdown(m, client);
  });

  test('overlay: mounted for the run, gone after it; long option strings still mount', async () => {
    const layers = path.join(tmp, 'layers');
    mkdirSync(layers);
    // 50 lowers with digest-long names exceed a page as absolute paths.
    const lowers: string[] = [];
    for (let i = 0; i < 50; i++) {
      const l = path.join(layers, createHash('sha256').update(String(i)).digest('hex'));
      mkdirSync(l);
      lowers.push(l);
    }
    writeFileSync(path.join(lowers[49]!, 'marker'), 'bottom\n');
    const upper = path.join(layers, 'upper');
    const work = path.join(layers, 'work');
    mkdirSync(upper);
    mkdirSync(work);
    const target = path.join(tmp, 'overlay', 'bundle', 'rootfs');
    mkdirSync(target, { recursive: true });
    mountTargets.add(target);
    const spec = [rootfs, ...lowers, upper, work, target].join(':');
    assert.ok(spec.length > 4096, 'the option string would not fit a page');
    const script = 'echo layered > /newfile; cat /newfile /marker; sleep 0.3';
    const bundle = makeBundle('overlay', ['sh', '-c', script], { rootPath: 'rootfs' });
    const m = await startMonitor('overlay', { bundle, extra: ['--overlay', spec] });
    const { client } = await startContainer(m);
    assert.ok(mountedUnder(target).includes(target), 'overlay mounted while running');
    const exit = await finishAndShutdown(m, client);
    assert.equal(exit.exitCode, 0);
    assert.equal(client.text(FRAME_STDOUT), 'layered\nbottom\n');
    assert.deepEqual(mountedUnder(target), [], 'overlay unmounted after exit');
    assert.equal(readFileSync(path.join(upper, 'newfile'), 'utf8'), 'layered\n');
    assert.ok(!existsSync(path.join(rootfs, 'newfile')), 'the lower layer is untouched');
    assert.deepEqual(readdirSync(target), []);
  });

  test('measurements: idle RSS and START→STARTED against plain runc run', async (t) => {
    const idle = await startMonitor('rss', { bundle: makeBundle('rss', ['sleep', '100']) });
    const idleRss = vmRssKb(idle.pid);
    const { client, pid } = await startContainer(idle);
    await new Promise((r) => setTimeout(r, 100));
    const runningRss = vmRssKb(idle.pid);
    process.kill(pid, 'SIGKILL');
    await finishAndShutdown(idle, client);
    t.diagnostic(`monitor VmRSS: ${idleRss} kB before START, ${runningRss} kB with a running container`);
    assert.ok(idleRss < 4096, `idle RSS ${idleRss} kB`);

    const bundle = makeBundle('bench', ['true']);
    const viaMonitor: number[] = [];
    const viaRunc: number[] = [];
    for (let i = 0; i < 7; i++) {
      const m = await startMonitor(`bench-${i}`, { bundle, log: false });
      const c = await MonitorClient.connect(m.sock);
      c.hello();
      await c.waitType<StatePayload>(FRAME_STATE);
      const t0 = process.hrtime.bigint();
      c.send(FRAME_START);
      await c.waitType<StartedPayload>(FRAME_STARTED);
      viaMonitor.push(Number(process.hrtime.bigint() - t0) / 1e6);
      assert.equal((await finishAndShutdown(m, c)).exitCode, 0);

      const id = `bmt-${process.pid}-bench-runc-${i}`;
      containerIds.add(id);
      const t1 = process.hrtime.bigint();
      const r = spawnSync(RUNC, ['--root', runtimeRoot, 'run', '--bundle', bundle, id], { stdio: 'ignore' });
      viaRunc.push(Number(process.hrtime.bigint() - t1) / 1e6);
      assert.equal(r.status, 0);
    }
    t.diagnostic(
      `START→STARTED for true: median ${median(viaMonitor).toFixed(1)} ms; ` +
        `plain runc run: median ${median(viaRunc).toFixed(1)} ms`,
    );
  });

  test('nothing is left behind: runc state, mounts, monitor processes', async () => {
    assert.deepEqual(runcList(), []);
    const stateDirs = existsSync(runtimeRoot) ? readdirSync(runtimeRoot) : [];
    assert.deepEqual(stateDirs, []);
    assert.deepEqual(mountedUnder(tmp + '/'), []);
    for (const m of monitors) await withTimeout(m.exited, 7000, `monitor ${m.name} exit`);
    const pg = spawnSync('pgrep', ['-f', `${tmp}/berth-monitor`], { encoding: 'utf8' });
    assert.equal(pg.stdout.trim(), '', 'no monitor processes remain');
  });
});
