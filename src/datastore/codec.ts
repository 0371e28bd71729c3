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
import type { InvalidObject, ListResult, Stored, WatchEvent } from "./types.js";

/** What {@link decodeObject} makes of one stored object: the object, or why it no longer validates. */
export type Decoded<K extends ResourceKind> =
  { ok: true; stored: Stored<ResourceByKind[K]> } | { ok: false; invalid: InvalidObject };

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
): Decoded<K> {
  const gen = generation === undefined ? {} : { generation };
  try {
    const { key: k, value } = encodeObject(kind, raw);
    if (k !== key) throw new ValidationError("name", `object "${k}" is stored under key "${key}"`);
    return { ok: true, stored: { ...storedRecord(key, value, revision, lease), ...gen } };
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

/** A Stored record, with `lease` only when the object has one. */
export function storedRecord<T>(
  key: string,
  value: T,
  revision: string,
  lease: string | undefined,
): Stored<T> {
  return lease === undefined ? { key, value, revision } : { key, value, revision, lease };
}

/** The object `Collection.get` returns: the decoded one, or the ValidationError of one that no longer validates. */
export function storedOrThrow<K extends ResourceKind>(d: Decoded<K>): Stored<ResourceByKind[K]> {
  if (!d.ok) throw d.invalid.error;
  return d.stored;
}

/** Orders stored objects (or invalid ones) by key, as every backend lists them. */
function byKey(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * What `Collection.list` returns for the decoded objects of one read at `revision`: those that
 * validate and those that no longer do, each in key order.
 */
export function listResult<K extends ResourceKind>(
  decoded: Iterable<Decoded<K>>,
  revision: string,
): ListResult<ResourceByKind[K]> {
  const items: Stored<ResourceByKind[K]>[] = [];
  const invalid: InvalidObject[] = [];
  for (const d of decoded) {
    if (d.ok) items.push(d.stored);
    else invalid.push(d.invalid);
  }
  return { items: items.sort(byKey), invalid: invalid.sort(byKey), revision };
}

/**
 * The watch event of an object written at `revision`: INVALID when it no longer validates, else
 * ADDED when the write created it (`added`), MODIFIED when it changed it.
 */
export function changeEvent<K extends ResourceKind>(
  d: Decoded<K>,
  key: string,
  revision: string,
  added: boolean,
): WatchEvent<ResourceByKind[K]> {
  if (!d.ok) return { ...d.invalid, type: "INVALID", key, revision };
  return { type: added ? "ADDED" : "MODIFIED", key, revision, object: d.stored };
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
