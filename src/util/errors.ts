/**
 * Typed errors of the engine. The API layer maps each kind to an HTTP status
 * (see api/errors.ts); nothing else in the engine needs to know about HTTP.
 */
export type ErrorKind =
  | 'NotFound'
  | 'Conflict'
  | 'InvalidParameter'
  | 'Forbidden'
  | 'Unauthorized'
  | 'NotModified'
  | 'Unavailable'
  | 'System';

export class BerthError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `${kind}Error`;
  }
}

export const notFound = (message: string): BerthError => new BerthError('NotFound', message);
export const conflict = (message: string): BerthError => new BerthError('Conflict', message);
export const invalid = (message: string): BerthError => new BerthError('InvalidParameter', message);
export const forbidden = (message: string): BerthError => new BerthError('Forbidden', message);
export const notModified = (message: string): BerthError => new BerthError('NotModified', message);
export const systemError = (message: string, cause?: unknown): BerthError =>
  new BerthError('System', message, { cause });

export function errorKind(err: unknown): ErrorKind {
  return err instanceof BerthError ? err.kind : 'System';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** True for a Node.js system error with the given code (ENOENT, EEXIST, …). */
export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
