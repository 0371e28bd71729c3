/**
 * `podcrypt policy apply | delete | list` against any Datastore (docs/design.md#selective-encryption): the whole
 * file is validated, together with what is stored, before anything is written, so an invalid
 * policy changes nothing already installed.
 */
import { PodcryptError, ValidationError } from "../errors/index.js";
import type { Datastore } from "../datastore/types.js";
import { objectKey, type PolicyStatus } from "../model/index.js";
import { checkPolicySet, fromStored, toStored, type ParsedPolicy } from "./parse.js";
import type { Policy } from "./types.js";

/** What `apply` did to one policy. */
export interface ApplyResult {
  /** Datastore key: `namespace/name`, or `name` for a cluster-wide (IPsecPolicy) one. */
  readonly key: string;
  readonly action: "created" | "updated" | "unchanged";
}

/** A stored policy, as `policy list` shows it. */
export interface PolicyListEntry {
  readonly key: string;
  readonly policy: Policy;
  /** What the controller reported (Accepted, Programmed on N of M nodes), once it has. */
  readonly status?: PolicyStatus;
}

/**
 * Every valid stored policy, and the keys of stored ones that do not validate (with their error),
 * each with the status the controller wrote, if any.
 */
export async function listPolicies(store: Datastore): Promise<{
  policies: PolicyListEntry[];
  invalid: { key: string; error: string; status?: PolicyStatus }[];
}> {
  const r = await store.collection("encryptionpolicies").list();
  return {
    policies: r.items.map((s) => ({
      key: s.key,
      policy: fromStored(s.value),
      ...(s.value.status === undefined ? {} : { status: s.value.status }),
    })),
    invalid: r.invalid.map((i) => ({
      key: i.key,
      error: i.error.message,
      ...(i.status === undefined ? {} : { status: i.status }),
    })),
  };
}

/**
 * Stores `policies` (create or replace). Rule names must stay unique across everything stored: the
 * check runs before the first write. Unchanged policies are not rewritten.
 */
export async function applyPolicies(
  store: Datastore,
  policies: readonly ParsedPolicy[],
): Promise<ApplyResult[]> {
  const coll = store.collection("encryptionpolicies");
  const existing = await coll.list();
  const incoming = new Set(policies.map((p) => objectKey(toStored(p.policy))));
  const others: ParsedPolicy[] = existing.items
    .filter((s) => !incoming.has(s.key))
    .map((s) => ({ policy: fromStored(s.value), source: { file: `stored policy ${s.key}` } }));
  // Stored ones first, so the error names the field of the incoming document.
  const errors = checkPolicySet([...others, ...policies]);
  const first = errors[0];
  if (first !== undefined) throw first;
  const out: ApplyResult[] = [];
  for (const p of policies) {
    const stored = toStored(p.policy);
    const value = { ...stored, policies: stored.policies.map((r) => ({ ...r })) };
    const key = objectKey(value);
    const current = existing.items.find((s) => s.key === key);
    if (current === undefined) {
      await coll.create(value);
      out.push({ key, action: "created" });
    } else if (JSON.stringify(toStored(fromStored(current.value))) === JSON.stringify(value)) {
      out.push({ key, action: "unchanged" });
    } else {
      await coll.update(value, { revision: current.revision });
      out.push({ key, action: "updated" });
    }
  }
  return out;
}

/**
 * Deletes the policy named `ref`: `NAME` (any namespace, must be unambiguous) or `NAMESPACE/NAME`.
 * Returns the deleted key.
 */
export async function deletePolicy(store: Datastore, ref: string): Promise<string> {
  const coll = store.collection("encryptionpolicies");
  const { items } = await coll.list();
  const matches = items.filter((s) => s.key === ref || (!ref.includes("/") && s.value.name === ref));
  if (matches.length === 0)
    throw new PodcryptError("ENOTFOUND", `no policy named "${ref}" (see podcrypt policy list)`, {
      context: { ref },
    });
  if (matches.length > 1)
    throw new ValidationError(
      "NAME",
      `"${ref}" is ambiguous: ${matches.map((m) => m.key).join(", ")}; give NAMESPACE/NAME`,
    );
  await coll.delete(matches[0]!.key, { revision: matches[0]!.revision });
  return matches[0]!.key;
}
