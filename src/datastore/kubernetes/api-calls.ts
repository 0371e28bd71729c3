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
   * Made only when an option enables it (e.g. `registerNode()`): a production RBAC role need
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
  // Kubernetes Nodes are read (what Kubernetes assigned each node: addresses, pod CIDRs) and
  // patched for one thing only: the workload-gating taint, by the controller as a node's record asks.
  call("", "nodes", "get", "nodeNetwork(), setNodeTaint()"),
  call("", "nodes", "list", "watchNodeAuthorities()"),
  call("", "nodes", "watch", "watchNodeAuthorities()"),
  call("", "nodes", "patch", "setNodeTaint() (JSON patch of spec.taints, tested on resourceVersion)"),
  call("", "nodes", "create", "registerNode()", {
    onlyWith: "registerNode() (the local cluster and tests registering their nodes as kubelets do)",
  }),
  // Custom resources. Policies are EncryptionPolicies (namespaced) and IPsecPolicies (cluster-wide).
  ...(
    [
      ["podcrypt.io", "podcryptnodes", "nodes"],
      ["podcrypt.io", "clusterencryptions", "clusterencryptions"],
      ["podcrypt.io", "encryptionpolicies", "encryptionpolicies"],
      ["starlingx.io", "ipsecpolicies", "encryptionpolicies"],
    ] as const
  ).flatMap(([g, r, kind]) => [
    call(g, r, "get", `collection(${kind}).get/update`),
    call(g, r, "list", `collection(${kind}).list, lease sweeping`),
    call(g, r, "watch", `collection(${kind}).watch`),
    call(g, r, "create", `collection(${kind}).create`),
    call(g, r, "update", `collection(${kind}).update`),
    call(g, r, "delete", `collection(${kind}).delete, lease sweeping`),
  ]),
  call("podcrypt.io", "encryptionpolicies", "patch", "writePolicyStatus (namespaced policies)", {
    subresource: "status",
  }),
  call("starlingx.io", "ipsecpolicies", "patch", "writePolicyStatus (cluster-wide policies)", {
    subresource: "status",
  }),
  // Verify runs: created and deleted by `verify --via-agents`; updates are status merge patches.
  call("podcrypt.io", "verifyruns", "get", "collection(verifyruns).get/update"),
  call("podcrypt.io", "verifyruns", "list", "collection(verifyruns).list"),
  call("podcrypt.io", "verifyruns", "watch", "collection(verifyruns).watch"),
  call("podcrypt.io", "verifyruns", "create", "collection(verifyruns).create"),
  call("podcrypt.io", "verifyruns", "delete", "collection(verifyruns).delete"),
  call("podcrypt.io", "verifyruns", "patch", "collection(verifyruns).update (a node's report)", {
    subresource: "status",
  }),
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
