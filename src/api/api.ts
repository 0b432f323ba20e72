import { Router } from './router.ts';
import type { Engine } from '../engine/engine.ts';
import { systemRoutes } from './routes/system.ts';
import { containerRoutes } from './routes/containers.ts';
import { imageRoutes } from './routes/images.ts';
import { volumeRoutes } from './routes/volumes.ts';
import { diskUsageRoutes } from './routes/system-df.ts';

/** Every Engine API route berthd serves. */
export function buildRouter(engine: Engine): Router {
  const r = new Router();
  systemRoutes(r, engine);
  containerRoutes(r, engine);
  imageRoutes(r, engine);
  volumeRoutes(r, engine);
  diskUsageRoutes(r, engine);
  return r;
}
