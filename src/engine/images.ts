/**
 * The image service: import, load, save, list, inspect, history, tag, remove
 * and prune. The API routes only translate HTTP to these calls and back.
 *
 * Every layer berth extracts also keeps its uncompressed tar in the content
 * store under its diff ID, so `save` can hand out exactly the bytes the image
 * config names; regenerating a tar from extracted files rarely reproduces
 * the same digest.
 */
import { envToMap } from '../util/env.ts';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import type { DaemonConfig } from '../daemon/config.ts';
import type { ContentStore } from '../image/content-store.ts';
import { sha256Digest, teeIntoIngest } from '../image/content-store.ts';
import type { ImageStore, ResolvedImage } from '../image/image-store.ts';
import { noSuchImage } from '../image/image-store.ts';
import type { LayerMeta, LayerStore } from '../image/layer-store.ts';
import { chainIdOf, chainIds } from '../image/layer-store.ts';
import { decompressStream, diffLayer } from '../image/layer.ts';
import { familiarName, familiarString, fullName, parseDigest, parseReference, parseRepoAndTag, refString, withDefaultTag } from '../image/reference.ts';
import type { Reference } from '../image/reference.ts';
import { MediaType } from '../image/types.ts';
import type { Descriptor, ImageConfig, ImageRecord, ImageRunConfig, Platform } from '../image/types.ts';
import type { ContainerService } from './containers.ts';
import type { ContainerRecord } from './container-types.ts';
import type { EventBus } from './events.ts';
import { BerthError, conflict, invalid, notFound, systemError } from '../util/errors.ts';
import { ensureDir, removeTree } from '../util/fsutil.ts';
import { shortId } from '../util/ids.ts';
import { parseSignal } from '../util/signals.ts';
import { archivePathParts, readTar, packTar } from '../util/tar.ts';
import type { ByteSource, TarBody, TarHeaderInput } from '../util/tar.ts';
import { parseTimeArg, ZERO_TIME } from '../util/time.ts';

// ---------------------------------------------------------------------------
// Public shapes (docker's field names)

export interface ImportOptions {
  repo?: string;
  tag?: string;
  message?: string;
  changes?: string[];
  platform?: string;
}

export interface ListOptions {
  all: boolean;
  filters: Map<string, string[]>;
  /** RepoDigests are always listed; kept for the API parameter of that name. */
  digests?: boolean;
  sharedSize?: boolean;
  /** Count the containers using each image (else -1). */
  containers?: boolean;
}

export interface ImageSummary {
  Id: string;
  ParentId: string;
  RepoTags: string[];
  RepoDigests: string[];
  Created: number;
  Size: number;
  SharedSize: number;
  VirtualSize?: number;
  Labels: Record<string, string>;
  Containers: number;
}

export interface ImageInspect {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Parent: string;
  Comment: string;
  Created?: string;
  DockerVersion: string;
  Author: string;
  Config: Record<string, unknown>;
  Architecture: string;
  Variant?: string;
  Os: string;
  OsVersion?: string;
  Size: number;
  VirtualSize?: number;
  GraphDriver: { Name: string; Data: Record<string, string> };
  RootFS: { Type: string; Layers: string[] };
  Metadata: { LastTagTime: string };
}

export interface HistoryItem {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags: string[] | null;
  Size: number;
  Comment: string;
}

export interface DeleteResponse {
  Untagged?: string;
  Deleted?: string;
}

export interface PruneReport {
  ImagesDeleted: DeleteResponse[] | null;
  SpaceReclaimed: number;
}

export type ProgressFn = (msg: object) => void;

// ---------------------------------------------------------------------------
// Small helpers

/** The platform images are made for when nothing else is said: this host's. */
export function hostPlatform(): Platform {
  switch (process.arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm':
      return { os: 'linux', architecture: 'arm', variant: 'v7' };
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: 'ppc64le' };
    default:
      return { os: 'linux', architecture: process.arch };
  }
}

function parsePlatform(s: string): Platform {
  const parts = s.toLowerCase().split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) throw invalid(`invalid platform: ${s}`);
  const host = hostPlatform();
  const os = parts[0]!;
  if (os !== 'linux') throw invalid(`operating system is not supported: ${os}`);
  const p: Platform = { os, architecture: parts[1] ?? host.architecture };
  const variant = parts[2] ?? (parts[1] === undefined ? host.variant : undefined);
  if (variant) p.variant = variant;
  return p;
}

/** Serialises the operations that create or remove layers and records, so one never removes what another is about to use. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }
}

function isRunning(c: ContainerRecord): boolean {
  return c.State.Running || c.State.Restarting || c.State.Status === 'paused';
}

function unixSeconds(iso: string | undefined): number {
  if (!iso) return 0;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : Math.floor(t / 1000);
}

function parseTimeFilter(name: string, v: string): number {
  try {
    return parseTimeArg(v);
  } catch {
    throw invalid(`invalid filter '${name}=${v}': cannot parse the time`);
  }
}

function boolFilter(filters: Map<string, string[]>, name: string, def: boolean): boolean {
  const vals = filters.get(name);
  if (!vals || vals.length === 0) return def;
  let out: boolean | undefined;
  for (const v of vals) {
    const b = ['true', '1'].includes(v.toLowerCase()) ? true : ['false', '0'].includes(v.toLowerCase()) ? false : undefined;
    if (b === undefined) throw invalid(`Invalid filter '${name}=${v}'`);
    if (out !== undefined && out !== b) throw invalid(`Invalid filter '${name}': conflicting values`);
    out = b;
  }
  return out ?? def;
}

function labelMatches(labels: Record<string, string>, want: string): boolean {
  const i = want.indexOf('=');
  if (i < 0) return Object.prototype.hasOwnProperty.call(labels, want);
  const k = want.slice(0, i);
  return Object.prototype.hasOwnProperty.call(labels, k) && labels[k] === want.slice(i + 1);
}

/** A shell-style glob as clients write reference filters: `*` and `?` stop at `/`. */
function globToRegExp(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      i++;
      if (i >= pattern.length) throw invalid(`invalid reference filter pattern: ${pattern}`);
      re += pattern[i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw invalid(`invalid reference filter pattern: ${pattern}`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\').replace(/\]/g, '\\]')}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  try {
    return new RegExp(`${re}$`);
  } catch {
    throw invalid(`invalid reference filter pattern: ${pattern}`);
  }
}

// ---------------------------------------------------------------------------
// Config changes (`docker import --change`, and commit later)

const CHANGE_COMMANDS = new Set(['cmd', 'entrypoint', 'env', 'expose', 'label', 'onbuild', 'stopsignal', 'user', 'volume', 'workdir']);

/** Splits on unquoted whitespace, keeping quotes and escapes for processWord. */
function splitRaw(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let started = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      cur += c;
      if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i]!;
      else if (c === quote) quote = null;
      continue;
    }
    if (/\s/.test(c)) {
      if (started) out.push(cur);
      cur = '';
      started = false;
      continue;
    }
    started = true;
    cur += c;
    if (c === '\\' && i + 1 < s.length) cur += s[++i]!;
    else if (c === '"' || c === "'") quote = c;
  }
  if (quote) throw invalid(`unexpected end of statement while looking for matching ${quote === '"' ? 'double' : 'single'}-quote`);
  if (started) out.push(cur);
  return out;
}

