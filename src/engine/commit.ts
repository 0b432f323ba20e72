/**
 * Turning filesystem changes into images: snapshot a directory of changes
 * (an overlay upper, or a staging directory the builder filled) into a layer,
 * derive a child image config with its history entry, and record the image.
 * `docker commit` and every builder step go through these same functions;
 * `commitContainer` is the container → image operation of POST /commit.
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Engine } from './engine.ts';
import { applyChanges } from './images.ts';
import type { LayerStore } from '../image/layer-store.ts';
import { chainIds } from '../image/layer-store.ts';
import { diffLayer } from '../image/layer.ts';
import type { ImageStore } from '../image/image-store.ts';
import type { HistoryEntry, ImageConfig, ImageRecord, ImageRunConfig } from '../image/types.ts';
import { familiarString, parseRepoAndTag, withDefaultTag } from '../image/reference.ts';
import type { Reference } from '../image/reference.ts';
import { conflict, invalid, errorMessage } from '../util/errors.ts';
import type { ContainerConfig } from './container-types.ts';

/** The diff ID of a tar with no entries: a step that changed nothing adds no layer. */
export const EMPTY_TAR_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

export interface Snapshot {
  /** null when the directory held no changes. */
  diffId: string | null;
  chainId: string | null;
}

/** The chain ID of an image config's top layer (null for an image without layers). */
export function topChain(config: ImageConfig): string | null {
  const c = chainIds(config.rootfs.diff_ids);
  return c.length ? c[c.length - 1]! : null;
}

/**
 * Store the changes in `dir` (overlay upper form: whiteout devices, opaque
 * xattrs) as a layer on top of `parent`. An empty directory yields no layer.
 * With `move` the directory itself becomes the layer (a commit of a live
 * container copies instead).
 */
export async function snapshotLayer(layers: LayerStore, dir: string, parentChain: string | null, opts: { move?: boolean } = {}): Promise<Snapshot> {
  if ((await readdir(dir)).length === 0) return { diffId: null, chainId: parentChain };
  // A directory nobody needs afterwards (a finished build step's) becomes the layer as it is.
  const meta = opts.move ? await layers.adopt(parentChain, dir) : await layers.add(parentChain, diffLayer(dir));
  if (meta.diffId === EMPTY_TAR_DIFF_ID) return { diffId: null, chainId: parentChain };
  return { diffId: meta.diffId, chainId: meta.chainId };
}

export interface ChildOptions {
  run: ImageRunConfig;
  createdBy: string;
  diffId: string | null;
  comment?: string;
  author?: string;
  created?: string;
}

/** The config of an image derived from `parent` (null: from scratch). */
export function childConfig(parent: ImageConfig | null, o: ChildOptions): ImageConfig {
  const created = o.created ?? new Date().toISOString();
  // A build's MAINTAINER stays the author of the steps after it; commit passes its own ('' for none).
  const author = o.author ?? parent?.author;
  const history: HistoryEntry = { created, created_by: o.createdBy };
  if (o.author) history.author = o.author;
  if (o.comment) history.comment = o.comment;
  if (!o.diffId) history.empty_layer = true;
  const cfg: ImageConfig = {
    architecture: parent?.architecture ?? hostArch(),
    os: parent?.os ?? 'linux',
    ...(parent?.variant ? { variant: parent.variant } : {}),
    created,
    ...(author ? { author } : {}),
    ...(o.comment ? { comment: o.comment } : {}),
    config: o.run,
    rootfs: { type: 'layers', diff_ids: [...(parent?.rootfs.diff_ids ?? []), ...(o.diffId ? [o.diffId] : [])] },
    history: [...(parent?.history ?? []), history],
  };
  return cfg;
}

function hostArch(): string {
  const a = process.arch;
  return a === 'x64' ? 'amd64' : a === 'arm64' ? 'arm64' : a === 'arm' ? 'arm' : a === 'ia32' ? '386' : a;
}

