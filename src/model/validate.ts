import type { z } from "zod";
import { ValidationError } from "../errors/index.js";

/** Dotted field path of a zod issue: `["policies", 0, "ports"]` → `policies.0.ports`. */
export function fieldPath(path: readonly PropertyKey[], prefix = ""): string {
  const parts = path.map((p) => String(p));
  if (prefix !== "") parts.unshift(prefix);
  return parts.join(".");
}

/**
 * Parses `input` with `schema`, applying defaults. On failure throws a ValidationError whose
 * `field` is the dotted path of the first problem (prefixed by `prefix`, e.g. the resource kind) and
 * whose message lists every problem, each with its own path.
 */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues;
  const first = issues[0]!;
  const field = fieldPath(first.path, prefix);
  // The error names the first field itself; every further problem follows with its own path.
  const msg = [
    first.message,
    ...issues.slice(1).map((i) => {
      const f = fieldPath(i.path, prefix);
      return f === "" ? i.message : `${f}: ${i.message}`;
    }),
  ].join("; ");
  throw new ValidationError(field, msg, {
    cause: r.error,
    context: { issues: issues.map((i) => ({ field: fieldPath(i.path, prefix), message: i.message })) },
  });
}
