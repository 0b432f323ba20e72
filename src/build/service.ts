/**
 * The builder as berthd offers it: receive a context tar, find the
 * Dockerfile, run the executor, tag the result, and clean up everything the
 * build made on the way (context, staging directories, step containers)
 * whether it succeeded or not.
 */
import { randomBytes } from 'node:crypto';
import { join, posix } from 'node:path';
import type { Engine } from '../engine/engine.ts';
import type { ByteSource } from '../util/tar.ts';
import { ensureDir, removeTree } from '../util/fsutil.ts';
import { invalid } from '../util/errors.ts';
import { parseRepoAndTag } from '../image/reference.ts';
import { DockerIgnore } from './dockerignore.ts';
import { BuildCache } from './cache.ts';
import { BuildContext } from './context.ts';
import { BuildRunner } from './run-step.ts';
import { Executor } from './executor.ts';
import type { BuildRequest, BuildSink } from './executor.ts';

/** What a build request asks for; the service supplies the context and .dockerignore. */
export type BuildParams = Omit<BuildRequest, 'context' | 'ignore' | 'parsed'>;

export class BuildService {
  private readonly engine: Engine;
  readonly cache: BuildCache;
  readonly runner: BuildRunner;
  private readonly tmp: string;

  constructor(engine: Engine) {
    this.engine = engine;
    this.cache = new BuildCache(engine.cfg.dataRoot, engine.layers);
    this.runner = new BuildRunner(engine.cfg, join(engine.layers.root, 'empty'));
    this.tmp = join(engine.cfg.dataRoot, 'build', 'tmp');
  }

  async init(): Promise<void> {
    await this.cache.init();
    await this.runner.init();
    this.engine.df.buildCache = () => this.cache.usage(this.engine.imageStore);
    // Contexts and staging directories of builds a crash interrupted.
    await removeTree(this.tmp);
    await ensureDir(this.tmp, 0o700);
  }

  /** Check what can be refused before the context is read. */
  validate(p: BuildParams): void {
    for (const t of p.tags) {
      const ref = parseRepoAndTag(t);
      if (ref.digest) throw invalid(`invalid reference format: ${t}`);
    }
    if (!['default', 'none', 'host'].includes(p.network)) throw invalid(`network mode "${p.network}" not supported by buildkit`.replace(' by buildkit', ''));
  }

  /**
   * Build from a context tar. Parse errors and a missing Dockerfile throw
   * before `begin()` is called (so they can be an HTTP error); later failures
   * throw after it.
   */
  async build(context: ByteSource, p: BuildParams, begin: () => BuildSink): Promise<string> {
    const dfName = posix.normalize(p.dockerfile || 'Dockerfile').replace(/^\/+/, '');
    const ctx = await BuildContext.receive(context, join(this.tmp, `ctx-${randomBytes(8).toString('hex')}`), { wanted: [dfName, 'dockerfile', '.dockerignore'] });
    try {
      let df = await ctx.readFile(dfName);
      // docker also accepts a lower-case dockerfile when the default name is missing.
      if (!df && (!p.dockerfile || p.dockerfile === 'Dockerfile')) df = await ctx.readFile('dockerfile');
      if (!df) throw invalid(`Cannot locate specified Dockerfile: ${dfName}`);
      const text = df.toString('utf8');
      if (text.trim() === '') throw invalid(`the Dockerfile (${dfName}) cannot be empty`);
      const parsed = Executor.parse(text);
      const ignoreText = (await ctx.readFile('.dockerignore'))?.toString('utf8') ?? '';
      const ignore = ignoreText ? new DockerIgnore(ignoreText) : undefined;
      const sink = begin();
      const ex = new Executor(this.engine, this.cache, this.runner, {
        context: ctx,
        dockerfile: text,
        parsed,
        tags: p.tags,
        buildArgs: p.buildArgs,
        labels: p.labels,
        target: p.target,
        noCache: p.noCache,
        network: p.network,
        secrets: p.secrets,
        ignore,
        signal: p.signal,
        pull: p.pull,
      }, sink, join(this.engine.layers.root, 'empty'));
      const id = await ex.run();
      for (const t of p.tags) await this.engine.images.tag(id, t);
      return id;
    } finally {
      await ctx.dispose();
    }
  }

  async prune(): Promise<{ CachesDeleted: string[]; SpaceReclaimed: number }> {
    const r = await this.cache.prune(this.engine.imageStore);
    return { CachesDeleted: r.deleted, SpaceReclaimed: r.reclaimed };
  }

  stop(): void {
    this.runner.stop();
  }
}
