import { PodcryptError } from "../../errors/index.js";

/**
 * The status codes a UAPI request ends with (`errno=N`). wireguard-go writes the negated Linux
 * errno (ipc/uapi_unix.go), and `wg` reports `-N` back to the user as the errno, so these are the
 * values sent on the wire, negative.
 */
export const UapiErrno = {
  /** Success. */
  OK: 0,
  /** -EIO: reading the request or writing the answer failed. */
  IO: -5,
  /** -EINVAL: a bad key, value, address, or an unknown key. */
  INVALID: -22,
  /** -EPROTO: a line without `=`. */
  PROTOCOL: -71,
  /** -EADDRINUSE: the listen port (or fwmark) could not be applied to the socket. */
  PORT_IN_USE: -98,
  /** -ENOANO (55): any other failure while applying. */
  UNKNOWN: -55,
} as const;

/** One of the {@link UapiErrno} values. */
export type UapiErrnoValue = (typeof UapiErrno)[keyof typeof UapiErrno];

/**
 * A UAPI request that failed: `errno` is what the server answers with. The message names the key
 * and never carries a key value (private and preshared keys are never echoed).
 */
export class UapiError extends PodcryptError {
  override readonly name = "UapiError";
  readonly errno: UapiErrnoValue;

  constructor(errno: UapiErrnoValue, message: string, options: { cause?: unknown } = {}) {
    super("EUAPI", message, { context: { errno }, ...options });
    this.errno = errno;
  }
}

/** Type guard for {@link UapiError}. */
export function isUapiError(e: unknown): e is UapiError {
  return e instanceof UapiError;
}
