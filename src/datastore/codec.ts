import { isValidationError, ValidationError } from "../errors/index.js";
import { KINDS, objectKey, parseResource, type ResourceByKind, type ResourceKind } from "../model/index.js";
import type { InvalidObject, Stored } from "./types.js";

/**
 * Validates `input` as a `kind` object and returns its key and stored value. The key is derived
 * from name/namespace; namespaced kinds need a namespace (`services`, `endpoints`).
 */
export function encodeObject<K extends ResourceKind>(
  kind: K,
  input: unknown,
): { key: string; value: ResourceByKind[K] } {
  const value = parseResource(kind, input);
  const meta = value as { name: string; namespace?: string };
  if (KINDS[kind].namespaced === "never" && meta.namespace !== undefined)
    throw new ValidationError("namespace", `${kind} are not namespaced`);
  return { key: objectKey(meta), value };
}

/**
 * Turns raw stored data back into a Stored object, or an InvalidObject when it no longer validates
 * (or its name does not match the key it was stored under).
 */
export function decodeObject<K extends ResourceKind>(
  kind: K,
  key: string,
  raw: unknown,
  revision: string,
  lease: string | undefined,
): { ok: true; stored: Stored<ResourceByKind[K]> } | { ok: false; invalid: InvalidObject } {
  try {
    const { key: k, value } = encodeObject(kind, raw);
    if (k !== key) throw new ValidationError("name", `object "${k}" is stored under key "${key}"`);
    const stored: Stored<ResourceByKind[K]> =
      lease === undefined ? { key, value, revision } : { key, value, revision, lease };
    return { ok: true, stored };
  } catch (e) {
    if (!isValidationError(e)) throw e;
    return { ok: false, invalid: { key, revision, error: e } };
  }
}
