/**
 * `berth registry serve` for tests: a private root under a tagged
 * /tmp/berth-test-* directory, a free port chosen by the server (port 0,
 * read back from its first line), and a stop that waits for the exit.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BERTH } from './daemon.ts';

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export function testDir(name: string): string {
  const dir = mkdtempSync(`/tmp/berth-test-${process.env.BERTH_TEST_RUN ?? 'x'}-${name}-`);
  writeFileSync(join(dir, 'owner'), `${process.pid}\n`);
  return dir;
}

export class BerthRegistry {
  readonly root: string;
  url = '';
  log = '';
  private proc?: ChildProcess;
  constructor(root: string) {
    this.root = root;
  }

  /** host:port, as image references spell it. */
  get host(): string {
    return new URL(this.url).host;
  }

  async start(extra: string[] = []): Promise<void> {
    this.log = '';
    const p = spawn(BERTH, ['registry', 'serve', '--addr', '127.0.0.1:0', '--root', this.root, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    running.add(p);
    p.stdout!.on('data', (d: Buffer) => { this.log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      const m = /listening on (\S+)/.exec(this.log);
      if (m) {
        this.url = m[1]!;
        return;
      }
      if (p.exitCode !== null) throw new Error(`registry exited: ${this.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`registry did not start: ${this.log}`);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    running.delete(p);
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
    this.proc = undefined;
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A berth registry under `dir` that wants a login (user alice, password
 * "bcrypt pass", bcrypt in an htpasswd file), with basic or token auth, for
 * the time `fn` runs.
 */
export async function withAuthRegistry(dir: string, mode: 'basic' | 'token', fn: (r: BerthRegistry) => void): Promise<void> {
  const root = join(dir, `auth-${mode}`);
  mkdirSync(root, { recursive: true });
  const pw = join(root, 'htpasswd');
  const made = spawnSync('htpasswd', ['-cbB', pw, 'alice', 'bcrypt pass'], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`htpasswd failed: ${made.stderr}`);
  const r = new BerthRegistry(join(root, 'data'));
  await r.start(['--htpasswd', pw, '--auth', mode]);
  try {
    fn(r);
  } finally {
    await r.stop();
  }
}
