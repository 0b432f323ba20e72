/**
 * The local terminal during an interactive attach or exec: raw mode while
 * attached (restored on every way out), the window size sent at the start
 * and on every SIGWINCH, and the detach keys recognised on the input.
 */
import type { ApiClient } from './client.ts';
import { DEFAULT_DETACH_KEYS, EscapeDetector, parseDetachKeys } from '../util/detach-keys.ts';
import { CliError } from './command.ts';

/** Put stdin in raw mode when it is a terminal; the returned function restores it (once). */
export function enterRawMode(): () => void {
  const input = process.stdin;
  if (!input.isTTY) return () => undefined;
  input.setRawMode(true);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    try {
      input.setRawMode(false);
    } catch {
      // the terminal is gone
    }
    process.off('exit', restore);
  };
  // Whatever ends the process, the user's terminal comes back cooked.
  process.once('exit', restore);
  return restore;
}

/**
 * Keep the remote terminal's size in step with the local one. `path` is
 * `/containers/{id}/resize` or `/exec/{id}/resize`. Returns a stop function.
 */
export function monitorSize(client: ApiClient, path: string, nudge = false): () => void {
  const out = process.stdout;
  if (!out.isTTY) return () => undefined;
  const send = () => {
    const h = out.rows;
    const w = out.columns;
    if (!h || !w) return;
    client.post(path, undefined, { h, w }).catch(() => undefined);
  };
  out.on('resize', send);
  if (nudge && out.rows && out.columns) {
    // Re-attaching to a shell that is waiting for input: a size change makes
    // it redraw its prompt (SIGWINCH), so go one larger and then back.
    client.post(path, undefined, { h: out.rows + 1, w: out.columns + 1 }).catch(() => undefined).finally(send);
  } else {
    send();
  }
  return () => out.off('resize', send);
}

/** The detach sequence the CLI watches for: the flag's, else docker's default. */
export function detachKeysOrDefault(spec: string | undefined): Buffer {
  return parseDetachKeys(spec || DEFAULT_DETACH_KEYS);
}

/** Reject a bad --detach-keys before anything is created (docker's wording). */
export function checkDetachKeysFlag(spec: string | undefined, exitCode = 1): void {
  if (!spec) return;
  try {
    parseDetachKeys(spec);
  } catch {
    throw new CliError(`Invalid detach keys (${spec}) provided`, exitCode);
  }
}

export { EscapeDetector };
