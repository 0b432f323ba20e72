import type { CliContext } from './command.ts';
import { CliError } from './command.ts';

interface ProgressMessage {
  status?: string;
  id?: string;
  progress?: string;
  error?: string;
  errorDetail?: { message: string };
  stream?: string;
}

/**
 * Pull an image through the daemon, printing docker's progress lines.
 * Used by `pull` and by `run`/`create` when the image is missing.
 */
export async function pullImage(ctx: CliContext, image: string, opts: { quiet?: boolean; platform?: string; allTags?: boolean }): Promise<void> {
  const at = image.lastIndexOf('@');
  const colon = image.lastIndexOf(':');
  let fromImage = image;
  let tag: string | undefined;
  if (at < 0 && colon > image.lastIndexOf('/')) {
    fromImage = image.slice(0, colon);
    tag = image.slice(colon + 1);
  } else if (at < 0 && !opts.allTags) {
    tag = 'latest';
  }
  const res = await ctx.client.raw('POST', '/images/create', { query: { fromImage, tag, platform: opts.platform } });
  for await (const m of ctx.client.jsonLines<ProgressMessage>(res)) {
    if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'pull failed', 125);
    if (opts.quiet) continue;
    if (m.status) ctx.err.write(`${m.id ? `${m.id}: ` : ''}${m.status}${m.progress ? ` ${m.progress}` : ''}\n`);
  }
}
