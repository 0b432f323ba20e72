import { Router } from './router.ts';
import type { Engine } from '../engine/engine.ts';
import { systemRoutes } from './routes/system.ts';
import { containerRoutes } from './routes/containers.ts';
import { imageRoutes } from './routes/images.ts';
import { networkRoutes } from './routes/networks.ts';

/** Every Engine API route berthd serves. */
export function buildRouter(engine: Engine): Router {
  const r = new Router();
  systemRoutes(r, engine);
  containerRoutes(r, engine);
  imageRoutes(r, engine);
  networkRoutes(r, engine);
  return r;
}
