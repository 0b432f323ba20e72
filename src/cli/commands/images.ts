import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { renderFormatted } from '../format/table.ts';
import { parseFilterFlags } from '../filters.ts';
import { humanDuration } from '../../util/time.ts';
import { humanSize } from '../../util/units.ts';
import { confirmRemoval } from '../prompt.ts';
import { isFullImageId, parseReference } from '../../image/reference.ts';
import type { Reference } from '../../image/reference.ts';

interface ImageSummary {
  Id: string;
  ParentId: string;
  RepoTags: string[] | null;
  RepoDigests: string[] | null;
  Created: number;
  Size: number;
  Labels: Record<string, string> | null;
  Containers: number;
}

interface Progress {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message: string };
  aux?: { ID?: string };
}

const HEADERS: Record<string, string> = {
  ID: 'IMAGE ID', Repository: 'REPOSITORY', Tag: 'TAG', Digest: 'DIGEST', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT',
  Size: 'SIZE', Containers: 'CONTAINERS', SharedSize: 'SHARED SIZE', UniqueSize: 'UNIQUE SIZE', VirtualSize: 'VIRTUAL SIZE',
  CreatedBy: 'CREATED BY', Comment: 'COMMENT',
};

/** Print a JSON progress stream as docker's CLI does without a terminal; fail on an error message. */
async function printProgress(ctx: CliContext, res: AsyncIterable<Progress>, quiet = false): Promise<void> {
  for await (const m of res) {
    if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'failed', 1);
    if (quiet) continue;
    // Progress bars make sense only on a terminal; elsewhere they are left out.
    if (!ctx.out.isTTY && !m.stream && ((m.progressDetail?.current ?? 0) > 0 || (m.progressDetail?.total ?? 0) > 0 || m.progress)) continue;
    if (m.stream) ctx.out.write(m.stream);
    else if (m.status) ctx.out.write(`${m.id ? `${m.id}: ` : ''}${m.status}${m.progress ? ` ${m.progress}` : ''}\n`);
  }
}

