/**
 * `berth build` and `berth builder prune`: pack the context (honouring
 * .dockerignore; see context-pack.ts), send it to POST /build the way the docker CLI's classic
 * builder does, and print the build's output as it streams.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { Command, CliContext } from '../command.ts';
import { CliError, println } from '../command.ts';
import { TarWriter } from '../../util/tar.ts';
import { DockerIgnore } from '../../build/dockerignore.ts';
import { packContext } from '../context-pack.ts';
import { humanSize } from '../../util/units.ts';

interface BuildMessage {
  stream?: string;
  aux?: { ID?: string };
  error?: string;
  errorDetail?: { code?: number; message?: string };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks);
}

/** A private name for a Dockerfile that travels inside the context (node:crypto is loaded only then: it costs start-up time). */
async function privateDockerfileName(): Promise<string> {
  const { randomBytes } = await import('node:crypto');
  return `.dockerfile.${randomBytes(10).toString('hex')}`;
}

function keyValues(list: string[], what: string, fromEnv: boolean): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i === 0) throw new CliError(`invalid ${what}: ${kv}`, 1);
    if (i < 0) out[kv] = fromEnv ? (process.env[kv] ?? null) : '';
    else out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** `--secret id=x,src=path` (also `source=`, `env=`). */
function parseSecrets(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of list) {
    const f: Record<string, string> = {};
    for (const part of s.split(',')) {
      const i = part.indexOf('=');
      if (i > 0) f[part.slice(0, i)] = part.slice(i + 1);
    }
    const id = f.id;
    if (!id) throw new CliError(`invalid secret: ${s}: id is required`, 1);
    const src = f.src ?? f.source;
    let data: Buffer;
    if (src) {
      if (!existsSync(src)) throw new CliError(`failed to read secret ${id}: open ${src}: no such file or directory`, 1);
      data = readFileSync(src);
    } else {
      const env = f.env ?? id;
      const v = process.env[env];
      if (v === undefined) throw new CliError(`failed to read secret ${id}: no file or environment variable given`, 1);
      data = Buffer.from(v);
    }
    out[id] = data.toString('base64');
  }
  return out;
}

