import type { Router } from '../router.ts';
import { API_VERSION, MIN_API_VERSION, reply } from '../router.ts';
import type { Engine } from '../../engine/engine.ts';

export function systemRoutes(r: Router, engine: Engine): void {
  const ping = () => reply(200, 'OK', { 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache', 'Builder-Version': '1' });
  r.get('/_ping', ping);
  r.head('/_ping', ping);
  r.get('/version', () => engine.system.version(API_VERSION, MIN_API_VERSION));
  r.get('/info', () => ({ ...engine.system.info(), NEventsListener: engine.events.listeners }));
}
