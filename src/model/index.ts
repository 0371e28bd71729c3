/**
 * The resources of docs/design.md#datastores, their zod schemas, and the kind registry the datastores
 * use to name, key and validate them.
 */
import type { z } from "zod";
import { clusterEncryptionSchema, type ClusterEncryption } from "./cluster-encryption.js";
import { encryptionPolicySchema, type EncryptionPolicy } from "./encryption-policy.js";
import { nodeSchema, type Node } from "./node.js";
import { endpointsSchema, serviceSchema, type Endpoints, type Service } from "./service.js";
import { parseWith } from "./validate.js";
import { verifyRunSchema, type VerifyRun } from "./verify-run.js";

export * from "./common.js";
export * from "./node.js";
export * from "./cluster-encryption.js";
export * from "./encryption-policy.js";
export * from "./service.js";
export * from "./verify-run.js";
export { parseWith, fieldPath } from "./validate.js";

/** The kinds every datastore holds. Plural lower-case, used in keys: `/podcrypt/<kind>/<key>`. */
export const RESOURCE_KINDS = [
  "nodes",
  "clusterencryptions",
  "encryptionpolicies",
  "services",
  "endpoints",
  "verifyruns",
] as const;
/** A kind every datastore holds. */
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** The object type of each kind (after defaults are applied). */
export interface ResourceByKind {
  nodes: Node;
  clusterencryptions: ClusterEncryption;
  encryptionpolicies: EncryptionPolicy;
  services: Service;
  endpoints: Endpoints;
  verifyruns: VerifyRun;
}

/** The type callers may pass when writing each kind (defaulted fields optional). */
export interface ResourceInputByKind {
  nodes: z.input<typeof nodeSchema>;
  clusterencryptions: z.input<typeof clusterEncryptionSchema>;
  encryptionpolicies: z.input<typeof encryptionPolicySchema>;
  services: z.input<typeof serviceSchema>;
  endpoints: z.input<typeof endpointsSchema>;
  verifyruns: z.input<typeof verifyRunSchema>;
}

/** How a kind is validated and keyed. */
export interface KindInfo<K extends ResourceKind> {
  readonly kind: K;
  /** Whether objects carry a namespace (their key is then `namespace/name`). */
  readonly namespaced: "always" | "optional" | "never";
  readonly schema: z.ZodType<ResourceByKind[K], ResourceInputByKind[K]>;
}

/** The kind registry. */
export const KINDS: { readonly [K in ResourceKind]: KindInfo<K> } = {
  nodes: { kind: "nodes", namespaced: "never", schema: nodeSchema },
  clusterencryptions: { kind: "clusterencryptions", namespaced: "never", schema: clusterEncryptionSchema },
  encryptionpolicies: { kind: "encryptionpolicies", namespaced: "optional", schema: encryptionPolicySchema },
  services: { kind: "services", namespaced: "always", schema: serviceSchema },
  endpoints: { kind: "endpoints", namespaced: "always", schema: endpointsSchema },
  verifyruns: { kind: "verifyruns", namespaced: "never", schema: verifyRunSchema },
};

/** True when `s` names a kind. */
export function isResourceKind(s: string): s is ResourceKind {
  return (RESOURCE_KINDS as readonly string[]).includes(s);
}

/**
 * Validates `input` as a `kind` object and applies defaults. Throws ValidationError naming the
 * field as a dotted path (`policies.0.ports`).
 */
export function parseResource<K extends ResourceKind>(kind: K, input: unknown): ResourceByKind[K] {
  return parseWith(KINDS[kind].schema, input) as ResourceByKind[K];
}

/**
 * The key of an object within its kind: `name`, or `namespace/name` for namespaced objects. The
 * datastores store the object under `<kind>/<key>`.
 */
export function objectKey(obj: { name: string; namespace?: string | undefined }): string {
  return obj.namespace === undefined ? obj.name : `${obj.namespace}/${obj.name}`;
}

/** Splits a key made by objectKey back into name and namespace. */
export function splitKey(key: string): { name: string; namespace?: string } {
  const i = key.indexOf("/");
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
