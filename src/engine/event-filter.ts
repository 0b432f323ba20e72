/**
 * docker's event filters. Values of one key are OR-ed, keys AND-ed. Name
 * filters (container, network, volume, daemon, ...) match the actor's ID or
 * its `name` attribute by prefix, so they also apply, as in docker, to
 * events of other types; `image` matches an image's ID or name, or a
 * container's image, with or without the tag; `label` needs every given
 * key (and value) among the attributes.
 */
import type { EngineEvent } from './events.ts';
import { invalid } from '../util/errors.ts';

const KEYS = new Set(['config', 'container', 'daemon', 'event', 'image', 'label', 'network', 'node', 'plugin', 'scope', 'secret', 'service', 'type', 'volume']);
const TYPES = new Set(['container', 'image', 'volume', 'network', 'daemon', 'plugin', 'node', 'service', 'secret', 'config', 'builder']);
/** Actions with a detail after a colon; a filter on the bare name matches them all. */
const PREFIXED = new Set(['health_status', 'exec_create', 'exec_start']);

export type EventPredicate = (ev: EngineEvent) => boolean;

function stripTag(ref: string): string {
  const at = ref.indexOf('@');
  if (at >= 0) return ref.slice(0, at);
  const colon = ref.lastIndexOf(':');
  return colon > ref.lastIndexOf('/') ? ref.slice(0, colon) : ref;
}

export function eventFilter(filters: Map<string, string[]>): EventPredicate {
  for (const k of filters.keys()) if (!KEYS.has(k)) throw invalid(`invalid filter '${k}'`);
  for (const t of filters.get('type') ?? []) if (!TYPES.has(t)) throw invalid(`invalid filter 'type=${t}'`);
  const vals = (k: string): string[] | undefined => {
    const v = filters.get(k);
    return v && v.length > 0 ? v : undefined;
  };
  const exact = (k: string, ...candidates: Array<string | undefined>): boolean => {
    const v = vals(k);
    return !v || v.some((x) => candidates.some((c) => c !== undefined && c === x));
  };
  const fuzzy = (k: string, ...candidates: Array<string | undefined>): boolean => {
    const v = vals(k);
    return !v || v.some((x) => candidates.some((c) => c !== undefined && (c === x || c.startsWith(x))));
  };
  const byName = (k: string, ev: EngineEvent): boolean => fuzzy(k, ev.Actor.ID, ev.Actor.Attributes.name);
  return (ev) => {
    const events = vals('event');
    if (events) {
      const loose = events.some((e) => PREFIXED.has(e));
      if (!(loose ? fuzzy('event', ev.Action) : exact('event', ev.Action))) return false;
    }
    if (!exact('type', ev.Type) || !exact('scope', ev.scope)) return false;
    for (const k of ['daemon', 'container', 'plugin', 'volume', 'network', 'node', 'service', 'secret', 'config']) {
      if (!byName(k, ev)) return false;
    }
    const imageName = ev.Type === 'image' ? ev.Actor.Attributes.name : ev.Actor.Attributes.image;
    if (!exact('image', ev.Actor.ID, imageName, stripTag(ev.Actor.ID), imageName === undefined ? undefined : stripTag(imageName))) return false;
    const labels = vals('label');
    if (labels) {
      const attrs = ev.Actor.Attributes;
      for (const l of labels) {
        const i = l.indexOf('=');
        const key = i < 0 ? l : l.slice(0, i);
        if (!Object.hasOwn(attrs, key)) return false;
        if (i >= 0 && attrs[key] !== l.slice(i + 1)) return false;
      }
    }
    return true;
  };
}

/**
 * A `since`/`until` value in nanoseconds: docker's `seconds[.nanoseconds]`
 * (what the CLIs send), or an RFC 3339 date; undefined when empty.
 */
export function parseEventTime(value: string | null, name: string): bigint | undefined {
  if (value === null || value === '') return undefined;
  const m = /^(-?\d+)(?:\.(\d{1,9}))?$/.exec(value);
  if (m) return BigInt(m[1]!) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw invalid(`invalid value for ${name}: ${JSON.stringify(value)}`);
  return BigInt(t) * 1_000_000n;
}
