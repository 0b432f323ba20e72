/**
 * The `--format` template language: the subset of Go's text/template that
 * people write on docker command lines, plus the extra functions docker adds
 * (json, join, split, lower, upper, title, truncate, pad).
 *
 * Users paste templates from docker documentation and scripts, so the parser
 * follows Go's grammar and error wording closely, and values print the way a
 * Go program would print them (`[a b]`, `map[k:v]`, `<no value>`, `1e+06`).
 * Data are plain JavaScript values; objects behave like Go maps, and an
 * object property holding a function behaves like a Go method.
 */
import { invalid } from '../../util/errors.ts';

export type TemplateFunc = (...args: unknown[]) => unknown;

export interface ParseOptions {
  /** Extra functions; a name here replaces a builtin of the same name. */
  funcs?: Record<string, TemplateFunc>;
}

export interface ExecuteOptions {
  /**
   * Header mode, used for the header row of a table: every field chain
   * evaluates to header(first field name), the text-shaping functions pass
   * their first argument through, and errors end the output quietly instead of
   * throwing, so any row template also yields a sensible header.
   */
  header?: (field: string) => string;
}

// ---------------------------------------------------------------------------
// Lexer

type ItemType =
  | 'text'
  | 'leftDelim'
  | 'rightDelim'
  | 'space'
  | 'field'
  | 'variable'
  | 'identifier'
  | 'keyword'
  | 'dot'
  | 'string'
  | 'rawString'
  | 'charConst'
  | 'number'
  | 'bool'
  | 'nil'
  | 'pipe'
  | 'leftParen'
  | 'rightParen'
  | 'declare'
  | 'assign'
  | 'char'
  | 'eof'
  | 'error';

interface Item {
  typ: ItemType;
  val: string;
  pos: number;
}

const KEYWORDS = new Set(['block', 'break', 'continue', 'define', 'else', 'end', 'if', 'range', 'template', 'with']);

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

const ALNUM = /^[\p{L}\p{Nd}_]$/u;

function charAt(src: string, p: number): string {
  const cp = src.codePointAt(p);
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

function isAlnumAt(src: string, p: number): boolean {
  const c = charAt(src, p);
  return c !== '' && ALNUM.test(c);
}

function runeRepr(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')} '${c}'`;
}

function skipSpaces(src: string, p: number): number {
  while (p < src.length && isSpace(src[p])) p++;
  return p;
}

function trimTrailingSpaces(s: string): string {
  let end = s.length;
  while (end > 0 && isSpace(s[end - 1])) end--;
  return s.slice(0, end);
}

function atTerminator(src: string, p: number): boolean {
  if (p >= src.length) return true;
  const c = src[p];
  return isSpace(c) || '.,|:()'.includes(c) || src.startsWith('}}', p);
}

/** Returns the end of the number starting at p, or -(end) - 1 when it is malformed. */
function scanNumber(src: string, p: number): number {
  let q = p;
  const run = (set: string): void => {
    while (q < src.length && set.includes(src[q])) q++;
  };
  if (src[q] === '+' || src[q] === '-') q++;
  let digits = '0123456789_';
  let decimal = true;
  let hex = false;
  if (src[q] === '0' && (src[q + 1] === 'x' || src[q + 1] === 'X')) {
    q += 2;
    digits = '0123456789abcdefABCDEF_';
    decimal = false;
    hex = true;
  } else if (src[q] === '0' && (src[q + 1] === 'o' || src[q + 1] === 'O')) {
    q += 2;
    digits = '01234567_';
    decimal = false;
  } else if (src[q] === '0' && (src[q + 1] === 'b' || src[q + 1] === 'B')) {
    q += 2;
    digits = '01_';
    decimal = false;
  }
  run(digits);
  if (src[q] === '.') {
    q++;
    run(digits);
  }
  if ((decimal && (src[q] === 'e' || src[q] === 'E')) || (hex && (src[q] === 'p' || src[q] === 'P'))) {
    q++;
    if (src[q] === '+' || src[q] === '-') q++;
    run('0123456789_');
  }
  if (src[q] === 'i') q++;
  if (q < src.length && isAlnumAt(src, q)) return -(q + 1) - 1;
  return q;
}

function lex(src: string): Item[] {
  const items: Item[] = [];
  const n = src.length;
  const emit = (typ: ItemType, val: string, pos: number): void => {
    items.push({ typ, val, pos });
  };
  const fail = (msg: string, pos: number): Item[] => {
    items.push({ typ: 'error', val: msg, pos });
    return items;
  };
  let pos = 0;
  for (;;) {
    const open = src.indexOf('{{', pos);
    if (open < 0) {
      if (pos < n) emit('text', src.slice(pos), pos);
      emit('eof', '', n);
      return items;
    }
    const trimLeft = src[open + 2] === '-' && isSpace(src[open + 3]);
    let text = src.slice(pos, open);
    if (trimLeft) text = trimTrailingSpaces(text);
    if (text.length > 0) emit('text', text, pos);
    let p = open + 2 + (trimLeft ? 2 : 0);

    if (src.startsWith('/*', p)) {
      const close = src.indexOf('*/', p + 2);
      if (close < 0) return fail('unclosed comment', open);
      let q = close + 2;
      let trimRight = false;
      if (src.startsWith('}}', q)) q += 2;
      else if (isSpace(src[q]) && src.startsWith('-}}', q + 1)) {
        q += 4;
        trimRight = true;
      } else return fail('comment ends before closing delimiter', open);
      pos = trimRight ? skipSpaces(src, q) : q;
      continue;
    }

    emit('leftDelim', '{{', open);
    let depth = 0;
    for (;;) {
      const trimRight = isSpace(src[p]) && src.startsWith('-}}', p + 1);
      if (trimRight || src.startsWith('}}', p)) {
        if (depth > 0) return fail('unclosed left paren', p);
        emit('rightDelim', '}}', trimRight ? p + 2 : p);
        pos = trimRight ? skipSpaces(src, p + 4) : p + 2;
        break;
      }
      if (p >= n) return fail('unclosed action', p);
      const c = src[p];
      if (isSpace(c)) {
        let q = skipSpaces(src, p);
        // The last space may belong to a trim-marked closing delimiter.
        if (src.startsWith('-}}', q)) q--;
        if (q > p) emit('space', src.slice(p, q), p);
        p = q;
        continue;
      }
      if (c === '=') {
        emit('assign', '=', p);
        p++;
      } else if (c === ':') {
        if (src[p + 1] !== '=') return fail('expected :=', p);
        emit('declare', ':=', p);
        p += 2;
      } else if (c === '|') {
        emit('pipe', '|', p);
        p++;
      } else if (c === '"' || c === "'") {
        let q = p + 1;
        for (;;) {
          const ch = src[q];
          if (ch === '\\') {
            const nx = src[q + 1];
            if (nx !== undefined && nx !== '\n') {
              q += 2;
              continue;
            }
          }
          if (ch === undefined || ch === '\n' || ch === '\\') {
            return fail(c === '"' ? 'unterminated quoted string' : 'unterminated character constant', p);
          }
          if (ch === c) break;
          q++;
        }
        emit(c === '"' ? 'string' : 'charConst', src.slice(p, q + 1), p);
        p = q + 1;
      } else if (c === '`') {
        const q = src.indexOf('`', p + 1);
        if (q < 0) return fail('unterminated raw quoted string', p);
        emit('rawString', src.slice(p, q + 1), p);
        p = q + 1;
      } else if (c === '$' || (c === '.' && !(src[p + 1] >= '0' && src[p + 1] <= '9'))) {
        let q = p + 1;
        if (atTerminator(src, q)) {
          emit(c === '$' ? 'variable' : 'dot', c, p);
          p = q;
          continue;
        }
        while (q < n && isAlnumAt(src, q)) q += charAt(src, q).length;
        if (!atTerminator(src, q)) return fail(`bad character ${runeRepr(charAt(src, q))}`, q);
        emit(c === '$' ? 'variable' : 'field', src.slice(p, q), p);
        p = q;
      } else if (c === '.' || c === '+' || c === '-' || (c >= '0' && c <= '9')) {
        const end = scanNumber(src, p);
        if (end < 0) return fail(`bad number syntax: ${goQuote(src.slice(p, -end - 1))}`, p);
        emit('number', src.slice(p, end), p);
        p = end;
      } else if (isAlnumAt(src, p)) {
        let q = p;
        while (q < n && isAlnumAt(src, q)) q += charAt(src, q).length;
        if (!atTerminator(src, q)) return fail(`bad character ${runeRepr(charAt(src, q))}`, q);
        const word = src.slice(p, q);
        if (KEYWORDS.has(word)) emit('keyword', word, p);
        else if (word === 'true' || word === 'false') emit('bool', word, p);
        else if (word === 'nil') emit('nil', word, p);
        else emit('identifier', word, p);
        p = q;
      } else if (c === '(') {
        depth++;
        emit('leftParen', c, p);
        p++;
      } else if (c === ')') {
        depth--;
        if (depth < 0) return fail('unexpected right paren', p);
        emit('rightParen', c, p);
        p++;
      } else if (c >= '!' && c <= '~') {
        emit('char', c, p);
        p++;
      } else {
        return fail(`unrecognized character in action: ${runeRepr(charAt(src, p))}`, p);
      }
    }
  }
}

function itemString(it: Item): string {
  if (it.typ === 'eof') return 'EOF';
  if (it.typ === 'error') return it.val;
  if (it.typ === 'keyword') return `<${it.val}>`;
  if ([...it.val].length > 10) return `${goQuote([...it.val].slice(0, 10).join(''))}...`;
  return goQuote(it.val);
}

// ---------------------------------------------------------------------------
// Parse tree

interface Pipe {
  pos: number;
  isAssign: boolean;
  decl: string[];
  cmds: Cmd[];
}

interface Cmd {
  pos: number;
  args: Arg[];
}

type Arg =
  | { kind: 'field'; pos: number; names: string[] }
  | { kind: 'dot'; pos: number }
  | { kind: 'variable'; pos: number; name: string; names: string[] }
  | { kind: 'identifier'; pos: number; name: string }
  | { kind: 'chain'; pos: number; node: Arg; names: string[] }
  | { kind: 'pipe'; pos: number; pipe: Pipe }
  | { kind: 'string'; pos: number; value: string; quoted: string }
  | { kind: 'number'; pos: number; value: number; text: string }
  | { kind: 'bool'; pos: number; value: boolean }
  | { kind: 'nil'; pos: number };

interface ControlNode {
  kind: 'if' | 'with' | 'range';
  pos: number;
  pipe: Pipe;
  list: TNode[];
  elseList: TNode[] | null;
}

interface TemplateNode {
  kind: 'template';
  pos: number;
  name: string;
  pipe: Pipe | null;
}

type TNode =
  | { kind: 'text'; pos: number; text: string }
  | { kind: 'action'; pos: number; pipe: Pipe }
  | ControlNode
  | TemplateNode
  | { kind: 'break' | 'continue'; pos: number };

/** Markers that end a list; they never appear in a finished tree. */
interface EndMarker {
  kind: 'end' | 'else';
  pos: number;
}
type Ctl = TNode | EndMarker;

function isMarker(n: Ctl): n is EndMarker {
  return n.kind === 'end' || n.kind === 'else';
}

function argString(a: Arg): string {
  switch (a.kind) {
    case 'field':
      return a.names.map((n) => `.${n}`).join('');
    case 'dot':
      return '.';
    case 'variable':
      return a.name + a.names.map((n) => `.${n}`).join('');
    case 'identifier':
      return a.name;
    case 'chain':
      return argString(a.node) + a.names.map((n) => `.${n}`).join('');
    case 'pipe':
      return `(${pipeString(a.pipe)})`;
    case 'string':
      return a.quoted;
    case 'number':
      return a.text;
    case 'bool':
      return String(a.value);
    case 'nil':
      return 'nil';
  }
}

function pipeString(p: Pipe): string {
  const cmds = p.cmds.map((c) => c.args.map(argString).join(' ')).join(' | ');
  if (p.decl.length === 0) return cmds;
  return `${p.decl.join(', ')} ${p.isAssign ? '=' : ':='} ${cmds}`;
}

function ctlString(n: Ctl): string {
  return `{{${n.kind}}}`;
}

// ---------------------------------------------------------------------------
// Go literal syntax

function hexValue(s: string): number {
  return /^[0-9a-fA-F]+$/.test(s) ? parseInt(s, 16) : NaN;
}

/** Decodes a Go quoted literal ("…", `…` or '…') to its runes, as UTF-8 bytes. */
function unquoteBytes(lit: string): number[] {
  const quote = lit[0];
  if (lit.length < 2 || lit[lit.length - 1] !== quote) throw new Error('invalid syntax');
  const body = lit.slice(1, -1);
  const enc = new TextEncoder();
  const out: number[] = [];
  const pushRune = (cp: number): void => {
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error('invalid syntax');
    out.push(...enc.encode(String.fromCodePoint(cp)));
  };
  if (quote === '`') {
    out.push(...enc.encode(body.replaceAll('\r', '')));
    return out;
  }
  for (let i = 0; i < body.length; ) {
    const c = charAt(body, i);
    if (c === quote || c === '\n') throw new Error('invalid syntax');
    if (c !== '\\') {
      out.push(...enc.encode(c));
      i += c.length;
      continue;
    }
    const e = body[i + 1];
    i += 2;
    const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92 };
    if (e !== undefined && e in simple) out.push(simple[e]);
    else if (e === quote) out.push(quote.charCodeAt(0));
    else if (e === 'x') {
      const v = hexValue(body.slice(i, i + 2));
      if (Number.isNaN(v) || body.slice(i, i + 2).length < 2) throw new Error('invalid syntax');
      // A byte escape in a rune literal is the rune itself.
      if (quote === "'") pushRune(v);
      else out.push(v);
      i += 2;
    } else if (e === 'u' || e === 'U') {
      const len = e === 'u' ? 4 : 8;
      const h = body.slice(i, i + len);
      const v = hexValue(h);
      if (Number.isNaN(v) || h.length < len) throw new Error('invalid syntax');
      pushRune(v);
      i += len;
    } else if (e !== undefined && e >= '0' && e <= '7') {
      const o = body.slice(i - 1, i + 2);
      if (!/^[0-7]{3}$/.test(o)) throw new Error('invalid syntax');
      const v = parseInt(o, 8);
      if (v > 255) throw new Error('invalid syntax');
      if (quote === "'") pushRune(v);
      else out.push(v);
      i += 2;
    } else throw new Error('invalid syntax');
  }
  return out;
}