/** Quote removal and `$VAR` / `${VAR}` / `${VAR:-x}` / `${VAR:+x}` expansion of one word. */
function processWord(word: string, env: Map<string, string>): string {
  let out = '';
  let i = 0;
  const variable = (): string => {
    // at '$'
    const next = word[i + 1];
    if (next === '{') {
      const close = word.indexOf('}', i + 2);
      if (close < 0) throw invalid(`missing '}' in ${JSON.stringify(word)}`);
      const body = word.slice(i + 2, close);
      i = close + 1;
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body);
      if (!m) throw invalid(`bad substitution in ${JSON.stringify(word)}`);
      const val = env.get(m[1]!);
      const op = m[2];
      const alt = m[3] !== undefined ? processWord(m[3], env) : '';
      if (op === ':-') return val ? val : alt;
      if (op === '-') return val !== undefined ? val : alt;
      if (op === ':+') return val ? alt : '';
      if (op === '+') return val !== undefined ? alt : '';
      return val ?? '';
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(word.slice(i + 1));
    if (!m) {
      i++;
      return '$';
    }
    i += 1 + m[0].length;
    return env.get(m[0]) ?? '';
  };
  while (i < word.length) {
    const c = word[i]!;
    if (c === "'") {
      const close = word.indexOf("'", i + 1);
      if (close < 0) throw invalid('unexpected end of statement while looking for matching single-quote');
      out += word.slice(i + 1, close);
      i = close + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= word.length) throw invalid('unexpected end of statement while looking for matching double-quote');
        const d = word[i]!;
        if (d === '"') {
          i++;
          break;
        }
        if (d === '\\' && i + 1 < word.length && '"\\$'.includes(word[i + 1]!)) {
          out += word[i + 1]!;
          i += 2;
        } else if (d === '$') out += variable();
        else {
          out += d;
          i++;
        }
      }
    } else if (c === '\\') {
      if (i + 1 < word.length) out += word[i + 1]!;
      i += 2;
    } else if (c === '$') out += variable();
    else {
      out += c;
      i++;
    }
  }
  return out;
}

/** `k=v k2="v 2"` pairs, or the legacy `key value with spaces` form. */
function parseNameValues(cmd: string, rest: string, env: Map<string, string>): [string, string][] {
  const words = splitRaw(rest);
  if (words.length === 0) throw invalid(`${cmd.toUpperCase()} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    const key = processWord(words[0]!, env);
    const m = /^\S+\s+([\s\S]*)$/.exec(rest.trim());
    if (!m) throw invalid(`${cmd.toUpperCase()} must have two arguments`);
    return [[key, processWord(m[1]!.trim(), env)]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) throw invalid(`Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`);
    const key = processWord(w.slice(0, eq), env);
    if (key === '') throw invalid(`${cmd.toUpperCase()} names can not be blank`);
    return [key, processWord(w.slice(eq + 1), env)];
  });
}

function jsonStringArray(s: string): string[] | undefined {
  const t = s.trim();
  if (!t.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // Not JSON: the shell form takes it.
  }
  return undefined;
}


/**
 * Applies Dockerfile-style instructions to a run config, as `docker import
 * --change` and `docker commit --change` do. Lines are joined as one
 * Dockerfile, so continuation lines and comments work too.
 */
export function applyChanges(base: ImageRunConfig, changes: string[]): ImageRunConfig {
  const cfg: ImageRunConfig = structuredClone(base);
  let cmdSet = false;
  const lines: string[] = [];
  let pending = '';
  for (const raw of changes.join('\n').split('\n')) {
    const line = pending ? pending + raw : raw;
    if (!pending && /^\s*#/.test(line)) continue;
    if (/\\\s*$/.test(line)) {
      pending = line.replace(/\\\s*$/, '');
      continue;
    }
    pending = '';
    if (line.trim() !== '') lines.push(line.trim());
  }
  if (pending.trim() !== '') lines.push(pending.trim());

  for (const line of lines) {
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(line)!;
    const cmd = m[1]!.toLowerCase();
    const rest = (m[2] ?? '').trim();
    if (!CHANGE_COMMANDS.has(cmd)) throw invalid(`${cmd} is not a valid change command`);
    if (rest === '') throw invalid(`${cmd.toUpperCase()} requires at least one argument`);
    const env = envToMap(cfg.Env);
    switch (cmd) {
      case 'cmd':
        cfg.Cmd = jsonStringArray(rest) ?? ['/bin/sh', '-c', rest];
        cmdSet = true;
        break;
      case 'entrypoint':
        cfg.Entrypoint = jsonStringArray(rest) ?? ['/bin/sh', '-c', rest];
        // A new entrypoint drops an inherited command, as in a Dockerfile.
        if (!cmdSet) cfg.Cmd = null;
        break;
      case 'env': {
        const list = [...(cfg.Env ?? [])];
        for (const [k, v] of parseNameValues(cmd, rest, env)) {
          const i = list.findIndex((e) => e === k || e.startsWith(`${k}=`));
          if (i >= 0) list[i] = `${k}=${v}`;
          else list.push(`${k}=${v}`);
          env.set(k, v);
        }
        cfg.Env = list;
        break;
      }
      case 'expose': {
        const ports = { ...(cfg.ExposedPorts ?? {}) };
        for (const w of splitRaw(rest)) {
          const spec = processWord(w, env);
          const pm = /^(\d+)(?:-(\d+))?(?:\/([A-Za-z]+))?$/.exec(spec);
          if (!pm) throw invalid(`invalid containerPort: ${spec}`);
          const proto = (pm[3] ?? 'tcp').toLowerCase();
          if (!['tcp', 'udp', 'sctp'].includes(proto)) throw invalid(`invalid proto: ${pm[3]}`);
          const start = Number(pm[1]);
          const end = pm[2] !== undefined ? Number(pm[2]) : start;
          if (start > 65535 || end > 65535 || end < start) throw invalid(`invalid containerPort: ${spec}`);
          for (let p = start; p <= end; p++) ports[`${p}/${proto}`] = {};
        }
        cfg.ExposedPorts = ports;
        break;
      }
      case 'label': {
        const labels = { ...(cfg.Labels ?? {}) };
        for (const [k, v] of parseNameValues(cmd, rest, env)) labels[k] = v;
        cfg.Labels = labels;
        break;
      }
      case 'onbuild': {
        const trigger = /^(\S+)/.exec(rest)![1]!.toUpperCase();
        if (trigger === 'ONBUILD') throw invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
        if (trigger === 'FROM' || trigger === 'MAINTAINER') throw invalid(`${trigger} isn't allowed as an ONBUILD trigger`);
        cfg.OnBuild = [...(cfg.OnBuild ?? []), rest];
        break;
      }
      case 'stopsignal': {
        const sig = processWord(rest, env);
        parseSignal(sig);
        cfg.StopSignal = sig;
        break;
      }
      case 'user':
        cfg.User = processWord(rest, env);
        break;
      case 'volume': {
        const vols = jsonStringArray(rest) ?? splitRaw(rest);
        const out = { ...(cfg.Volumes ?? {}) };
        for (const v of vols) {
          const p = processWord(v, env).trim();
          if (p === '') throw invalid('VOLUME specified can not be an empty string');
          out[p] = {};
        }
        cfg.Volumes = out;
        break;
      }
      case 'workdir': {
        const w = processWord(rest, env);
        const joined = w.startsWith('/') ? w : posix.join('/', cfg.WorkingDir || '/', w);
        cfg.WorkingDir = posix.normalize(joined).replace(/(.)\/+$/, '$1');
        break;
      }
    }
  }
  return cfg;
}

// ---------------------------------------------------------------------------
// Archive spooling (load)

interface SpoolFile {
  path: string;
  size: number;
  /** sha256 of the bytes as stored in the archive. */
  digest: string;
}


/**
 * An archive unpacked into a private directory. Files are stored under
 * generated names, never the archive's own, so no entry name can reach
 * outside the directory; symlinks and hard links are only remembered, never
 * created on disk.
 */
class Spool {
  readonly dir: string;
  readonly files = new Map<string, SpoolFile>();
  readonly links = new Map<string, string>();
  private n = 0;
  constructor(dir: string) {
    this.dir = dir;
  }

