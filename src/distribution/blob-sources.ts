/**
 * Which repositories each blob was last seen in (pulled from or pushed to),
 * so a push can ask the registry to mount a blob from a repository it
 * already holds it in instead of uploading it again. Kept small: a few
 * repositories per blob, written atomically.
 */
import { join } from 'node:path';
import { ensureParent, readJson, writeJsonAtomic } from '../util/fsutil.ts';

const PER_BLOB = 5;

export class BlobSources {
  private readonly path: string;
  private map: Record<string, string[]> = {};
  private loaded = false;
  private saving: Promise<void> = Promise.resolve();

  constructor(dataRoot: string) {
    this.path = join(dataRoot, 'distribution', 'blob-sources.json');
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.map = (await readJson<Record<string, string[]>>(this.path)) ?? {};
    this.loaded = true;
  }

  /** Repositories (`host/path`) known to hold the blob, most recent first. */
  async get(digest: string): Promise<string[]> {
    await this.load();
    return this.map[digest] ?? [];
  }

  async add(digests: string[], repo: string): Promise<void> {
    await this.load();
    for (const d of digests) this.map[d] = [repo, ...(this.map[d] ?? []).filter((r) => r !== repo)].slice(0, PER_BLOB);
    const snapshot = JSON.parse(JSON.stringify(this.map)) as Record<string, string[]>;
    this.saving = this.saving.then(async () => {
      await ensureParent(this.path);
      await writeJsonAtomic(this.path, snapshot, { durable: false });
    }).catch(() => undefined);
    await this.saving;
  }
}