function unquote(lit: string): string {
  return new TextDecoder().decode(new Uint8Array(unquoteBytes(lit)));
}

function unquoteChar(lit: string): number {
  const s = unquote(lit);
  const runes = [...s];
  if (runes.length !== 1) throw new Error('invalid syntax');
  return runes[0].codePointAt(0) ?? 0;
}

function parseNumberLiteral(text: string): number {
  let t = text.replaceAll('_', '');
  let sign = 1;
  if (t.startsWith('+')) t = t.slice(1);
  else if (t.startsWith('-')) {
    sign = -1;
    t = t.slice(1);
  }
  let v: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = parseInt(t.slice(2), 16);
  else if (/^0[oO][0-7]+$/.test(t)) v = parseInt(t.slice(2), 8);
  else if (/^0[bB][01]+$/.test(t)) v = parseInt(t.slice(2), 2);
  else if (/^0[0-7]+$/.test(t)) v = parseInt(t.slice(1), 8);
  else if (/^(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) v = Number(t);
  else v = NaN;
  return sign * v;
}

// ---------------------------------------------------------------------------
// Parser

class Parser {
  private readonly src: string;
  private readonly items: Item[];
  private readonly hasFunc: (name: string) => boolean;
  private i = 0;
  private last: Item;
  private vars: string[] = ['$'];
  private rangeDepth = 0;
  readonly defs = new Map<string, TNode[]>();

  constructor(src: string, hasFunc: (name: string) => boolean) {
    this.src = src;
    this.items = lex(src);
    this.hasFunc = hasFunc;
    this.last = this.items[0];
  }

  private at(i: number): Item {
    return this.items[Math.min(i, this.items.length - 1)];
  }

  private next(): Item {
    const it = this.at(this.i);
    this.i++;
    this.last = it;
    return it;
  }

  private backup(): void {
    this.i--;
  }

  private peek(): Item {
    return this.at(this.i);
  }

  private nextNonSpace(): Item {
    let it: Item;
    do it = this.next();
    while (it.typ === 'space');
    return it;
  }

  private peekNonSpace(): Item {
    const it = this.nextNonSpace();
    this.backup();
    return it;
  }

  private errorf(msg: string): never {
    const line = lineOf(this.src, this.last.pos);
    throw invalid(`template parsing error: template: :${line}: ${msg}`);
  }

  private unexpected(it: Item, context: string): never {
    if (it.typ === 'error') this.errorf(it.val);
    this.errorf(`unexpected ${itemString(it)} in ${context}`);
  }

  private expect(typ: ItemType, context: string): Item {
    const it = this.nextNonSpace();
    if (it.typ !== typ) this.unexpected(it, context);
    return it;
  }

  private isKeyword(it: Item, word: string): boolean {
    return it.typ === 'keyword' && it.val === word;
  }

  parse(): TNode[] {
    const root: TNode[] = [];
    while (this.peek().typ !== 'eof') {
      if (this.peek().typ === 'leftDelim') {
        const save = this.i;
        this.next();
        if (this.isKeyword(this.nextNonSpace(), 'define')) {
          this.parseDefinition();
          continue;
        }
        this.i = save;
      }
      const n = this.textOrAction();
      if (isMarker(n)) this.errorf(`unexpected ${ctlString(n)}`);
      root.push(n);
    }
    return root;
  }

  private addDefinition(name: string, body: TNode[]): void {
    // An empty body never replaces an existing definition, so that a block's
    // default survives an empty redefinition.
    const empty = body.every((n) => n.kind === 'text' && n.text.trim() === '');
    if (empty && this.defs.has(name)) return;
    this.defs.set(name, body);
  }

  /** Parses a template body with a fresh variable scope. */
  private parseBody(context: string): TNode[] {
    const savedVars = this.vars;
    const savedDepth = this.rangeDepth;
    this.vars = ['$'];
    this.rangeDepth = 0;
    try {
      const [body, end] = this.itemList();
      if (end.kind !== 'end') this.errorf(`unexpected ${ctlString(end)} in ${context}`);
      return body;
    } finally {
      this.vars = savedVars;
      this.rangeDepth = savedDepth;
    }
  }

  private parseDefinition(): void {
    const context = 'define clause';
    const it = this.nextNonSpace();
    if (it.typ !== 'string' && it.typ !== 'rawString') this.unexpected(it, context);
    const name = this.unquoteOrFail(it.val);
    this.expect('rightDelim', context);
    this.addDefinition(name, this.parseBody(context));
  }

  private itemList(): [TNode[], EndMarker] {
    const list: TNode[] = [];
    while (this.peekNonSpace().typ !== 'eof') {
      const n = this.textOrAction();
      if (isMarker(n)) return [list, n];
      list.push(n);
    }
    this.errorf('unexpected EOF');
  }

  private textOrAction(): Ctl {
    const it = this.nextNonSpace();
    if (it.typ === 'text') return { kind: 'text', pos: it.pos, text: it.val };
    if (it.typ === 'leftDelim') return this.action();
    this.unexpected(it, 'input');
  }

  private action(): Ctl {
    const it = this.nextNonSpace();
    if (it.typ === 'keyword') {
      switch (it.val) {
        case 'block':
          return this.blockControl(it);
        case 'break':
        case 'continue': {
          const close = this.nextNonSpace();
          if (close.typ !== 'rightDelim') this.unexpected(close, `{{${it.val}}}`);
          if (this.rangeDepth === 0) this.errorf(`{{${it.val}}} outside {{range}}`);
          return { kind: it.val, pos: it.pos };
        }
        case 'else': {
          const peek = this.peekNonSpace();
          if (this.isKeyword(peek, 'if') || this.isKeyword(peek, 'with')) return { kind: 'else', pos: it.pos };
          this.expect('rightDelim', 'else');
          return { kind: 'else', pos: it.pos };
        }
        case 'end':
          this.expect('rightDelim', 'end');
          return { kind: 'end', pos: it.pos };
        case 'if':
        case 'range':
        case 'with':
          return this.control(it.val, it.pos);
        case 'template':
          return this.templateControl(it);
      }
    }
    this.backup();
    const pos = this.peek().pos;
    return { kind: 'action', pos, pipe: this.pipeline('command', 'rightDelim') };
  }

  private control(context: 'if' | 'range' | 'with', pos: number): TNode {
    const mark = this.vars.length;
    try {
      const pipe = this.pipeline(context, 'rightDelim');
      if (context === 'range') this.rangeDepth++;
      const [list, next] = this.itemList();
      if (context === 'range') this.rangeDepth--;
      let elseList: TNode[] | null = null;
      if (next.kind === 'else') {
        const peek = this.peek();
        if (context !== 'range' && this.isKeyword(peek, context)) {
          // "else if" / "else with": the nested control shares our {{end}}.
          const kw = this.next();
          elseList = [this.control(context, kw.pos)];
        } else {
          const [rest, end] = this.itemList();
          if (end.kind !== 'end') this.errorf(`expected end; found ${ctlString(end)}`);
          elseList = rest;
        }
      }
      return { kind: context, pos, pipe, list, elseList };
    } finally {
      this.vars.length = mark;
    }
  }

  private unquoteOrFail(lit: string): string {
    try {
      return unquote(lit);
    } catch {
      this.errorf('invalid syntax');
    }
  }

  private templateName(it: Item, context: string): string {
    if (it.typ !== 'string' && it.typ !== 'rawString') this.unexpected(it, context);
    return this.unquoteOrFail(it.val);
  }

  private templateControl(kw: Item): TNode {
    const context = 'template clause';
    const name = this.templateName(this.nextNonSpace(), context);
    let pipe: Pipe | null = null;
    if (this.nextNonSpace().typ !== 'rightDelim') {
      this.backup();
      pipe = this.pipeline(context, 'rightDelim');
    }
    return { kind: 'template', pos: kw.pos, name, pipe };
  }

  private blockControl(kw: Item): TNode {
    const context = 'block clause';
    const name = this.templateName(this.nextNonSpace(), context);
    const pipe = this.pipeline(context, 'rightDelim');
    this.addDefinition(name, this.parseBody(context));
    return { kind: 'template', pos: kw.pos, name, pipe };
  }

  private pipeline(context: string, end: 'rightDelim' | 'rightParen'): Pipe {
    const pipe: Pipe = { pos: this.peekNonSpace().pos, isAssign: false, decl: [], cmds: [] };
    for (;;) {
      const v = this.peekNonSpace();
      if (v.typ !== 'variable') break;
      const save = this.i;
      this.next();
      const after = this.peekNonSpace();
      if (after.typ === 'assign' || after.typ === 'declare') {
        this.nextNonSpace();
        pipe.isAssign = after.typ === 'assign';
        if (pipe.isAssign && !this.vars.includes(v.val)) this.errorf(`undefined variable "${v.val}"`);
        pipe.decl.push(v.val);
        this.vars.push(v.val);
        break;
      }
      if (after.typ === 'char' && after.val === ',') {
        this.nextNonSpace();
        pipe.decl.push(v.val);
        this.vars.push(v.val);
        if (context === 'range' && pipe.decl.length < 2) {
          const nx = this.peekNonSpace().typ;
          if (nx === 'variable' || nx === 'rightDelim' || nx === 'rightParen') continue;
          this.errorf('range can only initialize variables');
        }
        this.errorf(`too many declarations in ${context}`);
      }
      // Not a declaration after all: "$x" is the first operand.
      this.i = save;
      break;
    }
    for (;;) {
      const it = this.nextNonSpace();
      if (it.typ === end) {
        this.checkPipeline(pipe, context);
        return pipe;
      }
      switch (it.typ) {
        case 'bool':
        case 'charConst':
        case 'dot':
        case 'field':
        case 'identifier':
        case 'number':
        case 'nil':
        case 'rawString':
        case 'string':
        case 'variable':
        case 'leftParen':
          this.backup();
          pipe.cmds.push(this.command());
          break;
        default:
          this.unexpected(it, context);
      }
    }
  }

  private checkPipeline(pipe: Pipe, context: string): void {
    if (pipe.cmds.length === 0) this.errorf(`missing value for ${context}`);
    pipe.cmds.forEach((c, i) => {
      if (i === 0) return;
      const k = c.args[0].kind;
      if (k === 'bool' || k === 'dot' || k === 'nil' || k === 'number' || k === 'string') {
        this.errorf(`non executable command in pipeline stage ${i + 1}`);
      }
    });
  }

  private command(): Cmd {
    const cmd: Cmd = { pos: this.peekNonSpace().pos, args: [] };
    for (;;) {
      this.peekNonSpace();
      const op = this.operand();
      if (op) cmd.args.push(op);
      const it = this.next();
      if (it.typ === 'space') continue;
      if (it.typ === 'rightDelim' || it.typ === 'rightParen') this.backup();
      else if (it.typ !== 'pipe') this.unexpected(it, 'operand');
      break;
    }
    if (cmd.args.length === 0) this.errorf('empty command');
    return cmd;
  }

  private operand(): Arg | null {
    const node = this.term();
    if (!node) return null;
    if (this.peek().typ !== 'field') return node;
    const names: string[] = [];
    while (this.peek().typ === 'field') names.push(this.next().val.slice(1));
    switch (node.kind) {
      case 'field':
        return { kind: 'field', pos: node.pos, names: [...node.names, ...names] };
      case 'variable':
        return { kind: 'variable', pos: node.pos, name: node.name, names: [...node.names, ...names] };
      case 'bool':
      case 'string':
      case 'number':
      case 'nil':
      case 'dot':
        return this.errorf(`unexpected . after term ${goQuote(argString(node))}`);
      default:
        return { kind: 'chain', pos: node.pos, node, names };
    }
  }

  private term(): Arg | null {
    const it = this.nextNonSpace();
    switch (it.typ) {
      case 'identifier':
        if (!this.hasFunc(it.val)) this.errorf(`function ${goQuote(it.val)} not defined`);
        return { kind: 'identifier', pos: it.pos, name: it.val };
      case 'dot':
        return { kind: 'dot', pos: it.pos };
      case 'nil':
        return { kind: 'nil', pos: it.pos };
      case 'variable':
        if (!this.vars.includes(it.val)) this.errorf(`undefined variable ${goQuote(it.val)}`);
        return { kind: 'variable', pos: it.pos, name: it.val, names: [] };
      case 'field':
        return { kind: 'field', pos: it.pos, names: [it.val.slice(1)] };
      case 'bool':
        return { kind: 'bool', pos: it.pos, value: it.val === 'true' };
      case 'charConst': {
        let value: number;
        try {
          value = unquoteChar(it.val);
        } catch {
          this.errorf(`malformed character constant: ${it.val}`);
        }
        return { kind: 'number', pos: it.pos, value, text: it.val };
      }
      case 'number': {
        const value = parseNumberLiteral(it.val);
        if (!Number.isFinite(value)) this.errorf(`illegal number syntax: ${goQuote(it.val)}`);
        return { kind: 'number', pos: it.pos, value, text: it.val };
      }
      case 'leftParen':
        return { kind: 'pipe', pos: it.pos, pipe: this.pipeline('parenthesized pipeline', 'rightParen') };
      case 'string':
      case 'rawString':
        return { kind: 'string', pos: it.pos, value: this.unquoteOrFail(it.val), quoted: it.val };
    }
    this.backup();
    return null;
  }
}

function lineOf(src: string, pos: number): number {
  let line = 1;
  for (let i = 0; i < pos && i < src.length; i++) if (src[i] === '\n') line++;
  return line;
}

// ---------------------------------------------------------------------------
// Values

const MISSING: unique symbol = Symbol('missing');
type Final = unknown;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Go's notion of truth: zero values and empty collections are false. */
export function isTrue(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      return v !== 0 && !Number.isNaN(v);
    case 'bigint':
      return v !== 0n;
    case 'string':
      return v.length > 0;
    case 'function':
      return true;
  }
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map || v instanceof Set) return v.size > 0;
  if (ArrayBuffer.isView(v)) return v.byteLength > 0;
  if (isPlainObject(v)) return Object.keys(v).length > 0;
  return true;
}

