/**
 * The distribution spec's error codes and the HTTP status each is sent with.
 * Handlers throw RegistryError; the server turns it into
 * `{"errors":[{"code","message","detail"}]}`.
 */
export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS';

/** The status each code is usually sent with; a thrower may override it (416, 413, 405). */
const DEFAULT_STATUS: Record<RegistryErrorCode, number> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
};

export interface ErrorEntry {
  code: RegistryErrorCode;
  message: string;
  detail?: unknown;
}

export class RegistryError extends Error {
  readonly status: number;
  readonly entries: ErrorEntry[];
  /** Extra response headers (WWW-Authenticate, Range, Retry-After). */
  readonly headers: Record<string, string>;
  constructor(code: RegistryErrorCode, message: string, opts: { status?: number; detail?: unknown; headers?: Record<string, string>; more?: ErrorEntry[] } = {}) {
    super(message);
    this.status = opts.status ?? DEFAULT_STATUS[code];
    const first: ErrorEntry = { code, message };
    if (opts.detail !== undefined) first.detail = opts.detail;
    this.entries = [first, ...(opts.more ?? [])];
    this.headers = opts.headers ?? {};
  }

  get code(): RegistryErrorCode {
    return this.entries[0]!.code;
  }

  body(): string {
    return JSON.stringify({ errors: this.entries });
  }
}

export const regError = (code: RegistryErrorCode, message: string, opts?: ConstructorParameters<typeof RegistryError>[2]): RegistryError =>
  new RegistryError(code, message, opts);
