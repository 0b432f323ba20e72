/**
 * Detach keys: the key sequence that ends an interactive attach without
 * stopping the process (ctrl-p ctrl-q unless overridden). Parsed the way
 * docker parses `--detach-keys`, and recognised in a byte stream by
 * EscapeDetector, which the CLI (on the local terminal's input) and berthd
 * (on a TTY attach's stdin) both use.
 */
import { invalid } from './errors.ts';

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/** `ctrl-@` is 0, `ctrl-a`..`ctrl-z` 1..26, then `ctrl-[` `ctrl-\` `ctrl-]` `ctrl-^` `ctrl-_` 27..31. */
const CTRL_NAMES = '@abcdefghijklmnopqrstuvwxyz[\\]^_';

/**
 * Turn `ctrl-p,ctrl-q` (comma-separated; each a single character, `ctrl-X`
 * or `DEL`) into the bytes to look for. Throws on anything else.
 */
export function parseDetachKeys(spec: string): Buffer {
  const out: number[] = [];
  for (const key of spec.split(',')) {
    if (key.length === 1) {
      out.push(key.charCodeAt(0));
      continue;
    }
    const m = /^ctrl-(.)$/i.exec(key);
    const idx = m ? CTRL_NAMES.indexOf(m[1]!.toLowerCase()) : -1;
    if (idx >= 0) out.push(idx);
    else if (key === 'DEL') out.push(127);
    else throw invalid(`Invalid detach keys (${spec}) provided`);
  }
  if (out.length === 0 || out.some((b) => b > 127)) throw invalid(`Invalid detach keys (${spec}) provided`);
  return Buffer.from(out);
}

/** True when `spec` is a valid detach key sequence. */
export function validDetachKeys(spec: string): boolean {
  try {
    parseDetachKeys(spec);
    return true;
  } catch {
    return false;
  }
}

/**
 * Watches input for the detach sequence. push() returns the bytes to pass
 * on: a partial match is held back until the next byte decides it, and the
 * complete sequence is swallowed and reported through `detached`.
 */
export class EscapeDetector {
  private readonly keys: Buffer;
  private held = 0;
  detached = false;

  constructor(keys: Buffer) {
    this.keys = keys;
  }

  push(chunk: Buffer): Buffer {
    if (this.detached) return Buffer.alloc(0);
    const out: number[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === this.keys[this.held]) {
        this.held++;
        if (this.held === this.keys.length) {
          this.detached = true;
          this.held = 0;
          return Buffer.from(out);
        }
        continue;
      }
      // Mismatch: the held prefix was ordinary input after all.
      for (let j = 0; j < this.held; j++) out.push(this.keys[j]!);
      this.held = 0;
      if (b === this.keys[0]) {
        this.held = 1;
        if (this.keys.length === 1) {
          this.detached = true;
          return Buffer.from(out);
        }
      } else {
        out.push(b);
      }
    }
    return Buffer.from(out);
  }

  /** Bytes still held as a possible start of the sequence (given up at end of input). */
  flush(): Buffer {
    const b = this.keys.subarray(0, this.held);
    this.held = 0;
    return Buffer.from(b);
  }
}
