/**
 * Network records on disk: one JSON file per network under
 * <data-root>/network/, written atomically.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkRecord } from './types.ts';
import { ensureDir, writeFileAtomic } from '../util/fsutil.ts';
import { BerthError, conflict } from '../util/errors.ts';
import { log } from '../util/log.ts';

export class NetworkStore {
  private readonly dir: string;
  private readonly byId = new Map<string, NetworkRecord>();

  constructor(dataRoot: string) {
    this.dir = join(dataRoot, 'network');
  }

  async init(): Promise<NetworkRecord[]> {
    await ensureDir(this.dir, 0o700);
    for (const f of await readdir(this.dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const rec = JSON.parse(await readFile(join(this.dir, f), 'utf8')) as NetworkRecord;
        this.byId.set(rec.Id, rec);
      } catch (err) {
        log.warn('skipping unreadable network record', { file: f, error: String(err) });
      }
    }
    return this.all();
  }

  all(): NetworkRecord[] {
    return [...this.byId.values()];
  }

  /** By full ID, exact name, or unique ID prefix, as docker resolves network references. */
  find(ref: string): NetworkRecord | undefined {
    const exact = this.byId.get(ref);
    if (exact) return exact;
    const byName = this.all().find((n) => n.Name === ref);
    if (byName) return byName;
    const prefixed = this.all().filter((n) => n.Id.startsWith(ref));
    if (prefixed.length > 1) throw new BerthError('InvalidParameter', `network ${ref} is ambiguous (${prefixed.length} matches found based on ID prefix)`);
    return prefixed[0];
  }

  mustFind(ref: string): NetworkRecord {
    const n = this.find(ref);
    if (!n) throw new BerthError('NotFound', `network ${ref} not found`);
    return n;
  }

  async add(rec: NetworkRecord): Promise<void> {
    if (this.all().some((n) => n.Name === rec.Name)) throw conflict(`network with name ${rec.Name} already exists`);
    this.byId.set(rec.Id, rec);
    await this.save(rec);
  }

  async save(rec: NetworkRecord): Promise<void> {
    await writeFileAtomic(join(this.dir, `${rec.Id}.json`), JSON.stringify(rec, null, 1));
  }

  async remove(rec: NetworkRecord): Promise<void> {
    this.byId.delete(rec.Id);
    await rm(join(this.dir, `${rec.Id}.json`), { force: true });
  }
}
