import type { Command, CliContext } from '../command.ts';
import { CliError } from '../command.ts';
import { ApiError } from '../client.ts';
import { parseTemplate } from '../format/template.ts';

type Kind = 'container' | 'image' | 'volume';

async function fetchOne(ctx: CliContext, kind: Kind | undefined, name: string, size: boolean): Promise<unknown> {
  const tries: Kind[] = kind ? [kind] : ['container', 'image', 'volume'];
  for (const k of tries) {
    try {
      if (k === 'container') return await ctx.client.get(`/containers/${encodeURIComponent(name)}/json`, { size: size || undefined });
      if (k === 'volume') return await ctx.client.get(`/volumes/${encodeURIComponent(name)}`);
      return await ctx.client.get(`/images/${encodeURIComponent(name)}/json`);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
  }
  return undefined;
}

/**
 * What every inspect command prints: each object through the --format
 * template, or all of them as one indented JSON array (also for
 * `--format json`); then the errors of the names that were not found, as
 * the command's failure.
 */
export function printInspected(ctx: CliContext, format: string | undefined, found: unknown[], errors: string[]): void {
  if (format && format !== 'json') {
    const tpl = parseTemplate(format);
    for (const v of found) ctx.out.write(tpl.execute(v) + '\n');
  } else {
    ctx.out.write(JSON.stringify(found, null, 4) + '\n');
  }
  if (errors.length) throw new CliError(errors.join('\n'), 1);
}

function inspectCommand(name: string, kind: Kind | undefined, use: string, short: string): Command {
  return {
    name,
    use,
    short,
    flags: [
      { name: 'format', short: 'f', type: 'string', description: 'Format output using a custom template' },
      { name: 'size', short: 's', type: 'bool', description: 'Display total file sizes if the type is container' },
      { name: 'type', type: 'string', description: 'Only inspect objects of the given type' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      const t = (f.str('type') as Kind | undefined) ?? kind;
      if (t && t !== 'container' && t !== 'image' && t !== 'volume') throw new CliError(`"${t}" is not a valid value for --type`, 1);
      const found: unknown[] = [];
      const errors: string[] = [];
      for (const a of args) {
        const v = await fetchOne(ctx, t, a, f.bool('size'));
        if (v === undefined) errors.push(`Error: No such ${t ?? 'object'}: ${a}`);
        else found.push(v);
      }
      printInspected(ctx, f.str('format'), found, errors);
    },
  };
}

export const commands: Command[] = [
  inspectCommand('inspect', undefined, 'berth inspect [OPTIONS] NAME|ID [NAME|ID...]', 'Return low-level information on berth objects'),
  inspectCommand('container inspect', 'container', 'berth container inspect [OPTIONS] CONTAINER [CONTAINER...]', 'Display detailed information on one or more containers'),
  inspectCommand('image inspect', 'image', 'berth image inspect [OPTIONS] IMAGE [IMAGE...]', 'Display detailed information on one or more images'),
];