/** The Go type a value would have had, for error messages and %T. */
export function goType(v: unknown): string {
  if (v === undefined || v === null) return '<nil>';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? 'int' : 'float64';
    case 'bigint':
      return 'int64';
    case 'function':
      return 'func(...interface {}) interface {}';
    case 'symbol':
      return 'symbol';
  }
  if (Array.isArray(v) || v instanceof Set) return '[]interface {}';
  if (v instanceof Uint8Array) return '[]uint8';
  if (v instanceof Date) return 'time.Time';
  if (v instanceof Map || isPlainObject(v)) return 'map[string]interface {}';
  const name = (v as { constructor?: { name?: string } }).constructor?.name;
  return name ? `*${name}` : 'map[string]interface {}';
}

/**
 * Looks a key up the way a Go map or method set would: own and inherited
 * properties count, but nothing that every object inherits from Object.
 */
function lookupProp(obj: object, name: string): unknown {
  if (obj instanceof Map) return obj.get(name);
  let o: object | null = obj;
  while (o !== null && o !== Object.prototype) {
    if (Object.hasOwn(o, name)) {
      if (name === 'constructor' && o !== obj) return undefined;
      return Reflect.get(obj, name);
    }
    o = Object.getPrototypeOf(o) as object | null;
  }
  return undefined;
}

