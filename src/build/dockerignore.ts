/**
 * .dockerignore: patterns in Go's filepath.Match syntax plus `**`, `!`
 * exceptions, the last matching pattern deciding. A pattern that matches a
 * directory excludes everything under it (an exception can bring a file back).
 * The berth CLI applies it while packing the context; berthd applies it again
 * to contexts that arrive unfiltered.
 */
import { posix } from 'node:path';

interface Pattern {
  negate: boolean;
  re: RegExp;
}

export class DockerIgnore {
  private readonly patterns: Pattern[];

  constructor(text: string) {
    this.patterns = [];
    for (let line of text.split(/\r?\n/)) {
      if (line.startsWith('#')) continue;
      line = line.trim();
      if (line === '') continue;
      let negate = false;
      if (line.startsWith('!')) {
        negate = true;
        line = line.slice(1).trim();
      }
      let p = posix.normalize(line.replace(/\\/g, '/'));
      p = p.replace(/^\/+/, '').replace(/\/+$/, '');
      if (p === '.' || p === '') continue;
      this.patterns.push({ negate, re: compile(p) });
    }
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether a context-relative path (no leading slash) is excluded. */
  excluded(path: string): boolean {
    const parts = path.split('/');
    let out = false;
    for (const p of this.patterns) {
      let hit = p.re.test(path);
      // A match on any parent directory counts as a match on the path.
      for (let i = 1; !hit && i < parts.length; i++) hit = p.re.test(parts.slice(0, i).join('/'));
      if (hit) out = !p.negate;
    }
    return out;
  }

  /** Whether an exception could bring back something under an excluded directory. */
  hasExceptions(): boolean {
    return this.patterns.some((p) => p.negate);
  }
}

function compile(pattern: string): RegExp {
  let re = '^';
  const segs = pattern.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      re += last ? '.*' : '(?:.*/)?';
      return;
    }
    for (let j = 0; j < seg.length; j++) {
      const c = seg[j]!;
      if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else if (c === '[') {
        const end = seg.indexOf(']', j + 1);
        if (end < 0) re += '\\[';
        else {
          let cls = seg.slice(j + 1, end);
          if (cls.startsWith('^') || cls.startsWith('!')) cls = '^' + cls.slice(1);
          re += `[${cls}]`;
          j = end;
        }
      } else if (c === '\\' && j + 1 < seg.length) {
        re += seg[j + 1]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        j++;
      } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
    if (!last) re += '/';
  });
  return new RegExp(re + '$');
}

/** Go's filepath.Match for one path (COPY source wildcards). */
export function globMatch(pattern: string, path: string): boolean {
  return compile(pattern).test(path);
}

export function hasGlob(s: string): boolean {
  return /[*?[]/.test(s);
}
