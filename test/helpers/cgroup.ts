/**
 * Reading a test container's cgroup files from the host, whichever cgroup
 * version the host runs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDaemon } from './daemon.ts';
import { cgroupOfPid, cgroupVersion } from '../../src/runtime/cgroups.ts';

export const CGROUP_V2 = cgroupVersion() === 2;

export function containerPid(d: TestDaemon, name: string): number {
  const r = d.berth(['inspect', '-f', '{{.State.Pid}}', name]);
  return Number(r.stdout.trim());
}

/** The content of one cgroup file of a running container (v1 and v2 names given). */
export function cgroupFile(d: TestDaemon, name: string, controller: string, v1: string, v2: string): string {
  const cg = cgroupOfPid(containerPid(d, name));
  if (!cg) throw new Error(`no cgroup for ${name}`);
  return readFileSync(join(cg.dir(controller)!, CGROUP_V2 ? v2 : v1), 'utf8').trim();
}

/** Wait (polling) until `check` holds; fail with `what` after a generous deadline. */
export async function eventually(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for: ${what}`);
}
