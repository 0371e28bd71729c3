/**
 * Least-privilege RBAC for the controller and the agent. Written out rule by rule (not derived from
 * the call list) so that test/manifests/rbac.test.ts can compare the two and catch drift either way.
 *
 * Agents write no Kubernetes object but their node's PodcryptNode and their node's liveness Lease
 * (and their node's report in a verify run): RBAC cannot name "the node this pod runs on", so the
 * ValidatingAdmissionPolicies of ./admission.ts do. They only read the other Leases (the
 * controller's leader Lease included) and Nodes: no agent has any write on Node objects. Workload
 * gating's taint is written by the controller, as each agent's record asks
 * (src/controller/workload-gate.ts).
 */
import { COMPONENT_NAMES, type ManifestOptions } from "./options.js";

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
const READ = ["get", "list", "watch"];
const LEASES: Rule = {
  apiGroups: ["coordination.k8s.io"],
  resources: ["leases"],
  verbs: ["get", "list", "watch", "create", "update", "delete"],
};
/** Agents: read Leases, create and renew their node's liveness Lease (the admission policy names it). */
const AGENT_LEASES: Rule = {
  apiGroups: ["coordination.k8s.io"],
  resources: ["leases"],
  verbs: [...READ, "create", "update"],
};

/**
 * The ClusterRole rules of each component. Core `endpoints`, not EndpointSlices: the Kubernetes
 * datastore reads Endpoints (src/datastore/kubernetes/mapping.ts).
 */
export const CLUSTER_RULES: Readonly<Record<"controller" | "agent", readonly Rule[]>> = {
  controller: [
    { apiGroups: ["podcrypt.io"], resources: ["podcryptnodes"], verbs: READ },
    { apiGroups: [""], resources: ["services", "endpoints"], verbs: READ },
    { apiGroups: ["podcrypt.io"], resources: ["clusterencryptions"], verbs: [...READ, "create", "update"] },
    { apiGroups: ["podcrypt.io"], resources: ["encryptionpolicies"], verbs: READ },
    { apiGroups: ["starlingx.io"], resources: ["ipsecpolicies"], verbs: READ },
    // Policy conditions (Accepted, Programmed): the status subresource only, never the spec.
    { apiGroups: ["podcrypt.io"], resources: ["encryptionpolicies/status"], verbs: ["patch"] },
    { apiGroups: ["starlingx.io"], resources: ["ipsecpolicies/status"], verbs: ["patch"] },
    // Workload gating: reads a Node and patches its podcrypt.io/not-ready taint (a JSON patch of
    // spec.taints tested on resourceVersion) as the node's record asks.
    { apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] },
  ],
  agent: [
    { apiGroups: [""], resources: ["nodes"], verbs: READ },
    { apiGroups: ["podcrypt.io"], resources: ["podcryptnodes"], verbs: [...READ, "create", "update"] },
    { apiGroups: [""], resources: ["services", "endpoints"], verbs: READ },
    { apiGroups: ["podcrypt.io"], resources: ["clusterencryptions", "encryptionpolicies"], verbs: READ },
    { apiGroups: ["starlingx.io"], resources: ["ipsecpolicies"], verbs: READ },
    // verify --via-agents: runs are read, and each agent adds its report through the status
    // subresource (an admission policy limits it to its own node's report).
    { apiGroups: ["podcrypt.io"], resources: ["verifyruns"], verbs: READ },
    { apiGroups: ["podcrypt.io"], resources: ["verifyruns/status"], verbs: ["patch"] },
  ],
};

/** The Role rules of each component in podcrypt's own namespace (the datastore's leases). */
export const NAMESPACE_RULES: Readonly<Record<"controller" | "agent", readonly Rule[]>> = {
  controller: [LEASES],
  agent: [AGENT_LEASES],
};

/** ServiceAccounts, ClusterRoles, Roles and their bindings for both components. */
export function rbacObjects(o: ManifestOptions): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const component of ["controller", "agent"] as const) {
    const name = COMPONENT_NAMES[component];
    const labels = { "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "podcrypt" };
    const subject = [{ kind: "ServiceAccount", name, namespace: o.namespace }];
    out.push(
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: o.namespace, labels } },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: { name, labels },
        rules: CLUSTER_RULES[component],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name, labels },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: subject,
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name, namespace: o.namespace, labels },
        rules: NAMESPACE_RULES[component],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name, namespace: o.namespace, labels },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
        subjects: subject,
      },
    );
  }
  return out;
}
