/**
 * `berth registry gc`: mark every blob a manifest of any repository refers
 * to (config, layers, index entries, the manifests themselves), then delete
 * the rest from the blob store along with the repository links to them.
 * With deleteUntagged, manifests not reachable from a tag (through indexes
 * and referrers) are removed first. Blobs written after the collection began
 * are left alone, but run it against a stopped or --read-only server: a blob
 * uploaded before the mark and referenced after it would otherwise be lost.
 */
import { stat, unlink } from 'node:fs/promises';
import { isErrno } from '../util/errors.ts';
import { parseManifest } from './manifest.ts';
import type { ParsedManifest } from './manifest.ts';
import type { RegistryStorage } from './storage.ts';
import type { UploadSessions } from './uploads.ts';

export interface GcOptions {
  dryRun?: boolean;
  deleteUntagged?: boolean;
  /** Upload sessions idle for longer than this are removed too. */
  uploadMaxAgeMs?: number;
  log?: (line: string) => void;
}

export interface GcResult {
  blobsRemoved: string[];
  bytesFreed: number;
  manifestsRemoved: { repository: string; digest: string }[];
  linksRemoved: number;
  uploadsRemoved: string[];
}

async function parsedManifest(storage: RegistryStorage, repo: string, digest: string): Promise<ParsedManifest | undefined> {
  const rev = await storage.revision(repo, digest);
  const bytes = await storage.readManifest(digest);
  if (!rev || !bytes) return undefined;
  try {
    return parseManifest(bytes, rev.mediaType);
  } catch {
    return undefined;
  }
}

export async function collectGarbage(storage: RegistryStorage, uploads: UploadSessions, opts: GcOptions = {}): Promise<GcResult> {
  const log = opts.log ?? (() => undefined);
  const dry = opts.dryRun ?? false;
  const started = Date.now();
  const result: GcResult = { blobsRemoved: [], bytesFreed: 0, manifestsRemoved: [], linksRemoved: 0, uploadsRemoved: [] };
  const marked = new Set<string>();
  const repos = await storage.allRepositories();

  for (const repo of repos) {
    const revisions = await storage.revisions(repo);
    const parsed = new Map<string, ParsedManifest | undefined>();
    for (const d of revisions) parsed.set(d, await parsedManifest(storage, repo, d));
    let keep = new Set(revisions);
    if (opts.deleteUntagged) {
      keep = new Set();
      const visit = (d: string) => {
        if (keep.has(d) || !parsed.has(d)) return;
        keep.add(d);
        for (const child of parsed.get(d)?.manifests ?? []) visit(child.digest);
      };
      for (const tag of await storage.tags(repo)) {
        const d = await storage.resolveTag(repo, tag);
        if (d) visit(d);
      }
      // Referrers (signatures, SBOMs) live as long as their subject.
      for (let grew = true; grew; ) {
        grew = false;
        for (const [d, p] of parsed) {
          if (!keep.has(d) && p?.subject && keep.has(p.subject.digest)) {
            visit(d);
            grew = true;
          }
        }
      }
      for (const d of revisions) {
        if (keep.has(d)) continue;
        log(`${dry ? 'would remove' : 'removing'} manifest ${repo}@${d}`);
        result.manifestsRemoved.push({ repository: repo, digest: d });
        if (!dry) await storage.deleteManifest(repo, d, parsed.get(d)?.subject?.digest);
      }
    }
    for (const d of keep) {
      marked.add(d);
      const p = parsed.get(d);
      for (const b of p?.blobs ?? []) marked.add(b.digest);
      for (const m of p?.manifests ?? []) marked.add(m.digest);
    }
  }

  const removed = new Set<string>();
  for (const digest of await storage.blobs.list()) {
    if (marked.has(digest)) continue;
    let st;
    try {
      st = await stat(storage.blobs.path(digest));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      throw err;
    }
    if (st.mtimeMs >= started) continue;
    log(`${dry ? 'would remove' : 'removing'} blob ${digest} (${st.size} bytes)`);
    result.blobsRemoved.push(digest);
    result.bytesFreed += st.size;
    removed.add(digest);
    if (!dry) await unlink(storage.blobs.path(digest)).catch(() => undefined);
  }

  // Links to blobs that are gone would make a repository claim what it cannot serve.
  for (const repo of repos) {
    for (const d of await storage.layerLinks(repo)) {
      if (removed.has(d) || !(await storage.blobs.has(d))) {
        result.linksRemoved++;
        if (!dry) await storage.unlinkBlob(repo, d);
      }
    }
  }

  if (opts.uploadMaxAgeMs !== undefined) result.uploadsRemoved = await uploads.purge(opts.uploadMaxAgeMs, dry);
  return result;
}
