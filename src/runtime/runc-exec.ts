/**
 * A short command run inside a running container with `runc exec`, its
 * output captured: what health probes need. The process inherits the
 * container's own process settings (user, capabilities, rlimits, env,
 * no-new-privileges) from its config.json, with args (and optionally env,
 * cwd, user) replaced. Self-contained so that other callers (a full `exec`
 * implementation, for instance) can share it; interactive execs with a TTY
 * or attached stdin go through the monitor instead.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { OciProcess } from './oci-spec.ts';

export interface RuncExecOptions {
  runtime: string;
  /** runc's --root. */
  runtimeRoot: string;
  /** The runtime's container id. */
  id: string;
  /** The container's bundle directory (holds config.json); temporary files go there too. */
  bundle: string;
  args: string[];
  env?: string[];
  cwd?: string;
  /** Kill the process after this long (0: never). */
  timeoutMs: number;
  /** Keep at most this many bytes of combined stdout and stderr. */
  maxOutput: number;
}

export interface RuncExecResult {
  exitCode: number;
  output: string;
  timedOut: boolean;
}

/** Run a command in the container and wait for it. Rejects only if runc could not be spawned. */
export async function runcExec(o: RuncExecOptions): Promise<RuncExecResult> {
  const spec = JSON.parse(await readFile(join(o.bundle, 'config.json'), 'utf8')) as { process: OciProcess };
  const proc: OciProcess = { ...spec.process, terminal: false, args: o.args };
  delete proc.consoleSize;
  if (o.env) proc.env = o.env;
  if (o.cwd) proc.cwd = o.cwd;
  const tag = randomBytes(6).toString('hex');
  const procFile = join(o.bundle, `exec-${tag}.json`);
  const pidFile = join(o.bundle, `exec-${tag}.pid`);
  await writeFile(procFile, JSON.stringify(proc));
  try {
    return await new Promise<RuncExecResult>((resolve, reject) => {
      const child = spawn(o.runtime, ['--root', o.runtimeRoot, 'exec', '--process', procFile, '--pid-file', pidFile, o.id], { stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      let size = 0;
      const take = (d: Buffer) => {
        if (size >= o.maxOutput) return;
        const part = d.subarray(0, o.maxOutput - size);
        chunks.push(part);
        size += part.length;
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      let timedOut = false;
      const timer = o.timeoutMs > 0 ? setTimeout(() => {
        timedOut = true;
        // runc exec does not kill its process when it is killed itself: kill the process by its pid.
        void readFile(pidFile, 'utf8').then((p) => {
          try { process.kill(Number(p.trim()), 'SIGKILL'); } catch { /* gone */ }
        }, () => undefined).finally(() => child.kill('SIGKILL'));
      }, o.timeoutMs) : undefined;
      timer?.unref();
      child.once('error', (err) => {
        if (timer) clearTimeout(timer);
        reject(err);
      });
      child.once('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({ exitCode: code ?? (signal ? 128 + 9 : -1), output: Buffer.concat(chunks).toString('utf8'), timedOut });
      });
    });
  } finally {
    await Promise.all([rm(procFile, { force: true }), rm(pidFile, { force: true })]);
  }
}
