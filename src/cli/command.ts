import type { ApiClient } from './client.ts';
import type { FlagSpec, Flags } from './flags.ts';

export interface CliContext {
  client: ApiClient;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
}

export interface Command {
  name: string;
  aliases?: string[];
  use: string;
  short: string;
  flags: FlagSpec[];
  /** false: flags end at the first argument (run, exec, create). */
  interspersed?: boolean;
  minArgs?: number;
  maxArgs?: number;
  /** Exit code when the daemon reports an error (docker run uses 125). */
  errorExitCode?: number;
  run(ctx: CliContext, flags: Flags, args: string[]): Promise<number | void>;
}

/** Exit with an error message the way docker's CLI words it. */
export class CliError extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.code = code;
  }
}

/** Write a line to stdout. */
export function println(ctx: CliContext, s = ''): void {
  ctx.out.write(s + '\n');
}
