/** Manifest endpoints: GET/HEAD with media-type negotiation, PUT with validation, DELETE. */
import { sha256Digest } from '../image/content-store.ts';
import { isDigest, isValidTag } from '../image/reference.ts';
import type { Descriptor } from '../image/types.ts';
import { RegistryError, regError } from './errors.ts';
import type { ErrorEntry } from './errors.ts';
import { acceptedTypes, readBodyBuffer } from './http.ts';
import { accepts, isIndexType, parseManifest } from './manifest.ts';
import type { Ctx } from './routes.ts';

/** Manifests larger than this are refused (the spec asks registries to take at least 4 MB). */
export const MANIFEST_LIMIT = 4 << 20;

const unknown = (ref: string) => regError('MANIFEST_UNKNOWN', 'manifest unknown to registry', { detail: { reference: ref } });

/** Tag or digest → digest, or MANIFEST_UNKNOWN. */
async function resolve(ctx: Ctx, name: string, ref: string): Promise<string> {
  if (isDigest(ref)) {
    if (!ref.startsWith('sha256:')) throw unknown(ref);
    return ref;
  }
  if (!isValidTag(ref)) throw unknown(ref);
  const d = await ctx.storage.resolveTag(name, ref);
  if (!d) throw unknown(ref);
  return d;
}

async function load(ctx: Ctx, name: string, digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
  const rev = await ctx.storage.revision(name, digest);
  if (!rev) return undefined;
  const bytes = await ctx.storage.readManifest(digest);
  return bytes ? { bytes, mediaType: rev.mediaType } : undefined;
}

export async function getManifest(ctx: Ctx, name: string, ref: string): Promise<void> {
  const { req, res } = ctx;
  let digest = await resolve(ctx, name, ref);
  let m = await load(ctx, name, digest);
  if (!m) throw unknown(ref);
  const accepted = acceptedTypes(req);
  // A digest names exact bytes; a tag is negotiated. A client that cannot
  // read an index gets the linux/amd64 entry, as older clients expect.
  if (!isDigest(ref) && !accepts(accepted, m.mediaType)) {
    let chosen: { digest: string; bytes: Buffer; mediaType: string } | undefined;
    if (isIndexType(m.mediaType)) {
      const entries = parseManifest(m.bytes, m.mediaType).manifests;
      const entry = entries.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64' && accepts(accepted, e.mediaType));
      const child = entry && (await load(ctx, name, entry.digest));
      if (entry && child) chosen = { digest: entry.digest, ...child };
    }
    if (!chosen) {
      throw regError('MANIFEST_UNKNOWN', `manifest of type ${m.mediaType} is not acceptable (Accept: ${accepted.join(', ')})`, { detail: { reference: ref } });
    }
    digest = chosen.digest;
    m = chosen;
  }
  const etag = `"${digest}"`;
  const headers = { 'Content-Type': m.mediaType, 'Content-Length': m.bytes.length, 'Docker-Content-Digest': digest, ETag: etag };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : m.bytes);
}

export async function putManifest(ctx: Ctx, name: string, ref: string): Promise<void> {
  const byDigest = isDigest(ref);
  if (!byDigest && !isValidTag(ref)) throw regError('MANIFEST_INVALID', `invalid tag: ${ref}`);
  const extraTags = byDigest ? ctx.url.searchParams.getAll('tag') : [];
  for (const t of extraTags) if (!isValidTag(t)) throw regError('MANIFEST_INVALID', `invalid tag: ${t}`);
  const bytes = await readBodyBuffer(ctx.req, MANIFEST_LIMIT).catch((err: unknown) => {
    if (err instanceof RegistryError && err.status === 413) throw regError('MANIFEST_INVALID', `manifest larger than ${MANIFEST_LIMIT} bytes`, { status: 413 });
    throw err;
  });
  const parsed = parseManifest(bytes, ctx.req.headers['content-type']);
  const digest = sha256Digest(bytes);
  if (byDigest && ref !== digest) throw regError('DIGEST_INVALID', 'manifest digest does not match its content', { detail: { expected: ref, actual: digest } });

  const missing: ErrorEntry[] = [];
  const miss = (d: Descriptor) => missing.push({ code: 'MANIFEST_BLOB_UNKNOWN', message: 'manifest references a manifest or blob unknown to registry', detail: { digest: d.digest } });
  const sizeMismatch = (d: Descriptor, size: number) => regError('MANIFEST_INVALID', `manifest invalid: ${d.digest} is ${size} bytes, the descriptor says ${d.size}`);
  for (const d of parsed.blobs) {
    const st = d.digest.startsWith('sha256:') ? await ctx.storage.blobStat(name, d.digest) : undefined;
    if (!st) {
      // Foreign layers live elsewhere; their urls say where.
      if (!d.urls?.length) miss(d);
    } else if (st.size !== d.size) throw sizeMismatch(d, st.size);
  }
  for (const d of parsed.manifests) {
    const child = d.digest.startsWith('sha256:') ? await load(ctx, name, d.digest) : undefined;
    if (!child) miss(d);
    else if (child.bytes.length !== d.size) throw sizeMismatch(d, child.bytes.length);
  }
  if (missing.length) {
    const [first, ...more] = missing;
    throw new RegistryError(first!.code, first!.message, { detail: first!.detail, more });
  }

  // The subject need not exist yet: referrers may be pushed before it.
  const subject = parsed.subject?.digest.startsWith('sha256:') ? parsed.subject.digest : undefined;
  await ctx.storage.putManifest(name, bytes, digest, parsed.mediaType, subject);
  if (!byDigest) await ctx.storage.setTag(name, ref, digest);
  for (const t of extraTags) await ctx.storage.setTag(name, t, digest);

  const headers: Record<string, string | number> = { Location: `/v2/${name}/manifests/${digest}`, 'Docker-Content-Digest': digest, 'Content-Length': 0 };
  if (parsed.subject) headers['OCI-Subject'] = parsed.subject.digest;
  if (extraTags.length) headers['OCI-Tag'] = extraTags.join(', ');
  ctx.res.writeHead(201, headers).end();
}

export async function deleteManifest(ctx: Ctx, name: string, ref: string): Promise<void> {
  if (isDigest(ref)) {
    const digest = await resolve(ctx, name, ref);
    const m = await load(ctx, name, digest);
    if (!m) throw unknown(ref);
    let subject: string | undefined;
    try {
      subject = parseManifest(m.bytes, m.mediaType).subject?.digest;
    } catch {
      subject = undefined;
    }
    if (!(await ctx.storage.deleteManifest(name, digest, subject))) throw unknown(ref);
  } else {
    if (!isValidTag(ref) || !(await ctx.storage.deleteTag(name, ref))) throw unknown(ref);
  }
  ctx.res.writeHead(202, { 'Content-Length': 0 }).end();
}
