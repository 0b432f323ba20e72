import { CliError } from './command.ts';

/** `--filter k=v` flags into the JSON the API's `filters` parameter takes. */
export function parseFilterFlags(list: string[]): string | undefined {
  if (list.length === 0) return undefined;
  const out: Record<string, string[]> = {};
  for (const x of list) {
    const i = x.indexOf('=');
    if (i <= 0) throw new CliError(`bad format of filter (expected name=value)`, 1);
    (out[x.slice(0, i).trim().toLowerCase()] ??= []).push(x.slice(i + 1));
  }
  return JSON.stringify(out);
}
