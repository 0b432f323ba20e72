/**
 * Manifests as registries serve them: telling the kinds apart, checking the
 * fields berth relies on, and picking one platform out of an index.
 */
import { invalid } from '../util/errors.ts';
import { MediaType } from '../image/types.ts';
import type { Descriptor, Index, Manifest, Platform } from '../image/types.ts';

/** What berth asks registries for, best first. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
  // Asked for so that an old image is recognised and refused clearly rather than mis-parsed.
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v1+json',
].join(', ');

export const LAYER_TYPES = new Set<string>([
  MediaType.dockerLayer,
  MediaType.dockerForeignLayer,
  'application/vnd.docker.image.rootfs.diff.tar',
  MediaType.ociLayer,
  MediaType.ociLayerGzip,
  MediaType.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

export type ParsedManifest = { kind: 'index'; mediaType: string; index: Index } | { kind: 'manifest'; mediaType: string; manifest: Manifest };

export class Schema1Error extends Error {}

function checkDescriptor(v: unknown, where: string): Descriptor {
  const d = v as Partial<Descriptor> | null;
  if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest) || typeof d.size !== 'number' || d.size < 0 || !Number.isSafeInteger(d.size)) {
    throw invalid(`invalid manifest: bad descriptor in ${where}`);
  }
  if (typeof d.mediaType !== 'string') throw invalid(`invalid manifest: descriptor without media type in ${where}`);
  return d as Descriptor;
}

/**
 * Parses a manifest body. `contentType` is the registry's Content-Type; the
 * body's own mediaType wins when present (registries disagree on defaults).
 */
export function parseManifest(body: Buffer, contentType: string | undefined, name: string): ParsedManifest {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw invalid(`invalid manifest for ${name}: not JSON`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw invalid(`invalid manifest for ${name}: not a JSON object`);
  const declared = typeof j.mediaType === 'string' ? j.mediaType : undefined;
  const ct = contentType?.split(';')[0]?.trim();
  const mediaType = declared ?? (ct && ct !== 'application/json' && ct !== 'text/plain' ? ct : undefined) ?? (Array.isArray(j.manifests) ? MediaType.ociIndex : MediaType.ociManifest);
  if (j.schemaVersion === 1 || mediaType.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    throw new Schema1Error(
      `${name} is a Docker image manifest version 2, schema 1 image, a format that is no longer supported; ` +
        'push it again with a current client so that it is stored as a schema 2 or OCI image',
    );
  }
  if (j.schemaVersion !== 2) throw invalid(`invalid manifest for ${name}: unsupported schemaVersion ${String(j.schemaVersion)}`);
  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    if (!Array.isArray(j.manifests)) throw invalid(`invalid manifest for ${name}: an index without manifests`);
    j.manifests.forEach((m, i) => checkDescriptor(m, `manifests[${i}]`));
    return { kind: 'index', mediaType, index: j as unknown as Index };
  }
  if (mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest) {
    checkDescriptor(j.config, 'config');
    if (!Array.isArray(j.layers)) throw invalid(`invalid manifest for ${name}: no layers`);
    j.layers.forEach((l, i) => checkDescriptor(l, `layers[${i}]`));
    return { kind: 'manifest', mediaType, manifest: j as unknown as Manifest };
  }
  throw invalid(`unsupported manifest media type for ${name}: ${mediaType}`);
}

/** Normalises architecture spellings (x86_64 → amd64, aarch64 → arm64) and arm variants. */
export function normalisePlatform(p: Platform): Platform {
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  if (arch === 'x86_64' || arch === 'x86-64') arch = 'amd64';
  if (arch === 'i386') arch = '386';
  if (arch === 'aarch64') arch = 'arm64';
  if (arch === 'arm64' && (variant === '8' || variant === 'v8')) variant = undefined;
  if (arch === 'arm' && variant === undefined) variant = 'v7';
  if (arch === 'arm' && /^\d$/.test(variant ?? '')) variant = `v${variant}`;
  const out: Platform = { os: p.os.toLowerCase(), architecture: arch };
  if (variant) out.variant = variant;
  return out;
}

export function platformString(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/**
 * Chooses the manifest for `want` from an index: the same OS and
 * architecture, preferring the exact variant; attestation manifests
 * (unknown/unknown) are never chosen.
 */
export function selectPlatform(index: Index, want: Platform): Descriptor | undefined {
  const w = normalisePlatform(want);
  let fallback: Descriptor | undefined;
  for (const d of index.manifests) {
    if (!d.platform || d.mediaType === MediaType.ociIndex || d.mediaType === MediaType.dockerManifestList) continue;
    const p = normalisePlatform(d.platform);
    if (p.os !== w.os || p.architecture !== w.architecture) continue;
    if (p.variant === w.variant) return d;
    // A lower arm variant still runs on a higher one; any variant will do when none was asked.
    if (!w.variant || (p.variant && w.variant && p.architecture === 'arm' && p.variant < w.variant)) fallback ??= d;
  }
  return fallback;
}
