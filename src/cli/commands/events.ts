/**
 * `berth events`: the daemon's event stream, printed as docker prints it
 * or through a `--format` template.
 */
import type { Command } from '../command.ts';
import { CliError, println } from '../command.ts';
import { parseFilterFlags } from '../filters.ts';
import { parseTemplate } from '../format/template.ts';
import { parseDuration } from '../../util/time.ts';

interface WireEvent {
  status?: string;
  id?: string;
  from?: string;
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes?: Record<string, string> };
  scope?: string;
  time?: number;
  timeNano?: number;
}

const pad = (n: number, w = 2): string => String(Math.abs(n)).padStart(w, '0');

/**
 * docker's GetTimestamp: a Go duration counts back from now (whole
 * seconds), a date without a zone is local time, a Unix timestamp passes
 * through; the result is what the API takes, `seconds[.nanoseconds]`.
 */
export function eventTimestamp(value: string, now = Date.now()): string {
  if (value !== '0') {
    let d: number | undefined;
    try {
      d = parseDuration(value);
    } catch {
      d = undefined;
    }
    if (d !== undefined) return String(Math.floor((now - d) / 1000));
  }
  if (/^\d+(\.\d{1,9})?$/.test(value)) return value;
  const m = /^(\d{4}-\d{2}-\d{2})(?:T(\d{2})(?::(\d{2}))?(?::(\d{2}))?(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?$/i.exec(value);
  if (!m) throw new CliError(`failed to parse value as time or duration: ${JSON.stringify(value)}`, 1);
  const [, date, hh = '00', mm = '00', ss = '00', frac = '', zone] = m;
  const iso = `${date}T${hh}:${mm}:${ss}${zone ? zone.toUpperCase() : ''}`;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new CliError(`failed to parse value as time or duration: ${JSON.stringify(value)}`, 1);
  return `${Math.floor(ms / 1000)}.${frac.padEnd(9, '0')}`;
}

/** RFC 3339 with nine fraction digits in local time (Go's RFC3339NanoFixed). */
function formatNano(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? 'Z' : `${off < 0 ? '-' : '+'}${pad(Math.trunc(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  const frac = (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${frac}${zone}`;
}

/** The event as the template sees it: Go's field names, and docker's JSON for `{{json .}}`. */
function templateData(ev: WireEvent, nano: bigint): Record<string, unknown> {
  const actor = { ID: ev.Actor.ID, Attributes: ev.Actor.Attributes ?? {} };
  const wire: Record<string, unknown> = {};
  if (ev.status) wire.status = ev.status;
  if (ev.id) wire.id = ev.id;
  if (ev.from) wire.from = ev.from;
  Object.assign(wire, { Type: ev.Type, Action: ev.Action, Actor: actor, scope: ev.scope, time: ev.time, timeNano: nano });
  return {
    Status: ev.status ?? '', ID: ev.id ?? '', From: ev.from ?? '', Type: ev.Type, Action: ev.Action, Actor: actor,
    Scope: ev.scope ?? '', Time: ev.time ?? 0, TimeNano: nano,
    toJSON: () => wire,
  };
}

export const commands: Command[] = [
  {
    name: 'events',
    use: 'berth events [OPTIONS]',
    short: 'Get real time events from the server',
    flags: [
      { name: 'filter', short: 'f', type: 'list', description: 'Filter output based on conditions provided' },
      { name: 'format', type: 'string', description: "Format output using a custom template: 'json' or a Go template" },
      { name: 'since', type: 'string', description: 'Show all events created since timestamp' },
      { name: 'until', type: 'string', description: 'Stream events until this timestamp' },
    ],
    maxArgs: 0,
    async run(ctx, f) {
      const now = Date.now();
      const since = f.str('since');
      const until = f.str('until');
      let format = f.str('format');
      if (format !== undefined && format.trim() === 'json') format = '{{json .}}';
      const tmpl = format ? parseTemplate(format.replace(/\\[tn]/g, (m) => (m === '\\t' ? '\t' : '\n'))) : undefined;
      const res = await ctx.client.raw('GET', '/events', {
        query: { since: since ? eventTimestamp(since, now) : undefined, until: until ? eventTimestamp(until, now) : undefined, filters: parseFilterFlags(f.list('filter')) },
      });
      let buf = '';
      const print = (line: string): void => {
        const ev = JSON.parse(line) as WireEvent;
        // The exact nanoseconds do not survive a JS number.
        const m = /"timeNano":(\d+)/.exec(line);
        const nano = m ? BigInt(m[1]!) : BigInt(ev.time ?? 0) * 1_000_000_000n;
        if (tmpl) {
          println(ctx, tmpl.execute(templateData(ev, nano)));
          return;
        }
        const attrs = Object.entries(ev.Actor.Attributes ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        const tail = attrs.length ? ` (${attrs.map(([k, v]) => `${k}=${v}`).join(', ')})` : '';
        println(ctx, `${formatNano(nano)} ${ev.Type} ${ev.Action} ${ev.Actor.ID}${tail}`);
      };
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) print(line);
        }
      }
      if (buf.trim()) print(buf.trim());
    },
  },
];
