/**
 * Linux capabilities for containers: the default set, --cap-add/--cap-drop
 * arithmetic, and the ceiling the host imposes.
 */
import { readFileSync } from 'node:fs';
import { invalid } from '../util/errors.ts';

/** Every capability the kernel defines, indexed by its number (0..40). */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID',
  'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** What an unprivileged container gets when it asks for nothing else. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

const KNOWN = new Set(ALL_CAPABILITIES);
const NUMBER = new Map(ALL_CAPABILITIES.map((c, i) => [c, i] as const));

/**
 * `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all mean CAP_NET_ADMIN. The
 * keyword `ALL` (any case) is returned as `ALL`, since --cap-add/--cap-drop
 * accept it.
 */
export function normalizeCapability(s: string): string {
  let c = s.trim().toUpperCase();
  if (c === 'ALL') return 'ALL';
  if (!c.startsWith('CAP_')) c = `CAP_${c}`;
  if (!KNOWN.has(c)) throw invalid(`unknown capability: "${c}"`);
  return c;
}

/** Orders capabilities by number so generated specs are stable. */
function sorted(caps: Iterable<string>): string[] {
  return [...new Set(caps)].sort((a, b) => (NUMBER.get(a) ?? 99) - (NUMBER.get(b) ?? 99));
}

/** Parses a /proc/<pid>/status capability mask (hex) into names. */
export function capabilitiesFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim()}`);
  return ALL_CAPABILITIES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

let hostBounding: string[] | undefined;

/**
 * The capability bounding set berthd itself runs with. No container can
 * hold a capability outside it (capset would fail), so a privileged
 * container gets exactly this set, not every capability the kernel knows.
 */
export function hostBoundingCapabilities(): string[] {
  if (hostBounding === undefined) {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapBnd:\s*([0-9a-fA-F]+)$/m.exec(status);
    hostBounding = m ? capabilitiesFromMask(m[1]!) : [...ALL_CAPABILITIES];
  }
  return [...hostBounding];
}

export interface CapabilityOptions {
  add?: string[];
  drop?: string[];
  privileged?: boolean;
  /** Ceiling to apply; defaults to hostBoundingCapabilities(). */
  bounding?: string[];
}

/**
 * The container's capability set:
 * - privileged: everything the host can grant, add/drop ignored;
 * - ALL in add: everything except what drop names;
 * - ALL in drop: only what add names;
 * - otherwise: the defaults minus drop, then plus add (so naming a
 *   capability in both keeps it).
 * The result never exceeds the bounding set. Unknown names are an error
 * even when privileged, so a typo is reported rather than ignored.
 */
export function computeCapabilities(opts: CapabilityOptions): string[] {
  const add = (opts.add ?? []).map(normalizeCapability);
  const drop = (opts.drop ?? []).map(normalizeCapability);
  const ceiling = new Set(opts.bounding ?? hostBoundingCapabilities());
  let caps: string[];
  if (opts.privileged) {
    caps = [...ALL_CAPABILITIES];
  } else if (add.includes('ALL')) {
    caps = ALL_CAPABILITIES.filter((c) => !drop.includes(c));
  } else if (drop.includes('ALL')) {
    caps = add;
  } else {
    caps = [...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add];
  }
  return sorted(caps.filter((c) => ceiling.has(c)));
}