/** docker's CLI marshals its format contexts with sorted keys, so `{{json .}}` lists fields alphabetically. */
function sortedKeys(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function pad(n: number, w = 2): string {
  return String(Math.abs(n)).padStart(w, '0');
}

function localParts(d: Date): { date: string; time: string; offset: number } {
  return {
    date: `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
    time: `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`,
    offset: -d.getTimezoneOffset(),
  };
}

/** RFC 3339 in local time with whole seconds, as the API's Unix timestamps allow. */
function rfc3339(seconds: number): string {
  const { date, time, offset } = localParts(new Date(seconds * 1000));
  const zone = offset === 0 ? 'Z' : `${offset < 0 ? '-' : '+'}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  return `${date}T${time}${zone}`;
}

/** `2006-01-02 15:04:05 -0700 MST` in local time, the way docker prints CreatedAt of images. */
function goTimeString(seconds: number): string {
  const d = new Date(seconds * 1000);
  const { date, time, offset } = localParts(d);
  const num = `${offset < 0 ? '-' : '+'}${pad(Math.trunc(offset / 60))}${pad(offset % 60)}`;
  let abbr = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
  // Zones without a common abbreviation are named by their offset; an empty TZ means UTC.
  if (offset === 0 && (abbr === '' || abbr === 'GMT+0')) abbr = 'UTC';
  else if (abbr === '' || /^GMT[+-]/.test(abbr)) abbr = offset % 60 === 0 ? num.slice(0, 3) : num;
  return `${date} ${time} ${num} ${abbr}`;
}

function splitRepoTag(ref: string): [string, string] {
  const at = ref.indexOf('@');
  if (at >= 0) return [ref.slice(0, at), ref.slice(at)];
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return [ref.slice(0, colon), ref.slice(colon + 1)];
  return [ref, 'latest'];
}

export const commands: Command[] = [
  {
    name: 'images',
    use: 'berth images [OPTIONS] [REPOSITORY[:TAG]]',
    short: 'List images',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Show all images (default hides intermediate images)' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Only show image IDs' },
      { name: 'digests', type: 'bool', description: 'Show digests' },
      { name: 'filter', short: 'f', type: 'list', description: 'Filter output based on conditions provided' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
      { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
      { name: 'tree', type: 'bool', hidden: true },
    ],
    maxArgs: 1,
    async run(ctx, f, args) {
      const filters = [...f.list('filter')];
      if (args[0]) filters.push(`reference=${args[0]}`);
      const list = await ctx.client.get<ImageSummary[]>('/images/json', { all: f.bool('all') || undefined, digests: f.bool('digests') || undefined, filters: parseFilterFlags(filters) });
      const noTrunc = f.bool('no-trunc');
      const id = (s: string) => (noTrunc ? s : s.slice(7, 19));
      if (f.bool('quiet')) {
        const seen = new Set<string>();
        for (const i of list) if (!seen.has(i.Id)) { seen.add(i.Id); println(ctx, id(i.Id)); }
        return;
      }
      const rows: Record<string, unknown>[] = [];
      for (const img of list) {
        const tags = img.RepoTags?.length ? img.RepoTags : ['<none>:<none>'];
        const digests = img.RepoDigests ?? [];
        for (const t of tags) {
          const [repo, tag] = t === '<none>:<none>' ? ['<none>', '<none>'] : splitRepoTag(t);
          const digest = digests.find((d) => d.startsWith(`${repo}@`))?.split('@')[1] ?? (digests.length && repo === '<none>' ? digests[0]!.split('@')[1]! : '<none>');
          rows.push(sortedKeys({
            ID: id(img.Id), Repository: repo, Tag: tag, Digest: digest,
            CreatedSince: `${humanDuration(Date.now() - img.Created * 1000)} ago`,
            CreatedAt: goTimeString(img.Created),
            Size: humanSize(img.Size), Containers: img.Containers < 0 ? 'N/A' : String(img.Containers),
            SharedSize: 'N/A', UniqueSize: 'N/A', VirtualSize: humanSize(img.Size),
          }));
        }
      }
      const def = f.bool('digests') ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}' : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
      ctx.out.write(renderFormatted(f.str('format'), rows, { defaultTable: def, headers: HEADERS }));
    },
  },
  {
    name: 'rmi',
    use: 'berth rmi [OPTIONS] IMAGE [IMAGE...]',
    short: 'Remove one or more images',
    flags: [
      { name: 'force', short: 'f', type: 'bool', description: 'Force removal of the image' },
      { name: 'no-prune', type: 'bool', description: 'Do not delete untagged parents' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      const errors: string[] = [];
      for (const a of args) {
        try {
          const res = await ctx.client.json<Array<{ Untagged?: string; Deleted?: string }>>('DELETE', `/images/${encodeURIComponent(a)}`, { query: { force: f.bool('force') || undefined, noprune: f.bool('no-prune') || undefined } });
          for (const r of res) println(ctx, r.Untagged ? `Untagged: ${r.Untagged}` : `Deleted: ${r.Deleted}`);
        } catch (err) {
          errors.push(`Error response from daemon: ${(err as Error).message}`);
        }
      }
      if (errors.length) throw new CliError(errors.join('\n'), 1);
    },
  },
  {
    name: 'tag',
    use: 'berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
    short: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
    flags: [],
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, _f, args) {
      // Both names are checked here first, so a bad one is worded as docker's CLI words it.
      const check = (s: string): Reference => {
        try {
          return parseReference(s);
        } catch (err) {
          throw new CliError(`Error parsing reference: ${JSON.stringify(s)} is not a valid repository/tag: ${(err as Error).message}`, 1);
        }
      };
      if (!isFullImageId(args[0]!)) check(args[0]!);
      if (check(args[1]!).digest) throw new CliError('refusing to create a tag with a digest reference', 1);
      const target = args[1]!;
      const colon = target.lastIndexOf(':');
      const [repo, tag] = colon > target.lastIndexOf('/') ? [target.slice(0, colon), target.slice(colon + 1)] : [target, undefined];
      await ctx.client.post(`/images/${encodeURIComponent(args[0]!)}/tag`, undefined, { repo, tag });
    },
  },
  {
    name: 'history',
    use: 'berth history [OPTIONS] IMAGE',
    short: 'Show the history of an image',
    flags: [
      { name: 'human', short: 'H', type: 'bool', description: 'Print sizes and dates in human readable format', default: true },
      { name: 'no-trunc', type: 'bool', description: "Don't truncate output" },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Only show image IDs' },
      { name: 'format', type: 'string', description: 'Format output using a custom template' },
    ],
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, f, args) {
      const h = await ctx.client.get<Array<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number; Comment: string }>>(`/images/${encodeURIComponent(args[0]!)}/history`);
      const noTrunc = f.bool('no-trunc');
      const human = f.bool('human');
      if (f.bool('quiet')) {
        for (const e of h) println(ctx, noTrunc || e.Id === '<missing>' ? e.Id : e.Id.slice(7, 19));
        return;
      }
      const rows = h.map((e) => sortedKeys({
        ID: e.Id === '<missing>' || noTrunc ? e.Id : e.Id.slice(7, 19),
        CreatedSince: human ? `${humanDuration(Date.now() - e.Created * 1000)} ago` : rfc3339(e.Created),
        CreatedAt: rfc3339(e.Created),
        CreatedBy: noTrunc || [...e.CreatedBy].length <= 45 ? e.CreatedBy : `${[...e.CreatedBy].slice(0, 44).join('')}…`,
        Size: human ? humanSize(e.Size) : String(e.Size),
        Comment: e.Comment,
      }));
      // Without -H the default table shows the absolute time under its own heading.
      const when = human ? '{{.CreatedSince}}' : '{{.CreatedAt}}';
      ctx.out.write(renderFormatted(f.str('format'), rows, { defaultTable: `table {{.ID}}\t${when}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}`, headers: { ...HEADERS, ID: 'IMAGE', CreatedSince: 'CREATED' } }));
    },
  },
  {
    name: 'import',
    use: 'berth import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]',
    short: 'Import the contents from a tarball to create a filesystem image',
    flags: [
      { name: 'change', short: 'c', type: 'list', description: 'Apply Dockerfile instruction to the created image' },
      { name: 'message', short: 'm', type: 'string', description: 'Set commit message for imported image' },
      { name: 'platform', type: 'string', description: 'Set platform if server is multi-platform capable' },
    ],
    minArgs: 1,
    maxArgs: 2,
    async run(ctx, f, args) {
      const src = args[0]!;
      if (src !== '-' && !existsSync(src)) throw new CliError(`open ${src}: no such file or directory`, 1);
      const [repo, tag] = args[1] ? splitRepoTag(args[1]) : [undefined, undefined];
      const stream = src === '-' ? process.stdin : createReadStream(src);
      const res = await ctx.client.raw('POST', '/images/create', {
        query: { fromSrc: '-', repo, tag, message: f.str('message'), changes: f.list('change'), platform: f.str('platform') },
        headers: { 'Content-Type': 'application/x-tar', 'Transfer-Encoding': 'chunked' },
        stream,
      });
      for await (const m of ctx.client.jsonLines<Progress>(res)) {
        if (m.error || m.errorDetail) throw new CliError(m.errorDetail?.message ?? m.error ?? 'import failed', 1);
        if (m.status) println(ctx, m.status);
      }
    },
  },
  {
    name: 'load',
    use: 'berth load [OPTIONS]',
    short: 'Load an image from a tar archive or STDIN',
    flags: [
      { name: 'input', short: 'i', type: 'string', description: 'Read from tar archive file, instead of STDIN' },
      { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress the load output' },
      { name: 'platform', type: 'list', description: 'Load only the given platform(s)' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const input = f.str('input');
      if (!input && process.stdin.isTTY) throw new CliError('requested load from stdin, but stdin is empty', 1);
      if (input && !existsSync(input)) throw new CliError(`open ${input}: no such file or directory`, 1);
      const res = await ctx.client.raw('POST', '/images/load', {
        query: { quiet: f.bool('quiet') || undefined },
        headers: { 'Content-Type': 'application/x-tar', 'Transfer-Encoding': 'chunked' },
        stream: input ? createReadStream(input) : process.stdin,
      });
      await printProgress(ctx, ctx.client.jsonLines<Progress>(res), false);
    },
  },
  {
    name: 'save',
    use: 'berth save [OPTIONS] IMAGE [IMAGE...]',
    short: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
    flags: [
      { name: 'output', short: 'o', type: 'string', description: 'Write to a file, instead of STDOUT' },
      { name: 'platform', type: 'list', description: 'Save only the given platform(s)' },
    ],
    minArgs: 1,
    async run(ctx, f, args) {
      const output = f.str('output');
      if (!output && process.stdout.isTTY) throw new CliError('cowardly refusing to save to a terminal. Use the -o flag or redirect', 1);
      if (output) {
        // Checked before anything is asked of the daemon, so a typo costs no export.
        const dir = dirname(output);
        if (!existsSync(dir)) throw new CliError(`failed to save image: invalid output path: stat ${dir}: no such file or directory`, 1);
      }
      const res = await ctx.client.raw('GET', '/images/get', { query: { names: args } });
      if (output) {
        const tmp = `${output}.tmp-${process.pid}`;
        await pipeline(res, createWriteStream(tmp));
        (await import('node:fs')).renameSync(tmp, output);
      } else {
        await pipeline(res, process.stdout);
      }
    },
  },
  {
    name: 'image prune',
    use: 'berth image prune [OPTIONS]',
    short: 'Remove unused images',
    flags: [
      { name: 'all', short: 'a', type: 'bool', description: 'Remove all unused images, not just dangling ones' },
      { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
      { name: 'filter', type: 'list', description: 'Provide filter values (e.g. "until=<timestamp>")' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      if (!f.bool('force') && !(await confirmRemoval(ctx, ` all ${f.bool('all') ? 'images without at least one container associated to them' : 'dangling images'}.`))) return 0;
      const filters = [...f.list('filter')];
      if (f.bool('all')) filters.push('dangling=false');
      const r = await ctx.client.post<{ ImagesDeleted: Array<{ Untagged?: string; Deleted?: string }> | null; SpaceReclaimed: number }>('/images/prune', undefined, { filters: parseFilterFlags(filters) });
      if (r.ImagesDeleted?.length) {
        println(ctx, 'Deleted Images:');
        for (const d of r.ImagesDeleted) println(ctx, d.Untagged ? `untagged: ${d.Untagged}` : `deleted: ${d.Deleted}`);
        println(ctx);
      }
      println(ctx, `Total reclaimed space: ${humanSize(r.SpaceReclaimed)}`);
    },
  },
];
