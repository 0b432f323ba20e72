/**
 * Apache's "$apr1$" password hash (htpasswd -m): Poul-Henning Kamp's
 * MD5-crypt with Apache's magic string, built on node:crypto's MD5.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const MAGIC = '$apr1$';
const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function md5(...parts: Buffer[]): Buffer {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
}

function to64(v: number, n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    out += ITOA64[v & 0x3f];
    v >>>= 6;
  }
  return out;
}

export function isApr1Hash(hash: string): boolean {
  return /^\$apr1\$[^$]{0,8}\$[./0-9A-Za-z]{22}$/.test(hash);
}

/** The apr1 hash of `password` with the salt taken from `settings` (`$apr1$salt$...` or `$apr1$salt`). */
export function apr1Hash(password: string, settings: string): string {
  if (!settings.startsWith(MAGIC)) throw new Error('not an apr1 hash');
  const saltStr = settings.slice(MAGIC.length).split('$')[0]!.slice(0, 8);
  const pw = Buffer.from(password, 'utf8');
  const salt = Buffer.from(saltStr, 'utf8');
  const magic = Buffer.from(MAGIC);

  let final = md5(pw, salt, pw);
  const parts: Buffer[] = [pw, magic, salt];
  for (let left = pw.length; left > 0; left -= 16) parts.push(final.subarray(0, Math.min(left, 16)));
  // The original "clears" the buffer bits with a zero byte or the password's first byte.
  for (let i = pw.length; i > 0; i >>= 1) parts.push(i & 1 ? Buffer.alloc(1) : pw.subarray(0, 1));
  final = md5(...parts);

  for (let i = 0; i < 1000; i++) {
    const round: Buffer[] = [];
    round.push(i & 1 ? pw : final);
    if (i % 3) round.push(salt);
    if (i % 7) round.push(pw);
    round.push(i & 1 ? final : pw);
    final = md5(...round);
  }

  const f = final;
  const encoded =
    to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) +
    to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4) +
    to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) +
    to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4) +
    to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) +
    to64(f[11]!, 2);
  return `${MAGIC}${saltStr}$${encoded}`;
}

export function apr1Verify(password: string, hash: string): boolean {
  if (!isApr1Hash(hash)) return false;
  const computed = Buffer.from(apr1Hash(password, hash));
  const want = Buffer.from(hash);
  return computed.length === want.length && timingSafeEqual(computed, want);
}
