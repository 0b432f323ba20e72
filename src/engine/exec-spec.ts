/**
 * The process.json for `runc exec`: the container's own process settings
 * (from its bundle's config.json) with the exec's command, environment,
 * working directory, user, terminal and capabilities put in.
 */
import type { OciProcess } from '../runtime/oci-spec.ts';
import type { ResolvedUser } from './rootfs.ts';
import { invalid } from '../util/errors.ts';

export interface ExecSpecInput {
  /** The container's process from its config.json. */
  base: OciProcess;
  /** The container's Config.Env. */
  containerEnv: string[];
  hostname: string;
  cmd: string[];
  env: string[];
  /** Empty: the container's working directory. */
  workingDir: string;
  containerWorkingDir: string;
  user: ResolvedUser;
  tty: boolean;
  consoleSize?: [number, number];
  /** All capabilities the container could be given (privileged exec); else the container's. */
  privilegedCaps?: string[];
}

/** Replace `KEY=…` entries of `base` with those in `over`, append the rest (docker's rule). */
export function mergeEnv(base: string[], over: string[]): string[] {
  const out = [...base];
  const key = (e: string) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e);
  for (const e of over) {
    const i = out.findIndex((x) => key(x) === key(e));
    if (!e.includes('=')) {
      // A bare name unsets it, as docker does for `-e NAME` without a value in the client's env.
      if (i >= 0) out.splice(i, 1);
      continue;
    }
    if (i >= 0) out[i] = e;
    else out.push(e);
  }
  return out;
}

export function buildExecProcess(i: ExecSpecInput): OciProcess {
  if (i.cmd.length === 0) throw invalid('No exec command specified');
  const cwd = i.workingDir || i.containerWorkingDir || '/';
  if (!cwd.startsWith('/')) throw invalid(`the working directory '${cwd}' is invalid, it needs to be an absolute path`);
  let env = [...i.containerEnv];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${i.hostname}`);
  if (i.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  env = mergeEnv(env, i.env);
  const caps = i.privilegedCaps ?? i.base.capabilities?.bounding ?? [];
  const p: OciProcess = {
    terminal: i.tty,
    user: { uid: i.user.uid, gid: i.user.gid, ...(i.user.additionalGids.length ? { additionalGids: i.user.additionalGids } : {}) },
    args: i.cmd,
    env,
    cwd,
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    noNewPrivileges: i.base.noNewPrivileges ?? false,
  };
  if (i.tty && i.consoleSize && i.consoleSize[0] > 0 && i.consoleSize[1] > 0) p.consoleSize = { height: i.consoleSize[0], width: i.consoleSize[1] };
  if (i.base.rlimits) p.rlimits = i.base.rlimits;
  if (i.base.apparmorProfile) p.apparmorProfile = i.base.apparmorProfile;
  if (i.base.oomScoreAdj !== undefined) p.oomScoreAdj = i.base.oomScoreAdj;
  return p;
}
