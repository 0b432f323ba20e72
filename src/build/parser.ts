/**
 * The Dockerfile parser: parser directives, comments, line continuations,
 * heredocs, instruction flags, and exec (JSON) versus shell form. It turns
 * text into instructions; what they mean is the executor's business. Every
 * error names the line it was found on, worded as docker words it.
 */
import { BerthError } from '../util/errors.ts';

export interface Heredoc {
  name: string;
  content: string;
  /** Unquoted delimiter: the body is subject to substitution. */
  expand: boolean;
}

export interface Flag {
  name: string;
  /** null for a bare `--flag`. */
  value: string | null;
}

export interface Instruction {
  /** Upper-case keyword. */
  cmd: string;
  /** Line of the keyword (1-based). */
  line: number;
  /** The instruction as written, continuations joined (heredoc bodies excluded). */
  original: string;
  flags: Flag[];
  /** Everything after the keyword and the flags. */
  rest: string;
  /** The exec form's arguments, when the rest is a JSON string array. */
  json?: string[];
  heredocs: Heredoc[];
  /** ONBUILD's trigger. */
  trigger?: Instruction;
}

export interface Directives {
  syntax?: string;
  escape: string;
  check?: string;
}

export interface ParsedDockerfile {
  directives: Directives;
  instructions: Instruction[];
  warnings: string[];
}

export class DockerfileError extends BerthError {
  readonly line: number;
  constructor(line: number, message: string) {
    super('InvalidParameter', line > 0 ? `dockerfile parse error on line ${line}: ${message}` : message);
    this.line = line;
  }
}

export const INSTRUCTIONS = new Set([
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG',
  'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
]);

