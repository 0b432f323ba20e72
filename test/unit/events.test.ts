import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventBus, EVENT_HISTORY, eventJSON, nanos } from '../../src/engine/events.ts';
import { eventFilter, parseEventTime } from '../../src/engine/event-filter.ts';
import { BerthError } from '../../src/util/errors.ts';

test('the history is a bounded ring in time order', () => {
  const bus = new EventBus();
  for (let i = 0; i < EVENT_HISTORY + 76; i++) bus.emit('container', 'start', `c${i}`);
  const h = bus.history();
  assert.equal(h.length, EVENT_HISTORY);
  assert.equal(h[0]!.Actor.ID, 'c76');
  assert.equal(h[h.length - 1]!.Actor.ID, `c${EVENT_HISTORY + 75}`);
  for (let i = 1; i < h.length; i++) assert.ok(nanos(h[i]!) > nanos(h[i - 1]!), 'strictly increasing times');
  const mid = nanos(h[100]!);
  assert.equal(bus.between(mid, undefined)[0]!.Actor.ID, h[100]!.Actor.ID);
  assert.equal(bus.between(undefined, mid).length, 101);
});

test('events carry docker\'s legacy fields, sorted attributes, enrichment and exact nanoseconds', () => {
  const bus = new EventBus();
  bus.enrich('container', (_id, attrs) => ({ ...attrs, team: 'a' }));
  const ev = bus.emit('container', 'die', 'abc', { name: 'x', image: 'busybox', exitCode: '0' });
  assert.deepEqual(Object.keys(ev.Actor.Attributes), ['exitCode', 'image', 'name', 'team']);
  assert.equal(ev.status, 'die');
  assert.equal(ev.from, 'busybox');
  const img = bus.emit('image', 'tag', 'sha256:1', { name: 'busybox:latest' });
  assert.equal(img.from, undefined);
  assert.equal(bus.emit('network', 'create', 'n1').status, undefined);
  const json = eventJSON(ev);
  assert.match(json, new RegExp(`"timeNano":${nanos(ev).toString()}}$`));
  assert.deepEqual(Object.keys(JSON.parse(json) as object), ['status', 'id', 'from', 'Type', 'Action', 'Actor', 'scope', 'time', 'timeNano']);
});

test('filters follow docker: names by prefix, images with or without tag, labels, prefixed actions', () => {
  const bus = new EventBus();
  const c = bus.emit('container', 'start', 'deadbeef01', { name: 'web-1', image: 'nginx:1.2', tier: 'front' });
  const i = bus.emit('image', 'tag', 'sha256:aa', { name: 'nginx:1.2' });
  const h = bus.emit('container', 'health_status: healthy', 'deadbeef01', { name: 'web-1', image: 'nginx:1.2' });
  const f = (o: Record<string, string[]>) => eventFilter(new Map(Object.entries(o)));
  assert.ok(f({ container: ['web'] })(c));
  assert.ok(f({ container: ['deadbeef'] })(c));
  assert.ok(!f({ container: ['db'] })(c));
  assert.ok(!f({ container: ['web'] })(i), 'a container filter applies to other types by their actor');
  assert.ok(f({ image: ['nginx'] })(c) && f({ image: ['nginx'] })(i) && f({ image: ['nginx:1.2'] })(i));
  assert.ok(!f({ image: ['ngin'] })(i));
  assert.ok(f({ label: ['tier=front'] })(c) && f({ label: ['tier'] })(c));
  assert.ok(!f({ label: ['tier=back'] })(c) && !f({ label: ['tier', 'x'] })(c));
  assert.ok(f({ event: ['health_status'] })(h) && !f({ event: ['health'] })(h));
  assert.ok(f({ type: ['image', 'network'] })(i) && !f({ type: ['image'] })(c));
  assert.throws(() => f({ bogus: ['1'] }), (e: unknown) => e instanceof BerthError && /invalid filter 'bogus'/.test(e.message));
  assert.throws(() => f({ type: ['nope'] }), /invalid filter 'type=nope'/);
});

test('since and until values', () => {
  assert.equal(parseEventTime('1700000000', 'since'), 1_700_000_000_000_000_000n);
  assert.equal(parseEventTime('1700000000.5', 'since'), 1_700_000_000_500_000_000n);
  assert.equal(parseEventTime('1700000000.000000001', 'since'), 1_700_000_000_000_000_001n);
  assert.equal(parseEventTime('', 'since'), undefined);
  assert.equal(parseEventTime('2023-11-14T22:13:20Z', 'until'), 1_700_000_000_000_000_000n);
  assert.throws(() => parseEventTime('yesterday', 'until'), /invalid value for until/);
});
