/**
 * Streaming tar reader and writer (ustar, GNU long names, PAX).
 *
 * Image layers are streamed straight from the network or the blob store to
 * disk, so neither side ever holds a whole archive or a whole file in memory:
 * the reader hands out each entry's body as an async iterable over the input's
 * own chunks, and the writer produces its output lazily with backpressure.
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BerthError, invalid, systemError } from './errors.ts';

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  size: number;
  mtime: Date;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Record<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  body: AsyncIterable<Buffer>;
}

export type ByteSource = AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream;

const BLOCK = 512;
/** Ceiling for GNU long-name and PAX header bodies: they are held in memory. */
const MAX_META_SIZE = 1 << 20;

const bad = (): BerthError => invalid('archive/tar: invalid tar header');
const truncated = (): BerthError => invalid('archive/tar: unexpected EOF (truncated tar archive)');

export function asBuffer(chunk: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Pull-based byte reader over an async iterable of chunks. Reads of a header
 * block usually slice the current chunk without copying.
 */
class ChunkReader {
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>;
  private chunks: Buffer[] = [];
  private avail = 0;
  private eof = false;

  constructor(input: ByteSource) {
    this.it = (input as AsyncIterable<Buffer | Uint8Array | string>)[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    if (this.eof) return false;
    const r = await this.it.next();
    if (r.done) {
      this.eof = true;
      return false;
    }
    const b = asBuffer(r.value);
    if (b.length > 0) {
      this.chunks.push(b);
      this.avail += b.length;
    }
    return true;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.avail -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.avail -= n;
    return out;
  }

  /** Exactly n bytes; null on a clean end of input; an error if it ends midway. */
  async readExact(n: number): Promise<Buffer | null> {
    while (this.avail < n) {
      if (!(await this.pull())) {
        if (this.avail === 0) return null;
        throw truncated();
      }
    }
    return this.take(n);
  }

  /** Up to max bytes, at least one; the input ending first is a truncation. */
  async readSome(max: number): Promise<Buffer> {
    while (this.avail === 0) {
      if (!(await this.pull())) throw truncated();
    }
    return this.take(Math.min(max, this.chunks[0]!.length));
  }

  async skip(n: number): Promise<void> {
    while (n > 0) n -= (await this.readSome(n)).length;
  }

  async drain(): Promise<void> {
    this.chunks = [];
    this.avail = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.avail = 0;
    }
  }

  async close(): Promise<void> {
    if (!this.eof) {
      this.eof = true;
      await this.it.return?.();
    }
  }
}

// ---------------------------------------------------------------------------
// Header field decoding

function cstring(b: Buffer): string {
  const z = b.indexOf(0);
  return (z < 0 ? b : b.subarray(0, z)).toString('utf8');
}

/** A NUL-terminated string field of a header block, read in place. */
function cstringAt(b: Buffer, start: number, end: number): string {
  if (b[start] === 0) return '';
  let z = start;
  while (z < end && b[z] !== 0) z++;
  return b.toString('utf8', start, z);
}

/** A numeric field of a header block, read in place when it is plain octal. */
function numericAt(b: Buffer, start: number, end: number): number {
  if ((b[start]! & 0x80) === 0) {
    const v = plainOctal(b, start, end);
    if (v !== null) return v;
  }
  return parseNumeric(b.subarray(start, end));
}

/**
 * The common case of a numeric field read straight from the bytes: optional
 * leading spaces or NULs, octal digits, then spaces up to the end or a NUL.
 * Null for anything else, which the general parser below judges. Every header
 * has eight numeric fields, and a layer has thousands of headers.
 */
function plainOctal(b: Buffer, start: number, end: number): number | null {
  const n = end;
  let i = start;
  while (i < n && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  for (; i < n; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  while (i < n && b[i] === 0x20) i++;
  if (i < n && b[i] !== 0) return null;
  return Number.isSafeInteger(v) ? v : null;
}

function parseNumeric(b: Buffer): number {
  if (b.length > 0 && (b[0]! & 0x80) !== 0) {
    // base-256: big-endian two's complement, the top bit of the first byte is
    // only the marker.
    const inv = (b[0]! & 0x40) !== 0 ? 0xff : 0;
    let x = 0n;
    for (let i = 0; i < b.length; i++) {
      let c = b[i]! ^ inv;
      if (i === 0) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    const v = inv ? -(x + 1n) : x;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw bad();
    return Number(v);
  }
  let s = b.toString('latin1');
  s = s.replace(/^[ \0]+/, '').replace(/[ \0]+$/, '');
  // Some writers end a field with a NUL followed by junk; only the part up to
  // the first NUL counts.
  const z = s.indexOf('\0');
  if (z >= 0) s = s.slice(0, z).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw bad();
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw bad();
  return v;
}

function checksumOk(block: Buffer): boolean {
  let stored: number;
  try {
    stored = numericAt(block, 148, 156);
  } catch {
    return false;
  }
  // The checksum field itself counts as spaces.
  let unsigned = 8 * 0x20;
  let high = 0;
  for (let i = 0; i < BLOCK; i++) {
    if (i === 148) i = 156;
    const c = block[i]!;
    unsigned += c;
    if (c > 127) high++;
  }
  const signed = unsigned - 256 * high;
  // Historic writers summed signed chars; both are in the wild.
  return stored === unsigned || stored === signed;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

interface PaxRecords {
  [key: string]: Buffer;
}

function parsePax(buf: Buffer): PaxRecords {
  const out: PaxRecords = Object.create(null) as PaxRecords;
  let pos = 0;
  while (pos < buf.length) {
    // Padding NULs after the last record are tolerated.
    if (buf[pos] === 0 && isZeroBlock(buf.subarray(pos))) break;
    const sp = buf.indexOf(0x20, pos);
    if (sp < 0 || sp - pos > 20) throw invalid('archive/tar: invalid PAX record');
    const lenStr = buf.toString('latin1', pos, sp);
    if (!/^[0-9]+$/.test(lenStr)) throw invalid('archive/tar: invalid PAX record');
    const len = parseInt(lenStr, 10);
    if (len <= sp - pos + 1 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw invalid('archive/tar: invalid PAX record');
    }
    const rec = buf.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw invalid('archive/tar: invalid PAX record');
    const key = rec.toString('utf8', 0, eq);
    out[key] = Buffer.from(rec.subarray(eq + 1));
    pos += len;
  }
  return out;
}

function paxInt(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^-?[0-9]+$/.test(s)) throw invalid(`archive/tar: invalid PAX ${key} value`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw invalid(`archive/tar: invalid PAX ${key} value`);
  return n;
}

function paxTime(v: Buffer): Date {
  const s = v.toString('latin1');
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(s)) throw invalid('archive/tar: invalid PAX mtime value');
  return new Date(Math.round(Number(s) * 1000));
}

function applyPax(h: TarHeader, pax: PaxRecords): void {
  for (const [key, value] of Object.entries(pax)) {
    // An empty value removes the keyword: the ustar field stands.
    if (value.length === 0) continue;
    switch (key) {
      case 'path':
        h.name = value.toString('utf8');
        break;
      case 'linkpath':
        h.linkname = value.toString('utf8');
        break;
      case 'size': {
        const n = paxInt(value, key);
        if (n < 0) throw invalid('archive/tar: invalid PAX size value');
        h.size = n;
        break;
      }
      case 'uid':
        h.uid = paxInt(value, key);
        break;
      case 'gid':
        h.gid = paxInt(value, key);
        break;
      case 'uname':
        h.uname = value.toString('utf8');
        break;
      case 'gname':
        h.gname = value.toString('utf8');
        break;
      case 'mtime':
        h.mtime = paxTime(value);
        break;
      case 'SCHILY.devmajor':
        h.devmajor = paxInt(value, key);
        break;
      case 'SCHILY.devminor':
        h.devminor = paxInt(value, key);
        break;
      default:
        if (key.startsWith('SCHILY.xattr.')) {
          h.xattrs[key.slice('SCHILY.xattr.'.length)] = value;
        } else if (key.startsWith('GNU.sparse.')) {
          throw invalid('archive/tar: sparse files are not supported');
        }
    }
  }
}

const TYPE_BY_FLAG: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file', // contiguous file: an ordinary file everywhere that matters
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'directory',
  '6': 'fifo',
  D: 'directory', // GNU dumpdir: its body is a listing we do not need
};

/** What a header block asks of the reader (see TarHeaderDecoder). */
export type TarStep =
  /** The end marker's first block: the next block must be zeros too (or absent). */
  | { kind: 'end' }
  /** A GNU long name/link or PAX block: read `size` bytes (+ padding) and hand them to `meta()`. */
  | { kind: 'meta'; flag: string; size: number }
  /** Something that names no file (a volume label): skip `size` bytes + padding. */
  | { kind: 'skip'; size: number }
  /** A real entry; its body is `bodySize` bytes + padding (header.size is 0 for non-files). */
  | { kind: 'entry'; header: TarHeader; bodySize: number };

/**
 * Decodes header blocks, carrying long names and PAX records over to the
 * entry they describe. It does no I/O, so the streaming reader below and the
 * synchronous one in the layer extraction worker share every header rule.
 */
export class TarHeaderDecoder {
  private longName: string | undefined;
  private longLink: string | undefined;
  private pax: PaxRecords | undefined;

  /** True while extension headers wait for their entry: the input ending now is a truncation. */
  get pending(): boolean {
    return this.longName !== undefined || this.longLink !== undefined || this.pax !== undefined;
  }

  block(block: Buffer): TarStep {
    if (isZeroBlock(block)) return { kind: 'end' };
    if (!checksumOk(block)) throw bad();

    const flag = String.fromCharCode(block[156]!);
    const size = numericAt(block, 124, 136);
    if (size < 0) throw bad();

    if (flag === 'L' || flag === 'K' || flag === 'x' || flag === 'X' || flag === 'g') {
      if (size > MAX_META_SIZE) throw invalid('archive/tar: header extension too large');
      return { kind: 'meta', flag, size };
    }

    const magic = block.toString('latin1', 257, 263);
    let name = cstringAt(block, 0, 100);
    if (magic === 'ustar\0') {
      // star puts atime/ctime after a shorter prefix and marks it with "tar\0".
      const star = block.toString('latin1', 508, 512) === 'tar\0';
      const prefix = cstringAt(block, 345, star ? 476 : 500);
      if (prefix) name = `${prefix}/${name}`;
    }
    const hasOwnerNames = magic === 'ustar\0' || magic === 'ustar ';
    const type = TYPE_BY_FLAG[flag];
    const header: TarHeader = {
      name,
      type: type ?? 'file',
      mode: numericAt(block, 100, 108),
      uid: numericAt(block, 108, 116),
      gid: numericAt(block, 116, 124),
      size,
      mtime: new Date(numericAt(block, 136, 148) * 1000),
      linkname: cstringAt(block, 157, 257),
      devmajor: hasOwnerNames ? numericAt(block, 329, 337) : 0,
      devminor: hasOwnerNames ? numericAt(block, 337, 345) : 0,
      xattrs: {},
    };
    if (hasOwnerNames) {
      const uname = cstringAt(block, 265, 297);
      const gname = cstringAt(block, 297, 329);
      if (uname) header.uname = uname;
      if (gname) header.gname = gname;
    }
    if (this.longName !== undefined) header.name = this.longName;
    if (this.longLink !== undefined) header.linkname = this.longLink;
    if (this.pax) applyPax(header, this.pax);
    this.longName = this.longLink = this.pax = undefined;

    if (type === undefined) {
      // A volume label names the archive, not a file.
      if (flag === 'V') return { kind: 'skip', size: header.size };
      if (flag === 'S') throw invalid('archive/tar: sparse files are not supported');
      throw invalid(`archive/tar: unsupported entry type ${JSON.stringify(flag)} for ${header.name}`);
    }
    // Old archives mark directories only by a trailing slash.
    if (flag === '\0' && header.name.endsWith('/')) header.type = 'directory';
    // Only regular files carry data that belongs to the entry; anything
    // else with a size (a dumpdir listing, a link with junk) is skipped.
    const bodySize = header.size;
    if (header.type !== 'file') header.size = 0;
    return { kind: 'entry', header, bodySize };
  }

  /** The body of a 'meta' step. */
  meta(flag: string, data: Buffer): void {
    if (flag === 'L') this.longName = cstring(data);
    else if (flag === 'K') this.longLink = cstring(data);
    else if (flag === 'x' || flag === 'X') this.pax = { ...this.pax, ...parsePax(data) };
    // 'g': global headers set defaults no layer producer relies on.
  }
}

/** The end marker's second block: absent, or zeros. */
export function checkEndBlock(second: Buffer | null): void {
  if (second !== null && !isZeroBlock(second)) throw bad();
}

export const truncatedTar = truncated;

/**
 * Reads a tar stream entry by entry. Each entry's body must be consumed
 * before asking for the next entry, or it is skipped when the next entry is
 * requested; reading a body after that point fails.
 */
export async function* readTar(input: ByteSource): AsyncGenerator<TarEntry> {
  const r = new ChunkReader(input);
  const dec = new TarHeaderDecoder();
  let finished = false;

  try {
    for (;;) {
      const block = await r.readExact(BLOCK);
      if (block === null) {
        if (dec.pending) throw truncated();
        break;
      }
      const step = dec.block(block);
      if (step.kind === 'end') {
        checkEndBlock(await r.readExact(BLOCK));
        break;
      }
      if (step.kind === 'meta') {
        const data = step.size > 0 ? await r.readExact(step.size) : Buffer.alloc(0);
        if (data === null) throw truncated();
        await r.skip(tarPad(step.size));
        dec.meta(step.flag, data);
        continue;
      }
      if (step.kind === 'skip') {
        await r.skip(step.size + tarPad(step.size));
        continue;
      }
      const { header, bodySize } = step;
      const state = { remaining: bodySize, live: true };
      const body: AsyncIterable<Buffer> = {
        [Symbol.asyncIterator]: async function* () {
          if (header.type !== 'file') return;
          while (state.remaining > 0) {
            if (!state.live) throw invalid('archive/tar: entry body read after the next entry was requested');
            const c = await r.readSome(state.remaining);
            state.remaining -= c.length;
            yield c;
          }
        },
      };
      yield { header, body };
      state.live = false;
      await r.skip(state.remaining + tarPad(bodySize));
    }
    finished = true;
    // Whatever follows the end marker is record padding; reading it to the end
    // lets a digest computed on the same stream see every byte.
    await r.drain();
  } finally {
    if (!finished) await r.close().catch(() => {});
  }
}

export const TAR_BLOCK = BLOCK;

/** Bytes of padding after a body of n bytes. */
export function tarPad(n: number): number {
  const rem = n % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

// ---------------------------------------------------------------------------
// Writer

export interface TarHeaderInput {
  name: string;
  type?: TarEntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Required for a file whose body is an iterable; taken from a Buffer or a file otherwise. */
  size?: number;
  mtime?: Date | number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer | string>;
}

/** A file body: bytes, a stream of bytes, or the path of a file to copy. */
export type TarBody = Buffer | AsyncIterable<Buffer | Uint8Array> | string;

const FLAG_BY_TYPE: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

/** The two zero blocks that end an archive. */
export const TAR_TRAILER: Buffer = Buffer.alloc(2 * BLOCK);

const isAscii = (s: string): boolean => /^[\x01-\x7f]*$/.test(s);

function writeString(block: Buffer, off: number, len: number, s: string): void {
  block.write(s, off, len, 'utf8');
}

/** Writes an octal field if the value fits, base-256 otherwise; reports whether octal fit. */
function writeNumeric(block: Buffer, off: number, len: number, v: number): boolean {
  if (Number.isInteger(v) && v >= 0 && v < 8 ** (len - 1)) {
    block.write(v.toString(8).padStart(len - 1, '0'), off, len - 1, 'latin1');
    block[off + len - 1] = 0;
    return true;
  }
  let x = BigInt(Math.trunc(v));
  for (let i = len - 1; i >= 0; i--) {
    block[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  block[off] = v < 0 ? block[off]! | 0xc0 : (block[off]! & 0x7f) | 0x80;
  return false;
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const kv = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from('\n')]);
  let n = kv.length + 1;
  while (String(n).length + kv.length !== n) n = String(n).length + kv.length;
  return Buffer.concat([Buffer.from(String(n)), kv]);
}

function splitUstarName(name: string): { name: string; prefix: string } | null {
  if (!isAscii(name)) return null;
  if (name.length <= 100) return { name, prefix: '' };
  // The split point must be a slash with at most 155 bytes before it and a
  // non-empty name of at most 100 bytes after it.
  for (let i = Math.min(name.length - 1, 155); i > 0; i--) {
    if (name[i] !== '/') continue;
    const rest = name.slice(i + 1);
    if (rest.length === 0 || rest.length > 100) return null;
    return { name: rest, prefix: name.slice(0, i) };
  }
  return null;
}

function ustarBlock(fields: {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  flag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}): { block: Buffer; overflow: Set<string> } {
  const b = Buffer.alloc(BLOCK);
  const overflow = new Set<string>();
  writeString(b, 0, 100, fields.name);
  writeNumeric(b, 100, 8, fields.mode);
  if (!writeNumeric(b, 108, 8, fields.uid)) overflow.add('uid');
  if (!writeNumeric(b, 116, 8, fields.gid)) overflow.add('gid');
  if (!writeNumeric(b, 124, 12, fields.size)) overflow.add('size');
  if (!writeNumeric(b, 136, 12, fields.mtime)) overflow.add('mtime');
  b[156] = fields.flag.charCodeAt(0);
  writeString(b, 157, 100, fields.linkname);
  b.write('ustar\x0000', 257, 8, 'latin1');
  writeString(b, 265, 32, fields.uname);
  writeString(b, 297, 32, fields.gname);
  writeNumeric(b, 329, 8, fields.devmajor);
  writeNumeric(b, 337, 8, fields.devminor);
  writeString(b, 345, 155, fields.prefix);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0'), 148, 6, 'latin1');
  b[154] = 0;
  b[155] = 0x20;
  return { block: b, overflow };
}

/**
 * Encodes the header blocks of one entry: a PAX extended header when a value
 * does not fit ustar, then the ustar block. `size` must already be resolved.
 */
export function encodeHeader(h: TarHeaderInput & { size: number }): Buffer {
  const type = h.type ?? 'file';
  let name = h.name;
  if (type === 'directory' && !name.endsWith('/')) name += '/';
  const linkname = h.linkname ?? '';
  const uname = h.uname ?? '';
  const gname = h.gname ?? '';
  const mtimeMs = h.mtime === undefined ? 0 : typeof h.mtime === 'number' ? h.mtime : h.mtime.getTime();
  const mtime = Math.floor(mtimeMs / 1000);
  const size = type === 'file' ? h.size : 0;

  const records = new Map<string, Buffer | string>();
  const split = splitUstarName(name);
  if (!split) records.set('path', name);
  if (!isAscii(linkname) || Buffer.byteLength(linkname) > 100) records.set('linkpath', linkname);
  if (!isAscii(uname) || uname.length > 32) records.set('uname', uname);
  if (!isAscii(gname) || gname.length > 32) records.set('gname', gname);

  const fields = {
    name: split ? split.name : asciiTail(name, 100),
    prefix: split ? split.prefix : '',
    mode: (h.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    size,
    mtime,
    flag: FLAG_BY_TYPE[type],
    linkname: records.has('linkpath') ? asciiTail(linkname, 100) : linkname,
    uname: records.has('uname') ? '' : uname,
    gname: records.has('gname') ? '' : gname,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  };
  const { block, overflow } = ustarBlock(fields);
  if (overflow.has('uid')) records.set('uid', String(fields.uid));
  if (overflow.has('gid')) records.set('gid', String(fields.gid));
  if (overflow.has('size')) records.set('size', String(size));
  if (overflow.has('mtime')) records.set('mtime', String(mtime));
  for (const [k, v] of Object.entries(h.xattrs ?? {})) {
    if (k.includes('=') || k.includes('\0')) throw invalid(`tar: invalid xattr name ${JSON.stringify(k)}`);
    records.set(`SCHILY.xattr.${k}`, v);
  }
  if (records.size === 0) return block;

  const body = Buffer.concat([...records.keys()].sort().map((k) => paxRecord(k, records.get(k)!)));
  const base = name.replace(/\/+$/, '').split('/').pop() ?? '';
  const paxHead = ustarBlock({
    ...fields,
    name: asciiTail(`PaxHeaders.0/${base}`, 100),
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: Math.max(0, Math.min(mtime, 8 ** 11 - 1)),
    flag: 'x',
    linkname: '',
    uname: '',
    gname: '',
    devmajor: 0,
    devminor: 0,
  }).block;
  return Buffer.concat([paxHead, body, Buffer.alloc(tarPad(body.length)), block]);
}

/** A best-effort ustar field for readers that ignore PAX: printable ASCII, clipped. */
function asciiTail(s: string, len: number): string {
  const a = s.replace(/[^\x20-\x7e]/g, '_');
  return a.length <= len ? a : a.slice(0, len);
}

const READ_CHUNK = 256 * 1024;

async function* fileChunks(path: string, size: number): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  try {
    let pos = 0;
    while (pos < size) {
      const want = Math.min(READ_CHUNK, size - pos);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) throw systemError(`tar: ${path} shrank while being archived`);
      pos += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** Resolves the size of an entry's body: explicit, from a Buffer, or from the file. */
async function resolveSize(h: TarHeaderInput, body: TarBody | undefined): Promise<number> {
  if ((h.type ?? 'file') !== 'file') return 0;
  if (h.size !== undefined) return h.size;
  if (body === undefined) return 0;
  if (Buffer.isBuffer(body)) return body.length;
  if (typeof body === 'string') {
    const fh = await open(body, 'r');
    try {
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  }
  throw invalid(`tar: size is required for a streamed body (${h.name})`);
}

/** Encodes one entry: header blocks, body, padding. The body must supply exactly `size` bytes. */
export async function* encodeEntry(h: TarHeaderInput, body?: TarBody): AsyncGenerator<Buffer> {
  const size = await resolveSize(h, body);
  if (!Number.isSafeInteger(size) || size < 0) throw invalid(`tar: invalid size for ${h.name}`);
  yield encodeHeader({ ...h, size });
  if ((h.type ?? 'file') !== 'file' || size === 0) return;
  if (body === undefined) throw invalid(`tar: missing body for ${h.name}`);
  if (Buffer.isBuffer(body)) {
    if (body.length !== size) throw invalid(`tar: body of ${h.name} is ${body.length} bytes, header says ${size}`);
    yield body;
  } else if (typeof body === 'string') {
    yield* fileChunks(body, size);
  } else {
    let n = 0;
    for await (const c of body) {
      const b = asBuffer(c);
      n += b.length;
      if (n > size) throw invalid(`tar: body of ${h.name} is longer than ${size} bytes`);
      if (b.length > 0) yield b;
    }
    if (n !== size) throw invalid(`tar: body of ${h.name} is ${n} bytes, header says ${size}`);
  }
  const p = tarPad(size);
  if (p > 0) yield Buffer.alloc(p);
}

/** Encodes a whole archive from a sequence of entries, trailer included. */
export async function* packTar(
  entries: AsyncIterable<{ header: TarHeaderInput; body?: TarBody }> | Iterable<{ header: TarHeaderInput; body?: TarBody }>,
): AsyncGenerator<Buffer> {
  for await (const e of entries) yield* encodeEntry(e.header, e.body);
  yield TAR_TRAILER;
}

const HIGH_WATER = 1 << 20;

/**
 * Push-style writer: `add` entries, then `finish`; the archive is read by
 * iterating the writer (once) or through `stream()`. `add` resolves once the
 * entry has been handed to the reader, so a slow reader slows the producer
 * instead of filling memory.
 */
export class TarWriter implements AsyncIterable<Buffer> {
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure: unknown = undefined;
  private closedByReader = false;
  private wakeReader: (() => void) | undefined;
  private wakeWriters: (() => void)[] = [];
  private tail: Promise<void> = Promise.resolve();
  private iterating = false;

  add(header: TarHeaderInput, body?: TarBody): Promise<void> {
    const p = this.tail.then(() => this.writeAll(encodeEntry(header, body)));
    this.tail = p.catch((err: unknown) => {
      // A half-written entry corrupts the archive: the reader must fail too.
      this.destroy(err);
    });
    return p;
  }

  finish(): Promise<void> {
    const p = this.tail.then(async () => {
      await this.push(TAR_TRAILER);
      this.ended = true;
      this.wake();
    });
    this.tail = p.catch((err: unknown) => this.destroy(err));
    return p;
  }

  /** Aborts the archive; the reader sees `err`. */
  destroy(err?: unknown): void {
    if (this.failure === undefined) this.failure = err ?? systemError('tar: archive aborted');
    this.wake();
  }

  stream(): Readable {
    return Readable.from(this, { objectMode: false });
  }

  private async writeAll(chunks: AsyncIterable<Buffer>): Promise<void> {
    for await (const c of chunks) await this.push(c);
  }

  private async push(buf: Buffer): Promise<void> {
    this.check();
    if (this.ended) throw systemError('tar: add after finish');
    this.queue.push(buf);
    this.queued += buf.length;
    this.wake();
    while (this.queued > HIGH_WATER) {
      await new Promise<void>((resolve) => this.wakeWriters.push(resolve));
      this.check();
    }
  }

  private check(): void {
    if (this.closedByReader) throw systemError('tar: archive reader went away');
    if (this.failure !== undefined) throw this.failure;
  }

  private wake(): void {
    const r = this.wakeReader;
    this.wakeReader = undefined;
    r?.();
    const ws = this.wakeWriters;
    this.wakeWriters = [];
    for (const w of ws) w();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (this.iterating) throw systemError('tar: archive can be read only once');
    this.iterating = true;
    try {
      for (;;) {
        if (this.failure !== undefined) throw this.failure;
        const b = this.queue.shift();
        if (b !== undefined) {
          this.queued -= b.length;
          if (this.queued <= HIGH_WATER) this.wake();
          yield b;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
      }
    } finally {
      if (!this.ended || this.queue.length > 0) {
        this.closedByReader = true;
        this.queue = [];
        this.queued = 0;
        this.wake();
      }
    }
  }
}

/**
 * An entry name inside an archive, split the way tar reads it: a leading
 * slash dropped, `.` and `..` resolved lexically. A `..` that would climb
 * above the root is refused, not clamped: such a name can only be an attack.
 * `what` names the entry in the error, `root` what it would escape.
 */
export function archivePathParts(name: string, what = 'tar entry', root = 'the layer'): string[] {
  if (name.includes('\0')) throw invalid(`${what} ${JSON.stringify(name)}: name contains a NUL byte`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) throw invalid(`${what} ${JSON.stringify(name)} points outside ${root}`);
      parts.pop();
      continue;
    }
    parts.push(c);
  }
  return parts;
}
