/**
 * Dockerfile variable substitution: `$var`, `${var}` and the modifiers
 * (`:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`), with the quoting
 * rules of the reference — single quotes are literal, double quotes allow
 * substitution, the escape character protects the next character. The result
 * is the word with quotes removed.
 */
import { invalid } from '../util/errors.ts';

export type Lookup = (name: string) => string | undefined;

export interface ExpandResult {
  words: string[];
  /** Variables the text referred to (for the build-arg cache key and "unused arg" warnings). */
  used: Set<string>;
}

/** Escape char per the `escape` directive. */
export class Expander {
  private readonly esc: string;
  private readonly lookup: Lookup;
  readonly used = new Set<string>();

  constructor(lookup: Lookup, escape = '\\') {
    this.lookup = lookup;
    this.esc = escape;
  }

  /** One word: quotes removed, variables substituted, whitespace kept. */
  word(text: string): string {
    return this.process(text, false)[0] ?? '';
  }

  /** Several words split on unquoted whitespace (EXPOSE, VOLUME, COPY sources, FROM…). */
  words(text: string): string[] {
    return this.process(text, true);
  }

  /** A heredoc body: only `$` substitutions (and the escaped `$`); quotes are text. */
  heredoc(text: string): string {
    let out = '';
    for (let i = 0; i < text.length;) {
      const c = text[i]!;
      if (c === this.esc && text[i + 1] === '$') {
        out += '$';
        i += 2;
      } else if (c === '$') {
        const r = this.dollar(text, i);
        out += r.value;
        i = r.next;
      } else {
        out += c;
        i++;
      }
    }
    return out;
  }

  private process(text: string, split: boolean): string[] {
    const out: string[] = [];
    let cur = '';
    let inWord = false;
    let i = 0;
    const n = text.length;
    while (i < n) {
      const c = text[i]!;
      if (split && /\s/.test(c)) {
        if (inWord) out.push(cur);
        cur = '';
        inWord = false;
        i++;
        continue;
      }
      inWord = true;
      if (c === this.esc) {
        if (i + 1 < n) {
          cur += text[i + 1];
          i += 2;
        } else {
          cur += c;
          i++;
        }
        continue;
      }
      if (c === "'") {
        const end = text.indexOf("'", i + 1);
        if (end < 0) throw invalid('unexpected end of statement while looking for matching single-quote');
        cur += text.slice(i + 1, end);
        i = end + 1;
        continue;
      }
      if (c === '"') {
        i++;
        let closed = false;
        while (i < n) {
          const d = text[i]!;
          if (d === '"') {
            closed = true;
            i++;
            break;
          }
          if (d === this.esc && i + 1 < n) {
            // Inside double quotes the escape char only protects `"`, `$` and itself.
            const nx = text[i + 1]!;
            if (nx === '"' || nx === '$' || nx === this.esc) {
              cur += nx;
              i += 2;
              continue;
            }
            cur += d;
            i++;
            continue;
          }
          if (d === '$') {
            const r = this.dollar(text, i);
            cur += r.value;
            i = r.next;
            continue;
          }
          cur += d;
          i++;
        }
        if (!closed) throw invalid('unexpected end of statement while looking for matching double-quote');
        continue;
      }
      if (c === '$') {
        const r = this.dollar(text, i);
        cur += r.value;
        i = r.next;
        continue;
      }
      cur += c;
      i++;
    }
    if (inWord || !split) out.push(cur);
    return out;
  }

  private get(name: string): string | undefined {
    this.used.add(name);
    return this.lookup(name);
  }

