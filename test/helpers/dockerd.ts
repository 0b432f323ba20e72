/**
 * A private Docker Engine (Debian's dockerd) for interoperability tests:
 * its own data root, exec root (so its own containerd) and socket, no
 * bridge and no iptables rules, so it touches nothing outside its directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeDir } from './berth-registry.ts';

export class TestDockerd {
  readonly dir: string;
  readonly socket: string;
  private proc?: ChildProcess;
  log = '';

  constructor(dir: string) {
    this.dir = dir;
    this.socket = join(dir, 'docker.sock');
  }

  static available(): boolean {
    return existsSync('/usr/sbin/dockerd') || existsSync('/usr/bin/dockerd');
  }

  env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_CONFIG: join(this.dir, 'docker-config') };
  }

  docker(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
    const r = spawnSync('docker', args, { env: this.env(), encoding: 'utf8', input, timeout: 180_000 });
    return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  async start(): Promise<void> {
    const exec = join(this.dir, 'exec');
    mkdirSync(exec, { recursive: true });
    this.proc = spawn('dockerd', ['--data-root', join(this.dir, 'data'), '--exec-root', exec, '-H', `unix://${this.socket}`, '--pidfile', join(this.dir, 'docker.pid'), '--bridge', 'none', '--iptables=false', '--ip6tables=false'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      if (this.docker(['version']).code === 0) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`dockerd did not start: ${this.log.slice(-2000)}`);
  }

  async stop(): Promise<void> {
    const ids = this.docker(['ps', '-aq']).stdout.split('\n').filter(Boolean);
    if (ids.length) this.docker(['rm', '-f', ...ids]);
    const p = this.proc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    for (const m of readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(this.dir)).reverse()) spawnSync('umount', ['-l', m]);
    removeDir(this.dir);
  }
}
