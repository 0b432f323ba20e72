/**
 * Image references: parsing, normalisation and the spellings clients expect.
 *
 * Grammar (the distribution reference format every registry client speaks):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path
 *   domain     := host [ ":" port ]        host: DNS name, IPv4 or [IPv6]
 *   path       := component ( "/" component )*
 *   component  := [a-z0-9]+ ( separator [a-z0-9]+ )*
 *   separator  := "." | "_" | "__" | "-"+
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex
 *
 * Names are normalised the way clients expect: with no domain the name lives
 * on docker.io, a single-component docker.io name lives under library/, and
 * the legacy index.docker.io host is folded into docker.io.
 */
import { invalid } from '../util/errors.ts';

export interface Reference {
  /** Registry domain, e.g. `docker.io`, `localhost:5000`. */
  domain: string;
  /** Repository path within the domain, e.g. `library/busybox`. */
  path: string;
  tag?: string;
  /** `algorithm:hex` */
  digest?: string;
}

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const DEFAULT_REGISTRY_HOST = 'registry-1.docker.io';
const OFFICIAL_PREFIX = 'library/';
const NAME_MAX = 255;

// Building blocks, kept as source strings so the anchored whole-reference
// pattern below is assembled from the same pieces as the single-part checks.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|-+)';
const COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const PATH = `${COMPONENT}(?:/${COMPONENT})*`;
const DOMAIN_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = `(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[a-fA-F0-9:]+\\])`;
const DOMAIN = `${HOST}(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

const REFERENCE_RE = new RegExp(`^((?:${DOMAIN}/)?${PATH})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_RE = new RegExp(`^${DIGEST}$`);
const FULL_ID_RE = /^[a-f0-9]{64}$/;
const SHORT_ID_RE = /^[a-f0-9]{1,64}$/;

/** Hex length each supported digest algorithm produces. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

export function isDigest(s: string): boolean {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

export function parseDigest(s: string): { algorithm: string; hex: string } {
  if (!DIGEST_RE.test(s)) throw invalid(`invalid digest format: ${s}`);
  const i = s.indexOf(':');
  const algorithm = s.slice(0, i);
  const hex = s.slice(i + 1);
  const want = DIGEST_HEX_LENGTH[algorithm];
  if (want === undefined) throw invalid(`unsupported digest algorithm: ${s}`);
  // Digests are compared as strings everywhere, so only one spelling of the
  // hex may be valid or the same blob would have two names.
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) throw invalid(`invalid digest format: ${s}`);
  return { algorithm, hex };
}

/** A complete image ID: 64 lowercase hex, bare or as `sha256:<hex>`. */
export function isFullImageId(s: string): boolean {
  const hex = s.startsWith('sha256:') ? s.slice(7) : s;
  return FULL_ID_RE.test(hex);
}

/** Could `s` be the start of an ID (lowercase hex, 1–64 characters)? */
export function isShortIdPrefix(s: string): boolean {
  return SHORT_ID_RE.test(s);
}

export function isValidTag(s: string): boolean {
  return TAG_RE.test(s);
}

/**
 * Splits off the domain the way clients do: the first component is a domain
 * only when it looks like one (has a dot or port, is localhost, or contains
 * upper case, which a path component never may).
 */
function splitDomain(s: string): { domain: string; remainder: string } {
  const i = s.indexOf('/');
  let domain = DEFAULT_DOMAIN;
  let remainder = s;
  if (i !== -1) {
    const first = s.slice(0, i);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      remainder = s.slice(i + 1);
    }
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_PREFIX + remainder;
  return { domain, remainder };
}

/** Parses a user-supplied reference and normalises its name. */
export function parseReference(s: string): Reference {
  if (FULL_ID_RE.test(s)) {
    throw invalid(`invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`);
  }
  const { domain, remainder } = splitDomain(s);
  const colon = remainder.indexOf(':');
  const repoName = colon === -1 ? remainder : remainder.slice(0, colon);
  if (repoName.toLowerCase() !== repoName) {
    throw invalid(`invalid reference format: repository name (${repoName}) must be lowercase`);
  }
  const m = REFERENCE_RE.exec(`${domain}/${remainder}`);
  if (!m) throw invalid('invalid reference format');
  const name = m[1]!;
  if (name.length > NAME_MAX) {
    throw invalid(`invalid reference format: repository name must not be more than ${NAME_MAX} characters`);
  }
  const ref: Reference = { domain, path: name.slice(domain.length + 1) };
  if (m[2] !== undefined) ref.tag = m[2];
  if (m[3] !== undefined) {
    parseDigest(m[3]);
    ref.digest = m[3];
  }
  return ref;
}

/**
 * A repository given with its tag as a separate parameter (the API's
 * `fromImage`+`tag`, `repo`+`tag`). The separate tag wins over one inside
 * `repo`; it may also be a digest, which then replaces any tag.
 */
export function parseRepoAndTag(repo: string, tag?: string): Reference {
  const ref = parseReference(repo);
  if (tag === undefined || tag === '') return ref;
  if (isDigest(tag)) return { domain: ref.domain, path: ref.path, digest: tag };
  if (!TAG_RE.test(tag)) throw invalid(`invalid tag format: ${tag}`);
  const out: Reference = { domain: ref.domain, path: ref.path, tag };
  if (ref.digest !== undefined) out.digest = ref.digest;
  return out;
}

/** `docker.io/library/busybox` */
export function fullName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The short spelling clients print: `busybox`, `foo/bar`, `localhost:5000/x`. */
export function familiarName(ref: Reference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return fullName(ref);
  if (ref.path.startsWith(OFFICIAL_PREFIX)) {
    const rest = ref.path.slice(OFFICIAL_PREFIX.length);
    // library/a/b is not an official image and keeps its prefix.
    if (!rest.includes('/')) return rest;
  }
  return ref.path;
}

/** Adds the `latest` tag when the reference names neither tag nor digest. */
export function withDefaultTag(ref: Reference): Reference {
  if (ref.tag !== undefined || ref.digest !== undefined) return ref;
  return { ...ref, tag: DEFAULT_TAG };
}

function suffix(ref: Reference): string {
  const r = withDefaultTag(ref);
  return (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}

/**
 * Familiar name with tag and/or digest: `busybox:latest`, `busybox@sha256:…`.
 * A reference without either is shown with the default tag, since that is
 * what it resolves to; use familiarName for the bare repository.
 */
export function familiarString(ref: Reference): string {
  return familiarName(ref) + suffix(ref);
}

/** Fully qualified: `docker.io/library/busybox:latest` (default tag applied as in familiarString). */
export function refString(ref: Reference): string {
  return fullName(ref) + suffix(ref);
}

/** The host to contact for a reference's registry. */
export function registryHost(ref: Reference): string {
  return ref.domain === DEFAULT_DOMAIN ? DEFAULT_REGISTRY_HOST : ref.domain;
}

const REPOSITORY_PATH_RE = new RegExp(`^${PATH}$`);

/** A repository path as a registry names it, without a domain: `library/busybox`. */
export function isValidRepositoryPath(s: string): boolean {
  return s.length <= NAME_MAX && REPOSITORY_PATH_RE.test(s);
}
