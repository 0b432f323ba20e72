/**
 * Shared pieces of the benchmarks: timing, statistics, a private berthd, a
 * Docker Engine started by hand (when installed), and the runc floor bundle.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';

export const ROOT = resolve(import.meta.dirname, '..');
export const BUSYBOX_TAR = join(ROOT, '.cache', 'busybox.tar');

/** A command that did not finish within its time limit (it was killed). */
export class Hung extends Error {}

export function timeMs(cmd: string, args: string[], env?: NodeJS.ProcessEnv, limitMs = 60_000): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: limitMs, killSignal: 'SIGKILL' });
  const t = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.signal === 'SIGKILL' && t >= limitMs) throw new Hung(`${cmd} ${args.join(' ')} did not finish in ${limitMs} ms`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return t;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A berthd with its own roots, for the length of a benchmark. */
export class BenchBerthd {
  readonly dir = mkdtempSync('/tmp/berth-bench-');
  readonly socket = join(this.dir, 'berth.sock');
  /** Its own default bridge and address pool (named as the test daemons' are, so the leftover cleaner knows them). */
  readonly bridge = `bt${createHash('sha1').update(this.dir).digest('hex').slice(0, 8)}`;
  private readonly pool = `10.${64 + (createHash('sha1').update(this.dir).digest()[4]! % 128)}.${(createHash('sha1').update(this.dir).digest()[5]! % 16) * 16}.0/21`;
  private proc?: ChildProcess;
  /** The berth CLI's helper processes (native/berth-cli-helper.h) of this run: ended by stop(). */
  readonly cliHelpers = join(this.dir, 'cli');
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_CONFIG: join(this.dir, 'dc'), BERTH_CLI_HELPER_DIR: this.cliHelpers };
  }
  /**
   * Waits until the CLI's next helper is listening. A command ends before
   * its successor has started; a benchmark waits for it, so that its
   * start-up is not timed as part of whatever runs next (a user's next
   * command comes seconds later, not microseconds).
   */
  waitForCliHelper(): void {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (readdirSync(this.cliHelpers).some((f) => f.endsWith('.sock'))) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
    throw new Error('the berth CLI started no helper process');
  }
  async start(): Promise<void> {
    this.proc = spawn(join(ROOT, 'bin', 'berthd'), ['--data-root', join(this.dir, 'data'), '--exec-root', join(this.dir, 'exec'), '-H', `unix://${this.socket}`, '--cgroup-parent', `/${this.dir.split('/').pop()}`, '--bridge', this.bridge, '--default-address-pool', `base=${this.pool},size=24`], { stdio: 'ignore' });
    await waitFor(() => spawnSync(join(ROOT, 'bin', 'berth'), ['version'], { env: this.env }).status === 0, 15000, 'berthd');
    const r = spawnSync(join(ROOT, 'bin', 'berth'), ['import', '-c', 'CMD ["sh"]', BUSYBOX_TAR, 'busybox:latest'], { env: this.env });
    if (r.status !== 0) throw new Error(`import failed: ${r.stderr}`);
  }
  async stop(): Promise<void> {
    spawnSync(join(ROOT, 'bin', 'berth'), ['rm', '-f', ...spawnSync(join(ROOT, 'bin', 'berth'), ['ps', '-aq'], { env: this.env, encoding: 'utf8' }).stdout.split('\n').filter(Boolean)], { env: this.env });
    const p = this.proc;
    if (p && p.exitCode === null) {
      // A clean shutdown with nothing running removes berthd's bridges and rules itself.
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
    }
    spawnSync('bash', [join(ROOT, 'scripts', 'clean-test-leftovers.sh'), this.dir]);
  }
}

/**
 * Docker Engine (Debian's docker.io) started by hand with its own data root
 * and socket. By default it has no bridge and no iptables rules, so it
 * touches nothing else; with `network` it gets a bridge of its own (made
 * here, with a subnet from `network.subnet`) and its iptables rules, and
 * stop() removes the bridge and every rule and chain it added.
 */
