/**
 * The registry's filesystem layout under --root:
 *
 *   blobs/sha256/<hex>                         content, shared by every repository
 *   ingest/                                    manifests on their way into blobs/
 *   uploads/<uuid>/{data,info.json}            upload sessions (see uploads.ts)
 *   repositories/<name>/_layers/sha256/<hex>   empty link: the blob belongs to <name>
 *   repositories/<name>/_manifests/revisions/sha256/<hex>   {"mediaType"}: the manifest belongs to <name>
 *   repositories/<name>/_manifests/tags/<tag>  the digest the tag points to
 *   repositories/<name>/_referrers/sha256/<subject-hex>/sha256/<hex>   empty link: <hex> has that subject
 *
 * Repository path components start with [a-z0-9], so the `_` directories
 * never collide with a nested repository's name. Every write is a rename of
 * a complete file, so readers see the old state or the new one.
 */
import { readdir, readFile, stat, writeFile, mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentStore } from '../image/content-store.ts';
import { isErrno } from '../util/errors.ts';
import { ensureDir, writeFileAtomic } from '../util/fsutil.ts';

export interface Revision {
  mediaType: string;
}

const HEX_RE = /^[a-f0-9]{64}$/;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return [];
    throw err;
  }
}

/** Unlink a file; false when it was not there. */
async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

const hexOf = (digest: string): string => digest.slice('sha256:'.length);

export class RegistryStorage {
  readonly root: string;
  readonly blobs: ContentStore;
  readonly uploadsDir: string;
  readonly reposDir: string;

  constructor(root: string) {
    this.root = root;
    this.blobs = new ContentStore(root);
    this.uploadsDir = join(root, 'uploads');
    this.reposDir = join(root, 'repositories');
  }

  async init(): Promise<void> {
    await this.blobs.init();
    await ensureDir(this.uploadsDir);
    await ensureDir(this.reposDir);
  }

  repoDir(name: string): string {
    return join(this.reposDir, ...name.split('/'));
  }

  async repoExists(name: string): Promise<boolean> {
    const dir = this.repoDir(name);
    return (await exists(join(dir, '_manifests'))) || (await exists(join(dir, '_layers')));
  }

  private layerLink(name: string, digest: string): string {
    return join(this.repoDir(name), '_layers', 'sha256', hexOf(digest));
  }

  private revisionPath(name: string, digest: string): string {
    return join(this.repoDir(name), '_manifests', 'revisions', 'sha256', hexOf(digest));
  }

  private tagsDir(name: string): string {
    return join(this.repoDir(name), '_manifests', 'tags');
  }

  private referrersDir(name: string, subject: string): string {
    return join(this.repoDir(name), '_referrers', 'sha256', hexOf(subject), 'sha256');
  }

  // --- blobs -------------------------------------------------------------

  /** Size and path of a blob that `name` may read (its own link, or one of its manifests); undefined if not. */
  async blobStat(name: string, digest: string): Promise<{ size: number; path: string } | undefined> {
    if (!(await exists(this.layerLink(name, digest))) && !(await exists(this.revisionPath(name, digest)))) return undefined;
    const path = this.blobs.path(digest);
    try {
      return { size: (await stat(path)).size, path };
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async hasLayerLink(name: string, digest: string): Promise<boolean> {
    return exists(this.layerLink(name, digest));
  }

  async linkBlob(name: string, digest: string): Promise<void> {
    const link = this.layerLink(name, digest);
    await mkdir(join(link, '..'), { recursive: true });
    await writeFile(link, '');
  }

  async unlinkBlob(name: string, digest: string): Promise<boolean> {
    return removeFile(this.layerLink(name, digest));
  }

  async layerLinks(name: string): Promise<string[]> {
    return (await listDir(join(this.repoDir(name), '_layers', 'sha256'))).filter((h) => HEX_RE.test(h)).map((h) => `sha256:${h}`);
  }

  // --- manifests ---------------------------------------------------------

  async revision(name: string, digest: string): Promise<Revision | undefined> {
    try {
      return JSON.parse(await readFile(this.revisionPath(name, digest), 'utf8')) as Revision;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async revisions(name: string): Promise<string[]> {
    return (await listDir(join(this.repoDir(name), '_manifests', 'revisions', 'sha256'))).filter((h) => HEX_RE.test(h)).map((h) => `sha256:${h}`);
  }

  /** Store manifest bytes exactly as given and make them part of `name`. */
  async putManifest(name: string, bytes: Buffer, digest: string, mediaType: string, subject?: string): Promise<void> {
    await this.blobs.putBytes(bytes, digest);
    const rev = this.revisionPath(name, digest);
    await mkdir(join(rev, '..'), { recursive: true });
    await writeFileAtomic(rev, JSON.stringify({ mediaType } satisfies Revision));
    if (subject) {
      const dir = this.referrersDir(name, subject);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, hexOf(digest)), '');
    }
  }

  async readManifest(digest: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.blobs.path(digest));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /** Remove a manifest from `name`: its revision, the tags pointing at it and its referrer link. */
  async deleteManifest(name: string, digest: string, subject?: string): Promise<boolean> {
    if (!(await removeFile(this.revisionPath(name, digest)))) return false;
    for (const tag of await this.tags(name)) {
      if ((await this.resolveTag(name, tag)) === digest) await removeFile(join(this.tagsDir(name), tag));
    }
    if (subject) await removeFile(join(this.referrersDir(name, subject), hexOf(digest)));
    return true;
  }

  // --- tags --------------------------------------------------------------

  async resolveTag(name: string, tag: string): Promise<string | undefined> {
    try {
      const d = (await readFile(join(this.tagsDir(name), tag), 'utf8')).trim();
      return /^sha256:[a-f0-9]{64}$/.test(d) ? d : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async setTag(name: string, tag: string, digest: string): Promise<void> {
    await ensureDir(this.tagsDir(name));
    await writeFileAtomic(join(this.tagsDir(name), tag), digest);
  }

  async deleteTag(name: string, tag: string): Promise<boolean> {
    return removeFile(join(this.tagsDir(name), tag));
  }

  /** Tags in ASCII order. */
  async tags(name: string): Promise<string[]> {
    // writeFileAtomic's temporary files end in .tmp-<8 hex>.
    return (await listDir(this.tagsDir(name))).filter((t) => !/\.tmp-[0-9a-f]{8}$/.test(t)).sort();
  }

  // --- referrers ---------------------------------------------------------

  async referrers(name: string, subject: string): Promise<string[]> {
    return (await listDir(this.referrersDir(name, subject))).filter((h) => HEX_RE.test(h)).map((h) => `sha256:${h}`);
  }

  // --- catalog -----------------------------------------------------------

  /** Every repository holding a manifest, in ASCII order (the catalog). */
  async repositories(): Promise<string[]> {
    return this.walkRepositories((entries) => entries.includes('_manifests'));
  }

  /** Every repository with any link, blobs or manifests (what gc walks). */
  async allRepositories(): Promise<string[]> {
    return this.walkRepositories((entries) => entries.includes('_manifests') || entries.includes('_layers'));
  }

  private async walkRepositories(isRepo: (entries: string[]) => boolean): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      const entries = await listDir(dir);
      if (prefix && isRepo(entries)) out.push(prefix);
      for (const e of entries) {
        if (e.startsWith('_') || e.startsWith('.')) continue;
        await walk(join(dir, e), prefix ? `${prefix}/${e}` : e);
      }
    };
    await walk(this.reposDir, '');
    return out.sort();
  }
}
