/** Docker's zero time, used for timestamps of events that never happened. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function nowIso(): string {
  return new Date().toISOString();
}

/**
 * Parse a point in time as docker's --since/--until take it: a Unix timestamp
 * (`1700000000`, `1700000000.123`), an RFC 3339 date, or a duration relative
 * to now (`10m`, `1h30m`). Returns seconds since the epoch (fractional).
 */
export function parseTimeArg(value: string, now = Date.now()): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const rel = parseDuration(value, false);
  if (rel !== undefined) return (now - rel) / 1000;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new Error(`invalid value for time: ${value}`);
  return t / 1000;
}

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parse a Go-style duration (`1h2m3.5s`, `300ms`) into milliseconds. */
export function parseDuration(value: string, strict = true): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  if (value === '0') return 0;
  while ((m = re.exec(value)) !== null) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== value.length) {
    if (strict) throw new Error(`time: invalid duration "${value}"`);
    return undefined;
  }
  return total;
}

/** Human duration as docker prints it in `ps` ("Up 3 seconds", "2 hours ago"). */
export function humanDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.round(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  const d = Math.round(h / 24);
  if (d < 14) return `${d} days`;
  if (d < 60) return `${Math.round(d / 7)} weeks`;
  if (d < 365 * 2) return `${Math.round(d / 30)} months`;
  return `${Math.round(d / 365)} years`;
}