  async fill(source: ByteSource): Promise<void> {
    try {
      for await (const e of readTar(decompressStream(source))) {
        const name = archivePathParts(e.header.name, 'archive entry', 'the archive').join('/');
        if (name === '') continue;
        if (e.header.type === 'file') {
          const path = join(this.dir, `f${this.n++}`);
          const hash = createHash('sha256');
          let size = 0;
          const fh = await open(path, 'wx', 0o600);
          try {
            for await (const chunk of e.body) {
              hash.update(chunk);
              size += chunk.length;
              let off = 0;
              while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
            }
          } finally {
            await fh.close();
          }
          this.files.set(name, { path, size, digest: `sha256:${hash.digest('hex')}` });
          this.links.delete(name);
        } else if (e.header.type === 'symlink') {
          const target = e.header.linkname.startsWith('/') ? e.header.linkname : posix.join(posix.dirname(name), e.header.linkname);
          this.links.set(name, target);
          this.files.delete(name);
        } else if (e.header.type === 'hardlink') {
          const target = this.lookup(e.header.linkname);
          if (!target) throw invalid(`archive entry ${JSON.stringify(e.header.name)} links to missing ${JSON.stringify(e.header.linkname)}`);
          this.files.set(name, target);
          this.links.delete(name);
        }
        // Directories and special files carry nothing an image archive needs.
      }
    } catch (err) {
      if (err instanceof BerthError && err.kind === 'InvalidParameter') throw invalid(`invalid image archive: ${err.message}`);
      throw err;
    }
  }

  /** The file an archive path names, following symlinks inside the archive. */
  lookup(name: string): SpoolFile | undefined {
    let p = archivePathParts(name, 'archive path', 'the archive').join('/');
    for (let hops = 0; hops < 32; hops++) {
      const f = this.files.get(p);
      if (f) return f;
      const t = this.links.get(p);
      if (t === undefined) return undefined;
      p = archivePathParts(t, 'archive link target', 'the archive').join('/');
    }
    throw invalid(`archive path ${JSON.stringify(name)}: too many levels of symbolic links`);
  }

  has(name: string): boolean {
    return this.lookup(name) !== undefined;
  }

