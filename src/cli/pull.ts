/**
 * Pull and push through the daemon, drawing docker's progress from the JSON
 * message stream and sending the stored credentials for the registry as
 * X-Registry-Auth. Used by `pull`, `push` and by `run`/`create` when the
 * image is missing.
 */
import type { CliContext } from './command.ts';
import { CliError } from './command.ts';
import { CredentialStore } from './credentials.ts';
import { displayMessages } from './progress.ts';
import type { ProgressMessage } from '../distribution/progress.ts';
import { encodeRegistryAuth } from '../distribution/auth-config.ts';
import { fullName, parseReference, refString } from '../image/reference.ts';
import type { Reference } from '../image/reference.ts';

/** The X-Registry-Auth header for a reference's registry (`e30=`, i.e. `{}`, when none are stored). */
export async function authHeaderFor(ref: Reference): Promise<string> {
  const a = await new CredentialStore().get(ref.domain);
  return a ? encodeRegistryAuth(a) : encodeRegistryAuth({});
}

function parseOrFail(image: string): Reference {
  try {
    return parseReference(image);
  } catch (err) {
    throw new CliError(`invalid reference format: ${(err as Error).message.replace(/^invalid reference format:?\s*/, '') || image}`.replace(/:\s*$/, ''), 1);
  }
}

export interface PullOptions {
  quiet?: boolean;
  platform?: string;
  allTags?: boolean;
  /** Where progress goes: stdout for `pull`, stderr for the pull `run` does. */
  out?: NodeJS.WriteStream;
}

/** Pulls an image; returns the fully qualified reference docker prints afterwards. */
export async function pullImage(ctx: CliContext, image: string, opts: PullOptions): Promise<string> {
  const ref = parseOrFail(image);
  if (opts.allTags && (ref.tag || ref.digest)) throw new CliError('tag can\'t be used with --all-tags/-a', 1);
  const withTag: Reference = opts.allTags || ref.tag || ref.digest ? ref : { ...ref, tag: 'latest' };
  const out = opts.out ?? ctx.out;
  if (!opts.allTags && !ref.tag && !ref.digest && !opts.quiet && opts.out === undefined) out.write('Using default tag: latest\n');
  // fromImage carries the name (and digest); tag goes separately, as docker's client sends it.
  const fromImage = withTag.digest ? `${fullName(withTag)}@${withTag.digest}` : fullName(withTag);
  const res = await ctx.client.raw('POST', '/images/create', {
    query: { fromImage, tag: withTag.digest ? undefined : withTag.tag, platform: opts.platform },
    headers: { 'X-Registry-Auth': await authHeaderFor(ref) },
  });
  const messages = ctx.client.jsonLines<ProgressMessage>(res);
  if (opts.quiet) {
    for await (const m of messages) if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'pull failed', 1);
  } else {
    await displayMessages(messages, out, { terminal: !!out.isTTY });
  }
  return opts.allTags ? fullName(withTag) : refString(withTag);
}

/** Pushes an image (every tag of the repository with allTags); prints what docker prints. */
export async function pushImage(ctx: CliContext, image: string, opts: { quiet?: boolean; allTags?: boolean }): Promise<void> {
  const ref = parseOrFail(image);
  if (opts.allTags && (ref.tag || ref.digest)) throw new CliError('tag can\'t be used with --all-tags/-a', 1);
  let target = ref;
  if (!opts.allTags && !ref.tag && !ref.digest) {
    if (!opts.quiet) ctx.out.write('Using default tag: latest\n');
    target = { ...ref, tag: 'latest' };
  }
  const res = await ctx.client.raw('POST', `/images/${fullName(target)}/push`, {
    query: { tag: target.tag },
    headers: { 'X-Registry-Auth': await authHeaderFor(ref) },
  });
  const messages = ctx.client.jsonLines<ProgressMessage>(res);
  if (opts.quiet) {
    for await (const m of messages) if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'push failed', 1);
    ctx.out.write(`${opts.allTags ? fullName(target) : refString(target)}\n`);
    return;
  }
  await displayMessages(messages, ctx.out, { terminal: !!ctx.out.isTTY });
}
