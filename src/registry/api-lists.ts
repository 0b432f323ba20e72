/** Listing endpoints: tags (n/last pagination), the catalog, and the referrers API. */
import { MediaType } from '../image/types.ts';
import type { Descriptor } from '../image/types.ts';
import { checkDigest } from './api-blobs.ts';
import { regError } from './errors.ts';
import { nextLink, sendJson } from './http.ts';
import { parseManifest } from './manifest.ts';
import type { Ctx } from './routes.ts';

/** One page of an ASCII-sorted list: entries after `last`, at most `n`, and the Link to the rest. */
function paginate(items: string[], url: URL): { page: string[]; link?: string } {
  const q = url.searchParams;
  const last = q.get('last');
  let rest = last ? items.filter((t) => t > last) : items;
  const nRaw = q.get('n');
  if (nRaw === null || nRaw === '') return { page: rest };
  const n = Number(nRaw);
  if (!Number.isSafeInteger(n) || n < 0) throw regError('UNSUPPORTED', `invalid page size n=${nRaw}`, { status: 400 });
  if (rest.length <= n) return { page: rest };
  rest = rest.slice(0, n);
  if (n === 0) return { page: rest };
  return { page: rest, link: nextLink(url.pathname, { n: String(n), last: rest[n - 1]! }) };
}

export async function listTags(ctx: Ctx, name: string): Promise<void> {
  if (!(await ctx.storage.repoExists(name))) throw regError('NAME_UNKNOWN', 'repository name not known to registry', { detail: { name } });
  const { page, link } = paginate(await ctx.storage.tags(name), ctx.url);
  sendJson(ctx.res, 200, { name, tags: page }, link ? { Link: link } : {});
}

export async function catalog(ctx: Ctx): Promise<void> {
  const { page, link } = paginate(await ctx.storage.repositories(), ctx.url);
  sendJson(ctx.res, 200, { repositories: page }, link ? { Link: link } : {});
}

/** GET /v2/<name>/referrers/<digest>: manifests whose subject is <digest>, as an OCI index (never 404). */
export async function referrers(ctx: Ctx, name: string, ref: string): Promise<void> {
  const subject = checkDigest(ref);
  const filter = ctx.url.searchParams.get('artifactType');
  const out: Descriptor[] = [];
  for (const digest of (await ctx.storage.referrers(name, subject)).sort()) {
    const rev = await ctx.storage.revision(name, digest);
    const bytes = rev && (await ctx.storage.readManifest(digest));
    if (!rev || !bytes) continue;
    let parsed;
    try {
      parsed = parseManifest(bytes, rev.mediaType);
    } catch {
      continue;
    }
    if (filter !== null && parsed.artifactType !== filter) continue;
    const d: Descriptor & { artifactType?: string } = { mediaType: rev.mediaType, digest, size: bytes.length };
    if (parsed.artifactType) d.artifactType = parsed.artifactType;
    if (parsed.annotations) d.annotations = parsed.annotations;
    out.push(d);
  }
  const headers: Record<string, string> = filter !== null ? { 'OCI-Filters-Applied': 'artifactType' } : {};
  sendJson(ctx.res, 200, { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: out }, headers, MediaType.ociIndex);
}
