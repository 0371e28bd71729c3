/**
 * Base class of every error podcrypt throws on a control path. Each carries a stable `code` that
 * scripts can match, a `context` with the values that explain it (never key material) and the
 * original error as `cause`.
 */
export class PodcryptError extends Error {
  override readonly name: string = "PodcryptError";
  readonly code: string;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    message: string,
    options: { context?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
  }
}

/** Type guard: `e` is a PodcryptError, optionally with the given code. */
export function isPodcryptError(e: unknown, code?: string): e is PodcryptError {
  return e instanceof PodcryptError && (code === undefined || e.code === code);
}
