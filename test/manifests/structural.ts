/**
 * Checks a CRD schema against the rules of a structural schema (Kubernetes "Specifying a
 * structural schema"): every node has a non-empty type (unless x-kubernetes-int-or-string or
 * x-kubernetes-preserve-unknown-fields), objects name properties or additionalProperties but not
 * both, arrays have one items schema, forbidden keywords are absent, and the root's metadata is
 * at most `{type: object}` with name/generateName. Returns one message per violation, with its path.
 */
const FORBIDDEN = [
  "$ref",
  "definitions",
  "dependencies",
  "patternProperties",
  "additionalItems",
  "id",
  "$schema",
];
const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean"]);

type Node = Record<string, unknown>;

export function structuralErrors(schema: unknown, path = "openAPIV3Schema", root = true): string[] {
  const out: string[] = [];
  if (typeof schema !== "object" || schema === null || Array.isArray(schema))
    return [`${path}: not a schema`];
  const s = schema as Node;
  for (const k of FORBIDDEN) if (k in s) out.push(`${path}: ${k} is not allowed`);
  if (s["uniqueItems"] === true) out.push(`${path}: uniqueItems true is not allowed`);
  const open = s["x-kubernetes-int-or-string"] === true || s["x-kubernetes-preserve-unknown-fields"] === true;
  const type = s["type"];
  if (type === undefined) {
    if (!open) out.push(`${path}: type is missing`);
  } else if (typeof type !== "string" || !TYPES.has(type))
    out.push(`${path}: type ${String(type)} is invalid`);
  for (const k of ["allOf", "anyOf", "oneOf", "not"])
    if (k in s)
      out.push(`${path}: ${k} is not used by podcrypt's schemas (and restricted in structural ones)`);
  if (root && type !== "object") out.push(`${path}: the root must be type object`);
  if (type === "object") {
    const props = s["properties"];
    if (props !== undefined && s["additionalProperties"] !== undefined)
      out.push(`${path}: properties and additionalProperties together`);
    if (props !== undefined) {
      if (typeof props !== "object" || props === null) out.push(`${path}.properties: not a map`);
      else
        for (const [k, v] of Object.entries(props as Node)) {
          if (root && k === "metadata") {
            const m = v as Node;
            const extra = Object.keys(m).filter((x) => x !== "type" && x !== "properties");
            if (m["type"] !== "object" || extra.length > 0)
              out.push(`${path}.properties.metadata: only {type: object} is allowed`);
            continue;
          }
          out.push(...structuralErrors(v, `${path}.properties.${k}`, false));
        }
    }
    const ap = s["additionalProperties"];
    if (typeof ap === "object" && ap !== null)
      out.push(...structuralErrors(ap, `${path}.additionalProperties`, false));
    const req = s["required"];
    if (Array.isArray(req) && props !== undefined)
      for (const r of req)
        if (!(String(r) in (props as Node))) out.push(`${path}: required ${String(r)} has no property`);
  }
  if (type === "array") {
    const items = s["items"];
    if (items === undefined || Array.isArray(items)) out.push(`${path}: an array needs one items schema`);
    else out.push(...structuralErrors(items, `${path}.items`, false));
    const keys = s["x-kubernetes-list-map-keys"];
    if (s["x-kubernetes-list-type"] === "map") {
      const item = items as Node | undefined;
      const required = (item?.["required"] as string[] | undefined) ?? [];
      for (const k of (keys as string[] | undefined) ?? [])
        if (!required.includes(k)) out.push(`${path}: list-map key ${k} must be required`);
    }
  }
  return out;
}
