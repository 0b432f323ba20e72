/**
 * Manifests as the registry sees them: which media type a pushed document
 * is, whether it is well formed, and what it refers to (blobs for an image
 * manifest, manifests for an index, and the optional `subject`).
 */
import { isDigest } from '../image/reference.ts';
import { MediaType } from '../image/types.ts';
import type { Descriptor } from '../image/types.ts';
import { regError } from './errors.ts';

export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList];
const INDEX_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.dockerManifestList];

export const isIndexType = (t: string): boolean => INDEX_TYPES.includes(t);

export interface ParsedManifest {
  mediaType: string;
  /** Config and layers of an image manifest. */
  blobs: Descriptor[];
  /** Entries of an index. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** What the referrers API reports: artifactType, else (image manifests) the config's media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

type Json = Record<string, unknown>;

const invalid = (message: string) => regError('MANIFEST_INVALID', `manifest invalid: ${message}`);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function descriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalid(`${where} is not a descriptor`);
  if (typeof v.mediaType !== 'string' || !v.mediaType) throw invalid(`${where} has no mediaType`);
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) throw invalid(`${where} has an invalid digest`);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw invalid(`${where} has an invalid size`);
  if (v.urls !== undefined && (!Array.isArray(v.urls) || !v.urls.every((u) => typeof u === 'string'))) throw invalid(`${where} has invalid urls`);
  return v as unknown as Descriptor;
}

function annotations(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) throw invalid('annotations must be a map of strings');
  return v as Record<string, string>;
}

/** The media type without parameters, lowercased. */
export function bareType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid('not valid JSON');
  }
  if (!isObject(doc)) throw invalid('not a JSON object');
  if (doc.schemaVersion === 1) throw invalid('schema 1 manifests are not supported');
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');

  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (doc.mediaType !== undefined && declared === undefined) throw invalid('mediaType must be a string');
  const header = bareType(contentType);
  const headerIsManifest = MANIFEST_MEDIA_TYPES.includes(header);
  if (declared !== undefined && !MANIFEST_MEDIA_TYPES.includes(declared)) throw invalid(`unsupported media type ${declared}`);
  if (declared !== undefined && headerIsManifest && declared !== header) {
    throw invalid(`mediaType ${declared} does not match Content-Type ${header}`);
  }
  const mediaType = declared ?? (headerIsManifest ? header : Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest);

  const out: ParsedManifest = { mediaType, blobs: [], manifests: [] };
  const ann = annotations(doc.annotations);
  if (ann) out.annotations = ann;
  if (doc.subject !== undefined) out.subject = descriptor(doc.subject, 'subject');
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== 'string') throw invalid('artifactType must be a string');
    out.artifactType = doc.artifactType;
  }

  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    out.manifests = doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
  } else {
    if (doc.config === undefined) throw invalid('an image manifest needs a config');
    const config = descriptor(doc.config, 'config');
    if (!Array.isArray(doc.layers)) throw invalid('an image manifest needs a layers array');
    out.blobs = [config, ...doc.layers.map((l, i) => descriptor(l, `layers[${i}]`))];
    out.artifactType ??= config.mediaType;
  }
  return out;
}

/** Does an Accept list admit `type`? An empty list admits anything. */
export function accepts(accepted: string[], type: string): boolean {
  if (accepted.length === 0) return true;
  const major = type.split('/')[0];
  return accepted.some((a) => a === type || a === '*/*' || a === `${major}/*`);
}
