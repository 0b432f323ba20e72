/**
 * How layers spell deletions and overlayfs' own markers, shared by the
 * extractor (layer-applier.ts) and the diff producer (layer.ts).
 *
 * In a layer tar a deleted path is an empty `.wh.<name>` entry and an opaque
 * directory holds a `.wh..wh..opq` entry. On disk, overlayfs wants a 0/0
 * character device for a deletion and the xattr trusted.overlay.opaque=y on
 * an opaque directory.
 */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
/** Entries with this prefix are other tools' bookkeeping and never extracted, so
 * the name is also safe for our own scratch whiteout device. */
export const META_PREFIX = '.wh..wh.';
export const WHITEOUT_TEMPLATE = '.wh..wh.berth-whiteout';
export const OPAQUE_XATTR = 'trusted.overlay.opaque';

/**
 * overlayfs keeps its bookkeeping (opaque, redirect, origin, metacopy…) in
 * these; a layer must never be able to set them, nor a diff leak them.
 */
export const isOverlayXattr = (name: string): boolean => name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');

/** Quotes a path for a getfattr/setfattr dump: every byte outside a safe set as \ooo. */
export function quoteDumpPath(p: string): string {
  let s = '';
  for (const byte of Buffer.from(p)) {
    const ch = String.fromCharCode(byte);
    s += /[A-Za-z0-9._\/+,:@-]/.test(ch) ? ch : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return s;
}

export function unquoteDumpPath(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
