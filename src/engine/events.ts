/**
 * The engine's event bus: every service reports what happened here, in
 * docker's vocabulary, and `GET /events` replays recent history and streams
 * new events.
 *
 * Emitting: `events.emit(type, action, actorId, attributes)`. Use docker's
 * action names (container: create, start, die, kill, stop, destroy, rename,
 * attach, resize, pause, unpause, restart, exec_create: <cmd>, ...; image:
 * pull, tag, untag, delete, import, load, save, ...; network: create,
 * connect, disconnect, destroy, ...; volume: create, mount, unmount,
 * destroy, ...) and docker's attributes (`name` for the object's name,
 * `image` for a container's image, `container` for the container a network
 * or volume event concerns). A container's labels are added to its events
 * by the enricher the engine installs, as docker does.
 */
import { EventEmitter } from 'node:events';

export type EventType = 'container' | 'image' | 'network' | 'volume' | 'daemon' | 'builder' | 'plugin' | 'node' | 'service' | 'secret' | 'config';

export interface EngineEvent {
  Type: EventType;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local' | 'swarm';
  time: number;
  /** Nanoseconds since the epoch, rounded to a double; `nanos()` has the exact value. */
  timeNano: number;
  /** Deprecated fields older clients still read (container and image events). */
  status?: string;
  id?: string;
  from?: string;
}

/** How many events are kept for `since`/`until` replays. */
export const EVENT_HISTORY = 1024;

const exactNanos = new WeakMap<EngineEvent, bigint>();

/** An event's exact time in nanoseconds. */
export function nanos(ev: EngineEvent): bigint {
  return exactNanos.get(ev) ?? BigInt(ev.timeNano);
}

/** The event as docker's JSON, with the exact timeNano (JSON numbers in JS cannot hold it). */
export function eventJSON(ev: EngineEvent): string {
  const head: Record<string, unknown> = {};
  if (ev.status !== undefined) head.status = ev.status;
  if (ev.id !== undefined) head.id = ev.id;
  if (ev.from !== undefined) head.from = ev.from;
  Object.assign(head, { Type: ev.Type, Action: ev.Action, Actor: ev.Actor, scope: ev.scope, time: ev.time });
  const json = JSON.stringify(head);
  return `${json.slice(0, -1)},"timeNano":${nanos(ev).toString()}}`;
}

type Enricher = (id: string, attributes: Record<string, string>) => Record<string, string>;

export class EventBus {
  /** A ring: `next` is where the next event goes once it is full. */
  private readonly ring: EngineEvent[] = [];
  private next = 0;
  private readonly emitter = new EventEmitter();
  private lastNs = 0n;
  private readonly enrichers = new Map<EventType, Enricher>();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** Adds attributes to every event of a type (the engine adds container labels). */
  enrich(type: EventType, fn: Enricher): void {
    this.enrichers.set(type, fn);
  }

  private now(): bigint {
    // Wall clock with sub-millisecond digits, kept strictly increasing so
    // that replays by time keep the order events happened in.
    let ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
    if (ns <= this.lastNs) ns = this.lastNs + 1n;
    this.lastNs = ns;
    return ns;
  }

  emit(type: EventType, action: string, id: string, attributes: Record<string, string> = {}): EngineEvent {
    const ns = this.now();
    const enricher = this.enrichers.get(type);
    let attrs = enricher ? enricher(id, attributes) : { ...attributes };
    // Go encodes maps with sorted keys; clients see the same order here.
    attrs = Object.fromEntries(Object.entries(attrs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const ev: EngineEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attrs },
      scope: 'local',
      time: Number(ns / 1_000_000_000n),
      timeNano: Number(ns),
    };
    if (type === 'container') {
      ev.status = action;
      ev.id = id;
      if (attrs.image) ev.from = attrs.image;
    } else if (type === 'image') {
      ev.status = action;
      ev.id = id;
    }
    exactNanos.set(ev, ns);
    if (this.ring.length < EVENT_HISTORY) this.ring.push(ev);
    else {
      this.ring[this.next] = ev;
      this.next = (this.next + 1) % EVENT_HISTORY;
    }
    this.emitter.emit('event', ev);
    return ev;
  }

  /** The retained events, oldest first. */
  history(): EngineEvent[] {
    return this.ring.length < EVENT_HISTORY ? [...this.ring] : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  /** Retained events with since <= time <= until (nanoseconds; undefined for open ends). */
  between(sinceNs: bigint | undefined, untilNs: bigint | undefined): EngineEvent[] {
    return this.history().filter((e) => {
      const t = nanos(e);
      return (sinceNs === undefined || t >= sinceNs) && (untilNs === undefined || t <= untilNs);
    });
  }

  /** Events since a time in seconds (kept for callers of the first version). */
  since(seconds: number): EngineEvent[] {
    return this.between(BigInt(Math.floor(seconds * 1e9)), undefined);
  }

  subscribe(fn: (e: EngineEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  get listeners(): number {
    return this.emitter.listenerCount('event');
  }
}
