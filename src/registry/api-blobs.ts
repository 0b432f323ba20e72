/** Blob endpoints: GET/HEAD (with Range) and DELETE, and the upload session endpoints. */
import { isDigest, isValidRepositoryPath } from '../image/reference.ts';
import { regError } from './errors.ts';
import { declaredLength, hasBody, parseByteRange, parseContentRange, sendEmpty } from './http.ts';
import type { Ctx } from './routes.ts';
import { UploadSessions } from './uploads.ts';
import { sendFileRange } from './send-file.ts';

/** A digest this registry can store (sha256), or DIGEST_INVALID. */
export function checkDigest(s: string | null): string {
  if (s === null || s === '') throw regError('DIGEST_INVALID', 'digest missing');
  if (!isDigest(s)) throw regError('DIGEST_INVALID', `invalid digest: ${s}`);
  if (!s.startsWith('sha256:')) throw regError('DIGEST_INVALID', `unsupported digest algorithm: ${s}`);
  return s;
}

const blobLocation = (name: string, digest: string) => `/v2/${name}/blobs/${digest}`;
const uploadLocation = (name: string, uuid: string) => `/v2/${name}/blobs/uploads/${uuid}`;

export async function getBlob(ctx: Ctx, name: string, ref: string): Promise<void> {
  const { req, res } = ctx;
  const digest = checkDigest(ref);
  const st = await ctx.storage.blobStat(name, digest);
  if (!st) throw regError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
  const etag = `"${digest}"`;
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    ETag: etag,
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'max-age=31536000',
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  const range = req.method === 'GET' ? parseByteRange(req.headers.range, st.size) : undefined;
  if (range === 'unsatisfiable') {
    throw regError('BLOB_UNKNOWN', `requested range not satisfiable for a blob of ${st.size} bytes`, { status: 416, headers: { 'Content-Range': `bytes */${st.size}` } });
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? st.size - 1;
  headers['Content-Length'] = end - start + 1;
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return;
  }
  await sendFileRange(res, st.path, start, end);
}

export async function deleteBlob(ctx: Ctx, name: string, ref: string): Promise<void> {
  const digest = checkDigest(ref);
  if (!(await ctx.storage.unlinkBlob(name, digest))) throw regError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
  sendEmpty(ctx.res, 202);
}

/** POST /v2/<name>/blobs/uploads/: a cross-repository mount, a monolithic upload (?digest=), or a new session. */
export async function startUpload(ctx: Ctx, name: string): Promise<void> {
  const q = ctx.url.searchParams;
  const mount = q.get('mount');
  if (mount !== null) {
    const digest = checkDigest(mount);
    const from = q.get('from');
    // Mount only from a repository the client may pull from; otherwise fall
    // back to an ordinary upload session, as the spec allows.
    if (from && isValidRepositoryPath(from) && ctx.auth.allows(ctx.principal, { type: 'repository', name: from, actions: ['pull'] }) && (await ctx.storage.blobStat(from, digest))) {
      await ctx.storage.linkBlob(name, digest);
      sendEmpty(ctx.res, 201, { Location: blobLocation(name, digest), 'Docker-Content-Digest': digest });
      return;
    }
  }
  const digestParam = q.get('digest');
  if (digestParam !== null && mount === null) {
    const digest = checkDigest(digestParam);
    const uuid = await ctx.uploads.create(name);
    try {
      await ctx.uploads.complete(uuid, name, digest, ctx.req);
    } catch (err) {
      await ctx.uploads.cancel(uuid, name).catch(() => undefined);
      throw err;
    }
    sendEmpty(ctx.res, 201, { Location: blobLocation(name, digest), 'Docker-Content-Digest': digest });
    return;
  }
  const uuid = await ctx.uploads.create(name);
  sendEmpty(ctx.res, 202, { Location: uploadLocation(name, uuid), Range: '0-0', 'Docker-Upload-UUID': uuid });
}

function chunkRange(ctx: Ctx) {
  const range = parseContentRange(ctx.req.headers['content-range']);
  const len = declaredLength(ctx.req);
  if (range && len !== undefined && len !== range.end - range.start + 1) {
    throw regError('SIZE_INVALID', `Content-Length ${len} does not match Content-Range ${range.start}-${range.end}`);
  }
  return range;
}

export async function patchUpload(ctx: Ctx, name: string, uuid: string): Promise<void> {
  const range = chunkRange(ctx);
  const offset = await ctx.uploads.append(uuid, name, ctx.req, range);
  sendEmpty(ctx.res, 202, { Location: uploadLocation(name, uuid), Range: UploadSessions.rangeHeader(offset), 'Docker-Upload-UUID': uuid });
}

export async function putUpload(ctx: Ctx, name: string, uuid: string): Promise<void> {
  const digest = checkDigest(ctx.url.searchParams.get('digest'));
  const range = chunkRange(ctx);
  await ctx.uploads.complete(uuid, name, digest, hasBody(ctx.req) ? ctx.req : undefined, range);
  sendEmpty(ctx.res, 201, { Location: blobLocation(name, digest), 'Docker-Content-Digest': digest });
}

export async function getUpload(ctx: Ctx, name: string, uuid: string): Promise<void> {
  const offset = await ctx.uploads.offset(uuid, name);
  sendEmpty(ctx.res, 204, { Location: uploadLocation(name, uuid), Range: UploadSessions.rangeHeader(offset), 'Docker-Upload-UUID': uuid });
}

export async function deleteUpload(ctx: Ctx, name: string, uuid: string): Promise<void> {
  await ctx.uploads.cancel(uuid, name);
  sendEmpty(ctx.res, 204);
}
