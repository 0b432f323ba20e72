/**
 * A real pseudo-terminal for interactive tests: a tmux server on a private
 * socket running a plain shell, driven with send-keys and read back with
 * capture-pane. kill() removes the server and everything it started.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

export class Tmux {
  readonly name: string;
  /** waitFor looks at lines from here on: what appeared since the last input. */
  private from = 0;

  constructor(name: string, env: NodeJS.ProcessEnv, cwd: string, size: { w: number; h: number } = { w: 120, h: 40 }) {
    this.name = name;
    // Passed on the command line: tmux replaces PATH from its own environment.
    const vars = Object.entries(env).filter(([k]) => /^(DOCKER_HOST|BERTH_HOST|DOCKER_CONFIG|BERTH_CLI_HELPER_DIR|PATH)$/.test(k)).map(([k, v]) => `${k}=${shellQuote(v ?? '')}`);
    this.tmux(['new-session', '-d', '-x', String(size.w), '-y', String(size.h), '-c', cwd, `env ${vars.join(' ')} PS1='PROMPT$ ' bash --norc --noprofile`]);
    this.tmux(['set-option', '-g', 'history-limit', '5000']);
  }

  private tmux(args: string[]): string {
    return execFileSync('tmux', ['-L', this.name, ...args], { encoding: 'utf8' });
  }

  /** Type text literally, then optionally press Enter. */
  type(text: string, enter = true): void {
    this.mark();
    this.tmux(['send-keys', '-l', text]);
    if (enter) this.tmux(['send-keys', 'Enter']);
  }

  /** Press keys by tmux name (C-p, C-q, Enter). */
  keys(...names: string[]): void {
    this.mark();
    this.tmux(['send-keys', ...names]);
  }

  /** The pane's terminal device (/dev/pts/N). */
  tty(): string {
    return this.tmux(['display-message', '-p', '#{pane_tty}']).trim();
  }

  resize(w: number, h: number): void {
    this.tmux(['resize-window', '-x', String(w), '-y', String(h)]);
  }

  /** The whole pane including scroll-back. */
  screen(): string {
    return this.tmux(['capture-pane', '-p', '-S', '-5000']);
  }

  /** Start the next waitFor at the line the cursor is on now. */
  mark(): void {
    const lines = this.screen().replace(/\s+$/, '').split('\n');
    this.from = Math.max(0, lines.length - 1);
  }

  /** Poll until the pane matches (a safety deadline, not a timing assertion). */
  async waitFor(re: RegExp, what = String(re)): Promise<RegExpMatchArray> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const m = this.screen().split('\n').slice(this.from).join('\n').match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`terminal never showed ${what}; screen:\n${this.screen()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Run a command at the host shell prompt and return its exit status, marked uniquely. */
  async shell(cmd: string, tag: string): Promise<number> {
    this.type(`${cmd}; echo "${tag}-rc=$?"`);
    const m = await this.waitFor(new RegExp(`${tag}-rc=(\\d+)`));
    return Number(m[1]);
  }

  kill(): void {
    spawnSync('tmux', ['-L', this.name, 'kill-server'], { stdio: 'ignore' });
    // The server leaves its socket file behind.
    rmSync(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${process.getuid?.() ?? 0}`, this.name), { force: true });
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
