/**
 * Command-line flags as docker's CLI parses them: `--name value`,
 * `--name=value`, `-abc` bundles of short booleans, `-p80:80`, repeated list
 * flags, `--` to end flags, and commands (run, exec) whose flags stop at the
 * first argument.
 */
export type FlagType = 'bool' | 'string' | 'list' | 'int';

export interface FlagSpec {
  name: string;
  short?: string;
  type: FlagType;
  description?: string;
  default?: string | boolean | number;
  hidden?: boolean;
}

export class UsageError extends Error {}

export interface Parsed {
  flags: Map<string, string | boolean | number | string[]>;
  args: string[];
}

export function parseFlags(argv: string[], specs: FlagSpec[], opts: { interspersed?: boolean } = {}): Parsed {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags = new Map<string, string | boolean | number | string[]>();
  const args: string[] = [];
  const set = (spec: FlagSpec, raw: string | boolean) => {
    switch (spec.type) {
      case 'bool':
        if (typeof raw === 'string' && !['true', 'false', '1', '0'].includes(raw)) throw new UsageError(`invalid argument "${raw}" for "--${spec.name}" flag: strconv.ParseBool: parsing "${raw}": invalid syntax`);
        flags.set(spec.name, raw === true || raw === 'true' || raw === '1');
        break;
      case 'int': {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new UsageError(`invalid argument "${raw}" for "--${spec.name}" flag: strconv.ParseInt: parsing "${raw}": invalid syntax`);
        flags.set(spec.name, n);
        break;
      }
      case 'list': {
        const cur = (flags.get(spec.name) as string[] | undefined) ?? [];
        cur.push(String(raw));
        flags.set(spec.name, cur);
        break;
      }
      default:
        flags.set(spec.name, String(raw));
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const spec = byLong.get(name);
      if (!spec) throw new UsageError(`unknown flag: --${name}`);
      if (eq >= 0) set(spec, a.slice(eq + 1));
      else if (spec.type === 'bool') set(spec, true);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: --${name}`);
        set(spec, argv[++i]!);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const spec = byShort.get(c);
        if (!spec) throw new UsageError(`unknown shorthand flag: '${c}' in ${a}`);
        if (spec.type === 'bool') {
          if (a[j + 1] === '=') {
            set(spec, a.slice(j + 2));
            break;
          }
          set(spec, true);
          continue;
        }
        const rest = a.slice(j + 1).replace(/^=/, '');
        if (rest) set(spec, rest);
        else {
          if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: '${c}' in ${a}`);
          set(spec, argv[++i]!);
        }
        break;
      }
      continue;
    }
    args.push(a);
    if (opts.interspersed === false) {
      args.push(...argv.slice(i + 1));
      break;
    }
  }
  for (const s of specs) if (!flags.has(s.name) && s.default !== undefined) flags.set(s.name, s.default);
  return { flags, args };
}

/** Typed accessors over parsed flags. */
export class Flags {
  private readonly m: Parsed['flags'];
  constructor(m: Parsed['flags']) {
    this.m = m;
  }
  bool(name: string): boolean {
    return this.m.get(name) === true;
  }
  str(name: string): string | undefined {
    const v = this.m.get(name);
    return v === undefined ? undefined : String(v);
  }
  int(name: string): number | undefined {
    const v = this.m.get(name);
    return v === undefined ? undefined : Number(v);
  }
  list(name: string): string[] {
    return (this.m.get(name) as string[] | undefined) ?? [];
  }
  has(name: string): boolean {
    return this.m.has(name);
  }
}

export function usageText(use: string, short: string, specs: FlagSpec[]): string {
  const lines = [`Usage:  ${use}`, '', short, ''];
  const visible = specs.filter((s) => !s.hidden);
  if (visible.length) {
    lines.push('Options:');
    for (const s of visible.sort((a, b) => a.name.localeCompare(b.name))) {
      const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : s.type === 'list' ? ' list' : s.type === 'int' ? ' int' : ' string'}`;
      lines.push(`  ${left.padEnd(30)} ${s.description ?? ''}`);
    }
  }
  return lines.join('\n') + '\n';
}
