import { isValidationError, ValidationError } from "../errors/index.js";
import {
  KINDS,
  objectKey,
  parseResource,
  parseWith,
  policyStatusSchema,
  type ResourceByKind,
  type ResourceKind,
} from "../model/index.js";
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
 * (or its name does not match the key it was stored under). `generation` is Kubernetes'
 * `metadata.generation`, when there is one. An invalid policy keeps its status, if that validates.
 */
export function decodeObject<K extends ResourceKind>(
  kind: K,
  key: string,
  raw: unknown,
  revision: string,
  lease: string | undefined,
  generation?: number,
): { ok: true; stored: Stored<ResourceByKind[K]> } | { ok: false; invalid: InvalidObject } {
  const gen = generation === undefined ? {} : { generation };
  try {
    const { key: k, value } = encodeObject(kind, raw);
    if (k !== key) throw new ValidationError("name", `object "${k}" is stored under key "${key}"`);
    const stored: Stored<ResourceByKind[K]> =
      lease === undefined ? { key, value, revision, ...gen } : { key, value, revision, lease, ...gen };
    return { ok: true, stored };
  } catch (e) {
    if (!isValidationError(e)) throw e;
    const status =
      kind === "encryptionpolicies" && typeof raw === "object" && raw !== null
        ? policyStatusSchema.safeParse((raw as { status?: unknown }).status)
        : undefined;
    return {
      ok: false,
      invalid: {
        key,
        revision,
        error: e,
        ...gen,
        ...(status?.success === true ? { status: status.data } : {}),
      },
    };
  }
}

/**
 * A stored raw policy with its status replaced, for Datastore.writePolicyStatus of the backends
 * that keep the status in the object. ValidationError when `status` does not validate or the
 * stored form is not an object at all.
 */
export function withPolicyStatus(key: string, raw: unknown, status: unknown): Record<string, unknown> {
  const valid = parseWith(policyStatusSchema, status, "status");
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ValidationError("", `policy ${key} is not stored as an object; cannot write its status`);
  return { ...(raw as Record<string, unknown>), status: valid };
}
