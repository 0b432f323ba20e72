/**
 * How containers are shown: the list (`ps`) summary, status strings and
 * filters. Pure functions over records, shared by the API.
 */
import type { ContainerRecord } from './container-types.ts';
import { humanDuration } from '../util/time.ts';
import { invalid } from '../util/errors.ts';
import type { ImageStore } from '../image/image-store.ts';

export function statusString(rec: ContainerRecord, now = Date.now()): string {
  const s = rec.State;
  if (s.Status === 'removing') return 'Removal In Progress';
  if (s.Status === 'dead') return 'Dead';
  if (s.Running) {
    const up = `Up ${humanDuration(now - Date.parse(s.StartedAt))}`;
    if (s.Paused) return `${up} (Paused)`;
    if (s.Health && s.Health.Status !== 'none') return `${up} (${s.Health.Status === 'starting' ? 'health: starting' : s.Health.Status})`;
    return up;
  }
  if (s.Restarting) return `Restarting (${s.ExitCode}) ${humanDuration(now - Date.parse(s.FinishedAt))} ago`;
  if (s.FinishedAt && !s.FinishedAt.startsWith('0001-')) return `Exited (${s.ExitCode}) ${humanDuration(now - Date.parse(s.FinishedAt))} ago`;
  return 'Created';
}

/** docker's `Command` column: the argv joined, with arguments quoted only when they contain spaces. */
export function commandString(rec: ContainerRecord): string {
  return [rec.Path, ...rec.Args].map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ');
}

export function summary(rec: ContainerRecord, images: ImageStore) {
  const tags = images.get(rec.Image) ? images.tagsOf(rec.Image) : [];
  const image = rec.berth.imageRef === rec.Image || tags.length === 0 ? (images.get(rec.Image) ? rec.berth.imageRef : rec.Image) : rec.berth.imageRef;
  return {
    Id: rec.Id,
    Names: [rec.Name],
    Image: image,
    ImageID: rec.Image,
    Command: commandString(rec),
    Created: Math.floor(Date.parse(rec.Created) / 1000),
    Ports: Object.entries(rec.NetworkSettings.Ports ?? {}).flatMap(([port, binds]) => {
      const [p, proto] = port.split('/');
      if (!binds || binds.length === 0) return [{ PrivatePort: Number(p), Type: proto ?? 'tcp' }];
      return binds.map((b) => ({ IP: b.HostIp || '0.0.0.0', PrivatePort: Number(p), PublicPort: Number(b.HostPort), Type: proto ?? 'tcp' }));
    }),
    Labels: rec.Config.Labels ?? {},
    State: rec.State.Status,
    Status: statusString(rec),
    HostConfig: { NetworkMode: rec.HostConfig.NetworkMode },
    NetworkSettings: { Networks: rec.NetworkSettings.Networks },
    Mounts: rec.Mounts,
  };
}

const KNOWN_FILTERS = new Set(['id', 'name', 'label', 'status', 'exited', 'ancestor', 'before', 'since', 'network', 'health', 'volume', 'is-task', 'publish', 'expose']);
const STATUSES = new Set(['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead']);

export function matchLabel(labels: Record<string, string>, want: string): boolean {
  const i = want.indexOf('=');
  if (i < 0) return want in labels;
  return labels[want.slice(0, i)] === want.slice(i + 1);
}

/**
 * Apply `ps` filters. Values of one filter are OR-ed, different filters
 * AND-ed, as docker does.
 */
export function filterContainers(recs: ContainerRecord[], filters: Map<string, string[]>, find: (ref: string) => ContainerRecord | undefined, images: ImageStore): ContainerRecord[] {
  for (const k of filters.keys()) if (!KNOWN_FILTERS.has(k)) throw invalid(`invalid filter '${k}'`);
  for (const s of filters.get('status') ?? []) if (!STATUSES.has(s)) throw invalid(`invalid filter 'status=${s}'`);
  let out = recs;
  const f = (key: string, pred: (rec: ContainerRecord, v: string) => boolean) => {
    const vals = filters.get(key);
    if (vals && vals.length) out = out.filter((r) => vals.some((v) => pred(r, v)));
  };
  f('id', (r, v) => r.Id.startsWith(v));
  f('name', (r, v) => new RegExp(v).test(r.Name.slice(1)) || new RegExp(v).test(r.Name));
  f('label', (r, v) => matchLabel(r.Config.Labels ?? {}, v));
  f('status', (r, v) => r.State.Status === v);
  f('exited', (r, v) => !r.State.Running && r.State.Status === 'exited' && r.State.ExitCode === Number(v));
  f('network', (r, v) => r.HostConfig.NetworkMode === v || v in r.NetworkSettings.Networks);
  f('health', (r, v) => (r.State.Health?.Status ?? 'none') === v);
  // A volume by name, or any mount by its destination, as docker matches it.
  f('volume', (r, v) => (r.berth.mounts ?? []).some((m) => m.name === v || m.destination === v));
  f('ancestor', (r, v) => {
    const img = images.resolve(v);
    if (!img) return false;
    let cur: string | undefined = r.Image;
    while (cur) {
      if (cur === img.record.id) return true;
      cur = images.get(cur)?.record.parent;
    }
    return false;
  });
  const before = filters.get('before')?.[0];
  if (before) {
    const b = find(before);
    if (!b) throw invalid(`No such container: ${before}`);
    out = out.filter((r) => r.Created < b.Created);
  }
  const since = filters.get('since')?.[0];
  if (since) {
    const s = find(since);
    if (!s) throw invalid(`No such container: ${since}`);
    out = out.filter((r) => r.Created > s.Created);
  }
  return out;
}
