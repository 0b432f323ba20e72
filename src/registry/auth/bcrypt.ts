/**
 * bcrypt password hashes ($2a$, $2b$, $2y$), as htpasswd -B writes them.
 *
 * Implemented here rather than taken from npm: the algorithm is small
 * (Blowfish plus the "expensive key schedule"), the project has no runtime
 * dependencies besides Node, and verifying is all the registry needs.
 * Blowfish's initial state is the fractional part of pi in hex; instead of
 * carrying a 4 KB table of constants, it is computed once, on first use,
 * with Machin's formula in BigInt fixed point (a few milliseconds).
 */
import { timingSafeEqual } from 'node:crypto';

const P_WORDS = 18;
const S_WORDS = 4 * 256;
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const MAGIC = Buffer.from('OrpheanBeholderScryDoubt');

let initialState: Int32Array | undefined;

/** atan(1/x) in fixed point with `one` as unity. */
function arctanInverse(x: bigint, one: bigint): bigint {
  const x2 = x * x;
  let power = one / x;
  let sum = power;
  for (let k = 1n; ; k++) {
    power /= x2;
    const term = power / (2n * k + 1n);
    if (term === 0n) break;
    sum += k % 2n === 1n ? -term : term;
  }
  return sum;
}

/** The first 18 + 1024 32-bit words of pi's fractional part (Blowfish's P-array then S-boxes). */
function piWords(): Int32Array {
  if (initialState) return initialState;
  const count = P_WORDS + S_WORDS;
  const bits = BigInt(count * 32);
  const guard = 64n;
  const one = 1n << (bits + guard);
  const pi = 16n * arctanInverse(5n, one) - 4n * arctanInverse(239n, one);
  const frac = (pi - 3n * one) >> guard;
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = Number((frac >> (bits - BigInt(32 * (i + 1)))) & 0xffffffffn) | 0;
  }
  initialState = out;
  return out;
}

class Blowfish {
  readonly p: Int32Array;
  readonly s: Int32Array;
  private readonly lr = new Int32Array(2);
  constructor() {
    const init = piWords();
    this.p = init.slice(0, P_WORDS);
    this.s = init.slice(P_WORDS);
  }

  /** Encrypt the pair in this.lr in place (F inlined: this is bcrypt's hot loop). */
  encipher(): void {
    const p = this.p;
    const s = this.s;
    let l = this.lr[0]! ^ p[0]!;
    let r = this.lr[1]!;
    for (let i = 1; i <= 16; i += 2) {
      r ^= ((((s[l >>> 24]! + s[256 | ((l >>> 16) & 0xff)]!) ^ s[512 | ((l >>> 8) & 0xff)]!) + s[768 | (l & 0xff)]!) | 0) ^ p[i]!;
      l ^= ((((s[r >>> 24]! + s[256 | ((r >>> 16) & 0xff)]!) ^ s[512 | ((r >>> 8) & 0xff)]!) + s[768 | (r & 0xff)]!) | 0) ^ p[i + 1]!;
    }
    this.lr[0] = r ^ p[17]!;
    this.lr[1] = l;
  }

  /** Blowfish key schedule, salted (bcrypt's expandstate) or not (salt undefined). */
  expand(key: Buffer, salt: Buffer | undefined): void {
    const keyStream = wordStream(key);
    for (let i = 0; i < P_WORDS; i++) this.p[i] = this.p[i]! ^ keyStream();
    const saltStream = salt ? wordStream(salt) : () => 0;
    const lr = this.lr;
    lr[0] = 0;
    lr[1] = 0;
    const fill = (target: Int32Array, n: number) => {
      for (let i = 0; i < n; i += 2) {
        lr[0] = lr[0]! ^ saltStream();
        lr[1] = lr[1]! ^ saltStream();
        this.encipher();
        target[i] = lr[0]!;
        target[i + 1] = lr[1]!;
      }
    };
    fill(this.p, P_WORDS);
    fill(this.s, S_WORDS);
  }

  /** ECB-encrypt big-endian words in place. */
  encryptWords(words: Int32Array): void {
    for (let i = 0; i < words.length; i += 2) {
      this.lr[0] = words[i]!;
      this.lr[1] = words[i + 1]!;
      this.encipher();
      words[i] = this.lr[0]!;
      words[i + 1] = this.lr[1]!;
    }
  }
}

