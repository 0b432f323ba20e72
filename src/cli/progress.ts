/**
 * Draws docker's JSON message stream (pull, push, load) the way the docker
 * CLI does: on a terminal every id keeps its own line, redrawn in place with
 * its progress bar; elsewhere only the status lines are printed, one per
 * message, and progress updates are left out.
 */
import type { ProgressMessage } from '../distribution/progress.ts';
import { progressBar } from '../distribution/progress.ts';
import { CliError } from './command.ts';

export interface DisplayOptions {
  terminal: boolean;
  /** Called with each `aux` payload (push digests, build results). */
  onAux?: (aux: unknown) => void;
}

function hasProgress(m: ProgressMessage): boolean {
  return m.progressDetail !== undefined && m.progressDetail !== null;
}

function barText(m: ProgressMessage, width: number): string {
  return m.progressDetail ? progressBar(m.progressDetail, width) : '';
}

/** Writes one message as docker's Display does; returns false for messages that print nothing. */
function display(m: ProgressMessage, out: NodeJS.WritableStream, terminal: boolean, width: number): void {
  let endl = '';
  if (terminal && m.stream === undefined && hasProgress(m)) {
    out.write('\x1b[2K\r');
    endl = '\r';
  } else if (hasProgress(m) && barText(m, width) !== '') {
    return;
  }
  let s = '';
  if (m.id) s += `${m.id}: `;
  if (hasProgress(m) && terminal) s += `${m.status ?? ''} ${barText(m, width)}${endl}`;
  else if (m.stream !== undefined) s += `${m.stream}${endl}`;
  else s += `${m.status ?? ''}${endl}\n`;
  out.write(s);
}

export async function displayMessages(messages: AsyncIterable<ProgressMessage>, out: NodeJS.WriteStream | NodeJS.WritableStream, opts: DisplayOptions): Promise<void> {
  const terminal = opts.terminal;
  const width = (out as NodeJS.WriteStream).columns ?? 200;
  let ids = new Map<string, number>();
  for await (const m of messages) {
    if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'failed', 1);
    if (m.aux !== undefined) {
      opts.onAux?.(m.aux);
      continue;
    }
    let diff = 0;
    if (m.id && hasProgress(m)) {
      let line = ids.get(m.id);
      if (line === undefined) {
        line = ids.size;
        ids.set(m.id, line);
        if (terminal) out.write('\n');
      }
      diff = ids.size - line;
      if (terminal && diff > 0) out.write(`\x1b[${diff}A`);
    } else {
      // A line that is not per-id progress starts a new block.
      ids = new Map();
    }
    display(m, out, terminal, width);
    if (m.id && terminal && diff > 0) out.write(`\x1b[${diff}B`);
  }
}
