/**
 * A private berthd for integration tests: its own data root, exec root,
 * socket and cgroup parent under a fresh /tmp/berth-test-* directory, and a
 * cleanup that leaves nothing behind even when a test failed.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const BERTH = join(ROOT, 'bin', 'berth');
export const BERTHD = join(ROOT, 'bin', 'berthd');
export const BUSYBOX_TAR = join(ROOT, '.cache', 'busybox.tar');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestDaemon {
  readonly dir: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly socket: string;
  readonly cgroupParent: string;
  proc?: ChildProcess;
  log = '';

  constructor(name = 'd') {
    // The run tag keeps concurrent suites (several checkouts) apart; the
    // owner file tells the leftover cleaner this directory is still in use.
    this.dir = mkdtempSync(`/tmp/berth-test-${process.env.BERTH_TEST_RUN ?? 'x'}-${name}-`);
    writeFileSync(join(this.dir, 'owner'), `${process.pid}\n`);
    this.dataRoot = join(this.dir, 'data');
    this.execRoot = join(this.dir, 'exec');
    this.socket = join(this.dir, 'berth.sock');
    this.cgroupParent = `/${this.dir.split('/').pop()}`;
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  async start(extraArgs: string[] = []): Promise<void> {
    this.log = '';
    this.proc = spawn(BERTHD, ['--data-root', this.dataRoot, '--exec-root', this.execRoot, '-H', this.host, '--cgroup-parent', this.cgroupParent, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BERTH_REGISTRY_LOOPBACK_ONLY: '1' } });
    this.proc.stdout!.on('data', (d: Buffer) => { this.log += d.toString(); });
    this.proc.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.log.includes('completed initialization')) return;
      if (this.proc.exitCode !== null) throw new Error(`berthd exited: ${this.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`berthd did not start: ${this.log}`);
  }

  /** Stop berthd the hard way (live-restore tests), or politely. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  }

  env(): NodeJS.ProcessEnv {
    // Tests never reach a registry off this machine (no DNS lookup either).
    return { ...process.env, DOCKER_HOST: this.host, BERTH_HOST: this.host, DOCKER_CONFIG: join(this.dir, 'docker-config'), BERTH_REGISTRY_LOOPBACK_ONLY: '1' };
  }

  /** Run the berth CLI against this daemon. */
  berth(args: string[], input?: string | Buffer): RunResult {
    return this.cli(BERTH, args, input);
  }

  /** Run the real docker CLI against this daemon. */
  docker(args: string[], input?: string | Buffer): RunResult {
    return this.cli('docker', args, input);
  }

  /** Run a CLI with extra environment variables. */
  cli2(bin: 'berth' | 'docker', args: string[], env: Record<string, string>, input?: string | Buffer): RunResult {
    return this.cli(bin === 'berth' ? BERTH : 'docker', args, input, env);
  }

  private cli(bin: string, args: string[], input?: string | Buffer, extraEnv: Record<string, string> = {}): RunResult {
    const r = spawnSync(bin, args, { env: { ...this.env(), ...extraEnv }, input, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /** Run asynchronously (for tests that need a process running in the background). */
  spawn(bin: 'berth' | 'docker', args: string[]): ChildProcess {
    return spawn(bin === 'berth' ? BERTH : 'docker', args, { env: this.env(), stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** Make the busybox image available as busybox:latest. */
  loadBusybox(): void {
    const r = this.berth(['import', '-c', 'CMD ["sh"]', BUSYBOX_TAR, 'busybox:latest']);
    if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  }

  /** Remove everything this daemon made, whatever state the test left. */
  async cleanup(): Promise<void> {
    try {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null && existsSync(this.socket)) {
        const ids = this.berth(['ps', '-aq', '--no-trunc']).stdout.split('\n').filter(Boolean);
        if (ids.length) this.berth(['rm', '-f', ...ids]);
      }
    } catch {
      // fall through to the hard cleanup
    }
    await this.stop('SIGKILL');
    killMonitors(this.dir);
    const runtimeRoot = join(this.execRoot, 'runtime');
    if (existsSync(runtimeRoot)) {
      for (const id of readdirSync(runtimeRoot)) spawnSync('runc', ['--root', runtimeRoot, 'delete', '-f', id]);
    }
    unmountUnder(this.dir);
    removeCgroups(this.cgroupParent);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function killMonitors(dir: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(dir) && (cmd.includes('berth-monitor') || cmd.includes('runc'))) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
}

export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(dir)).sort().reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

export function removeCgroups(parent: string): void {
  let roots: string[] = [];
  try {
    roots = readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c));
  } catch {
    return;
  }
  for (const r of [...roots, '/sys/fs/cgroup']) {
    const base = join(r, parent);
    if (!existsSync(base)) continue;
    try {
      for (const child of readdirSync(base, { withFileTypes: true })) if (child.isDirectory()) rmdirQuiet(join(base, child.name));
      rmdirQuiet(base);
    } catch {
      // not a directory tree we can read
    }
  }
}

function rmdirQuiet(p: string): void {
  try {
    execFileSync('rmdir', [p], { stdio: 'ignore' });
  } catch {
    // busy or gone
  }
}