/** Cycles through the bytes of `data`, four at a time, big-endian. */
function wordStream(data: Buffer): () => number {
  let j = 0;
  return () => {
    let w = 0;
    for (let k = 0; k < 4; k++) {
      w = (w << 8) | data[j]!;
      j = (j + 1) % data.length;
    }
    return w | 0;
  };
}

function encodeBase64(b: Buffer, len: number): string {
  let out = '';
  let i = 0;
  while (i < len) {
    let c1 = b[i++]!;
    out += BCRYPT_ALPHABET[c1 >> 2];
    c1 = (c1 & 0x03) << 4;
    if (i >= len) {
      out += BCRYPT_ALPHABET[c1];
      break;
    }
    let c2 = b[i++]!;
    c1 |= c2 >> 4;
    out += BCRYPT_ALPHABET[c1];
    c1 = (c2 & 0x0f) << 2;
    if (i >= len) {
      out += BCRYPT_ALPHABET[c1];
      break;
    }
    c2 = b[i++]!;
    c1 |= c2 >> 6;
    out += BCRYPT_ALPHABET[c1] + BCRYPT_ALPHABET[c2 & 0x3f];
  }
  return out;
}

function decodeBase64(s: string, len: number): Buffer | undefined {
  const vals: number[] = [];
  for (const ch of s) {
    const v = BCRYPT_ALPHABET.indexOf(ch);
    if (v < 0) return undefined;
    vals.push(v);
  }
  const out = Buffer.alloc(len);
  let o = 0;
  for (let i = 0; i + 1 < vals.length && o < len; i += 4) {
    const [a, b, c, d] = [vals[i]!, vals[i + 1]!, vals[i + 2], vals[i + 3]];
    out[o++] = (a << 2) | (b >> 4);
    if (o >= len || c === undefined) break;
    out[o++] = ((b & 0x0f) << 4) | (c >> 2);
    if (o >= len || d === undefined) break;
    out[o++] = ((c & 0x03) << 6) | d;
  }
  return o === len ? out : undefined;
}

const HASH_RE = /^\$2([aby])\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$/;

export function isBcryptHash(hash: string): boolean {
  return HASH_RE.test(hash);
}

/** The bcrypt hash of `password` with the version, cost and salt of `settings` (a full hash or its 29-char prefix). */
export function bcryptHash(password: string, settings: string): string {
  const m = /^\$2([aby])\$(\d\d)\$([./A-Za-z0-9]{22})/.exec(settings);
  if (!m) throw new Error('invalid bcrypt settings');
  const minor = m[1]!;
  const cost = Number(m[2]);
  if (cost < 4 || cost > 31) throw new Error('invalid bcrypt cost');
  const salt = decodeBase64(m[3]!, 16);
  if (!salt) throw new Error('invalid bcrypt salt');
  // The key is the C string including its NUL, at most 72 bytes of password.
  const pw = Buffer.from(password, 'utf8');
  const keyLen = Math.min(pw.length, 72) + 1;
  const key = Buffer.concat([pw, Buffer.alloc(1)]).subarray(0, keyLen);

  const bf = new Blowfish();
  bf.expand(key, salt);
  const rounds = 2 ** cost;
  for (let i = 0; i < rounds; i++) {
    bf.expand(key, undefined);
    bf.expand(salt, undefined);
  }
  const words = new Int32Array(6);
  for (let i = 0; i < 6; i++) words[i] = MAGIC.readInt32BE(i * 4);
  for (let i = 0; i < 64; i++) bf.encryptWords(words);
  const cipher = Buffer.alloc(24);
  for (let i = 0; i < 6; i++) cipher.writeInt32BE(words[i]!, i * 4);
  return `$2${minor}$${m[2]}$${encodeBase64(salt, 16)}${encodeBase64(cipher, 23)}`;
}

export function bcryptVerify(password: string, hash: string): boolean {
  if (!HASH_RE.test(hash)) return false;
  const computed = Buffer.from(bcryptHash(password, hash));
  const want = Buffer.from(hash);
  return computed.length === want.length && timingSafeEqual(computed, want);
}