export class BenchDockerd {
  private readonly network?: { bridge: string; gateway: string };
  private iptablesBefore = '';
  private dockerCgroupBefore = true;
  constructor(opts: { network?: { subnet24: string } } = {}) {
    if (opts.network) {
      const bridge = `bd${createHash('sha1').update(this.dir).digest('hex').slice(0, 8)}`;
      this.network = { bridge, gateway: `${opts.network.subnet24.replace(/\.0\/24$/, '')}.1/24` };
    }
  }
  readonly dir = mkdtempSync('/tmp/berth-bench-dockerd-');
  readonly socket = join(this.dir, 'docker.sock');
  private proc?: ChildProcess;
  static available(): boolean {
    return existsSync('/usr/sbin/dockerd') || existsSync('/usr/bin/dockerd');
  }
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_CONFIG: join(this.dir, 'dc') };
  }
  async start(extraArgs: string[] = []): Promise<void> {
    const exec = join(this.dir, 'exec');
    mkdirSync(exec, { recursive: true });
    let net = ['--bridge', 'none', '--iptables=false', '--ip6tables=false'];
    if (this.network) {
      this.iptablesBefore = iptablesSave();
      const { bridge, gateway } = this.network;
      for (const cmd of [['link', 'add', bridge, 'type', 'bridge'], ['addr', 'add', gateway, 'dev', bridge], ['link', 'set', bridge, 'up']]) {
        const r = spawnSync('ip', cmd, { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`ip ${cmd.join(' ')}: ${r.stderr}`);
      }
      net = ['--bridge', bridge, '--iptables=true', '--ip6tables=false'];
    }
    // Its containers' cgroups under a parent of its own, removed by stop(); dockerd still makes an
    // empty /docker of its own, removed too unless it was there before.
    this.dockerCgroupBefore = existsSync('/sys/fs/cgroup/memory/docker');
    this.proc = spawn('dockerd', ['--data-root', join(this.dir, 'data'), '--exec-root', exec, '-H', `unix://${this.socket}`, '--pidfile', join(this.dir, 'docker.pid'), '--cgroup-parent', `/${basename(this.dir)}`, ...net, ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    this.proc.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    try {
      await waitFor(() => spawnSync('docker', ['version'], { env: this.env }).status === 0, 60000, 'dockerd');
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${log.slice(-2000)}`);
    }
    const r = spawnSync('docker', ['import', '-c', 'CMD ["sh"]', BUSYBOX_TAR, 'busybox:latest'], { env: this.env });
    if (r.status !== 0) throw new Error(`docker import failed: ${r.stderr}`);
  }
  async stop(): Promise<void> {
    const ids = (spawnSync('docker', ['ps', '-aq'], { env: this.env, encoding: 'utf8', timeout: 30_000 }).stdout ?? '').split('\n').filter(Boolean);
    if (ids.length) spawnSync('docker', ['rm', '-f', ...ids], { env: this.env, timeout: 30_000, killSignal: 'SIGKILL' });
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    // A shim whose container never reported its exit would outlive dockerd.
    spawnSync('pkill', ['-9', '-f', `containerd-shim.*${this.dir}`]);
    for (const m of readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(this.dir)).reverse()) spawnSync('umount', ['-l', m]);
    if (this.network) {
      removeAddedRules(this.iptablesBefore);
      spawnSync('ip', ['link', 'del', 'dev', this.network.bridge]);
    }
    const cgroups = [basename(this.dir), ...(this.dockerCgroupBefore ? [] : ['docker'])];
    spawnSync('sh', ['-c', 'for n; do for c in /sys/fs/cgroup/*/"$n"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \\; ; done; done; true', 'sh', ...cgroups]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** runc running a prepared busybox bundle: the physical floor of `run`. */
export class RuncFloor {
  readonly dir = mkdtempSync('/tmp/berth-bench-floor-');
  private n = 0;
  constructor() {
    const rootfs = join(this.dir, 'rootfs');
    mkdirSync(rootfs);
    spawnSync('tar', ['-C', rootfs, '-xf', BUSYBOX_TAR]);
    spawnSync('runc', ['spec'], { cwd: this.dir });
    const spec = JSON.parse(readFileSync(join(this.dir, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    spec.process.args = ['true'];
    writeFileSync(join(this.dir, 'config.json'), JSON.stringify(spec));
  }
  run(): number {
    return timeMs('runc', ['--root', join(this.dir, 'state'), 'run', '-b', this.dir, `floor${this.n++}`]);
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function iptablesSave(): string {
  return ['nat', 'filter'].map((t) => `*${t}\n${spawnSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }).stdout}`).join('');
}

/** Delete every rule and chain that appeared since `before` (Docker Engine leaves its own behind). */
function removeAddedRules(before: string): void {
  const had = new Set(before.split('\n'));
  for (const t of ['nat', 'filter']) {
    const now = spawnSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }).stdout.split('\n');
    const has = (l: string) => had.has(l) && before.includes(`*${t}\n`) && before.split(`*${t}\n`)[1]!.split('*')[0]!.split('\n').includes(l);
    for (const l of now.filter((x) => x.startsWith('-A ') && !has(x))) {
      spawnSync('iptables', ['-t', t, ...l.replace(/^-A /, '-D ').match(/(?:[^\s"]+|"[^"]*")+/g)!.map((a) => a.replace(/^"|"$/g, ''))]);
    }
    for (const l of now.filter((x) => x.startsWith('-N ') && !has(x))) spawnSync('iptables', ['-t', t, '-X', l.slice(3)]);
  }
}
