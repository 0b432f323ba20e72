/**
 * The output layer behind every listing command's `--format` flag:
 *
 *   (none) or `table`   the command's default table
 *   `table TEMPLATE`    a header row plus one row per item, in aligned columns
 *   `json`              one JSON object per line
 *   `TEMPLATE`          the template per item, each followed by a newline
 *
 * Column alignment follows Go's text/tabwriter as the docker CLI configures it
 * (minimum cell width 10, padding 3, spaces), so scripts that cut columns by
 * position read berth's tables the same way.
 */
import { parseTemplate } from './template.ts';
import type { TemplateFunc } from './template.ts';

export interface RenderOptions {
  /** The command's default table, used for no format or a bare `table`. */
  defaultTable: string;
  /** `-q`: with no custom format, print only quietFormat per row and no header. */
  quiet?: boolean;
  /** What quiet prints; `{{.ID}}` unless the command says otherwise. */
  quietFormat?: string;
  /** Header text per field, e.g. { ID: 'CONTAINER ID' }; others are upper-cased. */
  headers?: Record<string, string>;
  /** Extra template functions. */
  funcs?: Record<string, TemplateFunc>;
}

export const TABLE_MIN_WIDTH = 10;
export const TABLE_PADDING = 3;

const TABLE_KEY = 'table';

/** True when the format asks for a table (docker tests only the prefix). */
export function isTableFormat(format: string | undefined): boolean {
  return format === undefined || format === '' || format.startsWith(TABLE_KEY);
}

/** True when the format is the `json` directive. */
export function isJSONFormat(format: string | undefined): boolean {
  return format !== undefined && format.trim() === 'json';
}

/**
 * Renders rows through a docker-style --format value and returns the whole
 * output, every row (and the header) ending in a newline.
 */
export function renderFormatted(
  format: string | undefined,
  rows: Record<string, unknown>[],
  opts: RenderOptions,
): string {
  let f = format ?? '';
  if (f === '' || f === TABLE_KEY) {
    if (opts.quiet) f = opts.quietFormat ?? '{{.ID}}';
    else f = opts.defaultTable.startsWith(TABLE_KEY) ? opts.defaultTable : `${TABLE_KEY} ${opts.defaultTable}`;
  }
  const table = f.startsWith(TABLE_KEY);
  let body: string;
  if (isJSONFormat(f)) body = '{{json .}}';
  else body = table ? f.slice(TABLE_KEY.length) : f;
  // Shells hand over "\t" and "\n" literally; docker turns them into the
  // characters before parsing, which is how columns get their tabs.
  body = body.replace(/^ +| +$/g, '').replace(/\\[tn]/g, (m) => (m === '\\t' ? '\t' : '\n'));

  const tmpl = parseTemplate(body, opts.funcs ? { funcs: opts.funcs } : {});
  let out = '';
  for (const row of rows) out += `${tmpl.execute(row)}\n`;
  if (!table) return out;

  const headers = opts.headers ?? {};
  const header = tmpl.execute(
    {},
    { header: (field) => (Object.hasOwn(headers, field) ? headers[field] : field.toUpperCase()) },
  );
  return tabwriteText(`${header}\n${out}`);
}

function cellWidth(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * Aligns tab-separated text like Go's tabwriter: every tab-terminated cell
 * belongs to a column, a column's width is set by the contiguous block of
 * lines that have a cell in it, and the text after a line's last tab is
 * written as is. A line without tabs therefore ends every column block.
 */
export function tabwriteText(text: string, padding = TABLE_PADDING, minWidth = TABLE_MIN_WIDTH): string {
  const raw = text.split('\n');
  const lines = raw.map((l, i) => {
    const cells = l.split('\t');
    // Go's writer drops an empty trailing cell only on the unterminated last line.
    if (i === raw.length - 1 && cells[cells.length - 1] === '') cells.pop();
    return cells;
  });
  const widths: number[] = [];
  const out: string[] = [];

  const writeLines = (from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      const line = lines[i];
      let s = '';
      line.forEach((cell, j) => {
        s += cell;
        if (j < widths.length && j < line.length - 1) s += ' '.repeat(Math.max(widths[j] - cellWidth(cell), 0));
      });
      out.push(i + 1 === lines.length ? s : `${s}\n`);
    }
  };

  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    let start = line0;
    for (let i = line0; i < line1; i++) {
      if (column >= lines[i].length - 1) continue;
      writeLines(start, i);
      let width = minWidth;
      let end = i;
      for (; end < line1; end++) {
        const line = lines[end];
        if (column >= line.length - 1) break;
        width = Math.max(width, cellWidth(line[column]) + padding);
      }
      widths.push(width);
      format(i, end);
      widths.pop();
      start = end;
      i = end - 1;
    }
    writeLines(start, line1);
  };

  format(0, lines.length);
  return out.join('');
}

/**
 * Aligns rows of cells into a table; every row ends in a newline and the
 * last cell of each row is not padded.
 */
export function tabwrite(lines: string[][], padding = TABLE_PADDING, minWidth = TABLE_MIN_WIDTH): string {
  if (lines.length === 0) return '';
  return tabwriteText(`${lines.map((l) => l.join('\t')).join('\n')}\n`, padding, minWidth);
}
