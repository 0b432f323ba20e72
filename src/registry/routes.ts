/**
 * The distribution API's URL space: which endpoint a path names, which
 * methods it takes, and what access a request needs (the scopes a token
 * must grant).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, Principal } from './auth/access.ts';
import type { AccessEntry } from './auth/token.ts';
import type { RegistryStorage } from './storage.ts';
import type { UploadSessions } from './uploads.ts';

export type Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; uuid: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

/** What a handler gets. */
export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  storage: RegistryStorage;
  uploads: UploadSessions;
  auth: Authenticator;
  principal: Principal;
}

const METHODS: Record<Route['kind'], string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  blob: ['GET', 'HEAD', 'DELETE'],
  uploads: ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  tags: ['GET'],
  referrers: ['GET'],
};

// The name is everything before the last endpoint keyword: greedy, so a
// repository may itself have a component called "blobs" or "manifests".
const PATTERNS: [RegExp, (m: RegExpExecArray) => Route][] = [
  [/^\/v2\/?$/, () => ({ kind: 'base' })],
  [/^\/v2\/_catalog\/?$/, () => ({ kind: 'catalog' })],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: 'uploads', name: m[1]! })],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: 'upload', name: m[1]!, uuid: m[2]! })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^\/v2\/(.+)\/tags\/list\/?$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]!, digest: m[2]! })],
];

export function matchRoute(pathname: string): Route | undefined {
  let path: string;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  for (const [re, make] of PATTERNS) {
    const m = re.exec(path);
    if (m) return make(m);
  }
  return undefined;
}

export function allowedMethods(route: Route): string[] {
  return METHODS[route.kind];
}

export const isWrite = (method: string): boolean => method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';

/** The access a request needs; empty for `/v2/` (any authenticated client). */
export function requiredAccess(route: Route, method: string): AccessEntry[] {
  if (route.kind === 'base') return [];
  if (route.kind === 'catalog') return [{ type: 'registry', name: 'catalog', actions: ['*'] }];
  const repo = (actions: string[]): AccessEntry[] => [{ type: 'repository', name: route.name, actions }];
  if (method === 'DELETE' && (route.kind === 'blob' || route.kind === 'manifest')) return repo(['delete']);
  if (isWrite(method) || route.kind === 'uploads' || route.kind === 'upload') return repo(['pull', 'push']);
  return repo(['pull']);
}
