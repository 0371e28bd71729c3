import { pino, type Logger } from "pino";
import { describeError } from "../errors/describe.js";

/**
 * Paths that could carry key material anywhere in a log record. pino replaces their values, so a
 * mistake elsewhere still cannot print a secret.
 */
export const REDACTED_PATHS = [
  "privateKey",
  "*.privateKey",
  "*.*.privateKey",
  "presharedKey",
  "*.presharedKey",
  "*.*.presharedKey",
  "key",
  "*.key",
  "*.*.key",
  "secret",
  "*.secret",
  "psk",
  "*.psk",
];

/**
 * A JSON logger on stderr (or `destination`) with key material redacted. An `err` field is
 * written with its whole cause chain, and for a failed command its command line, exit status and
 * stderr (src/errors/describe.ts); an `err` that is not an Error (a string, a record) is kept as is.
 */
export function createLogger(
  component: string,
  options: { level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      name: component,
      level: options.level ?? process.env["PODCRYPT_LOG_LEVEL"] ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      serializers: { err: (e: unknown) => (e instanceof Error ? describeError(e) : e) },
      base: { component, pid: process.pid },
    },
    options.destination ?? pino.destination(2),
  );
}

export type { Logger };
