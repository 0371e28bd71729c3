import { PodcryptError } from "./podcrypt-error.js";

/** Bad input (config, policy, key, flag): `field` names what is wrong, as a dotted path. */
export class ValidationError extends PodcryptError {
  override readonly name = "ValidationError";
  readonly field: string;

  constructor(
    field: string,
    message: string,
    options: { cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    super("EINVALID", field === "" ? message : `${field}: ${message}`, {
      ...options,
      context: { ...options.context, field },
    });
    this.field = field;
  }
}

export function isValidationError(e: unknown): e is ValidationError {
  return e instanceof ValidationError;
}
