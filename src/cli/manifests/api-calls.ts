/**
 * Which component needs which call of the Kubernetes datastore's client layer
 * (src/datastore/kubernetes/api-calls.ts, the list of calls it really makes). Both the controller
 * and the agent use that one client layer; this file says which of its calls each one makes, and
 * which calls no podcrypt component is granted. test/manifests/rbac.test.ts checks that
 * - the RBAC objects grant each component exactly its calls here, and
 * - these calls plus NOT_GRANTED are exactly the client layer's calls (those without `onlyWith`).
 */
import type { ApiCall as ClientCall } from "../../datastore/kubernetes/api-calls.js";

/** One permission a component holds. */
export interface ComponentCall {
  readonly component: "controller" | "agent";
  readonly apiGroup: string;
  /** Plural resource; `resource/subresource` for a subresource. */
  readonly resource: string;
  readonly verb: ClientCall["verb"];
  /** `cluster`: any namespace or cluster-scoped; `own`: only podcrypt's namespace (leases). */
  readonly scope: "cluster" | "own";
}

type Verb = ClientCall["verb"];
const READ: Verb[] = ["get", "list", "watch"];
const LEASE: Verb[] = ["get", "list", "watch", "create", "update", "delete"];

function grant(
  component: ComponentCall["component"],
  apiGroup: string,
  resource: string,
  verbs: readonly Verb[],
  scope: ComponentCall["scope"] = "cluster",
): ComponentCall[] {
  return verbs.map((verb) => ({ component, apiGroup, resource, verb, scope }));
}

/** The calls each component makes. */
export const COMPONENT_CALLS: readonly ComponentCall[] = [
  // controller: reads everything, owns ClusterEncryption, writes policy status, campaigns for
  // leadership.
  ...grant("controller", "podcrypt.io", "podcryptnodes", READ),
  ...grant("controller", "podcrypt.io", "clusterencryptions", [...READ, "create", "update"]),
  ...grant("controller", "podcrypt.io", "encryptionpolicies", READ),
  ...grant("controller", "podcrypt.io", "encryptionpolicies/status", ["patch"]),
  ...grant("controller", "starlingx.io", "ipsecpolicies", READ),
  ...grant("controller", "starlingx.io", "ipsecpolicies/status", ["patch"]),
  ...grant("controller", "", "services", READ),
  ...grant("controller", "", "endpoints", READ),
  ...grant("controller", "coordination.k8s.io", "leases", LEASE, "own"),
  // Workload gating: the not-ready taint of a Node, as its agent's record asks (setNodeTaint:
  // reads the Node, patches spec.taints). The only Node write of any podcrypt component.
  ...grant("controller", "", "nodes", ["get", "patch"]),
  // agent: publishes its node's record (a PodcryptNode: the admission policy limits it to its own
  // node's), reads the Nodes (its own address and pod CIDRs, and what peers were assigned), reads
  // the rest. Leases: read (the datastore's lease tracking), and the agent's own node's liveness
  // Lease created and renewed (the admission policy limits it to that one: the controller's leader
  // Lease is not the agents' to write, and the controller expires leases).
  ...grant("agent", "podcrypt.io", "podcryptnodes", [...READ, "create", "update"]),
  // Nodes are only read: an agent has no write on any Node (workload gating's taint is the
  // controller's to write, as the agent's record asks).
  ...grant("agent", "", "nodes", READ),
  ...grant("agent", "podcrypt.io", "clusterencryptions", READ),
  ...grant("agent", "podcrypt.io", "encryptionpolicies", READ),
  ...grant("agent", "starlingx.io", "ipsecpolicies", READ),
  ...grant("agent", "", "services", READ),
  ...grant("agent", "", "endpoints", READ),
  ...grant("agent", "coordination.k8s.io", "leases", [...READ, "create", "update"], "own"),
  ...grant("agent", "podcrypt.io", "verifyruns", READ),
  ...grant("agent", "podcrypt.io", "verifyruns/status", ["patch"]),
];

/**
 * Calls the client layer can make that no podcrypt component is granted, and why. A caller that
 * needs one uses its own credentials (a person's kubeconfig), or the call belongs under `onlyWith`.
 */
export const NOT_GRANTED: readonly {
  apiGroup: string;
  resource: string;
  verbs: readonly Verb[];
  why: string;
}[] = [
  {
    apiGroup: "podcrypt.io",
    resource: "encryptionpolicies",
    verbs: ["create", "update", "delete"],
    why: "policies are written by people (kubectl, or `podcrypt policy apply` with their kubeconfig)",
  },
  {
    apiGroup: "starlingx.io",
    resource: "ipsecpolicies",
    verbs: ["create", "update", "delete"],
    why: "cluster-wide policies are written by people, as EncryptionPolicies are",
  },
  {
    apiGroup: "podcrypt.io",
    resource: "clusterencryptions",
    verbs: ["delete"],
    why: "the configuration is deleted by people only (it is never attached to a lease)",
  },
  {
    apiGroup: "podcrypt.io",
    resource: "verifyruns",
    verbs: ["create", "delete"],
    why: "verify runs are written by people (`podcrypt verify --via-agents` with their kubeconfig); agents only add their reports to the status",
  },
  {
    apiGroup: "podcrypt.io",
    resource: "podcryptnodes",
    verbs: ["delete"],
    why: "a node's record is removed by people when the node leaves (agents create and update their own only)",
  },
  {
    apiGroup: "",
    resource: "services",
    verbs: ["create", "update", "delete"],
    why: "Kubernetes owns Services; writing them would let a component redirect traffic",
  },
  {
    apiGroup: "",
    resource: "endpoints",
    verbs: ["create", "update", "delete"],
    why: "the endpoints controller owns Endpoints; writing them would let a component redirect traffic",
  },
];
