import { mkdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerRecord } from './container-types.ts';
import { ensureDir, readJson, removeTree, writeJsonAtomic } from '../util/fsutil.ts';
import { conflict, invalid, notFound } from '../util/errors.ts';

const NAME_RE = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/**
 * Container records: one directory per container under the data root, its
 * record written atomically as `config.v2.json`, and an in-memory index by
 * ID and name.
 */
export class ContainerStore {
  readonly root: string;
  private readonly byId = new Map<string, ContainerRecord>();
  private readonly byName = new Map<string, string>();

  constructor(dataRoot: string) {
    this.root = join(dataRoot, 'containers');
  }

  async init(): Promise<ContainerRecord[]> {
    await ensureDir(this.root);
    const loaded: ContainerRecord[] = [];
    for (const id of await readdir(this.root)) {
      if (!/^[a-f0-9]{64}$/.test(id)) continue;
      const rec = await readJson<ContainerRecord>(join(this.root, id, 'config.v2.json'));
      if (!rec) {
        // A directory without a record is a create that never finished.
        await removeTree(join(this.root, id));
        continue;
      }
      this.byId.set(rec.Id, rec);
      this.byName.set(rec.Name, rec.Id);
      loaded.push(rec);
    }
    return loaded;
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  all(): ContainerRecord[] {
    return [...this.byId.values()];
  }

  get(id: string): ContainerRecord | undefined {
    return this.byId.get(id);
  }

  nameTaken(name: string): boolean {
    return this.byName.has(name.startsWith('/') ? name : `/${name}`);
  }

  /** Find by full ID, exact name, or unique ID prefix, as docker does. */
  find(ref: string): ContainerRecord | undefined {
    if (!ref) return undefined;
    const exact = this.byId.get(ref);
    if (exact) return exact;
    const byName = this.byName.get(ref.startsWith('/') ? ref : `/${ref}`);
    if (byName) return this.byId.get(byName);
    if (/^[a-f0-9]+$/.test(ref)) {
      const matches = [...this.byId.keys()].filter((id) => id.startsWith(ref));
      if (matches.length > 1) throw invalid(`multiple IDs found with provided prefix: ${ref}`);
      if (matches.length === 1) return this.byId.get(matches[0]!);
    }
    return undefined;
  }

  mustFind(ref: string): ContainerRecord {
    const c = this.find(ref);
    if (!c) throw notFound(`No such container: ${ref}`);
    return c;
  }

  static validateName(name: string): string {
    if (!NAME_RE.test(name)) throw invalid(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    return name.startsWith('/') ? name : `/${name}`;
  }

  /** Claim a name for a container; 409 if another holds it. */
  reserveName(name: string, id: string): void {
    const holder = this.byName.get(name);
    if (holder && holder !== id) {
      throw conflict(`Conflict. The container name "${name}" is already in use by container "${holder}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
    this.byName.set(name, id);
  }

  releaseName(name: string, id: string): void {
    if (this.byName.get(name) === id) this.byName.delete(name);
  }

  async add(rec: ContainerRecord): Promise<void> {
    // On the path of every run: a direct call, not a thread-pool round trip.
    mkdirSync(this.dir(rec.Id), { recursive: true, mode: 0o710 });
    this.byId.set(rec.Id, rec);
    await this.save(rec);
  }

  /**
   * Persist a record. Container state is also recoverable from the monitor's
   * exit file, so state changes skip the fsync that creation pays for.
   */
  async save(rec: ContainerRecord, durable = false): Promise<void> {
    await writeJsonAtomic(join(this.dir(rec.Id), 'config.v2.json'), rec, { durable });
  }

  /** Drop a container from the index (its name becomes free); files stay until removeFiles. */
  unlist(rec: ContainerRecord): void {
    this.byId.delete(rec.Id);
    this.releaseName(rec.Name, rec.Id);
  }

  async removeFiles(id: string): Promise<void> {
    await removeTree(this.dir(id));
  }

  async remove(rec: ContainerRecord): Promise<void> {
    this.unlist(rec);
    await this.removeFiles(rec.Id);
  }
}
