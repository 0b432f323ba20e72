/**
 * A private berthd for integration tests: its own data root, exec root,
 * socket and cgroup parent under a fresh /tmp/berth-test-* directory, and a
 * cleanup that leaves nothing behind even when a test failed.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';

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
  /** This daemon's default bridge: also names its iptables chains. */
  readonly bridge: string;
  /** `10.a.b`: a /20 of this daemon's own, for its address pool and the test's subnets. */
  private readonly net: [number, number];
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
    const h = createHash('sha1').update(this.dir).digest();
    this.bridge = `bt${h.toString('hex').slice(0, 8)}`;
    this.net = [64 + (h[4]! % 128), (h[5]! % 16) * 16];
  }

  /** The address pool the daemon picks default subnets from (first half of its /20). */
  get addressPool(): string {
    return `10.${this.net[0]}.${this.net[1]}.0/21`;
  }

  /** The i-th /24 (0–7) a test may use for an explicit --subnet: outside the pool, inside the /20. */
  subnet(i: number): string {
    return `10.${this.net[0]}.${this.net[1] + 8 + i}.0/24`;
  }

  /** An address inside subnet(i). */
  addr(i: number, host: number): string {
    return `10.${this.net[0]}.${this.net[1] + 8 + i}.${host}`;
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  async start(extraArgs: string[] = []): Promise<void> {
    this.log = '';
    this.proc = spawn(BERTHD, ['--data-root', this.dataRoot, '--exec-root', this.execRoot, '-H', this.host, '--cgroup-parent', this.cgroupParent, '--bridge', this.bridge, '--default-address-pool', `base=${this.addressPool},size=24`, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BERTH_REGISTRY_LOOPBACK_ONLY: '1' } });
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
    removeNetworkLeftovers(this.bridge);
    removeCgroups(this.cgroupParent);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function killMonitors(dir: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      // Monitors, runtimes and the berth CLI's helper processes of this directory.
      if (cmd.includes(dir) && (cmd.includes('berth-monitor') || cmd.includes('runc') || cmd.includes('--cli-helper'))) process.kill(Number(pid), 'SIGKILL');
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

/** Bridges (marked with the daemon's alias) and iptables chains a daemon with this default bridge left. */
export function removeNetworkLeftovers(bridge: string): void {
  try {
    const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; ifalias?: string }>;
    for (const l of links) if (l.ifalias === `berth:${bridge}`) spawnSync('ip', ['link', 'del', 'dev', l.ifname]);
  } catch {
    // no links to look at
  }
  for (const table of ['nat', 'filter']) {
    const rules = spawnSync('iptables', ['-t', table, '-S'], { encoding: 'utf8' }).stdout ?? '';
    const mine = (c: string) => c.startsWith('BERTH-') && c.endsWith(`-${bridge}`) || c === `BERTH-${bridge}`;
    for (const line of rules.split('\n')) {
      const m = /^-A (\S+) (.*)-j (\S+)$/.exec(line.trim());
      if (m && !mine(m[1]!) && mine(m[3]!)) spawnSync('iptables', ['-t', table, '-D', m[1]!, ...`${m[2]}-j ${m[3]}`.split(' ').filter(Boolean)]);
    }
    for (const line of rules.split('\n')) {
      const m = /^-N (\S+)$/.exec(line.trim());
      if (m && mine(m[1]!)) spawnSync('iptables', ['-t', table, '-F', m[1]!]);
    }
    for (const line of rules.split('\n')) {
      const m = /^-N (\S+)$/.exec(line.trim());
      if (m && mine(m[1]!)) spawnSync('iptables', ['-t', table, '-X', m[1]!]);
    }
  }
}
