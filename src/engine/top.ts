/**
 * `docker top`: the host's `ps` with the caller's options, narrowed to the
 * processes in the container's cgroup (read from the kernel, so processes
 * started by exec are included) — the same approach as Docker Engine.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerRecord } from './container-types.ts';
import { conflict, invalid, systemError } from '../util/errors.ts';

export interface TopResult {
  Titles: string[];
  Processes: string[][];
}

/** docker refuses `-o key=PID…` forms that would rename the PID column to something else. */
export function validatePsArgs(psArgs: string): void {
  for (const m of psArgs.matchAll(/\s+(\S*)=\s*(PID\S*)/g)) {
    if (m[1] !== 'pid') throw invalid(`specifying "${m[1]}=${m[2]}" is not allowed`);
  }
}

/** Where a process's cgroup lives on the host: a v1 pids/memory hierarchy, else the unified one. */
export async function cgroupDirOf(pid: number): Promise<string> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  const lines = text.split('\n').filter(Boolean).map((l) => {
    const a = l.indexOf(':');
    const b = l.indexOf(':', a + 1);
    return { controllers: l.slice(a + 1, b).split(','), path: l.slice(b + 1) };
  });
  for (const want of ['pids', 'memory', 'cpu']) {
    const v1 = lines.find((l) => l.controllers.includes(want));
    if (v1) return join('/sys/fs/cgroup', v1.controllers.join(','), v1.path);
  }
  const v2 = lines.find((l) => l.controllers.length === 1 && l.controllers[0] === '');
  if (!v2) throw systemError(`no cgroup found for process ${pid}`);
  let base = '/sys/fs/cgroup';
  try {
    await readdir('/sys/fs/cgroup/unified');
    base = '/sys/fs/cgroup/unified';
  } catch {
    // a pure v2 host
  }
  return join(base, v2.path);
}

/** Every pid in a cgroup and the cgroups below it. */
export async function cgroupPids(dir: string): Promise<Set<number>> {
  const out = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    const procs = await readFile(join(d, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const l of procs.split('\n')) if (l) out.add(Number(l));
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => walk(join(d, e.name))));
  };
  await walk(dir);
  return out;
}

function runPs(args: string[]): Promise<{ ok: true; out: string } | { ok: false; err: string }> {
  return new Promise((resolve) => {
    execFile('ps', args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) resolve({ ok: false, err: stderr.split('\n')[0] || err.message });
      else resolve({ ok: true, out: stdout });
    });
  });
}

/** Split on ASCII whitespace only (a command line may hold other spaces). */
function fields(line: string): string[] {
  return line.split(/[ \t\n\v\f\r]+/).filter(Boolean);
}

/** Keep the lines of `ps` output whose PID is in `pids` (and thread lines that follow them). */
export function parsePsOutput(output: string, pids: Set<number>): TopResult {
  const lines = output.split('\n');
  const titles = fields(lines[0] ?? '');
  const pidIndex = titles.indexOf('PID');
  if (pidIndex < 0) throw systemError("Couldn't find PID field in ps output");
  const processes: string[][] = [];
  const add = (f: string[]) => processes.push([...f.slice(0, titles.length - 1), f.slice(titles.length - 1).join(' ')]);
  let previousMatched = false;
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const f = fields(line);
    if (f[pidIndex] === '-') {
      if (previousMatched) add(f);
      continue;
    }
    const p = Number(f[pidIndex]);
    if (!Number.isInteger(p)) throw systemError(`Unexpected pid '${f[pidIndex]}'`);
    previousMatched = pids.has(p);
    if (previousMatched) add(f);
  }
  return { Titles: titles, Processes: processes };
}

export async function containerTop(rec: ContainerRecord, psArgs: string): Promise<TopResult> {
  const argsText = psArgs || '-ef';
  validatePsArgs(argsText);
  if (!rec.State.Running || !rec.State.Pid) throw conflict(`container ${rec.Id} is not running`);
  if (rec.State.Restarting) throw conflict(`Container ${rec.Id} is restarting, wait until the container is running`);
  const pids = await cgroupPids(await cgroupDirOf(rec.State.Pid));
  pids.add(rec.State.Pid);
  const args = argsText.split(' ');
  // Narrow ps to the container's pids; some options (f) refuse -q, so fall back to all processes.
  let r = await runPs([...args, `-q${[...pids].join(',')}`]);
  if (!r.ok) r = await runPs(args);
  if (!r.ok) throw systemError(`ps: ${r.err}`);
  return parsePsOutput(r.out, pids);
}