/** Flags each instruction accepts (`*` marks one that may repeat). */
const ALLOWED_FLAGS: Record<string, string[]> = {
  FROM: ['platform'],
  RUN: ['mount*', 'network', 'security'],
  COPY: ['from', 'chown', 'chmod', 'link', 'parents', 'exclude*'],
  ADD: ['chown', 'chmod', 'link', 'keep-git-dir', 'checksum', 'exclude*', 'unpack'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};

const HEREDOC_INSTRUCTIONS = new Set(['RUN', 'COPY', 'ADD']);
const JSON_INSTRUCTIONS = new Set(['RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'COPY', 'ADD', 'VOLUME', 'HEALTHCHECK']);
const DIRECTIVE_RE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/;
const HEREDOC_RE = /<<(-?)(["']?)([A-Za-z0-9_][A-Za-z0-9_.-]*)\2/g;

export function parseDockerfile(text: string): ParsedDockerfile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const directives: Directives = { escape: '\\' };
  const warnings: string[] = [];
  let i = 0;
  // Directives: only before the first comment, blank line or instruction.
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = DIRECTIVE_RE.exec(lines[i]!);
    if (!m) break;
    const name = m[1]!.toLowerCase();
    const value = m[2]!;
    if (name !== 'syntax' && name !== 'escape' && name !== 'check') break;
    if (seen.has(name)) throw new DockerfileError(i + 1, `only one ${name} parser directive can be used`);
    seen.add(name);
    if (name === 'escape') {
      if (value !== '\\' && value !== '`') throw new DockerfileError(i + 1, `invalid escape token '${value}' does not match ` + '` or \\');
      directives.escape = value;
    } else if (name === 'syntax') directives.syntax = value;
    else directives.check = value;
  }
  const esc = directives.escape;
  const contRe = new RegExp(`${esc === '\\' ? '\\\\' : '`'}[ \\t]*$`);
  const instructions: Instruction[] = [];
  while (i < lines.length) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) {
      i++;
      continue;
    }
    const start = i + 1;
    let joined = '';
    let cur = raw.replace(/^\s+/, '');
    i++;
    // Continuations: comment and blank lines inside them are dropped.
    while (contRe.test(cur)) {
      joined += cur.replace(contRe, '');
      cur = '';
      let found = false;
      while (i < lines.length) {
        const next = lines[i]!;
        i++;
        const t = next.trim();
        if (t.startsWith('#')) continue;
        if (t === '') {
          warnings.push(`Empty continuation line found in line ${i}`);
          continue;
        }
        cur = next;
        found = true;
        break;
      }
      if (!found) break;
    }
    joined += cur;
    const ins = parseInstruction(joined.trim(), start, esc);
    // Heredoc bodies follow the instruction's line.
    if (HEREDOC_INSTRUCTIONS.has(ins.cmd)) {
      for (const m of joined.matchAll(HEREDOC_RE)) {
        const strip = m[1] === '-';
        const name = m[3]!;
        const body: string[] = [];
        let closed = false;
        while (i < lines.length) {
          let l = lines[i]!;
          i++;
          if (strip) l = l.replace(/^\t+/, '');
          if (l === name) {
            closed = true;
            break;
          }
          body.push(l);
        }
        if (!closed) throw new DockerfileError(start, `unterminated heredoc ${name}`);
        ins.heredocs.push({ name, content: body.map((b) => `${b}\n`).join(''), expand: m[2] === '' });
      }
    }
    instructions.push(ins);
  }
  return { directives, instructions, warnings };
}

function parseInstruction(text: string, line: number, esc: string): Instruction {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text)!;
  const cmd = m[1]!.toUpperCase();
  if (!INSTRUCTIONS.has(cmd)) throw new DockerfileError(line, `unknown instruction: ${m[1]}`);
  let rest = m[2]!;
  const flags: Flag[] = [];
  const allowed = ALLOWED_FLAGS[cmd] ?? [];
  // Flags come first, each a `--name[=value]` word.
  for (;;) {
    const fm = /^--([A-Za-z0-9-]+)(?:=((?:"[^"]*"|'[^']*'|[^\s])*))?(?:\s+|$)/.exec(rest);
    if (!fm || (cmd === 'ONBUILD')) break;
    const name = fm[1]!;
    const spec = allowed.find((a) => a.replace('*', '') === name);
    if (!spec) throw new DockerfileError(line, `unknown flag: ${name}`);
    if (!spec.endsWith('*') && flags.some((f) => f.name === name)) throw new DockerfileError(line, `duplicate flag specified: ${name}`);
    flags.push({ name, value: fm[2] !== undefined ? unquote(fm[2]) : null });
    rest = rest.slice(fm[0].length);
  }
  rest = rest.trim();
  const ins: Instruction = { cmd, line, original: text, flags, rest, heredocs: [] };
  if (JSON_INSTRUCTIONS.has(cmd)) {
    const body = cmd === 'HEALTHCHECK' ? rest.replace(/^CMD\s+/i, '') : rest;
    if (body.startsWith('[')) {
      try {
        const v: unknown = JSON.parse(body);
        if (Array.isArray(v) && v.every((x) => typeof x === 'string')) ins.json = v as string[];
      } catch {
        // Not JSON: shell form.
      }
    }
  }
  validate(ins, esc);
  return ins;
}

function unquote(v: string): string {
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) return v.slice(1, -1);
  return v;
}

/** Arity and shape checks docker makes while parsing. */
function validate(ins: Instruction, esc: string): void {
  const { cmd, rest, line } = ins;
  const need = (ok: boolean, msg: string): void => {
    if (!ok) throw new DockerfileError(line, msg);
  };
  switch (cmd) {
    case 'FROM': {
      const w = splitRawWords(rest, esc);
      need(w.length === 1 || (w.length === 3 && w[1]!.toUpperCase() === 'AS'), 'FROM requires either one or three arguments');
      if (w.length === 3) need(/^[a-z][a-z0-9-_.]*$/.test(w[2]!.toLowerCase()), `invalid name for build stage: "${w[2]}", name can't start with a number or contain symbols`);
      break;
    }
    case 'ENV':
    case 'LABEL':
      need(rest !== '', `${cmd} requires at least one argument`);
      parseKeyValues(cmd, rest, esc, line);
      break;
    case 'ARG':
      need(rest !== '', 'ARG requires at least one argument');
      break;
    case 'ONBUILD': {
      need(rest !== '', 'ONBUILD requires at least one argument');
      const trig = /^(\S+)/.exec(rest)![1]!.toUpperCase();
      need(trig !== 'ONBUILD', "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      need(trig !== 'FROM' && trig !== 'MAINTAINER', `${trig} isn't allowed as an ONBUILD trigger`);
      ins.trigger = parseInstruction(rest, line, esc);
      break;
    }
    case 'COPY':
    case 'ADD': {
      const n = ins.json ? ins.json.length : splitRawWords(rest, esc).length;
      need(n >= 2 || (ins.heredocs.length > 0 || /<</.test(rest)) && n >= 1, `${cmd} requires at least two arguments, but only one was provided. Destination could not be determined.`);
      break;
    }
    case 'SHELL':
      need(!!ins.json, 'SHELL requires the arguments to be in JSON form');
      need((ins.json?.length ?? 0) > 0, 'SHELL requires at least one argument');
      break;
    case 'HEALTHCHECK': {
      const kind = /^(\S*)/.exec(rest)![1]!.toUpperCase();
      need(kind === 'NONE' || kind === 'CMD', 'Unknown type "' + kind + '" in HEALTHCHECK (try CMD)');
      if (kind === 'NONE') need(rest.trim().toUpperCase() === 'NONE' && ins.flags.length === 0, 'HEALTHCHECK NONE takes no arguments');
      else need(rest.replace(/^CMD\s*/i, '') !== '', 'Missing command after HEALTHCHECK CMD');
      break;
    }
    case 'RUN':
    case 'CMD':
    case 'ENTRYPOINT':
      if (cmd === 'RUN') need(rest !== '', 'RUN requires at least one argument');
      break;
    case 'MAINTAINER':
    case 'USER':
    case 'WORKDIR':
    case 'STOPSIGNAL':
    case 'EXPOSE':
    case 'VOLUME':
      need(rest !== '', `${cmd} requires ${cmd === 'EXPOSE' || cmd === 'VOLUME' ? 'at least one argument' : 'exactly one argument'}`);
      break;
  }
}

/** Splits on unquoted whitespace, keeping quotes and escapes in the words (substitution comes later). */
export function splitRawWords(text: string, esc = '\\'): string[] {
  const words: string[] = [];
  let cur = '';
  let quote = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (!quote && /\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === esc && quote !== "'" && i + 1 < text.length) {
      cur += c + text[i + 1];
      i++;
      continue;
    }
    if (quote && c === quote) quote = '';
    else if (!quote && (c === '"' || c === "'")) quote = c;
    cur += c;
  }
  if (inWord) words.push(cur);
  return words;
}

/**
 * ENV and LABEL arguments: `k=v k2="v 2"` pairs, or the legacy `ENV k v`
 * (one pair, the value is the rest of the line). Keys and values are still
 * raw (quoted, unsubstituted).
 */
export function parseKeyValues(cmd: string, rest: string, esc: string, line: number): Array<[string, string]> {
  const words = splitRawWords(rest, esc);
  if (words.length === 0) throw new DockerfileError(line, `${cmd} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    // Legacy form.
    const m = /^(\S+)\s*([\s\S]*)$/.exec(rest)!;
    if (m[2] === '') throw new DockerfileError(line, `${cmd} must have two arguments`);
    return [[m[1]!, m[2]!]];
  }
  const out: Array<[string, string]> = [];
  for (const w of words) {
    const i = w.indexOf('=');
    if (i < 0) throw new DockerfileError(line, `Syntax error - can't find = in "${w}". Must be of the form: name=value`);
    if (i === 0) throw new DockerfileError(line, `${cmd} names can not be blank`);
    out.push([w.slice(0, i), w.slice(i + 1)]);
  }
  return out;
}

/** A stage: its FROM and the instructions up to the next FROM. */
export interface Stage {
  index: number;
  /** Lower-cased `AS` name. */
  name?: string;
  from: Instruction;
  instructions: Instruction[];
}

export interface StagedDockerfile {
  directives: Directives;
  /** ARGs before the first FROM. */
  globalArgs: Instruction[];
  stages: Stage[];
  warnings: string[];
}

export function parseStages(text: string): StagedDockerfile {
  const df = parseDockerfile(text);
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of df.instructions) {
    if (ins.cmd === 'FROM') {
      const w = splitRawWords(ins.rest, df.directives.escape);
      const name = w.length === 3 ? w[2]!.toLowerCase() : undefined;
      if (name && stages.some((s) => s.name === name)) throw new DockerfileError(ins.line, `duplicate name ${name}`);
      stages.push({ index: stages.length, name, from: ins, instructions: [] });
      continue;
    }
    const cur = stages[stages.length - 1];
    if (!cur) {
      if (ins.cmd !== 'ARG') throw new DockerfileError(ins.line, `no build stage in current context`);
      globalArgs.push(ins);
      continue;
    }
    cur.instructions.push(ins);
  }
  if (stages.length === 0) throw new DockerfileError(0, 'the Dockerfile (Dockerfile) cannot be empty');
  return { directives: df.directives, globalArgs, stages, warnings: df.warnings };
}
