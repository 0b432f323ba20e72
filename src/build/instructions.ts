/**
 * What the configuration instructions do to an image config, and the history
 * text docker's classic builder records for each (`/bin/sh -c #(nop)  CMD
 * ["sh"]`, Go's formatting of lists and structs included), so that images
 * built here read like images docker built.
 */
import type { HealthConfig, ImageRunConfig } from '../image/types.ts';
import { invalid } from '../util/errors.ts';
import { parseSignal } from '../util/signals.ts';
import { parseDuration } from '../util/time.ts';

export const DEFAULT_SHELL = ['/bin/sh', '-c'];
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function shellOf(run: ImageRunConfig): string[] {
  return run.Shell && run.Shell.length ? run.Shell : DEFAULT_SHELL;
}

/** `/bin/sh -c #(nop)  <comment>`: config-only steps (two spaces, as docker joins its pieces). */
export function nopHistory(run: ImageRunConfig, comment: string): string {
  return [...shellOf(run), '#(nop) ', comment].join(' ');
}

/** COPY/ADD/WORKDIR use a single-space form. */
export function nopHistory1(run: ImageRunConfig, comment: string): string {
  return [...shellOf(run), `#(nop) ${comment}`].join(' ');
}

/** Go's %q of a string slice: `["a" "b"]`. */
export function goQuoteList(xs: string[]): string {
  return `[${xs.map((x) => JSON.stringify(x)).join(' ')}]`;
}

/** Go's %v of a string slice: `[a b]`. */
export function goList(xs: string[]): string {
  return `[${xs.join(' ')}]`;
}

/** Go's time.Duration String(). */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let n = Math.abs(ns);
  if (n < 1e3) return `${neg ? '-' : ''}${n}ns`;
  if (n < 1e6) return `${neg ? '-' : ''}${trimFloat(n / 1e3)}µs`;
  if (n < 1e9) return `${neg ? '-' : ''}${trimFloat(n / 1e6)}ms`;
  let out = '';
  const h = Math.floor(n / 3.6e12);
  n -= h * 3.6e12;
  const m = Math.floor(n / 6e10);
  n -= m * 6e10;
  const s = n / 1e9;
  if (h) out += `${h}h`;
  if (h || m) out += `${m}m`;
  out += `${trimFloat(s)}s`;
  return (neg ? '-' : '') + out;
}

function trimFloat(x: number): string {
  return String(Number(x.toFixed(9)));
}

/** Go's %q of a small integer (a rune): `'\x02'`. */
function goRune(n: number): string {
  if (n >= 0x20 && n < 0x7f) return n === 0x27 ? "'\\''" : `'${String.fromCharCode(n)}'`;
  if (n < 0x100) return `'\\x${n.toString(16).padStart(2, '0')}'`;
  return `'\\u${n.toString(16).padStart(4, '0')}'`;
}

/** The classic builder's HEALTHCHECK history: `&{["CMD-SHELL" "x"] "5s" "0s" "0s" '\x02'}`. */
export function healthHistory(h: HealthConfig): string {
  return `&{${goQuoteList(h.Test ?? [])} "${goDuration(h.Interval ?? 0)}" "${goDuration(h.Timeout ?? 0)}" "${goDuration(h.StartPeriod ?? 0)}" ${goRune(h.Retries ?? 0)}}`;
}

/** Docker's duration flags (`30s`, `1m30s`, `500ms`) in nanoseconds. */
export function parseGoDuration(flag: string, v: string): number {
  const ms = parseDuration(v, false);
  if (ms === undefined) throw invalid(`time: invalid duration "${v}"`);
  return Math.round(ms * 1e6);
}

export function healthcheck(flags: Map<string, string>, json: string[] | undefined, rest: string): HealthConfig {
  const kind = /^(\S*)/.exec(rest)![1]!.toUpperCase();
  if (kind === 'NONE') return { Test: ['NONE'] };
  const h: HealthConfig = {};
  const cmdText = rest.replace(/^CMD\s*/i, '');
  h.Test = json ? ['CMD', ...json] : ['CMD-SHELL', cmdText];
  const dur = (name: string, key: 'Interval' | 'Timeout' | 'StartPeriod' | 'StartInterval'): void => {
    const v = flags.get(name);
    if (v === undefined) return;
    const ns = parseGoDuration(name, v);
    if (ns !== 0 && ns < 1e6) throw invalid(`Interval "${name}" cannot be less than 1ms`);
    if (ns < 0) throw invalid(`Interval "${name}" cannot be negative`);
    h[key] = ns;
  };
  dur('interval', 'Interval');
  dur('timeout', 'Timeout');
  dur('start-period', 'StartPeriod');
  dur('start-interval', 'StartInterval');
  const r = flags.get('retries');
  if (r !== undefined) {
    if (!/^-?\d+$/.test(r)) throw invalid(`strconv.ParseInt: parsing "${r}": invalid syntax`);
    if (Number(r) < 0) throw invalid('--retries cannot be negative');
    h.Retries = Number(r);
  }
  return h;
}

/** `EXPOSE` specs to port keys, and the history text (sorted, `/tcp` left off). */
export function exposePorts(specs: string[]): { keys: string[]; text: string } {
  const keys: string[] = [];
  const shown: string[] = [];
  for (const spec of specs) {
    const pm = /^(?:(?:[^:]*):)?(\d+)(?:-(\d+))?(?:\/([A-Za-z]+))?$/.exec(spec);
    if (!pm) throw invalid(`invalid containerPort: ${spec}`);
    const proto = (pm[3] ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(proto)) throw invalid(`invalid proto: ${pm[3]}`);
    const start = Number(pm[1]);
    const end = pm[2] !== undefined ? Number(pm[2]) : start;
    if (start > 65535 || end > 65535 || end < start) throw invalid(`invalid containerPort: ${spec}`);
    for (let p = start; p <= end; p++) {
      keys.push(`${p}/${proto}`);
      shown.push(proto === 'tcp' ? String(p) : `${p}/${proto}`);
    }
  }
  return { keys, text: [...new Set(shown)].sort().join(' ') };
}

export function checkSignal(sig: string): void {
  parseSignal(sig);
}

/** Replace or append `KEY=value` in an env list. */
export function setEnv(list: string[], key: string, value: string): string[] {
  const out = [...list];
  const i = out.findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

export { envToMap } from '../util/env.ts';