const build: Command = {
  name: 'build',
  use: 'berth build [OPTIONS] PATH | URL | -',
  short: 'Build an image from a Dockerfile',
  flags: [
    { name: 'tag', short: 't', type: 'list', description: 'Name and optionally a tag in the "name:tag" format' },
    { name: 'file', short: 'f', type: 'string', description: "Name of the Dockerfile (Default is 'PATH/Dockerfile')" },
    { name: 'build-arg', type: 'list', description: 'Set build-time variables' },
    { name: 'label', type: 'list', description: 'Set metadata for an image' },
    { name: 'target', type: 'string', description: 'Set the target build stage to build' },
    { name: 'no-cache', type: 'bool', description: 'Do not use cache when building the image' },
    { name: 'pull', type: 'bool', description: 'Always attempt to pull a newer version of the image' },
    { name: 'quiet', short: 'q', type: 'bool', description: 'Suppress the build output and print image ID on success' },
    { name: 'iidfile', type: 'string', description: 'Write the image ID to the file' },
    { name: 'network', type: 'string', description: 'Set the networking mode for the RUN instructions during build' },
    { name: 'secret', type: 'list', description: 'Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")' },
    { name: 'progress', type: 'string', description: 'Set type of progress output (auto, plain)' },
    { name: 'platform', type: 'string', description: 'Set platform if server is multi-platform capable' },
    { name: 'rm', type: 'bool', description: 'Remove intermediate containers after a successful build' },
    { name: 'force-rm', type: 'bool', description: 'Always remove intermediate containers' },
  ],
  minArgs: 1,
  maxArgs: 1,
  async run(ctx: CliContext, f, args) {
    const path = args[0]!;
    const file = f.str('file');
    const quiet = f.bool('quiet');
    let body: Readable;
    let dockerfileParam: string | undefined;
    let size = 0;
    if (path === '-') {
      // stdin: a tar context, or a Dockerfile alone.
      if (file === '-') throw new CliError('invalid argument: can\'t use stdin for both build context and dockerfile', 1);
      const data = await readAll(process.stdin);
      size = data.length;
      const isTar = data.length >= 262 && data.toString('latin1', 257, 262) === 'ustar';
      const compressed = data.length > 2 && ((data[0] === 0x1f && data[1] === 0x8b) || data.toString('latin1', 0, 3) === 'BZh');
      if (isTar || compressed) {
        body = Readable.from([data]);
        dockerfileParam = file;
      } else {
        const name = await privateDockerfileName();
        const w = new TarWriter();
        void w.add({ name, type: 'file', mode: 0o600, size: data.length, mtime: new Date() }, data).then(() => w.finish());
        body = w.stream();
        dockerfileParam = name;
      }
    } else {
      const dir = resolve(path);
      if (!existsSync(dir)) throw new CliError(`unable to prepare context: path "${path}" not found`, 1);
      if (!(await lstat(dir)).isDirectory()) throw new CliError(`unable to prepare context: context must be a directory: ${dir}`, 1);
      const extra: Array<{ name: string; data: Buffer }> = [];
      let dfRel: string;
      if (file === '-') {
        const name = await privateDockerfileName();
        extra.push({ name, data: await readAll(process.stdin) });
        dfRel = name;
      } else {
        const dfAbs = file ? resolve(file) : join(dir, 'Dockerfile');
        if (!existsSync(dfAbs)) {
          if (!file && existsSync(join(dir, 'dockerfile'))) dfRel = 'dockerfile';
          else throw new CliError(`unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat ${dfAbs}: no such file or directory`, 1);
        } else {
          const rel = relative(dir, dfAbs);
          if (rel.startsWith('..') || rel.startsWith(sep)) {
            // A Dockerfile outside the context travels inside it under a private name.
            const name = await privateDockerfileName();
            extra.push({ name, data: readFileSync(dfAbs) });
            dfRel = name;
          } else dfRel = rel.split(sep).join('/');
        }
      }
      dockerfileParam = dfRel;
      const ignoreText = existsSync(join(dir, '.dockerignore')) ? readFileSync(join(dir, '.dockerignore'), 'utf8') : '';
      const ignore = ignoreText ? new DockerIgnore(ignoreText) : undefined;
      body = packContext(dir, ignore, new Set([dfRel, '.dockerignore']), extra);
    }
    const secrets = parseSecrets(f.list('secret'));
    const headers: Record<string, string> = { 'Content-Type': 'application/x-tar', 'Transfer-Encoding': 'chunked' };
    if (Object.keys(secrets).length) headers['X-Berth-Build-Secrets'] = Buffer.from(JSON.stringify(secrets)).toString('base64');
    const buildArgs = keyValues(f.list('build-arg'), 'build-arg', true);
    const labels = keyValues(f.list('label'), 'label', false);
    if (!quiet && size) println(ctx, `Sending build context to berth daemon  ${humanSize(size)}`);
    const res = await ctx.client.raw('POST', '/build', {
      query: {
        t: f.list('tag'),
        dockerfile: dockerfileParam,
        buildargs: Object.keys(buildArgs).length ? JSON.stringify(buildArgs) : undefined,
        labels: Object.keys(labels).length ? JSON.stringify(labels) : undefined,
        target: f.str('target'),
        nocache: f.bool('no-cache') || undefined,
        pull: f.bool('pull') || undefined,
        q: quiet || undefined,
        networkmode: f.str('network'),
        rm: true,
        forcerm: f.bool('force-rm') || undefined,
        version: '1',
      },
      headers,
      stream: body,
    });
    let id = '';
    for await (const m of ctx.client.jsonLines<BuildMessage>(res)) {
      if (m.error || m.errorDetail) {
        const code = m.errorDetail?.code;
        throw new CliError(m.errorDetail?.message ?? m.error ?? 'build failed', code && code > 0 ? code : 1);
      }
      if (m.stream && !quiet) ctx.out.write(m.stream);
      if (m.aux?.ID) id = m.aux.ID;
    }
    if (!id) throw new CliError('build failed: the daemon reported no image', 1);
    if (quiet) println(ctx, id);
    const iid = f.str('iidfile');
    if (iid) writeFileSync(iid, id);
  },
};

const prune: Command = {
  name: 'builder prune',
  use: 'berth builder prune [OPTIONS]',
  short: 'Remove build cache',
  flags: [
    { name: 'all', short: 'a', type: 'bool', description: 'Remove all unused build cache, not just dangling ones' },
    { name: 'force', short: 'f', type: 'bool', description: 'Do not prompt for confirmation' },
    { name: 'filter', type: 'list', description: 'Provide filter values' },
  ],
  maxArgs: 0,
  async run(ctx) {
    const r = await ctx.client.post<{ CachesDeleted: string[] | null; SpaceReclaimed: number }>('/build/prune');
    if (r.CachesDeleted?.length) {
      println(ctx, 'Deleted build cache objects:');
      for (const c of r.CachesDeleted) println(ctx, c);
      println(ctx);
    }
    println(ctx, `Total reclaimed space: ${humanSize(r.SpaceReclaimed)}`);
  },
};

export const commands: Command[] = [build, prune];