/** Record an image config whose layers are already stored. */
export async function storeImage(images: ImageStore, config: ImageConfig, parent?: string): Promise<ImageRecord> {
  return images.add(Buffer.from(JSON.stringify(config)), parent ? { parent } : {});
}

// ---------------------------------------------------------------------------
// docker commit

export interface CommitOptions {
  container: string;
  repo?: string;
  tag?: string;
  comment?: string;
  author?: string;
  pause?: boolean;
  changes?: string[];
  /** A container config given in the request body; its set fields override the container's. */
  config?: Partial<ContainerConfig>;
}

/** The container's settings that an image keeps. */
function runConfigOf(c: ContainerConfig): ImageRunConfig {
  const r: ImageRunConfig = {};
  if (c.User) r.User = c.User;
  if (c.ExposedPorts && Object.keys(c.ExposedPorts).length) r.ExposedPorts = c.ExposedPorts;
  r.Env = c.Env ?? [];
  r.Cmd = c.Cmd;
  if (c.Healthcheck) r.Healthcheck = c.Healthcheck;
  if (c.ArgsEscaped) r.ArgsEscaped = c.ArgsEscaped;
  if (c.Volumes && Object.keys(c.Volumes).length) r.Volumes = c.Volumes;
  r.WorkingDir = c.WorkingDir ?? '';
  r.Entrypoint = c.Entrypoint;
  r.OnBuild = c.OnBuild ?? null;
  r.Labels = c.Labels ?? {};
  if (c.StopSignal) r.StopSignal = c.StopSignal;
  if (c.Shell) r.Shell = c.Shell;
  return r;
}

function runtimeCommand(runtime: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(runtime, args, (err, _o, stderr) => (err ? reject(conflict(String(stderr).trim() || errorMessage(err))) : resolve()));
  });
}

export async function commitContainer(engine: Engine, o: CommitOptions): Promise<string> {
  const rec = engine.containers.find(o.container);
  let ref: Reference | undefined;
  if (o.repo) {
    ref = parseRepoAndTag(o.repo, o.tag || undefined);
    if (ref.digest) throw invalid('refusing to create a tag with a digest reference');
    ref = withDefaultTag(ref);
  } else if (o.tag) {
    throw invalid('tag is specified without a repository');
  }
  const base = engine.imageStore.get(rec.Image);
  if (!base) throw invalid(`the image of container ${rec.Id} is gone`);
  let run = runConfigOf({ ...rec.Config, ...Object.fromEntries(Object.entries(o.config ?? {}).filter(([, v]) => v !== undefined && v !== null && v !== '')) });
  if (o.changes?.length) run = applyChanges(run, o.changes);
  const runtimeRoot = join(engine.cfg.execRoot, 'runtime');
  const pause = (o.pause ?? true) && rec.State.Running;
  if (pause) await runtimeCommand(engine.cfg.runtimePath, ['--root', runtimeRoot, 'pause', rec.Id]);
  let snap: Snapshot;
  try {
    snap = await snapshotLayer(engine.layers, join(engine.containers.store.dir(rec.Id), 'upper'), topChain(base.config));
  } finally {
    if (pause) await runtimeCommand(engine.cfg.runtimePath, ['--root', runtimeRoot, 'resume', rec.Id]).catch(() => undefined);
  }
  const config = childConfig(base.config, {
    run,
    createdBy: [rec.Path, ...rec.Args].join(' '),
    diffId: snap.diffId,
    comment: o.comment,
    author: o.author ?? '',
  });
  const img = await storeImage(engine.imageStore, config, base.record.id);
  engine.events.emit('container', 'commit', rec.Id, { comment: o.comment ?? '', imageID: img.id, imageRef: ref ? familiarString(ref) : '', name: rec.Name.slice(1) });
  if (ref) await engine.images.tag(img.id, o.repo!, o.tag || undefined);
  return img.id;
}