function compareKeys(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const sa = String(a);
  const sb = String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

function mapEntries(v: object): [unknown, unknown][] {
  const entries: [unknown, unknown][] =
    v instanceof Map ? [...v.entries()] : Object.keys(v).map((k) => [k, (v as Record<string, unknown>)[k]]);
  return entries.sort((x, y) => compareKeys(x[0], y[0]));
}

function hasCustomToString(v: object): boolean {
  const ts = (v as { toString?: unknown }).toString;
  return typeof ts === 'function' && ts !== Object.prototype.toString && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// fmt: Go's formatted printing for the values a template can hold

interface Flags {
  plus: boolean;
  minus: boolean;
  sharp: boolean;
  space: boolean;
  zero: boolean;
  width: number | null;
  prec: number | null;
}

const NO_FLAGS: Flags = { plus: false, minus: false, sharp: false, space: false, zero: false, width: null, prec: null };

function runeCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function pad(s: string, f: Flags, zeroOk = true): string {
  if (f.width === null) return s;
  const n = f.width - runeCount(s);
  if (n <= 0) return s;
  if (f.minus) return s + ' '.repeat(n);
  return (f.zero && zeroOk ? '0' : ' ').repeat(n) + s;
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function quoteWith(s: string, q: '"' | "'", asciiOnly: boolean): string {
  let out = q;
  for (const c of s) {
    const cp = c.codePointAt(0) ?? 0;
    if (c === q || c === '\\') out += `\\${c}`;
    else if (PRINTABLE.test(c) && (!asciiOnly || cp < 0x80)) out += c;
    else if (cp === 7) out += '\\a';
    else if (cp === 8) out += '\\b';
    else if (cp === 12) out += '\\f';
    else if (cp === 10) out += '\\n';
    else if (cp === 13) out += '\\r';
    else if (cp === 9) out += '\\t';
    else if (cp === 11) out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\ufffd';
    else if (cp < 0x10000) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return out + q;
}

/** strconv.Quote. */
export function goQuote(s: string): string {
  return quoteWith(s, '"', false);
}

function canBackquote(s: string): boolean {
  for (const c of s) {
    const cp = c.codePointAt(0) ?? 0;
    if (c === '`' || cp === 0xfeff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp < 0x20 && c !== '\t') return false;
    if (cp === 0x7f) return false;
  }
  return true;
}

function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function badVerb(v: unknown, verb: string, f: Flags): string {
  if (v === undefined || v === null) return `%!${verb}(<nil>)`;
  return `%!${verb}(${goType(v)}=${fmtArg(v, 'v', f)})`;
}

function fmtInteger(n: bigint, verb: string, f: Flags): string {
  let base = 10;
  if (verb === 'b') base = 2;
  else if (verb === 'o' || verb === 'O') base = 8;
  else if (verb === 'x' || verb === 'X') base = 16;
  const neg = n < 0n;
  let digits = (neg ? -n : n).toString(base);
  if (verb === 'X') digits = digits.toUpperCase();
  let prec = 0;
  if (f.prec !== null) {
    prec = f.prec;
    if (prec === 0 && n === 0n) return pad('', f, false);
  } else if (f.zero && !f.minus && f.width !== null) {
    prec = f.width;
    if (neg || f.plus || f.space) prec--;
  }
  digits = digits.padStart(prec, '0');
  let prefix = '';
  if (verb === 'O') prefix = '0o';
  else if (f.sharp) {
    if (base === 2) prefix = '0b';
    else if (base === 8 && !digits.startsWith('0')) prefix = '0';
    else if (base === 16) prefix = verb === 'X' ? '0X' : '0x';
  }
  const sign = neg ? '-' : f.plus ? '+' : f.space ? ' ' : '';
  return pad(sign + prefix + digits, f, false);
}

/** Significant digits (no trailing zeros) and decimal point position: value = 0.digits × 10^dp. */
function decompose(expForm: string): { digits: string; dp: number } {
  const m = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(expForm);
  if (!m) return { digits: '', dp: 0 };
  const digits = (m[1] + (m[2] ?? '')).replace(/0+$/, '');
  if (digits === '') return { digits: '', dp: 0 };
  return { digits, dp: Number(m[3]) + 1 };
}

function fmtE(digits: string, dp: number, prec: number, ch: string): string {
  let s = digits[0] ?? '0';
  if (prec > 0) s += `.${digits.slice(1, 1 + prec).padEnd(prec, '0')}`;
  const exp = digits.length === 0 ? 0 : dp - 1;
  return `${s}${ch}${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

function fmtF(digits: string, dp: number, prec: number): string {
  let s = dp > 0 ? digits.slice(0, dp).padEnd(dp, '0') : '0';
  if (prec > 0) {
    s += '.';
    for (let i = 1; i <= prec; i++) {
      const j = dp + i - 1;
      s += j >= 0 && j < digits.length ? digits[j] : '0';
    }
  }
  return s;
}

/** strconv.FormatFloat of a non-negative finite value; prec -1 means shortest. */
function formatFloat(a: number, fmt: 'e' | 'E' | 'f' | 'F' | 'g' | 'G', prec: number): string {
  const shortest = decompose(a.toExponential());
  switch (fmt) {
    case 'e':
    case 'E': {
      if (prec < 0) return fmtE(shortest.digits, shortest.dp, shortest.digits.length - 1, fmt);
      const d = decompose(a.toExponential(Math.min(prec, 100)));
      return fmtE(d.digits, d.dp, prec, fmt);
    }
    case 'f':
    case 'F': {
      if (prec < 0) return fmtF(shortest.digits, shortest.dp, Math.max(shortest.digits.length - shortest.dp, 0));
      if (a < 1e21 && prec <= 100) return a.toFixed(prec);
      const int = BigInt(Math.trunc(a)).toString();
      return prec > 0 ? `${int}.${'0'.repeat(prec)}` : int;
    }
    case 'g':
    case 'G': {
      const isShortest = prec < 0;
      let d = shortest;
      let p = prec;
      if (!isShortest) {
        if (p === 0) p = 1;
        d = decompose(a.toExponential(Math.min(p - 1, 100)));
      }
      const nd = d.digits.length;
      let eprec = p;
      if (isShortest) {
        eprec = 6;
        p = nd;
      } else if (eprec > nd && nd >= d.dp) eprec = nd;
      const exp = d.dp - 1;
      if (exp < -4 || exp >= eprec) {
        if (p > nd) p = nd;
        return fmtE(d.digits, d.dp, p - 1, fmt === 'g' ? 'e' : 'E');
      }
      if (p > d.dp) p = nd;
      return fmtF(d.digits, d.dp, Math.max(p - d.dp, 0));
    }
  }
}

function fmtFloat(v: number, verb: string, f: Flags): string {
  let fmt: 'e' | 'E' | 'f' | 'F' | 'g' | 'G';
  let prec: number;
  if (verb === 'v') {
    fmt = 'g';
    prec = f.prec ?? -1;
  } else if (verb === 'e' || verb === 'E' || verb === 'f' || verb === 'F') {
    fmt = verb;
    prec = f.prec ?? 6;
  } else if (verb === 'g' || verb === 'G') {
    fmt = verb;
    prec = f.prec ?? -1;
  } else return badVerb(v, verb, f);
  if (Number.isNaN(v)) return pad(f.plus ? '+NaN' : f.space ? ' NaN' : 'NaN', f, false);
  if (!Number.isFinite(v)) return pad(v > 0 ? (f.space && !f.plus ? ' Inf' : '+Inf') : '-Inf', f, false);
  const neg = v < 0 || Object.is(v, -0);
  const body = formatFloat(Math.abs(v), fmt, prec);
  const sign = neg ? '-' : f.plus ? '+' : f.space ? ' ' : '';
  if (f.zero && !f.minus && f.width !== null && f.width > sign.length + body.length) {
    return sign + '0'.repeat(f.width - sign.length - body.length) + body;
  }
  return pad(sign + body, f, false);
}

function fmtNumber(v: number | bigint, verb: string, f: Flags): string {
  // JavaScript cannot tell 3 from 3.0; integral values print as Go integers.
  const isInt = typeof v === 'bigint' || (Number.isInteger(v) && Math.abs(v) < 1e21);
  if (isInt) {
    const n = BigInt(v);
    switch (verb) {
      case 'v':
      case 'd':
      case 'b':
      case 'o':
      case 'O':
      case 'x':
      case 'X':
        return fmtInteger(n, verb, f);
      case 'c': {
        const cp = Number(n);
        const ok = cp >= 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        return pad(ok ? String.fromCodePoint(cp) : '\ufffd', f);
      }
      case 'q': {
        const cp = Number(n);
        const ok = cp >= 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        return pad(quoteWith(ok ? String.fromCodePoint(cp) : '\ufffd', "'", f.plus), f);
      }
      case 'U': {
        const cp = Number(n);
        let s = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
        if (f.sharp && cp >= 0 && cp <= 0x10ffff && PRINTABLE.test(String.fromCodePoint(cp))) {
          s += ` '${String.fromCodePoint(cp)}'`;
        }
        return pad(s, f);
      }
    }
    if (typeof v === 'number' && 'eEfFgG'.includes(verb)) return fmtFloat(v, verb, f);
    return badVerb(v, verb, f);
  }
  return fmtFloat(Number(v), verb, f);
}

function fmtString(s: string, verb: string, f: Flags): string {
  switch (verb) {
    case 'v':
      if (f.sharp) return pad(goQuote(s), f);
      return pad(f.prec !== null ? [...s].slice(0, f.prec).join('') : s, f);
    case 's':
      return pad(f.prec !== null ? [...s].slice(0, f.prec).join('') : s, f);
    case 'q': {
      const t = f.prec !== null ? [...s].slice(0, f.prec).join('') : s;
      if (f.sharp && canBackquote(t)) return pad(`\`${t}\``, f);
      return pad(quoteWith(t, '"', f.plus), f);
    }
    case 'x':
    case 'X': {
      let bytes = [...utf8(s)];
      if (f.prec !== null) bytes = bytes.slice(0, f.prec);
      const hex = bytes.map((b) => {
        const h = b.toString(16).padStart(2, '0');
        return verb === 'X' ? h.toUpperCase() : h;
      });
      const prefix = f.sharp ? (verb === 'X' ? '0X' : '0x') : '';
      const out = f.space ? hex.map((h) => prefix + h).join(' ') : prefix + hex.join('');
      return pad(out, f);
    }
  }
  return badVerb(s, verb, f);
}

function fmtArg(v: unknown, verb: string, f: Flags, depth = 0): string {
  if (verb === 'T') return pad(goType(v), f);
  if (v === undefined || v === null) return verb === 'v' ? pad('<nil>', f) : badVerb(v, verb, f);
  if (depth > 64) return '...';
  switch (typeof v) {
    case 'boolean':
      return verb === 't' || verb === 'v' ? pad(String(v), f) : badVerb(v, verb, f);
    case 'number':
    case 'bigint':
      return fmtNumber(v, verb, f);
    case 'string':
      return fmtString(v, verb, f);
    case 'function':
      return verb === 'v' || verb === 'p' ? pad('0x0', f) : badVerb(v, verb, f);
    case 'symbol':
      return pad(String(v), f);
  }
  if (v instanceof Date) return fmtString(Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString(), verb, f);
  if (Array.isArray(v) || v instanceof Set || ArrayBuffer.isView(v)) {
    const elems: unknown[] = Array.isArray(v) ? v : v instanceof Set ? [...v] : [...(v as Uint8Array)];
    return `[${elems.map((e) => fmtArg(e, verb, f, depth + 1)).join(' ')}]`;
  }
  const obj = v as object;
  if (!(obj instanceof Map) && !isPlainObject(obj) && hasCustomToString(obj) && 'vsq'.includes(verb)) {
    return fmtString(String(obj), verb, f);
  }
  const parts = mapEntries(obj).map(
    ([k, val]) => `${fmtArg(k, verb, f, depth + 1)}:${fmtArg(val, verb, f, depth + 1)}`,
  );
  return `map[${parts.join(' ')}]`;
}

/** A value as Go's %v would print it. */
export function formatValue(v: unknown): string {
  return fmtArg(v, 'v', NO_FLAGS);
}

/** fmt.Sprintf. */
export function sprintf(format: string, ...args: unknown[]): string {
  let out = '';
  let argNum = 0;
  let reordered = false;
  let i = 0;
  const n = format.length;
  const parseArgIndex = (): boolean => {
    // An explicit [n] selects the argument for what follows.
    if (format[i] !== '[') return true;
    reordered = true;
    const close = format.indexOf(']', i);
    const idx = close < 0 ? NaN : Number(format.slice(i + 1, close));
    if (!Number.isInteger(idx) || idx < 1 || idx > args.length) {
      i = close < 0 ? n : close + 1;
      return false;
    }
    argNum = idx - 1;
    i = close + 1;
    return true;
  };
  while (i < n) {
    const pct = format.indexOf('%', i);
    if (pct < 0) {
      out += format.slice(i);
      break;
    }
    out += format.slice(i, pct);
    i = pct + 1;
    const f: Flags = { ...NO_FLAGS };
    for (; i < n; i++) {
      const c = format[i];
      if (c === '#') f.sharp = true;
      else if (c === '0') f.zero = !f.minus;
      else if (c === '+') f.plus = true;
      else if (c === '-') {
        f.minus = true;
        f.zero = false;
      } else if (c === ' ') f.space = true;
      else break;
    }
    let goodIndex = parseArgIndex();
    if (format[i] === '*') {
      i++;
      const w = args[argNum++];
      if (typeof w === 'number' && Number.isInteger(w)) {
        f.width = Math.abs(w);
        if (w < 0) {
          f.minus = true;
          f.zero = false;
        }
      } else out += '%!(BADWIDTH)';
    } else {
      const m = /^\d+/.exec(format.slice(i));
      if (m) {
        f.width = Number(m[0]);
        i += m[0].length;
      }
    }
    if (format[i] === '.') {
      i++;
      if (goodIndex) goodIndex = parseArgIndex();
      if (format[i] === '*') {
        i++;
        const p = args[argNum++];
        if (typeof p === 'number' && Number.isInteger(p) && p >= 0) f.prec = p;
        else out += '%!(BADPREC)';
      } else {
        const m = /^\d+/.exec(format.slice(i));
        f.prec = m ? Number(m[0]) : 0;
        if (m) i += m[0].length;
      }
    }
    if (goodIndex) goodIndex = parseArgIndex();
    if (i >= n) {
      out += '%!(NOVERB)';
      break;
    }
    const verb = charAt(format, i);
    i += verb.length;
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (!goodIndex) {
      out += `%!${verb}(BADINDEX)`;
      continue;
    }
    if (argNum >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    out += fmtArg(args[argNum++], verb, f);
  }
  if (!reordered && argNum < args.length) {
    const extra = args
      .slice(argNum)
      .map((a) => (a === undefined || a === null ? '<nil>' : `${goType(a)}=${formatValue(a)}`));
    out += `%!(EXTRA ${extra.join(', ')})`;
  }
  return out;
}

/** fmt.Sprint: spaces go between operands when neither is a string. */
export function sprint(...args: unknown[]): string {
  let out = '';
  let prevString = false;
  args.forEach((a, i) => {
    const isString = typeof a === 'string';
    if (i > 0 && !isString && !prevString) out += ' ';
    out += formatValue(a);
    prevString = isString;
  });
  return out;
}

/** fmt.Sprintln. */
export function sprintln(...args: unknown[]): string {
  return `${args.map(formatValue).join(' ')}\n`;
}

// ---------------------------------------------------------------------------
// JSON the way Go's encoding/json writes it

function jsonString(s: string): string {
  let out = '"';
  for (const c of s) {
    const cp = c.codePointAt(0) ?? 0;
    switch (c) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      case '<':
      case '>':
      case '&':
        out += `\\u00${cp.toString(16)}`;
        continue;
    }
    if (cp < 0x20) out += `\\u00${cp.toString(16).padStart(2, '0')}`;
    else if (cp === 0x2028 || cp === 0x2029) out += `\\u${cp.toString(16)}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\ufffd';
    else out += c;
  }
  return `${out}"`;
}

function base64(bytes: Uint8Array): string {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const b0 = bytes[i];
    const b1 = bytes[i + 1] ?? 0;
    const b2 = bytes[i + 2] ?? 0;
    out += abc[b0 >> 2] + abc[((b0 & 3) << 4) | (b1 >> 4)];
    out += i + 1 < bytes.length ? abc[((b1 & 15) << 2) | (b2 >> 6)] : '=';
    out += i + 2 < bytes.length ? abc[b2 & 63] : '=';
  }
  return out;
}

/**
 * Go's json.Marshal (or MarshalIndent when indent is given): HTML-sensitive
 * characters escaped, object keys in insertion order, functions and undefined
 * members left out as JSON.stringify would.
 */
export function goJSON(value: unknown, indent = ''): string {
  const seen = new Set<object>();
  const enc = (v: unknown, cur: string): string => {
    if (v === undefined || v === null || typeof v === 'function' || typeof v === 'symbol') return 'null';
    switch (typeof v) {
      case 'boolean':
        return v ? 'true' : 'false';
      case 'number':
        if (!Number.isFinite(v)) return 'null';
        return Object.is(v, -0) ? '-0' : String(v);
      case 'bigint':
        return v.toString();
      case 'string':
        return jsonString(v);
    }
    const obj = v as object;
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return enc(toJSON.call(obj), cur);
    if (obj instanceof Uint8Array) return jsonString(base64(obj));
    if (seen.has(obj)) throw new Error('json: unsupported value: encountered a cycle');
    seen.add(obj);
    try {
      const inner = cur + indent;
      const nl = indent ? `\n${inner}` : '';
      const end = indent ? `\n${cur}` : '';
      if (Array.isArray(obj) || obj instanceof Set) {
        const elems = [...obj].map((e) => enc(e, inner));
        if (elems.length === 0) return '[]';
        return `[${nl}${elems.join(`,${nl}`)}${end}]`;
      }
      const entries: [string, unknown][] =
        obj instanceof Map
          ? [...obj.entries()].map(([k, val]) => [String(k), val])
          : Object.keys(obj).map((k) => [k, (obj as Record<string, unknown>)[k]]);
      const members = entries
        .filter(([, val]) => val !== undefined && typeof val !== 'function' && typeof val !== 'symbol')
        .map(([k, val]) => `${jsonString(k)}:${indent ? ' ' : ''}${enc(val, inner)}`);
      if (members.length === 0) return '{}';
      return `{${nl}${members.join(`,${nl}`)}${end}}`;
    } finally {
      seen.delete(obj);
    }
  };
  return enc(value, '');
}

// ---------------------------------------------------------------------------
// Functions

/** A type mismatch is reported as it stands, not as a failed call. */
class ArgError extends Error {}

function asString(v: unknown): string {
  if (typeof v === 'string') return v;
  // Lenient where Go would refuse: berth's rows may hold numbers where docker
  // holds preformatted strings, and the user cannot see the difference.
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return formatValue(v);
  if (v === undefined || v === null) throw new ArgError('invalid value; expected string');
  throw new ArgError(`wrong type for value; expected string; got ${goType(v)}`);
}

function asInt(v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  if (v === undefined || v === null) throw new ArgError('invalid value; expected int');
  throw new ArgError(`wrong type for value; expected int; got ${goType(v)}`);
}

function asList(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  if (v === undefined || v === null) throw new ArgError('invalid value; expected []string');
  throw new ArgError(`wrong type for value; expected []string; got ${goType(v)}`);
}

type Kind = 'bool' | 'number' | 'string' | 'nil' | 'other';

function basicKind(v: unknown): Kind {
  if (v === undefined || v === null) return 'nil';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number' || typeof v === 'bigint') return 'number';
  if (typeof v === 'string') return 'string';
  return 'other';
}

function eq(a: unknown, ...rest: unknown[]): boolean {
  if (rest.length === 0) throw new Error('missing argument for comparison');
  const ka = basicKind(a);
  for (const b of rest) {
    const kb = basicKind(b);
    if (ka !== kb) {
      if (ka !== 'nil' && kb !== 'nil') throw new Error('incompatible types for comparison');
      continue;
    }
    if (ka === 'other') throw new Error(`non-comparable type ${formatValue(a)}: ${goType(a)}`);
    if (ka === 'nil' || a === b || (ka === 'number' && Number(a) === Number(b))) return true;
  }
  return false;
}

function lt(a: unknown, b: unknown): boolean {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka === 'bool' || ka === 'other' || ka === 'nil' || kb === 'bool' || kb === 'other' || kb === 'nil') {
    throw new Error('invalid type for comparison');
  }
  if (ka !== kb) throw new Error('incompatible types for comparison');
  return (a as number | string) < (b as number | string);
}

