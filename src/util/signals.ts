/**
 * Signal names and numbers as Linux numbers them on x86_64 (and arm64, which
 * shares the generic numbering for 1–31). Containers always run on the
 * daemon's own kernel, so one table suffices.
 */
import { invalid } from './errors.ts';

/** Canonical names (without SIG) by number; index 0 is unused. */
const NAMES: readonly string[] = [
  '', 'HUP', 'INT', 'QUIT', 'ILL', 'TRAP', 'ABRT', 'BUS', 'FPE', 'KILL', 'USR1',
  'SEGV', 'USR2', 'PIPE', 'ALRM', 'TERM', 'STKFLT', 'CHLD', 'CONT', 'STOP', 'TSTP',
  'TTIN', 'TTOU', 'URG', 'XCPU', 'XFSZ', 'VTALRM', 'PROF', 'WINCH', 'IO', 'PWR', 'SYS',
];

/** Other names the kernel headers give the same numbers. */
const ALIASES: Record<string, number> = { IOT: 6, CLD: 17, POLL: 29, UNUSED: 31 };

/** glibc reserves 32 and 33 for its threading; user-visible real-time signals start at 34. */
export const SIGRTMIN = 34;
export const SIGRTMAX = 64;

const BY_NAME = new Map<string, number>();
NAMES.forEach((n, i) => {
  if (n !== '') BY_NAME.set(n, i);
});
for (const [n, i] of Object.entries(ALIASES)) BY_NAME.set(n, i);

export interface Signal {
  /** Canonical name with the SIG prefix: `SIGKILL`, `SIGRTMIN+3`. */
  name: string;
  number: number;
}

/** Canonical name of a signal number (with SIG prefix), or undefined when out of range. */
export function signalName(n: number): string | undefined {
  if (!Number.isInteger(n) || n < 1 || n > SIGRTMAX) return undefined;
  if (n < NAMES.length) return `SIG${NAMES[n]}`;
  if (n < SIGRTMIN) return undefined;
  // Name real-time signals from the nearer end, as the shell's kill -l does.
  if (n === SIGRTMIN) return 'SIGRTMIN';
  if (n === SIGRTMAX) return 'SIGRTMAX';
  const mid = (SIGRTMIN + SIGRTMAX) / 2;
  return n <= mid ? `SIGRTMIN+${n - SIGRTMIN}` : `SIGRTMAX-${SIGRTMAX - n}`;
}

function realtime(upper: string): number | undefined {
  const m = /^RT(MIN|MAX)(?:([+-])(\d{1,2}))?$/.exec(upper);
  if (!m) return undefined;
  const base = m[1] === 'MIN' ? SIGRTMIN : SIGRTMAX;
  if (m[2] === undefined) return base;
  const off = Number(m[3]);
  // RTMIN counts up, RTMAX counts down; the other direction names nothing.
  if (m[1] === 'MIN' && m[2] !== '+') return undefined;
  if (m[1] === 'MAX' && m[2] !== '-') return undefined;
  const n = m[1] === 'MIN' ? base + off : base - off;
  return n >= SIGRTMIN && n <= SIGRTMAX ? n : undefined;
}

/**
 * Accepts `KILL`, `SIGKILL`, `sigkill`, `9`, `SIGRTMIN+3`, `RTMAX-1`.
 * Zero is refused: it probes a process without signalling it, which is
 * never what a stop or kill request means.
 */
export function parseSignal(s: string | number): Signal {
  const raw = String(s);
  let n: number | undefined;
  if (typeof s === 'number' || /^\d+$/.test(raw.trim())) {
    n = Number(raw.trim());
  } else {
    let upper = raw.toUpperCase();
    if (upper.startsWith('SIG')) upper = upper.slice(3);
    n = BY_NAME.get(upper) ?? realtime(upper);
  }
  const name = n === undefined ? undefined : signalName(n);
  if (n === undefined || name === undefined) throw invalid(`invalid signal: ${raw}`);
  return { name, number: n };
}

/** Whether a process with this pid exists (signal 0 checks without sending). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
