import { invalid } from './errors.ts';

/** Decimal sizes as docker prints them (`1.23MB`, `4.1kB`); `df` uses four significant digits. */
export function humanSize(bytes: number, digits = 3): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(digits))}${units[i]}`;
}

/** Binary sizes (`1.5MiB`), as `stats` prints memory. */
export function humanBinarySize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 2).replace(/\.00$/, '')}${units[i]}`;
}

/**
 * Parse a size with an optional binary unit as docker's flags do
 * (`512m`, `1g`, `100k`, `1024`, `1.5GB`): units are powers of 1024.
 */
export function parseBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(value.trim());
  if (!m) throw invalid(`invalid size: '${value}'`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}
