import { parse as parseYaml } from "yaml";
import { ValidationError } from "./validation-error.js";

/**
 * The document in the YAML `text` of `source` (a file name, for errors): a ValidationError
 * `FILE:LINE:COLUMN: not valid YAML: REASON` when it is not YAML.
 */
export function parseYamlText(text: string, source: string): unknown {
  try {
    return parseYaml(text);
  } catch (cause) {
    throw invalidYaml(source, cause);
  }
}

/**
 * The error for a YAML syntax error in `source` (a file name), as one line:
 * `FILE:LINE:COLUMN: not valid YAML: REASON`. The `yaml` parser's message adds the position and a
 * multi-line excerpt of the text, which read as several errors on a terminal; the position is
 * taken from its `linePos` instead.
 */
function invalidYaml(source: string, cause: unknown): ValidationError {
  const e = cause as { message?: unknown; linePos?: Array<{ line: number; col: number }> };
  const text = typeof e.message === "string" ? e.message : String(cause);
  const reason = text
    .split("\n")[0]!
    .replace(/ at line \d+, column \d+:?$/, "")
    .trim();
  const pos = e.linePos?.[0];
  const where = pos === undefined ? source : `${source}:${pos.line}:${pos.col}`;
  return new ValidationError(where, `not valid YAML: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`, {
    cause,
  });
}