  /** Handles the `$` at `i`; returns the substituted text and the index after it. */
  private dollar(text: string, i: number): { value: string; next: number } {
    const n = text.length;
    if (i + 1 >= n) return { value: '$', next: i + 1 };
    const c = text[i + 1]!;
    if (c === '{') {
      let j = i + 2;
      const nameStart = j;
      while (j < n && /[A-Za-z0-9_]/.test(text[j]!)) j++;
      const name = text.slice(nameStart, j);
      if (name === '') throw invalid(`bad substitution: ${text.slice(i)}`);
      if (text[j] === '}') return { value: this.get(name) ?? '', next: j + 1 };
      // Find the matching close brace of the modifier word, honouring nesting and escapes.
      let depth = 1;
      let k = j;
      while (k < n) {
        const d = text[k]!;
        if (d === this.esc) {
          k += 2;
          continue;
        }
        if (d === '$' && text[k + 1] === '{') {
          depth++;
          k += 2;
          continue;
        }
        if (d === '}') {
          depth--;
          if (depth === 0) break;
        }
        k++;
      }
      if (k >= n) throw invalid(`missing '}' in ${text.slice(i)}`);
      const mod = text.slice(j, k);
      return { value: this.modifier(name, mod), next: k + 1 };
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_]/.test(text[j]!)) j++;
      return { value: this.get(text.slice(i + 1, j)) ?? '', next: j };
    }
    if (/[0-9]/.test(c)) {
      // Positional parameters never have a value in a Dockerfile.
      return { value: '', next: i + 2 };
    }
    return { value: '$', next: i + 1 };
  }

  private modifier(name: string, mod: string): string {
    const val = this.get(name);
    const sub = (w: string): string => new Expander((k) => { this.used.add(k); return this.lookup(k); }, this.esc).word(w);
    const two = mod.slice(0, 2);
    if (two === ':-') return val ? val : sub(mod.slice(2));
    if (two === ':+') return val ? sub(mod.slice(2)) : '';
    if (two === ':?') {
      if (val) return val;
      const msg = sub(mod.slice(2));
      throw invalid(`${name}: ${msg || 'is not allowed to be unset'}`);
    }
    const one = mod[0];
    if (one === '-') return val !== undefined ? val : sub(mod.slice(1));
    if (one === '+') return val !== undefined ? sub(mod.slice(1)) : '';
    if (one === '?') {
      if (val !== undefined) return val;
      const msg = sub(mod.slice(1));
      throw invalid(`${name}: ${msg || 'is not allowed to be unset'}`);
    }
    const v = val ?? '';
    if (two === '##') return trimPrefix(v, sub(mod.slice(2)), true);
    if (one === '#') return trimPrefix(v, sub(mod.slice(1)), false);
    if (two === '%%') return trimSuffix(v, sub(mod.slice(2)), true);
    if (one === '%') return trimSuffix(v, sub(mod.slice(1)), false);
    if (one === '/') {
      const all = mod[1] === '/';
      const body = mod.slice(all ? 2 : 1);
      const slash = findUnescaped(body, '/', this.esc);
      const pat = slash < 0 ? body : body.slice(0, slash);
      const rep = slash < 0 ? '' : sub(body.slice(slash + 1));
      const re = globToRegExp(sub(pat), true);
      return v.replace(new RegExp(re.source, all ? 'g' : ''), () => rep);
    }
    throw invalid(`unsupported modifier (${mod}) in substitution`);
  }
}

function findUnescaped(s: string, ch: string, esc: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === esc) {
      i++;
      continue;
    }
    if (s[i] === ch) return i;
  }
  return -1;
}

/** A shell pattern (`*`, `?`, `[...]`) as a regular expression; `greedy` picks `*`'s flavour. */
function globToRegExp(pat: string, greedy: boolean): RegExp {
  let re = '';
  for (let i = 0; i < pat.length; i++) {
    const c = pat[i]!;
    if (c === '*') re += greedy ? '.*' : '.*?';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pat.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = pat.slice(i + 1, end);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pat.length) {
      re += pat[i + 1]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      i++;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(re, 's');
}

function trimPrefix(v: string, pat: string, longest: boolean): string {
  const re = globToRegExp(pat, true);
  const lens = [...Array(v.length + 1).keys()];
  if (longest) lens.reverse();
  for (const l of lens) if (new RegExp(`^(?:${re.source})$`, 's').test(v.slice(0, l))) return v.slice(l);
  return v;
}

function trimSuffix(v: string, pat: string, longest: boolean): string {
  const re = globToRegExp(pat, true);
  const starts = [...Array(v.length + 1).keys()];
  if (!longest) starts.reverse();
  for (const s of starts) if (new RegExp(`^(?:${re.source})$`, 's').test(v.slice(s))) return v.slice(0, s);
  return v;
}

/** Expand one word against a map (convenience for callers with a plain environment). */
export function expandWord(text: string, vars: Map<string, string>, escape = '\\'): string {
  return new Expander((k) => vars.get(k), escape).word(text);
}

export function expandWords(text: string, vars: Map<string, string>, escape = '\\'): string[] {
  return new Expander((k) => vars.get(k), escape).words(text);
}
