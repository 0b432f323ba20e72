/**
 * An htpasswd file: `user:hash` lines with bcrypt ($2y$/$2a$/$2b$), apr1
 * ($apr1$) or {SHA} hashes, as Apache's htpasswd writes them. Verified
 * results are remembered (keyed by a digest of user, password and hash) so
 * that clients sending basic auth on every request pay bcrypt's cost once.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { bcryptVerify, isBcryptHash } from './bcrypt.ts';
import { apr1Verify, isApr1Hash } from './apr1.ts';

const CACHE_LIMIT = 1024;

export class Htpasswd {
  private readonly users = new Map<string, string>();
  private readonly verified = new Map<string, boolean>();

  constructor(text: string) {
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const i = line.indexOf(':');
      if (i <= 0) continue;
      this.users.set(line.slice(0, i), line.slice(i + 1));
    }
  }

  static load(path: string): Htpasswd {
    const h = new Htpasswd(readFileSync(path, 'utf8'));
    const bad = [...h.users].filter(([, hash]) => !supported(hash)).map(([u]) => u);
    if (bad.length) throw new Error(`${path}: unsupported password hash for ${bad.join(', ')} (use bcrypt, apr1 or SHA: htpasswd -B, -m or -s)`);
    return h;
  }

  get size(): number {
    return this.users.size;
  }

  verify(user: string, password: string): boolean {
    const hash = this.users.get(user);
    if (hash === undefined) return false;
    const key = createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    const ok = check(password, hash);
    if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
    this.verified.set(key, ok);
    return ok;
  }
}

function supported(hash: string): boolean {
  return isBcryptHash(hash) || isApr1Hash(hash) || hash.startsWith('{SHA}');
}

function check(password: string, hash: string): boolean {
  if (isBcryptHash(hash)) return bcryptVerify(password, hash);
  if (isApr1Hash(hash)) return apr1Verify(password, hash);
  if (hash.startsWith('{SHA}')) {
    const got = Buffer.from(createHash('sha1').update(password).digest('base64'));
    const want = Buffer.from(hash.slice(5));
    return got.length === want.length && timingSafeEqual(got, want);
  }
  return false;
}
