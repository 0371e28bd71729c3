import { pino, type Logger } from "pino";

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

/** A JSON logger on stderr (or `destination`) with key material redacted. */
export function createLogger(
  component: string,
  options: { level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      name: component,
      level: options.level ?? process.env["PODCRYPT_LOG_LEVEL"] ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      base: { component, pid: process.pid },
    },
    options.destination ?? pino.destination(2),
  );
}

export type { Logger };