  async readSmall(name: string, what: string, limit = 64 << 20): Promise<{ file: SpoolFile; bytes: Buffer }> {
    const file = this.lookup(name);
    if (!file) throw invalid(`invalid image archive: ${what} ${JSON.stringify(name)} is missing`);
    if (file.size > limit) throw invalid(`invalid image archive: ${what} ${JSON.stringify(name)} is too large`);
    return { file, bytes: await readFile(file.path) };
  }
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalid(`invalid image archive: ${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function parseImageConfig(bytes: Buffer, what: string): ImageConfig {
  const v = parseJson(bytes, what);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`invalid image archive: ${what} is not an object`);
  const c = v as ImageConfig;
  const rootfs = c.rootfs as unknown;
  if (typeof rootfs !== 'object' || rootfs === null || !Array.isArray((rootfs as { diff_ids?: unknown }).diff_ids)) {
    throw invalid(`invalid image archive: ${what} has no rootfs.diff_ids`);
  }
  for (const d of c.rootfs.diff_ids as unknown[]) {
    if (typeof d !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d)) throw invalid(`invalid image archive: ${what} has an invalid diff ID ${JSON.stringify(d)}`);
  }
  return c;
}

interface PlannedLayer {
  file: SpoolFile;
  diffId: string;
}

interface PlannedImage {
  configBytes: Buffer;
  config: ImageConfig;
  layers: PlannedLayer[];
  tags: Reference[];
  manifestDigest?: string;
}

function mergePlan(plans: PlannedImage[], p: PlannedImage): void {
  const id = sha256Digest(p.configBytes);
  const same = plans.find((q) => sha256Digest(q.configBytes) === id);
  if (!same) {
    plans.push(p);
    return;
  }
  for (const t of p.tags) if (!same.tags.some((u) => refString(u) === refString(t))) same.tags.push(t);
}

function tagFromArchive(s: unknown, where: string): Reference {
  if (typeof s !== 'string') throw invalid(`invalid image archive: ${where}: tag is not a string`);
  let ref: Reference;
  try {
    ref = parseReference(s);
  } catch (err) {
    throw invalid(`invalid image archive: ${where}: invalid tag ${JSON.stringify(s)}: ${(err as Error).message}`);
  }
  if (ref.digest) throw invalid(`invalid image archive: ${where}: ${JSON.stringify(s)} is not a tag`);
  return withDefaultTag(ref);
}

/** `manifest.json` archives, as `docker save` writes them (old layout and new). */
async function planDockerArchive(sp: Spool): Promise<PlannedImage[]> {
  const { bytes } = await sp.readSmall('manifest.json', 'manifest');
  const items = parseJson(bytes, 'manifest.json');
  if (!Array.isArray(items)) throw invalid('invalid image archive: manifest.json is not a list');
  if (items.length === 0) throw invalid('invalid image archive: manifest.json lists no images');
  const plans: PlannedImage[] = [];
  for (const [n, raw] of items.entries()) {
    const where = `manifest.json entry ${n}`;
    if (typeof raw !== 'object' || raw === null) throw invalid(`invalid image archive: ${where} is not an object`);
    const item = raw as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (typeof item.Config !== 'string' || item.Config === '') throw invalid(`invalid image archive: ${where} has no Config`);
    if (!Array.isArray(item.Layers) || !item.Layers.every((l) => typeof l === 'string')) throw invalid(`invalid image archive: ${where} has no valid Layers list`);
    if (item.RepoTags !== undefined && item.RepoTags !== null && !Array.isArray(item.RepoTags)) throw invalid(`invalid image archive: ${where}: RepoTags is not a list`);
    const cfgName = archivePathParts(item.Config, 'config path', 'the archive').join('/');
    const { file: cfgFile, bytes: configBytes } = await sp.readSmall(cfgName, 'image config', 32 << 20);
    // Both layouts name the config by its digest; a mismatch is a corrupt archive.
    const named = /^(?:blobs\/sha256\/([a-f0-9]{64})|([a-f0-9]{64})\.json)$/.exec(cfgName);
    if (named && `sha256:${named[1] ?? named[2]}` !== cfgFile.digest) {
      throw invalid(`invalid image archive: config ${cfgName} does not match its digest (got ${cfgFile.digest})`);
    }
    const config = parseImageConfig(configBytes, `config ${cfgName}`);
    const layerNames = item.Layers as string[];
    if (layerNames.length !== config.rootfs.diff_ids.length) {
      throw invalid(`invalid image archive: ${where} lists ${layerNames.length} layers but its config has ${config.rootfs.diff_ids.length}`);
    }
    const layers: PlannedLayer[] = layerNames.map((l, i) => {
      const name = archivePathParts(l, 'layer path', 'the archive').join('/');
      const file = sp.lookup(name);
      if (!file) throw invalid(`invalid image archive: layer ${JSON.stringify(l)} is missing`);
      const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(name);
      if (m && `sha256:${m[1]}` !== file.digest) throw invalid(`invalid image archive: layer ${name} does not match its digest (got ${file.digest})`);
      return { file, diffId: config.rootfs.diff_ids[i]! };
    });
    const tags = ((item.RepoTags as unknown[] | null | undefined) ?? []).map((t) => tagFromArchive(t, where));
    mergePlan(plans, { configBytes, config, layers, tags });
  }
  return plans;
}

const MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList]);

function checkDescriptor(v: unknown, where: string): Descriptor {
  if (typeof v !== 'object' || v === null) throw invalid(`invalid image archive: ${where} is not a descriptor`);
  const d = v as Descriptor;
  if (typeof d.digest !== 'string') throw invalid(`invalid image archive: ${where} has no digest`);
  try {
    parseDigest(d.digest);
  } catch (err) {
    throw invalid(`invalid image archive: ${where}: ${(err as Error).message}`);
  }
  if (!d.digest.startsWith('sha256:')) throw invalid(`invalid image archive: ${where}: unsupported digest algorithm in ${d.digest}`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(`invalid image archive: ${where} has an invalid size`);
  return d;
}

/** The file a descriptor names in an OCI layout, verified against the descriptor's size and digest. */
function ociBlob(sp: Spool, d: Descriptor, what: string): SpoolFile {
  const name = `blobs/sha256/${d.digest.slice(7)}`;
  const file = sp.lookup(name);
  if (!file) throw invalid(`invalid image archive: ${what} ${d.digest} is missing`);
  if (file.size !== d.size) throw invalid(`invalid image archive: ${what} ${d.digest} is ${file.size} bytes, its descriptor says ${d.size}`);
  if (file.digest !== d.digest) throw invalid(`invalid image archive: ${what} ${d.digest} does not match its digest (got ${file.digest})`);
  return file;
}

function platformMatches(p: Platform | undefined): boolean {
  if (!p) return true;
  const host = hostPlatform();
  if (p.os !== host.os || p.architecture !== host.architecture) return false;
  return !p.variant || !host.variant || p.variant === host.variant || host.architecture === 'arm64';
}

function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown';
}

function namesFromAnnotations(a: Record<string, string> | undefined): Reference[] {
  const candidates = [a?.['io.containerd.image.name'], a?.['org.opencontainers.image.ref.name']];
  for (const c of candidates) {
    // A bare `latest` in ref.name names a tag of no repository: nothing to tag with.
    if (!c || !/[:/]/.test(c)) continue;
    try {
      const ref = parseReference(c);
      if (!ref.digest) return [withDefaultTag(ref)];
    } catch {
      // An annotation that is no reference is only a label.
    }
  }
  return [];
}

/** OCI image layouts (`oci-layout`, `index.json`, `blobs/`). */
async function planOciLayout(sp: Spool): Promise<PlannedImage[]> {
  if (sp.has('oci-layout')) {
    const { bytes } = await sp.readSmall('oci-layout', 'oci-layout', 1 << 20);
    const v = parseJson(bytes, 'oci-layout') as { imageLayoutVersion?: unknown } | null;
    if (typeof v !== 'object' || v === null || typeof v.imageLayoutVersion !== 'string') throw invalid('invalid image archive: oci-layout has no imageLayoutVersion');
  }
  const { bytes } = await sp.readSmall('index.json', 'index');
  const plans: PlannedImage[] = [];

  const visitIndex = async (raw: unknown, where: string, tags: Reference[] | null, depth: number): Promise<void> => {
    if (depth > 8) throw invalid('invalid image archive: indexes nested too deeply');
    if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { manifests?: unknown }).manifests)) {
      throw invalid(`invalid image archive: ${where} has no manifests list`);
    }
    const descs = ((raw as { manifests: unknown[] }).manifests).map((m, i) => checkDescriptor(m, `${where} manifest ${i}`));
    let matched = 0;
    for (const d of descs) {
      if (isAttestation(d) || !platformMatches(d.platform)) continue;
      // The names of an image are on the top-level index entries.
      const names = tags ?? namesFromAnnotations(d.annotations);
      if (INDEX_TYPES.has(d.mediaType)) {
        const file = ociBlob(sp, d, 'index');
        await visitIndex(parseJson(await readFile(file.path), `index ${d.digest}`), `index ${d.digest}`, names, depth + 1);
        matched++;
      } else if (MANIFEST_TYPES.has(d.mediaType)) {
        // A nested index picks one manifest per platform; the top level lists images.
        if (tags !== null && matched > 0) continue;
        await visitManifest(d, names);
        matched++;
      }
      // Anything else (artifacts, unknown media types) is not an image to load.
    }
    if (matched === 0 && descs.length > 0) {
      const h = hostPlatform();
      throw invalid(`invalid image archive: no loadable image for ${h.os}/${h.architecture} in ${where}`);
    }
  };

  const visitManifest = async (d: Descriptor, tags: Reference[]): Promise<void> => {
    const file = ociBlob(sp, d, 'manifest');
    if (file.size > 16 << 20) throw invalid(`invalid image archive: manifest ${d.digest} is too large`);
    const m = parseJson(await readFile(file.path), `manifest ${d.digest}`) as { config?: unknown; layers?: unknown } | null;
    if (typeof m !== 'object' || m === null || !Array.isArray(m.layers)) throw invalid(`invalid image archive: manifest ${d.digest} has no layers list`);
    const cfgDesc = checkDescriptor(m.config, `manifest ${d.digest} config`);
    const cfgFile = ociBlob(sp, cfgDesc, 'config');
    if (cfgFile.size > 32 << 20) throw invalid(`invalid image archive: config ${cfgDesc.digest} is too large`);
    const configBytes = await readFile(cfgFile.path);
    const config = parseImageConfig(configBytes, `config ${cfgDesc.digest}`);
    const layerDescs = (m.layers as unknown[]).map((l, i) => checkDescriptor(l, `manifest ${d.digest} layer ${i}`));
    if (layerDescs.length !== config.rootfs.diff_ids.length) {
      throw invalid(`invalid image archive: manifest ${d.digest} lists ${layerDescs.length} layers but its config has ${config.rootfs.diff_ids.length}`);
    }
    const layers = layerDescs.map((ld, i) => ({ file: ociBlob(sp, ld, 'layer'), diffId: config.rootfs.diff_ids[i]! }));
    mergePlan(plans, { configBytes, config, layers, tags: [...tags], manifestDigest: d.digest });
  };

  await visitIndex(parseJson(bytes, 'index.json'), 'index.json', null, 0);
  if (plans.length === 0) throw invalid('invalid image archive: index.json lists no images');
  return plans;
}

// ---------------------------------------------------------------------------
// Tee: one decompressed layer stream into both the extractor and the blob store

interface Tee {
  /** Feed this to the extractor. */
  stream: AsyncGenerator<Buffer>;
  started: () => boolean;
  /** Settles the blob write: call once the extractor is done (or failed). */
  finish: (failure?: unknown) => Promise<{ digest: string; size: number } | undefined>;
}

function teeToContent(content: ContentStore, source: AsyncIterable<Buffer>, expected?: string): Tee {
  const pass = new PassThrough({ highWaterMark: 1 << 20 });
  let started = false;
  let complete = false;
  const ingest = content.ingest(pass, expected ? { digest: expected } : undefined);
  // Observed here so an early failure is not reported as unhandled.
  ingest.catch(() => undefined);
  async function* stream(): AsyncGenerator<Buffer> {
    started = true;
    yield* teeIntoIngest(source, pass, ingest);
    complete = true;
  }
  return {
    stream: stream(),
    started: () => started,
    finish: async (failure?: unknown) => {
      // The blob is committed only here: the extractor reads ahead of its
      // verdict, so the source may be read to its end before a bad entry is seen.
      if (failure !== undefined || !complete) {
        pass.destroy(failure instanceof Error ? failure : new Error('aborted'));
        await ingest.catch(() => undefined);
        return undefined;
      }
      pass.end();
      return ingest;
    },
  };
}

interface Created {
  layers: string[];
  blobs: string[];
}

// ---------------------------------------------------------------------------
// The service

const CONFLICT_CHILD = 1;
const CONFLICT_RUNNING = 2;
const CONFLICT_REFERENCE = 4;
const CONFLICT_STOPPED = 8;
const CONFLICT_HARD = CONFLICT_CHILD | CONFLICT_RUNNING;
const CONFLICT_ALL = CONFLICT_HARD | CONFLICT_REFERENCE | CONFLICT_STOPPED;

interface DeleteConflict {
  hard: boolean;
  used: boolean;
  message: string;
}

const LIST_FILTERS = new Set(['dangling', 'label', 'before', 'since', 'reference', 'until']);
const PRUNE_FILTERS = new Set(['dangling', 'label', 'label!', 'until']);

export class ImageService {
  private readonly cfg: DaemonConfig;
  private readonly store: ImageStore;
  private readonly content: ContentStore;
  private readonly layers: LayerStore;
  private readonly containers: ContainerService;
  private readonly events: EventBus;
  private readonly lock = new Mutex();
  /** Bytes of layers removed so far; prune reports its difference. */
  private reclaimed = 0;

  constructor(cfg: DaemonConfig, store: ImageStore, content: ContentStore, layers: LayerStore, containers: ContainerService, events: EventBus) {
    this.cfg = cfg;
    this.store = store;
    this.content = content;
    this.layers = layers;
    this.containers = containers;
    this.events = events;
  }

  private emit(action: string, id: string, name: string): void {
    const labels = this.store.get(id)?.config.config?.Labels ?? {};
    this.events.emit('image', action, id, { ...labels, name });
  }

  // ------------------------------------------------------------- layers

  /**
   * Makes sure a layer and its uncompressed tar blob are both present,
   * extracting and storing them from one pass over `open()` when needed.
   */
  private async ensureLayer(parent: string | null, diffId: string, open: () => AsyncIterable<Buffer>, created: Created): Promise<LayerMeta> {
    const chain = chainIdOf(parent, diffId);
    const existing = await this.layers.get(chain);
    if (existing && (await this.content.has(diffId))) return existing;
    if (existing) {
      await this.content.ingest(decompressStream(open()), { digest: diffId });
      created.blobs.push(diffId);
      return existing;
    }
    const hadBlob = await this.content.has(diffId);
    const tee = teeToContent(this.content, decompressStream(open()), diffId);
    let meta: LayerMeta;
    try {
      meta = await this.layers.add(parent, tee.stream, diffId);
    } catch (err) {
      await tee.finish(err);
      throw err;
    }
    if (!tee.started()) {
      // Someone else extracted it meanwhile; only the blob may still be missing.
      await tee.finish(new Error('not needed'));
      if (!(await this.content.has(diffId))) {
        await this.content.ingest(decompressStream(open()), { digest: diffId });
        created.blobs.push(diffId);
      }
      return meta;
    }
    created.layers.push(chain);
    await tee.finish();
    if (!hadBlob) created.blobs.push(diffId);
    return meta;
  }

  /** Undoes what a failed load or import created, keeping anything an image now uses. */
  private async rollback(created: Created): Promise<void> {
    const usedChains = new Set<string>();
    const usedDiffs = new Set<string>();
    for (const { config } of this.store.all()) {
      for (const c of chainIds(config.rootfs.diff_ids)) usedChains.add(c);
      for (const d of config.rootfs.diff_ids) usedDiffs.add(d);
    }
    for (const c of this.containers.list()) for (const l of c.berth?.layers ?? []) usedChains.add(l);
    for (const chain of [...created.layers].reverse()) if (!usedChains.has(chain)) await this.layers.remove(chain).catch(() => undefined);
    for (const blob of created.blobs) if (!usedDiffs.has(blob)) await this.content.delete(blob).catch(() => undefined);
  }

  // ------------------------------------------------------------- distribution hooks

  /** Runs `fn` under the image lock, so no remove or prune runs meanwhile (pull, push). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(fn);
  }

  /**
   * Records an image whose layers are in place (a pull) and points `refs`
   * at it, emitting docker's events. Returns the references that moved away
   * from another image. Call under withLock.
   */
  async recordImage(configBytes: Buffer, extra: Partial<ImageRecord>, refs: Reference[], action: string, eventName: string): Promise<{ id: string; moved: Reference[] }> {
    const rec = await this.store.add(configBytes, extra);
    const moved: Reference[] = [];
    for (const ref of refs) {
      const prev = await this.store.tag(rec.id, ref);
      if (prev) moved.push(ref);
    }
    this.emit(action, rec.id, eventName);
    return { id: rec.id, moved };
  }

  // ------------------------------------------------------------- import

  async importImage(source: Readable, opts: ImportOptions): Promise<string> {
    // Everything that can be refused is checked before the body is read.
    // A tag without a repository names nothing and is ignored, as docker does.
    let ref: Reference | undefined;
    if (opts.repo) {
      ref = parseRepoAndTag(opts.repo, opts.tag || undefined);
      if (ref.digest) throw invalid('refusing to create a tag with a digest reference');
      ref = withDefaultTag(ref);
    }
    const runConfig = applyChanges({}, opts.changes ?? []);
    const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
    const comment = opts.message || 'Imported from -';

    return this.lock.run(async () => {
      const created: Created = { layers: [], blobs: [] };
      let id: string;
      try {
        const tee = teeToContent(this.content, decompressStream(source));
        let meta: LayerMeta;
        try {
          meta = await this.layers.add(null, tee.stream);
        } catch (err) {
          await tee.finish(err);
          throw err;
        }
        created.layers.push(meta.chainId);
        const blob = await tee.finish();
        if (blob) created.blobs.push(blob.digest);
        if (!blob || blob.digest !== meta.diffId) throw systemError(`layer blob ${blob?.digest ?? '(none)'} does not match diff ID ${meta.diffId}`);
        if (meta.size === 0) throw invalid('the imported archive is empty');
        const now = new Date().toISOString();
        const config: ImageConfig = {
          architecture: platform.architecture,
          os: platform.os,
          ...(platform.variant ? { variant: platform.variant } : {}),
          created: now,
          comment,
          config: runConfig,
          rootfs: { type: 'layers', diff_ids: [meta.diffId] },
          history: [{ created: now, created_by: '', comment }],
        };
        const rec = await this.store.add(Buffer.from(JSON.stringify(config)));
        id = rec.id;
      } catch (err) {
        await this.rollback(created);
        throw err;
      }
      this.emit('import', id, id);
      if (ref) {
        await this.store.tag(id, ref);
        this.emit('tag', id, familiarString(ref));
      }
      return id;
    });
  }

  // ------------------------------------------------------------- load

  async load(source: Readable, quiet: boolean, progress: ProgressFn): Promise<void> {
    const tmpRoot = join(this.cfg.dataRoot, 'tmp');
    await ensureDir(tmpRoot, 0o700);
    const dir = await mkdtemp(join(tmpRoot, 'load-'));
    try {
      const sp = new Spool(dir);
      await sp.fill(source);
      let plans: PlannedImage[];
      if (sp.has('manifest.json')) plans = await planDockerArchive(sp);
      else if (sp.has('index.json')) plans = await planOciLayout(sp);
      else throw invalid('invalid image archive: it has neither manifest.json nor index.json');

      await this.lock.run(async () => {
        const created: Created = { layers: [], blobs: [] };
        // All layers of all images first: a bad layer anywhere leaves no image recorded.
        try {
          for (const plan of plans) {
            let parent: string | null = null;
            for (const l of plan.layers) {
              const open = () => this.readWithProgress(l, quiet, progress);
              parent = (await this.ensureLayer(parent, l.diffId, open, created)).chainId;
            }
          }
        } catch (err) {
          await this.rollback(created);
          throw err;
        }
        for (const plan of plans) {
          const extra: Partial<ImageRecord> = {};
          if (plan.manifestDigest) extra.manifestDigest = plan.manifestDigest;
          const rec = await this.store.add(plan.configBytes, extra);
          this.emit('load', rec.id, rec.id);
          for (const ref of plan.tags) {
            const prev = await this.store.tag(rec.id, ref);
            if (prev) progress({ stream: `The image ${familiarString(ref)} already exists, renaming the old one with ID ${prev} to empty string\n` });
            progress({ stream: `Loaded image: ${familiarString(ref)}\n` });
          }
          if (plan.tags.length === 0) progress({ stream: `Loaded image ID: ${rec.id}\n` });
        }
      });
    } finally {
      await removeTree(dir);
    }
  }

  private async *readWithProgress(l: PlannedLayer, quiet: boolean, progress: ProgressFn): AsyncGenerator<Buffer> {
    const id = shortId(l.diffId);
    const total = l.file.size;
    let current = 0;
    let last = 0;
    const send = (): void => progress({ status: 'Loading layer', progressDetail: { current, total }, id });
    if (!quiet) send();
    for await (const chunk of createReadStream(l.file.path)) {
      const b = chunk as Buffer;
      current += b.length;
      if (!quiet && Date.now() - last > 100) {
        last = Date.now();
        send();
      }
      yield b;
    }
    if (!quiet) send();
  }

  // ------------------------------------------------------------- save

  /**
   * One tar that is both a docker-archive (`manifest.json`) and an OCI image
   * layout. Names are checked at once; the stream does its remaining checks
   * (and any blob regeneration) before it yields its first byte.
   */
  save(names: string[]): AsyncIterable<Buffer> {
    if (names.length === 0) throw invalid('no image names given');
    const selected = new Map<string, Reference[]>();
    const add = (id: string, ref?: Reference): void => {
      const tags = selected.get(id) ?? [];
      if (ref && !tags.some((t) => refString(t) === refString(ref))) tags.push(ref);
      selected.set(id, tags);
    };
    for (const name of names) {
      const hex = name.replace(/^sha256:/, '');
      const byId = /^[a-f0-9]{1,64}$/.test(hex) ? this.store.resolve(name) : undefined;
      if (byId && byId.record.id.slice(7).startsWith(hex)) {
        add(byId.record.id);
        continue;
      }
      let ref: Reference;
      try {
        ref = parseReference(name);
      } catch (err) {
        if (byId) {
          add(byId.record.id);
          continue;
        }
        throw err;
      }
      if (!ref.tag && !ref.digest) {
        // A bare repository name saves every tag of it.
        let found = false;
        for (const { record } of this.store.all()) {
          for (const r of this.store.refsOf(record.id)) {
            if (r.includes('@')) continue;
            const parsed = parseReference(r);
            if (fullName(parsed) === fullName(ref)) {
              add(record.id, parsed);
              found = true;
            }
          }
        }
        if (!found) throw notFound(`No such image: ${name}`);
        continue;
      }
      const img = this.store.resolve(name);
      if (!img) throw noSuchImage(name);
      add(img.record.id, ref.digest ? undefined : withDefaultTag(ref));
    }
    // docker reports each saved image once the archive is complete.
    const stream = this.saveStream(selected);
    const emitSaved = (): void => {
      for (const id of selected.keys()) this.emit('save', id, id);
    };
    return (async function* () {
      yield* stream;
      emitSaved();
    })();
  }

  /** Makes sure the content store holds the layer's uncompressed tar under its diff ID (save, push). */
  async ensureLayerBlob(rec: ImageRecord, index: number, diffId: string, chain: string): Promise<void> {
    if (await this.content.has(diffId)) return;
    const compressed = rec.layerBlobs?.[index];
    if (compressed && (await this.content.has(compressed.digest))) {
      try {
        await this.content.ingest(decompressStream(this.content.stream(compressed.digest)), { digest: diffId });
        return;
      } catch {
        // Fall back to the extracted files.
      }
    }
    if (!(await this.layers.exists(chain))) throw systemError(`layer ${chain} of image ${rec.id} is missing`);
    const made = await this.content.ingest(diffLayer(this.layers.diffDir(chain)));
    if (made.digest !== diffId) {
      await this.content.delete(made.digest);
      throw systemError(`cannot export layer ${diffId} of image ${rec.id}: its original tar is not stored and the extracted files do not reproduce it`);
    }
  }

  private async *saveStream(selected: Map<string, Reference[]>): AsyncGenerator<Buffer> {
    interface Out {
      id: string;
      config: ImageConfig;
      configSize: number;
      layers: { digest: string; size: number }[];
      manifest: Buffer;
      tags: Reference[];
    }
    const outs: Out[] = [];
    for (const [id, tags] of selected) {
      const img = this.store.get(id);
      if (!img) throw notFound(`No such image: ${id}`);
      const configSize = await this.content.size(id);
      const chains = chainIds(img.config.rootfs.diff_ids);
      const layers: { digest: string; size: number }[] = [];
      for (const [i, diffId] of img.config.rootfs.diff_ids.entries()) {
        await this.ensureLayerBlob(img.record, i, diffId, chains[i]!);
        layers.push({ digest: diffId, size: await this.content.size(diffId) });
      }
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.ociManifest,
          config: { mediaType: MediaType.ociConfig, digest: id, size: configSize },
          layers: layers.map((l) => ({ mediaType: MediaType.ociLayer, digest: l.digest, size: l.size })),
        }),
      );
      outs.push({ id, config: img.config, configSize, layers, manifest, tags });
    }

    const entries: { header: TarHeaderInput; body?: TarBody }[] = [];
    const dirs: TarHeaderInput[] = [
      { name: 'blobs/', type: 'directory', mode: 0o755 },
      { name: 'blobs/sha256/', type: 'directory', mode: 0o755 },
    ];
    for (const d of dirs) entries.push({ header: d });
    const written = new Set<string>();
    const blob = (digest: string, body: TarBody, size: number): void => {
      if (written.has(digest)) return;
      written.add(digest);
      entries.push({ header: { name: `blobs/sha256/${digest.slice(7)}`, mode: 0o444, size }, body });
    };
    const index: Descriptor[] = [];
    const manifestJson: { Config: string; RepoTags: string[] | null; Layers: string[] }[] = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const o of outs) {
      blob(o.id, this.content.path(o.id), o.configSize);
      for (const l of o.layers) blob(l.digest, this.content.path(l.digest), l.size);
      const mdigest = sha256Digest(o.manifest);
      blob(mdigest, o.manifest, o.manifest.length);
      const desc = (annotations?: Record<string, string>): Descriptor => {
        const d: Descriptor = { mediaType: MediaType.ociManifest, digest: mdigest, size: o.manifest.length };
        if (annotations) d.annotations = annotations;
        return d;
      };
      if (o.tags.length === 0) index.push(desc());
      for (const t of o.tags) index.push(desc({ 'io.containerd.image.name': refString(t), 'org.opencontainers.image.ref.name': t.tag ?? 'latest' }));
      manifestJson.push({
        Config: `blobs/sha256/${o.id.slice(7)}`,
        RepoTags: o.tags.length ? o.tags.map((t) => familiarString(t)) : null,
        Layers: o.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      });
      const top = o.layers.at(-1)?.digest ?? o.id;
      for (const t of o.tags) (repositories[familiarName(t)] ??= {})[t.tag ?? 'latest'] = top.slice(7);
    }
    const json = (name: string, v: unknown): void => {
      const b = Buffer.from(JSON.stringify(v));
      entries.push({ header: { name, mode: 0o644, size: b.length }, body: b });
    };
    json('index.json', { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: index });
    json('manifest.json', manifestJson);
    json('oci-layout', { imageLayoutVersion: '1.0.0' });
    if (Object.keys(repositories).length > 0) json('repositories', repositories);
    yield* packTar(entries);
  }

  // ------------------------------------------------------------- list

  async list(opts: ListOptions): Promise<ImageSummary[]> {
    const f = opts.filters;
    for (const k of f.keys()) if (!LIST_FILTERS.has(k)) throw invalid(`invalid filter '${k}'`);
    const danglingSet = f.has('dangling');
    const danglingOnly = boolFilter(f, 'dangling', false);
    const refImage = (key: string): ResolvedImage[] =>
      (f.get(key) ?? []).map((v) => {
        const img = this.store.resolve(v);
        if (!img) throw noSuchImage(v);
        return img;
      });
    const before = refImage('before').map((i) => unixSeconds(i.config.created));
    const since = refImage('since').map((i) => unixSeconds(i.config.created));
    const until = (f.get('until') ?? []).map((v) => parseTimeFilter('until', v));
    const labels = f.get('label') ?? [];
    const patterns = (f.get('reference') ?? []).map(globToRegExp);
    const refFilter = f.has('reference');

    const all = this.store.all();
    const containers = this.containers.list();
    const layerUse = new Map<string, number>();
    if (opts.sharedSize) for (const { config } of all) for (const c of chainIds(config.rootfs.diff_ids)) layerUse.set(c, (layerUse.get(c) ?? 0) + 1);

    const out: ImageSummary[] = [];
    for (const { record, config } of all) {
      const id = record.id;
      const created = unixSeconds(config.created);
      const hasChildren = this.store.children(id).length > 0;
      if (danglingOnly && hasChildren) continue;
      if (before.length && !before.every((b) => created < b)) continue;
      if (since.length && !since.every((s) => created > s)) continue;
      if (until.length && !until.every((u) => created < u)) continue;
      const imgLabels = config.config?.Labels ?? {};
      if (!labels.every((l) => labelMatches(imgLabels, l))) continue;

      let repoTags: string[] = [];
      let repoDigests: string[] = [];
      for (const r of this.store.refsOf(id)) {
        const ref = parseReference(r);
        if (refFilter) {
          const fam = familiarString(ref);
          const name = familiarName(ref);
          if (!patterns.some((p) => p.test(fam) || p.test(name))) continue;
        }
        if (ref.digest) repoDigests.push(familiarString(ref));
        else repoTags.push(familiarString(ref));
      }
      if (repoTags.length === 0 && repoDigests.length === 0) {
        // Untagged: shown when it is a top image (or all were asked for), unless filtered out.
        if (!opts.all && hasChildren) continue;
        if (danglingSet && !danglingOnly) continue;
        if (refFilter) continue;
      } else if (danglingOnly && repoTags.length > 0) continue;
      repoTags = repoTags.sort();
      repoDigests = repoDigests.sort();

      const size = await this.store.size(id);
      let shared = -1;
      if (opts.sharedSize) {
        shared = 0;
        for (const c of chainIds(config.rootfs.diff_ids)) if ((layerUse.get(c) ?? 0) > 1) shared += (await this.layers.get(c))?.size ?? 0;
      }
      out.push({
        Id: id,
        ParentId: record.parent ?? '',
        RepoTags: repoTags,
        RepoDigests: repoDigests,
        Created: created,
        Size: size,
        SharedSize: shared,
        Labels: { ...imgLabels },
        Containers: opts.containers || opts.sharedSize ? containers.filter((c) => c.Image === id).length : -1,
      });
    }
    out.sort((a, b) => b.Created - a.Created || (a.Id < b.Id ? -1 : 1));
    return out;
  }

  // ------------------------------------------------------------- inspect / history

  async inspect(name: string): Promise<ImageInspect> {
    const { record, config } = this.store.mustResolve(name);
    const c = config.config ?? {};
    // The fields docker always shows (as null or empty) and those it shows only when set.
    const run: Record<string, unknown> = { User: c.User ?? '' };
    if (c.ExposedPorts && Object.keys(c.ExposedPorts).length) run.ExposedPorts = c.ExposedPorts;
    run.Env = c.Env ?? null;
    run.Cmd = c.Cmd ?? null;
    if (c.Healthcheck) run.Healthcheck = c.Healthcheck;
    if (c.ArgsEscaped) run.ArgsEscaped = c.ArgsEscaped;
    run.Volumes = c.Volumes ?? null;
    run.WorkingDir = c.WorkingDir ?? '';
    run.Entrypoint = c.Entrypoint ?? null;
    run.OnBuild = c.OnBuild ?? null;
    run.Labels = c.Labels ?? null;
    if (c.StopSignal) run.StopSignal = c.StopSignal;
    if (c.Shell && c.Shell.length) run.Shell = c.Shell;

    const chains = chainIds(config.rootfs.diff_ids);
    const data: Record<string, string> = {};
    const top = chains.at(-1);
    if (top) {
      const lowers = chains.slice(0, -1).reverse().map((ch) => this.layers.diffDir(ch));
      if (lowers.length) data.LowerDir = lowers.join(':');
      data.MergedDir = join(this.layers.dir(top), 'merged');
      data.UpperDir = this.layers.diffDir(top);
      data.WorkDir = join(this.layers.dir(top), 'work');
    }
    const osVersion = (config as { 'os.version'?: string })['os.version'];
    return {
      Id: record.id,
      RepoTags: this.store.tagsOf(record.id),
      RepoDigests: this.store.digestsOf(record.id),
      Parent: record.parent ?? '',
      Comment: config.comment ?? '',
      ...(config.created ? { Created: config.created } : {}),
      DockerVersion: config.docker_version ?? '',
      Author: config.author ?? '',
      Config: run,
      Architecture: config.architecture ?? '',
      ...(config.variant ? { Variant: config.variant } : {}),
      Os: config.os ?? '',
      ...(osVersion ? { OsVersion: osVersion } : {}),
      Size: await this.store.size(record.id),
      GraphDriver: { Name: 'overlay2', Data: data },
      RootFS: { Type: 'layers', Layers: [...config.rootfs.diff_ids] },
      Metadata: { LastTagTime: record.lastTagTime ?? ZERO_TIME },
    };
  }

  async history(name: string): Promise<HistoryItem[]> {
    const img = this.store.mustResolve(name);
    const { config } = img;
    const items: HistoryItem[] = [];
    const diffIds = config.rootfs.diff_ids;
    const chains = chainIds(diffIds);
    let n = 0;
    for (const h of config.history ?? []) {
      let size = 0;
      if (!h.empty_layer) {
        if (n >= diffIds.length) throw systemError('too many non-empty layers in History section');
        size = (await this.layers.get(chains[n]!))?.size ?? 0;
        n++;
      }
      items.unshift({ Id: '<missing>', Created: unixSeconds(h.created), CreatedBy: h.created_by ?? '', Tags: null, Size: size, Comment: h.comment ?? '' });
    }
    // Each entry from the top belongs to one image of the parent chain, as far as this host knows it.
    let cur: ResolvedImage | undefined = img;
    for (const item of items) {
      if (!cur) break;
      item.Id = cur.record.id;
      const tags = this.store.tagsOf(cur.record.id);
      item.Tags = tags.length ? tags : null;
      cur = cur.record.parent ? this.store.get(cur.record.parent) : undefined;
    }
    return items;
  }

  // ------------------------------------------------------------- tag

  async tag(source: string, repo: string, tag?: string): Promise<void> {
    const img = this.store.mustResolve(source);
    if (!repo) throw invalid('repository name must have at least one component');
    const ref = parseRepoAndTag(repo, tag || undefined);
    if (ref.digest) throw invalid('refusing to create a tag with a digest reference');
    const full = withDefaultTag(ref);
    await this.lock.run(() => this.store.tag(img.record.id, full));
    this.emit('tag', img.record.id, familiarString(full));
  }

  // ------------------------------------------------------------- remove

  async remove(name: string, opts: { force?: boolean; noprune?: boolean } = {}): Promise<DeleteResponse[]> {
    return this.lock.run(() => this.removeLocked(name, !!opts.force, !opts.noprune));
  }

  private usersOf(id: string): ContainerRecord[] {
    return this.containers.list().filter((c) => c.Image === id);
  }

  private checkConflict(id: string, mask: number): DeleteConflict | undefined {
    if (mask & CONFLICT_CHILD && this.store.children(id).length > 0) return { hard: true, used: false, message: 'image has dependent child images' };
    const users = this.usersOf(id);
    if (mask & CONFLICT_RUNNING) {
      const c = users.find(isRunning);
      if (c) return { hard: true, used: true, message: `image is being used by running container ${shortId(c.Id)}` };
    }
    if (mask & CONFLICT_REFERENCE && this.store.refsOf(id).length > 0) return { hard: false, used: false, message: 'image is referenced in multiple repositories' };
    if (mask & CONFLICT_STOPPED) {
      const c = users.find((u) => !isRunning(u));
      if (c) return { hard: false, used: true, message: `image is being used by stopped container ${shortId(c.Id)}` };
    }
    return undefined;
  }

  private conflictError(id: string, c: DeleteConflict): BerthError {
    return conflict(`conflict: unable to delete ${shortId(id)} (${c.hard ? 'cannot be forced' : 'must be forced'}) - ${c.message}`);
  }

  private async untag(id: string, ref: Reference, records: DeleteResponse[]): Promise<void> {
    if ((await this.store.untag(ref)) === undefined) return;
    records.push({ Untagged: familiarString(ref) });
    this.emit('untag', id, id);
  }

  private async removeLocked(name: string, force: boolean, prune: boolean): Promise<DeleteResponse[]> {
    const img = this.store.mustResolve(name);
    const id = img.record.id;
    const records: DeleteResponse[] = [];
    const refs = (): Reference[] => this.store.refsOf(id).map((r) => parseReference(r));
    /** At most one tag, and every reference in one repository. */
    const singleReference = (rs: Reference[]): boolean => rs.filter((r) => !r.digest).length <= 1 && new Set(rs.map(fullName)).size <= 1;
    const hex = name.replace(/^sha256:/, '');
    const byId = /^[a-f0-9]{1,64}$/.test(hex) && id.slice(7).startsWith(hex);

    if (!byId) {
      const ref = parseReference(name);
      const key = ref.digest ? ref : withDefaultTag(ref);
      if (this.store.hasRef(key)) {
        if (!force && singleReference(refs())) {
          const user = this.usersOf(id)[0];
          if (user) throw conflict(`conflict: unable to remove repository reference "${name}" (must force) - container ${shortId(user.Id)} is using its referenced image ${shortId(id)}`);
        }
        await this.untag(id, key, records);
        if (!key.digest) {
          // Digests of a repository go with its last tag.
          const remaining = refs();
          if (!remaining.some((r) => !r.digest && fullName(r) === fullName(key))) {
            for (const r of remaining) if (r.digest && fullName(r) === fullName(key)) await this.untag(id, r, records);
          }
        }
        if (refs().length > 0) return records;
        await this.deleteHelper(id, records, force, prune, true);
        return records;
      }
      // A digest that names the image itself (or a manifest we no longer
      // track) falls through to deletion by ID.
    }
    if (singleReference(refs())) {
      const mask = force ? CONFLICT_HARD : CONFLICT_HARD | CONFLICT_STOPPED;
      const c = this.checkConflict(id, mask);
      if (c) throw this.conflictError(id, c);
      for (const r of refs()) await this.untag(id, r, records);
    }
    await this.deleteHelper(id, records, force, prune, false);
    return records;
  }

  private async deleteHelper(id: string, records: DeleteResponse[], force: boolean, prune: boolean, quiet: boolean): Promise<void> {
    const c = this.checkConflict(id, force ? CONFLICT_HARD : CONFLICT_ALL);
    if (c) {
      const dangling = this.store.refsOf(id).length === 0 && this.store.children(id).length === 0;
      // Pruning parents (and untagging) is best effort: a kept image is not an error unless it is now dangling and unused.
      if (quiet && (!dangling || c.used)) return;
      throw this.conflictError(id, c);
    }
    const img = this.store.get(id);
    if (!img) return;
    const parent = img.record.parent;
    for (const r of this.store.refsOf(id)) await this.untag(id, parseReference(r), records);

    const chains = chainIds(img.config.rootfs.diff_ids);
    const otherChains = new Set<string>();
    for (const o of this.store.all()) if (o.record.id !== id) for (const ch of chainIds(o.config.rootfs.diff_ids)) otherChains.add(ch);
    const inContainers = new Set<string>();
    for (const ctr of this.containers.list()) for (const l of ctr.berth?.layers ?? []) inContainers.add(l);
    if (chains.some((ch) => !otherChains.has(ch) && inContainers.has(ch))) {
      // A (forced) delete would take layers a container still stacks: the
      // image stays, untagged, until its containers are gone.
      return;
    }
    const sizes = new Map<string, number>();
    for (const ch of chains) sizes.set(ch, (await this.layers.get(ch))?.size ?? 0);
    const removed = await this.store.delete(id);
    for (const ch of removed) this.reclaimed += sizes.get(ch) ?? 0;
    this.emit('delete', id, id);
    records.push({ Deleted: id });
    for (const ch of removed) records.push({ Deleted: ch });
    await this.dropUnusedBlobs(img);
    if (prune && parent && this.store.get(parent)) await this.deleteHelper(parent, records, false, true, true);
  }

  /** Layer tars (and pulled blobs) of a deleted image that no remaining image names. */
  private async dropUnusedBlobs(img: ResolvedImage): Promise<void> {
    const used = new Set<string>();
    for (const { record, config } of this.store.all()) {
      for (const d of config.rootfs.diff_ids) used.add(d);
      for (const b of record.layerBlobs ?? []) if (b) used.add(b.digest);
      if (record.manifestDigest) used.add(record.manifestDigest);
    }
    const candidates = [...img.config.rootfs.diff_ids, ...(img.record.layerBlobs ?? []).flatMap((b) => (b ? [b.digest] : []))];
    if (img.record.manifestDigest) candidates.push(img.record.manifestDigest);
    for (const d of candidates) if (!used.has(d) && /^sha256:[a-f0-9]{64}$/.test(d)) await this.content.delete(d);
  }

  // ------------------------------------------------------------- prune

  async prune(filters: Map<string, string[]>): Promise<PruneReport> {
    for (const k of filters.keys()) if (!PRUNE_FILTERS.has(k)) throw invalid(`invalid filter '${k}'`);
    const danglingOnly = boolFilter(filters, 'dangling', true);
    const until = (filters.get('until') ?? []).map((v) => parseTimeFilter('until', v));
    const withLabels = filters.get('label') ?? [];
    const withoutLabels = filters.get('label!') ?? [];

    return this.lock.run(async () => {
      const report: DeleteResponse[] = [];
      const reclaimedBefore = this.reclaimed;
      let reclaimed = 0;
      const inUse = new Set(this.containers.list().map((c) => c.Image));
      const candidates = this.store.all().filter(({ record, config }) => {
        if (inUse.has(record.id)) return false;
        const refs = this.store.refsOf(record.id);
        const hasChildren = this.store.children(record.id).length > 0;
        if (danglingOnly && hasChildren) return false;
        // Untagged intermediate images go with the image above them.
        if (refs.length === 0 && hasChildren) return false;
        const created = unixSeconds(config.created);
        if (until.length && !until.every((u) => created < u)) return false;
        const labels = config.config?.Labels ?? {};
        if (!withLabels.every((l) => labelMatches(labels, l))) return false;
        if (withoutLabels.some((l) => labelMatches(labels, l))) return false;
        return true;
      });
      for (const { record } of candidates) {
        const id = record.id;
        if (!this.store.get(id)) continue;
        const refs = this.store.refsOf(id).map((r) => parseReference(r));
        const deleted: DeleteResponse[] = [];
        try {
          if (refs.length > 0) {
            if (danglingOnly && refs.some((r) => !r.digest)) continue;
            for (const r of refs) {
              if (!this.store.get(id)) break;
              deleted.push(...(await this.removeLocked(refString(r), false, true)));
            }
          } else {
            deleted.push(...(await this.removeLocked(id, false, true)));
          }
        } catch (err) {
          // An image in use is simply not pruned.
          if (err instanceof BerthError && err.kind === 'Conflict') continue;
          throw err;
        }
        report.push(...deleted);
      }
      reclaimed = this.reclaimed - reclaimedBefore;
      this.events.emit('image', 'prune', '', { reclaimed: String(reclaimed) });
      return { ImagesDeleted: report.length ? report : null, SpaceReclaimed: reclaimed };
    });
  }
}
