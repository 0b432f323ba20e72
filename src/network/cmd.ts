/**
 * Running the host's network tools (ip, iptables-restore, unshare, nsenter).
 * Every network change berth makes goes through one of these, so a failure
 * carries the tool's own message.
 */
import { spawn } from 'node:child_process';

export class CommandError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.stderr = stderr;
  }
}

/** Run a command, feeding `input` on stdin; resolves with stdout, rejects with stderr. */
export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', (e) => reject(new CommandError(`${cmd}: ${e.message}`, '')));
    p.on('close', (code) => {
      const stderr = Buffer.concat(err).toString().trim();
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new CommandError(stderr || `${cmd} ${args.join(' ')} exited with ${code}`, stderr));
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(input ?? '');
  });
}

/** `ip -batch -`: several changes for one process start. Lines are ip arguments. */
export function ipBatch(lines: string[], netnsPath?: string): Promise<string> {
  const text = lines.join('\n') + '\n';
  if (netnsPath) return run('nsenter', [`--net=${netnsPath}`, 'ip', '-batch', '-'], text);
  return run('ip', ['-batch', '-'], text);
}
