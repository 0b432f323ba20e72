import { Router } from './router.ts';
import type { Engine } from '../engine/engine.ts';
import { systemRoutes } from './routes/system.ts';
import { containerRoutes } from './routes/containers.ts';
import { imageRoutes } from './routes/images.ts';
import { networkRoutes } from './routes/networks.ts';
import { containerExtraRoutes } from './routes/container-extras.ts';
import { buildRoutes } from './routes/build.ts';
import { distributionRoutes } from './routes/distribution.ts';
import { execRoutes } from './routes/exec.ts';
import { volumeRoutes } from './routes/volumes.ts';
import { archiveRoutes } from './routes/archive.ts';
import { eventRoutes } from './routes/events.ts';
import { dataRoutes } from './routes/data.ts';

/** Every Engine API route berthd serves. */
export function buildRouter(engine: Engine): Router {
  const r = new Router();
  systemRoutes(r, engine);
  containerRoutes(r, engine);
  containerExtraRoutes(r, engine);
  distributionRoutes(r, engine);
  imageRoutes(r, engine);
  networkRoutes(r, engine);
  buildRoutes(r, engine);
  volumeRoutes(r, engine);
  archiveRoutes(r, engine);
  eventRoutes(r, engine);
  dataRoutes(r, engine);
  execRoutes(r, engine);
  // Last: they answer only for what no other module serves.
  return r;
}
