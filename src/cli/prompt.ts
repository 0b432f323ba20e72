/** Reading an answer from the terminal, as the prune commands ask for one. */
import type { CliContext } from './command.ts';

/** One line from stdin (what was typed so far if stdin ends first). */
export function readLine(): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) {
        process.stdin.off('data', onData);
        process.stdin.pause();
        resolve(buf);
      }
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', () => resolve(buf));
  });
}

/** docker's "WARNING! This will remove …" question; true when the user answers y or yes. */
export async function confirmRemoval(ctx: CliContext, what: string): Promise<boolean> {
  ctx.out.write(`WARNING! This will remove${what}\nAre you sure you want to continue? [y/N] `);
  return /^y(es)?$/i.test((await readLine()).trim());
}