function textArgs(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === 'string') return args[0];
  return sprint(...args);
}

function htmlEscape(s: string): string {
  return s.replace(/[\0"'&<>]/g, (c) =>
    c === '\0' ? '\ufffd' : c === '"' ? '&#34;' : c === "'" ? '&#39;' : c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;',
  );
}

function jsEscape(s: string): string {
  let out = '';
  for (const c of s) {
    const cp = c.codePointAt(0) ?? 0;
    if (c === '\\') out += '\\\\';
    else if (c === "'") out += "\\'";
    else if (c === '"') out += '\\"';
    else if (c === '<' || c === '>' || c === '&' || c === '=') {
      out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    } else if (cp < 0x20 || (cp >= 0x7f && !PRINTABLE.test(c))) {
      out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    } else out += c;
  }
  return out;
}

function queryEscape(s: string): string {
  let out = '';
  for (const b of utf8(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function goTitle(s: string): string {
  let prev = ' ';
  let out = '';
  for (const c of s) {
    const sep = /[\p{L}\p{Nd}_]/u.test(prev)
      ? false
      : prev.charCodeAt(0) < 0x80
        ? true
        : /\s/u.test(prev);
    out += sep ? c.toUpperCase() : c;
    prev = c;
  }
  return out;
}

function byteLength(s: string): number {
  return utf8(s).length;
}

function indexOne(item: unknown, key: unknown): unknown {
  if (item === undefined || item === null) throw new Error('index of untyped nil');
  if (typeof item === 'string' || Array.isArray(item) || ArrayBuffer.isView(item)) {
    const seq = typeof item === 'string' ? utf8(item) : (item as ArrayLike<unknown>);
    if (typeof key !== 'number' || !Number.isInteger(key)) {
      throw new Error(`cannot index slice/array with type ${goType(key)}`);
    }
    if (key < 0 || key >= seq.length) throw new Error(`index out of range: ${key}`);
    return seq[key];
  }
  if (item instanceof Map) return item.get(key);
  if (typeof item === 'object') {
    if (typeof key !== 'string') throw new Error(`value has type ${goType(key)}; should be string`);
    return lookupProp(item, key);
  }
  throw new Error(`can't index item of type ${goType(item)}`);
}

function sliceOf(item: unknown, ...idx: unknown[]): unknown {
  if (item === undefined || item === null) throw new Error('slice of untyped nil');
  if (idx.length > 3) throw new Error(`too many slice indexes: ${idx.length}`);
  let len: number;
  if (typeof item === 'string') {
    if (idx.length === 3) throw new Error('cannot 3-index slice a string');
    len = byteLength(item);
  } else if (Array.isArray(item)) len = item.length;
  else throw new Error(`can't slice item of type ${goType(item)}`);
  const nums = idx.map((x) => {
    if (typeof x !== 'number' || !Number.isInteger(x)) throw new Error(`cannot index slice/array with type ${goType(x)}`);
    if (x < 0 || x > len) throw new Error(`index out of range: ${x}`);
    return x;
  });
  const lo = nums[0] ?? 0;
  const hi = nums[1] ?? len;
  if (lo > hi) throw new Error(`invalid slice index: ${lo} > ${hi}`);
  if (nums.length === 3 && hi > nums[2]) throw new Error(`invalid slice index: ${hi} > ${nums[2]}`);
  if (typeof item === 'string') return new TextDecoder().decode(utf8(item).slice(lo, hi));
  return (item as unknown[]).slice(lo, hi);
}

function lenOf(v: unknown): number {
  if (typeof v === 'string') return byteLength(v);
  if (Array.isArray(v)) return v.length;
  if (v instanceof Map || v instanceof Set) return v.size;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (isPlainObject(v)) return Object.keys(v).length;
  throw new Error(`len of type ${goType(v)}`);
}

interface Builtin {
  fn: TemplateFunc;
  min: number;
  max: number;
}

const B = (fn: TemplateFunc, min: number, max = min): Builtin => ({ fn, min, max });
const ANY = Infinity;

const BUILTINS: Record<string, Builtin> = {
  // "and" and "or" are evaluated lazily by the executor; these run only via "call".
  and: B((...a) => a.find((x) => !isTrue(x)) ?? a[a.length - 1], 1, ANY),
  or: B((...a) => a.find((x) => isTrue(x)) ?? a[a.length - 1], 1, ANY),
  not: B((a) => !isTrue(a), 1),
  len: B(lenOf, 1),
  index: B((item, ...keys) => keys.reduce((acc, k) => indexOne(acc, k), item), 1, ANY),
  slice: B((item, ...idx) => sliceOf(item, ...idx), 1, ANY),
  eq: B((a, ...rest) => eq(a, ...rest), 1, ANY),
  ne: B((a, b) => !eq(a, b), 2),
  lt: B((a, b) => lt(a, b), 2),
  le: B((a, b) => lt(a, b) || eq(a, b), 2),
  gt: B((a, b) => !(lt(a, b) || eq(a, b)), 2),
  ge: B((a, b) => !lt(a, b), 2),
  print: B(sprint, 0, ANY),
  printf: B((f, ...a) => sprintf(asString(f), ...a), 1, ANY),
  println: B(sprintln, 0, ANY),
  html: B((...a) => htmlEscape(textArgs(a)), 0, ANY),
  js: B((...a) => jsEscape(textArgs(a)), 0, ANY),
  urlquery: B((...a) => queryEscape(textArgs(a)), 0, ANY),
  call: B((fn, ...a) => {
    if (typeof fn !== 'function') throw new Error(`non-function of type ${goType(fn)}`);
    return (fn as TemplateFunc)(...a);
  }, 1, ANY),
  json: B((v) => goJSON(v), 1),
  join: B((list, sep) => asList(list).map((e) => (typeof e === 'string' ? e : formatValue(e))).join(asString(sep)), 2),
  split: B((s, sep) => {
    const str = asString(s);
    const by = asString(sep);
    return by === '' ? [...str] : str.split(by);
  }, 2),
  lower: B((s) => asString(s).toLowerCase(), 1),
  upper: B((s) => asString(s).toUpperCase(), 1),
  title: B((s) => goTitle(asString(s)), 1),
  truncate: B((s, n) => {
    const runes = [...asString(s)];
    const len = asInt(n);
    return runes.length < len ? runes.join('') : runes.slice(0, Math.max(len, 0)).join('');
  }, 2),
  pad: B((s, before, after) => {
    const str = asString(s);
    const b = asInt(before);
    const a = asInt(after);
    return str === '' ? str : ' '.repeat(Math.max(b, 0)) + str + ' '.repeat(Math.max(a, 0));
  }, 3),
};

/** In a table header the text-shaping functions leave the header text alone. */
const HEADER_PASSTHROUGH = new Set(['json', 'split', 'join', 'title', 'lower', 'upper', 'pad', 'truncate']);

// ---------------------------------------------------------------------------
// Execution

class BreakSignal {}
class ContinueSignal {}

const MAX_DEPTH = 200;

interface Located {
  pos: number;
  show: string;
}

class Exec {
  private readonly tmpl: Template;
  private readonly header: ((field: string) => string) | undefined;
  private readonly out: string[] = [];
  private vars: { name: string; value: unknown }[] = [];
  private name = '';
  private node: Located | null = null;
  private depth = 0;

  constructor(tmpl: Template, header: ((field: string) => string) | undefined) {
    this.tmpl = tmpl;
    this.header = header;
  }

  run(root: TNode[], data: unknown): string {
    this.vars = [{ name: '$', value: data }];
    try {
      this.walkList(data, root);
    } catch (err) {
      if (!this.header) throw err;
    }
    return this.out.join('');
  }

  private at(pos: number, show: string): void {
    this.node = { pos, show };
  }

  private errorf(msg: string): never {
    const src = this.tmpl.source;
    const node = this.node;
    let where = '';
    if (node) {
      const before = src.slice(0, node.pos);
      const nl = before.lastIndexOf('\n');
      const col = nl < 0 ? node.pos : node.pos - nl - 1;
      const show = [...node.show].length > 20 ? `${[...node.show].slice(0, 20).join('')}...` : node.show;
      where = `:${lineOf(src, node.pos)}:${col}: executing ${goQuote(this.name)} at <${show}>: `;
    } else where = `: executing ${goQuote(this.name)}: `;
    throw invalid(`template: ${where}${msg}`);
  }

  private walkList(dot: unknown, list: TNode[]): void {
    for (const n of list) this.walk(dot, n);
  }

  private walk(dot: unknown, n: TNode): void {
    switch (n.kind) {
      case 'text':
        this.out.push(n.text);
        return;
      case 'action': {
        const v = this.evalPipeline(dot, n.pipe);
        if (n.pipe.decl.length === 0) this.printValue(n.pos, n.pipe, v);
        return;
      }
      case 'if':
      case 'with':
        this.walkIfOrWith(dot, n);
        return;
      case 'range':
        this.walkRange(dot, n);
        return;
      case 'template':
        this.walkTemplate(dot, n);
        return;
      case 'break':
        throw new BreakSignal();
      case 'continue':
        throw new ContinueSignal();
    }
  }

  private printValue(pos: number, pipe: Pipe, v: unknown): void {
    if (v === undefined || v === null) {
      this.out.push('<no value>');
      return;
    }
    if (typeof v === 'function') {
      this.at(pos, pipeString(pipe));
      this.errorf(`can't print ${pipeString(pipe)} of type ${goType(v)}`);
    }
    this.out.push(formatValue(v));
  }

  private walkIfOrWith(dot: unknown, n: ControlNode): void {
    const mark = this.vars.length;
    try {
      const v = this.evalPipeline(dot, n.pipe);
      if (isTrue(v)) this.walkList(n.kind === 'with' ? v : dot, n.list);
      else if (n.elseList) this.walkList(dot, n.elseList);
    } finally {
      this.vars.length = mark;
    }
  }

  private iterate(n: ControlNode, v: unknown): [unknown, unknown][] | null {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v.map((e, i) => [i, e]);
    if (v instanceof Set || ArrayBuffer.isView(v)) {
      return [...(v as Iterable<unknown>)].map((e, i) => [i, e]);
    }
    if (typeof v === 'number' && Number.isInteger(v)) {
      if (n.pipe.decl.length > 1) this.errorf(`can't use ${v} to iterate over more than one variable`);
      return Array.from({ length: Math.max(v, 0) }, (_, i) => [i, i]);
    }
    if (typeof v === 'object') return mapEntries(v);
    if (this.header) return [[0, v]];
    return null;
  }

  private walkRange(dot: unknown, n: ControlNode): void {
    this.at(n.pos, `range ${pipeString(n.pipe)}`);
    const outer = this.vars.length;
    try {
      const v = this.evalPipeline(dot, n.pipe);
      const entries = this.iterate(n, v);
      if (entries === null) {
        this.at(n.pos, `range ${pipeString(n.pipe)}`);
        this.errorf(`range can't iterate over ${formatValue(v)}`);
      }
      if (entries.length === 0) {
        if (n.elseList) this.walkList(dot, n.elseList);
        return;
      }
      const mark = this.vars.length;
      for (const [index, elem] of entries) {
        if (n.pipe.decl.length === 1) this.setVar(n.pipe.decl[0], elem);
        else if (n.pipe.decl.length === 2) {
          this.setVar(n.pipe.decl[0], index);
          this.setVar(n.pipe.decl[1], elem);
        }
        try {
          this.walkList(elem, n.list);
        } catch (sig) {
          if (sig instanceof BreakSignal) break;
          if (!(sig instanceof ContinueSignal)) throw sig;
        } finally {
          this.vars.length = mark;
        }
      }
    } finally {
      this.vars.length = outer;
    }
  }

  private walkTemplate(dot: unknown, n: TemplateNode): void {
    this.at(n.pos, `{{template ${goQuote(n.name)}${n.pipe ? ` ${pipeString(n.pipe)}` : ''}}}`);
    const body = this.tmpl.defs.get(n.name);
    if (!body) this.errorf(`template ${goQuote(n.name)} not defined`);
    if (this.depth >= MAX_DEPTH) this.errorf(`exceeded maximum template depth (${MAX_DEPTH})`);
    const newDot = n.pipe ? this.evalPipeline(dot, n.pipe) : undefined;
    const savedVars = this.vars;
    const savedName = this.name;
    this.vars = [{ name: '$', value: newDot }];
    this.name = n.name;
    this.depth++;
    try {
      this.walkList(newDot, body);
    } finally {
      this.depth--;
      this.vars = savedVars;
      this.name = savedName;
    }
  }

  private setVar(name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      if (this.vars[i].name === name) {
        this.vars[i].value = value;
        return;
      }
    }
    this.errorf(`undefined variable: ${name}`);
  }

  private varValue(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) if (this.vars[i].name === name) return this.vars[i].value;
    this.errorf(`undefined variable: ${name}`);
  }

  private evalPipeline(dot: unknown, pipe: Pipe): unknown {
    let value: Final = MISSING;
    for (const cmd of pipe.cmds) value = this.evalCommand(dot, cmd, value);
    if (value === MISSING) value = undefined;
    for (const name of pipe.decl) {
      if (pipe.isAssign) this.setVar(name, value);
      else this.vars.push({ name, value });
    }
    return value;
  }

  private notAFunction(args: Arg[], final: Final): void {
    if (args.length > 1 || final !== MISSING) {
      this.errorf(`can't give argument to non-function ${argString(args[0])}`);
    }
  }

  private evalCommand(dot: unknown, cmd: Cmd, final: Final): unknown {
    const first = cmd.args[0];
    switch (first.kind) {
      case 'field':
        return this.evalFieldNode(dot, first, cmd.args, final);
      case 'chain':
        return this.evalChainNode(dot, first, cmd.args, final);
      case 'identifier':
        return this.evalFunction(dot, first, cmd.args, final);
      case 'pipe':
        this.at(first.pos, argString(first));
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first.pipe);
      case 'variable':
        return this.evalVariableNode(dot, first, cmd.args, final);
    }
    this.at(first.pos, argString(first));
    this.notAFunction(cmd.args, final);
    switch (first.kind) {
      case 'bool':
      case 'number':
      case 'string':
        return first.value;
      case 'dot':
        return dot;
      case 'nil':
        this.errorf('nil is not a command');
    }
  }

  private evalFieldNode(dot: unknown, field: Extract<Arg, { kind: 'field' }>, args: Arg[], final: Final): unknown {
    this.at(field.pos, argString(field));
    return this.evalFieldChain(dot, dot, field.names, args, final);
  }

  private evalChainNode(dot: unknown, chain: Extract<Arg, { kind: 'chain' }>, args: Arg[], final: Final): unknown {
    const receiver = this.evalArg(dot, chain.node);
    this.at(chain.pos, argString(chain));
    return this.evalFieldChain(dot, receiver, chain.names, args, final);
  }

  private evalVariableNode(dot: unknown, v: Extract<Arg, { kind: 'variable' }>, args: Arg[], final: Final): unknown {
    this.at(v.pos, argString(v));
    const value = this.varValue(v.name);
    if (v.names.length === 0) {
      this.notAFunction(args, final);
      return value;
    }
    return this.evalFieldChain(dot, value, v.names, args, final);
  }

  private evalFieldChain(dot: unknown, receiver: unknown, names: string[], args: Arg[], final: Final): unknown {
    if (this.header) return this.header(names[0]);
    let r = receiver;
    for (let i = 0; i < names.length - 1; i++) r = this.evalField(dot, names[i], r, [], MISSING);
    return this.evalField(dot, names[names.length - 1], r, args, final);
  }

  private evalField(dot: unknown, name: string, receiver: unknown, args: Arg[], final: Final): unknown {
    // A missing map entry yields "no value", and so does anything read from it.
    if (receiver === undefined || receiver === null) return undefined;
    const hasArgs = args.length > 1 || final !== MISSING;
    if (typeof receiver === 'object' && !Array.isArray(receiver) && !ArrayBuffer.isView(receiver) && !(receiver instanceof Set)) {
      const value = lookupProp(receiver, name);
      if (typeof value === 'function') {
        const argv = args.slice(1).map((a) => this.evalArg(dot, a));
        if (final !== MISSING) argv.push(final);
        try {
          return (value as TemplateFunc).apply(receiver, argv);
        } catch (err) {
          this.errorf(`error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (hasArgs) this.errorf(`${name} is not a method but has arguments`);
      return value;
    }
    this.errorf(`can't evaluate field ${name} in type ${goType(receiver)}`);
  }

  private lookupFunction(name: string): { fn: TemplateFunc; min: number; max: number } | undefined {
    if (this.header && HEADER_PASSTHROUGH.has(name)) {
      const b = BUILTINS[name];
      return { fn: (v) => v, min: b.min, max: b.max };
    }
    if (Object.hasOwn(this.tmpl.funcs, name)) return { fn: this.tmpl.funcs[name], min: 0, max: Infinity };
    return Object.hasOwn(BUILTINS, name) ? BUILTINS[name] : undefined;
  }

  private evalFunction(dot: unknown, ident: Extract<Arg, { kind: 'identifier' }>, args: Arg[], final: Final): unknown {
    this.at(ident.pos, ident.name);
    const name = ident.name;
    const f = this.lookupFunction(name);
    if (!f) this.errorf(`${goQuote(name)} is not a defined function`);
    const argNodes = args.slice(1);
    const count = argNodes.length + (final !== MISSING ? 1 : 0);
    if (count < f.min || count > f.max) {
      const want = f.max === Infinity ? `at least ${f.min}` : String(f.min);
      this.errorf(`wrong number of args for ${name}: want ${want} got ${count}`);
    }
    if ((name === 'and' || name === 'or') && !Object.hasOwn(this.tmpl.funcs, name)) {
      // Go stops evaluating at the first argument that decides the result.
      let v: unknown = undefined;
      const total = argNodes.length + (final !== MISSING ? 1 : 0);
      for (let i = 0; i < total; i++) {
        v = i < argNodes.length ? this.evalArg(dot, argNodes[i]) : final;
        if (isTrue(v) === (name === 'or')) return v;
      }
      return v;
    }
    const argv = argNodes.map((a) => this.evalArg(dot, a));
    if (final !== MISSING) argv.push(final);
    this.at(ident.pos, ident.name);
    try {
      return f.fn(...argv);
    } catch (err) {
      if (err instanceof ArgError) this.errorf(err.message);
      this.errorf(`error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private evalArg(dot: unknown, a: Arg): unknown {
    this.at(a.pos, argString(a));
    switch (a.kind) {
      case 'dot':
        return dot;
      case 'nil':
        return null;
      case 'field':
        return this.evalFieldNode(dot, a, [a], MISSING);
      case 'variable':
        return this.evalVariableNode(dot, a, [a], MISSING);
      case 'pipe':
        return this.evalPipeline(dot, a.pipe);
      case 'identifier':
        return this.evalFunction(dot, a, [a], MISSING);
      case 'chain':
        return this.evalChainNode(dot, a, [a], MISSING);
      case 'bool':
      case 'number':
      case 'string':
        return a.value;
    }
  }
}

// ---------------------------------------------------------------------------
// Public API

export class Template {
  readonly source: string;
  /** @internal */ readonly root: TNode[];
  /** @internal */ readonly defs: Map<string, TNode[]>;
  /** @internal */ readonly funcs: Record<string, TemplateFunc>;

  constructor(source: string, root: TNode[], defs: Map<string, TNode[]>, funcs: Record<string, TemplateFunc>) {
    this.source = source;
    this.root = root;
    this.defs = defs;
    this.funcs = funcs;
  }

  /** Runs the template over data; throws invalid('template: …') on an execution error. */
  execute(data: unknown, options: ExecuteOptions = {}): string {
    const exec = new Exec(this, options.header);
    try {
      return exec.run(this.root, data);
    } catch (err) {
      if (err instanceof RangeError) throw invalid(`template: executing "": ${err.message}`);
      throw err;
    }
  }
}

/** Parses a template; throws invalid('template parsing error: …') when it is malformed. */
export function parseTemplate(src: string, options: ParseOptions = {}): Template {
  const funcs: Record<string, TemplateFunc> = { ...(options.funcs ?? {}) };
  const parser = new Parser(src, (name) => Object.hasOwn(funcs, name) || Object.hasOwn(BUILTINS, name));
  const root = parser.parse();
  return new Template(src, root, parser.defs, funcs);
}
