/**
 * Startup checks of the OCI runtime berthd was told to use, so that a
 * runtime that cannot work on this host fails berthd's start with a clear
 * reason instead of failing every container later.
 */
import { accessSync, constants, readFileSync, statfsSync } from 'node:fs';

const CGROUP2_MAGIC = 0x63677270;

/**
 * crun refuses a hybrid cgroup layout (v1 controllers plus a cgroup2
 * hierarchy) as soon as any controller is enabled on the cgroup2 side.
 */
function crunUnsupportedReason(): string | undefined {
  if (statfsSync('/sys/fs/cgroup').type === CGROUP2_MAGIC) return undefined;
  let controllers = '';
  try {
    controllers = readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim();
  } catch {
    return undefined;
  }
  if (!controllers) return undefined;
  return `crun does not support this host's hybrid cgroup layout (controllers on the cgroup2 hierarchy: ${controllers.split(/\s+/).join(', ')}); use --runtime runc`;
}

export function checkRuntime(runtime: 'runc' | 'crun', path: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`OCI runtime ${runtime} not found at ${path}`);
  }
  if (runtime === 'crun') {
    const reason = crunUnsupportedReason();
    if (reason) throw new Error(reason);
  }
}
