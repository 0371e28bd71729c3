/**
 * Every (apiGroup, resource, subresource, verb) the Kubernetes datastore's client layer calls, and
 * the datastore operation that makes it. The RBAC manifests are compared with this list by a test;
 * test/datastore/kubernetes.test.ts checks the list against the requests the test API server saw.
 */
export interface ApiCall {
  /** API group; "" for core/v1. */
  readonly apiGroup: string;
  /** Plural resource name, as RBAC rules spell it. */
  readonly resource: string;
  /** "" or "status". */
  readonly subresource: "" | "status";
  readonly verb: "get" | "list" | "watch" | "create" | "update" | "patch" | "delete";
  /** Which operations of the datastore make the call (who needs the permission). */
  readonly usedBy: string;
  /**
   * Made only when an option enables it (e.g. `createMissingNodes`): a production RBAC role need
   * not grant it.
   */
  readonly onlyWith?: string;
}

const call = (
  apiGroup: string,
  resource: string,
  verb: ApiCall["verb"],
  usedBy: string,
  extra: { subresource?: "status"; onlyWith?: string } = {},
): ApiCall => ({
  apiGroup,
  resource,
  subresource: extra.subresource ?? "",
  verb,
  usedBy,
  ...(extra.onlyWith === undefined ? {} : { onlyWith: extra.onlyWith }),
});

/** The calls, grouped by resource. */
export const API_CALLS: readonly ApiCall[] = [
  // Node records live in podcrypt.io/ annotations and labels of the Kubernetes Node.
  call("", "nodes", "get", "collection(nodes).get/create/update/delete"),
  call("", "nodes", "list", "collection(nodes).list, lease sweeping"),
  call("", "nodes", "watch", "collection(nodes).watch"),
  call("", "nodes", "patch", "collection(nodes).create/update/delete, lease sweeping"),
  call("", "nodes", "create", "collection(nodes).create of a node Kubernetes does not know", {
    onlyWith: "createMissingNodes",
  }),
  // Custom resources.
  ...(["clusterencryptions", "encryptionpolicies"] as const).flatMap((r) => [
    call("podcrypt.io", r, "get", `collection(${r}).get/update`),
    call("podcrypt.io", r, "list", `collection(${r}).list, lease sweeping`),
    call("podcrypt.io", r, "watch", `collection(${r}).watch`),
    call("podcrypt.io", r, "create", `collection(${r}).create`),
    call("podcrypt.io", r, "update", `collection(${r}).update`),
    call("podcrypt.io", r, "delete", `collection(${r}).delete, lease sweeping`),
  ]),
  call("starlingx.io", "ipsecpolicies", "list", "ipsecPolicies()"),
  // Services and endpoints that policies refer to.
  ...(["services", "endpoints"] as const).flatMap((r) => [
    call("", r, "get", `collection(${r}).get/update`),
    call("", r, "list", `collection(${r}).list, lease sweeping`),
    call("", r, "watch", `collection(${r}).watch`),
    call("", r, "create", `collection(${r}).create`),
    call("", r, "update", `collection(${r}).update`),
    call("", r, "delete", `collection(${r}).delete, lease sweeping`),
  ]),
  // Leases: liveness grants and leader records, in the datastore's namespace.
  call("coordination.k8s.io", "leases", "get", "lease keepAlive, leader()"),
  call("coordination.k8s.io", "leases", "list", "lease tracking (informer), lease sweeping"),
  call("coordination.k8s.io", "leases", "watch", "lease tracking (informer)"),
  call("coordination.k8s.io", "leases", "create", "grantLease, campaign"),
  call("coordination.k8s.io", "leases", "update", "lease keepAlive"),
  call("coordination.k8s.io", "leases", "delete", "lease revoke/expiry, resign"),
];
