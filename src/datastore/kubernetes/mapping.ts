/**
 * How each podcrypt resource kind is stored in Kubernetes objects, as pure functions.
 *
 * - nodes: podcrypt.io/v1 PodcryptNode (cluster-scoped) named after the Kubernetes Node; every
 *   model field but `name` and `status` in `spec`, the model's `status` in `.status` (an ordinary
 *   field: no status subresource, so a record is one write). Not annotations of the Node: an agent
 *   then needs no write on Nodes, and the admission policy of the manifests lets an agent write
 *   only the PodcryptNode of its own node. Agents only read the Node (its `spec.podCIDRs` and
 *   `status.addresses`, what agents vet peers' claims against); its one write, the workload
 *   gating taint an agent asks for in its record's `status.workloadGate`, is the controller's.
 * - clusterencryptions: podcrypt.io/v1 ClusterEncryption (cluster-scoped); every model field but
 *   `name` in `spec`. The protocol state (phase, epoch, target) is in spec too, because the
 *   controller changes it with compare-and-swap together with the configuration; `status` is left
 *   to human-readable conditions.
 * - encryptionpolicies: two Kubernetes kinds, as the model's two scopes (src/policy fromStored):
 *   a namespaced policy (key `namespace/name`) is a podcrypt.io/v1 EncryptionPolicy, `spec.policies`
 *   as the model's rules; a cluster-wide one (key `name`) is a starlingx.io/v1 IPsecPolicy
 *   (cluster-scoped, as StarlingX's), its rules spelled `servicename`/`servicens`/`serviceports`.
 *   Both keep podcrypt's policy status in `.status` (the status subresource).
 * - services: core/v1 Service, `spec.selector` and `spec.ports` (`tcp/80` ↔ `{protocol: TCP, port: 80}`).
 * - endpoints: core/v1 Endpoints, one subset's addresses (`ip`, `nodeName`, `targetRef` Pod).
 * - verifyruns: podcrypt.io/v1 VerifyRun (cluster-scoped); every model field but `name` and `status`
 *   in `spec`, the nodes' reports in `.status` (the status subresource: agents write only it, with
 *   a merge patch conditional on the resourceVersion; a run's spec never changes after creation).
 *
 * Objects attached to a datastore lease carry the label `podcrypt.io/lease=<lease id>`.
 */
import {
  policyStatusSchema,
  type PolicyStatus,
  type ResourceByKind,
  type ResourceKind,
} from "../../model/index.js";

/** A Kubernetes object as JSON (the parts podcrypt reads). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** Where a kind lives in the Kubernetes API. */
export interface ResourceRef {
  /** "" for core. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** Label tying an object to a datastore lease. */
export const LEASE_LABEL = "podcrypt.io/lease";
/** Label on the coordination Leases the datastore manages: `grant` or `leader`. */
export const MANAGED_LABEL = "podcrypt.io/managed";

/** The Kubernetes resource of each kind (for encryptionpolicies, that of namespaced policies). */
export const REFS: { readonly [K in ResourceKind]: ResourceRef } = {
  nodes: {
    group: "podcrypt.io",
    version: "v1",
    plural: "podcryptnodes",
    kind: "PodcryptNode",
    namespaced: false,
  },
  clusterencryptions: {
    group: "podcrypt.io",
    version: "v1",
    plural: "clusterencryptions",
    kind: "ClusterEncryption",
    namespaced: false,
  },
  encryptionpolicies: {
    group: "podcrypt.io",
    version: "v1",
    plural: "encryptionpolicies",
    kind: "EncryptionPolicy",
    namespaced: true,
  },
  services: { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true },
  endpoints: { group: "", version: "v1", plural: "endpoints", kind: "Endpoints", namespaced: true },
  verifyruns: {
    group: "podcrypt.io",
    version: "v1",
    plural: "verifyruns",
    kind: "VerifyRun",
    namespaced: false,
  },
};

/**
 * The core Kubernetes Node: read for what Kubernetes assigned a node; written only to add or remove
 * the workload-gating taint, by the controller as the node's record asks ({@link taintPatch}).
 */
export const KUBE_NODE_REF: ResourceRef = {
  group: "",
  version: "v1",
  plural: "nodes",
  kind: "Node",
  namespaced: false,
};

/** StarlingX's IPsecPolicy (cluster-scoped): the cluster-wide encryptionpolicies. */
export const IPSEC_POLICY_REF: ResourceRef = {
  group: "starlingx.io",
  version: "v1",
  plural: "ipsecpolicies",
  kind: "IPsecPolicy",
  namespaced: false,
};

/** Every Kubernetes resource holding objects of `kind`. */
export function refsOf(kind: ResourceKind): readonly ResourceRef[] {
  return kind === "encryptionpolicies" ? [REFS.encryptionpolicies, IPSEC_POLICY_REF] : [REFS[kind]];
}

/** The API path of a collection (`namespace` "" = all namespaces) or of one object. */
export function apiPath(ref: ResourceRef, namespace: string, name?: string): string {
  const base = ref.group === "" ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  const ns = ref.namespaced && namespace !== "" ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  return `${base}${ns}/${ref.plural}${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;
}

/** Where the object of `key` lives: its Kubernetes resource, namespace ("" if cluster-scoped) and name. */
export function locate(
  kind: ResourceKind,
  key: string,
): { ref: ResourceRef; namespace: string; name: string } {
  const i = key.indexOf("/");
  if (kind === "encryptionpolicies" && i < 0) return { ref: IPSEC_POLICY_REF, namespace: "", name: key };
  const ref = REFS[kind];
  if (!ref.namespaced || i < 0) return { ref, namespace: "", name: key };
  return { ref, namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** The part of a Kubernetes object that holds a `kind` value, as written by `toKube`. */
export interface KubeParts {
  labels: Record<string, string>;
  /** Top-level fields other than metadata (spec, status of a node record, subsets). */
  body: Record<string, unknown>;
}

/** The Kubernetes representation of a validated value. */
export function toKube<K extends ResourceKind>(kind: K, value: ResourceByKind[K]): KubeParts {
  const parts: KubeParts = { labels: {}, body: {} };
  switch (kind) {
    case "nodes": {
      const { name: _name, status, ...spec } = value as ResourceByKind["nodes"];
      parts.body["spec"] = spec;
      if (status !== undefined) parts.body["status"] = status;
      break;
    }
    case "clusterencryptions": {
      const { name: _name, ...spec } = value as ResourceByKind["clusterencryptions"];
      parts.body["spec"] = spec;
      break;
    }
    case "encryptionpolicies": {
      const p = value as ResourceByKind["encryptionpolicies"];
      parts.body["spec"] = {
        policies:
          p.namespace === undefined
            ? p.policies.map((r) => ({
                name: r.name,
                servicename: r.service,
                servicens: r.namespace,
                serviceports: r.ports,
              }))
            : p.policies,
      };
      break;
    }
    case "services": {
      const s = value as ResourceByKind["services"];
      parts.body["spec"] = {
        selector: s.selector,
        ports: s.ports.map((p) => {
          const [proto, port] = p.split("/");
          return {
            name: `${proto!.toLowerCase()}-${port!}`,
            protocol: proto!.toUpperCase(),
            port: Number(port),
          };
        }),
      };
      break;
    }
    case "endpoints": {
      const e = value as ResourceByKind["endpoints"];
      const addresses = e.addresses.map((a) => ({
        ip: a.ip,
        ...(a.node === undefined ? {} : { nodeName: a.node }),
        ...(a.pod === undefined ? {} : { targetRef: { kind: "Pod", name: a.pod, namespace: e.namespace } }),
      }));
      parts.body["subsets"] = addresses.length === 0 ? [] : [{ addresses }];
      break;
    }
    case "verifyruns": {
      const { name: _name, status, ...spec } = value as ResourceByKind["verifyruns"];
      parts.body["spec"] = spec;
      if (status !== undefined) parts.body["status"] = status;
      break;
    }
  }
  return parts;
}

/**
 * podcrypt's policy status in a policy object's `.status`, when it validates (an IPsecPolicy's
 * own `status.status` string and anything else there are not podcrypt's). A status that does not
 * validate is left out: it must never make the policy itself invalid.
 */
export function policyStatusOf(obj: KubeObject): PolicyStatus | undefined {
  const st = obj["status"];
  if (typeof st !== "object" || st === null) return undefined;
  const s = st as Record<string, unknown>;
  const pick = Object.fromEntries(
    ["conditions", "programmedNodes", "nodes", "selectedEndpoints", "observedGeneration"]
      .filter((k) => s[k] !== undefined && s[k] !== null)
      .map((k) => [k, s[k]]),
  );
  const r = policyStatusSchema.safeParse(pick);
  return r.success ? r.data : undefined;
}

/**
 * The merge patch of a policy's status subresource that makes podcrypt's part of it `status`
 * (fields it does not set are removed; an IPsecPolicy's own `status.status` is left alone).
 */
export function policyStatusPatch(status: PolicyStatus): Record<string, unknown> {
  return {
    conditions: status.conditions,
    programmedNodes: status.programmedNodes,
    nodes: status.nodes,
    selectedEndpoints: status.selectedEndpoints,
    observedGeneration: status.observedGeneration ?? null,
  };
}

/** The podcrypt key and unvalidated value held by a Kubernetes object of resource `ref`. */
export function fromKube(
  kind: ResourceKind,
  obj: KubeObject,
  ref: ResourceRef = REFS[kind],
): { key: string; raw: Record<string, unknown> } {
  const meta = obj.metadata ?? {};
  const name = meta.name ?? "";
  const ns = meta.namespace ?? "";
  const spec = (obj["spec"] ?? {}) as Record<string, unknown>;
  switch (kind) {
    case "nodes": {
      const status = obj["status"];
      return {
        key: name,
        raw: { ...spec, name, ...(status === undefined || status === null ? {} : { status }) },
      };
    }
    case "clusterencryptions":
      return { key: name, raw: { ...spec, name } };
    case "encryptionpolicies": {
      const status = policyStatusOf(obj);
      const withStatus = (raw: Record<string, unknown>) => (status === undefined ? raw : { ...raw, status });
      if (ref.kind === IPSEC_POLICY_REF.kind && ref.group === IPSEC_POLICY_REF.group)
        return { key: name, raw: withStatus(fromIpsecPolicy(obj)) };
      return { key: `${ns}/${name}`, raw: withStatus({ name, namespace: ns, policies: spec["policies"] }) };
    }
    case "services": {
      const ports = Array.isArray(spec["ports"])
        ? (spec["ports"] as { protocol?: string; port?: number }[])
        : [];
      return {
        key: `${ns}/${name}`,
        raw: {
          name,
          namespace: ns,
          selector: spec["selector"] ?? {},
          ports: ports.map((p) => `${(p.protocol ?? "TCP").toLowerCase()}/${String(p.port)}`),
        },
      };
    }
    case "endpoints": {
      const subsets = Array.isArray(obj["subsets"]) ? (obj["subsets"] as { addresses?: unknown[] }[]) : [];
      const addresses = subsets.flatMap((s) =>
        (s.addresses ?? []).map((x) => {
          const a = x as { ip?: string; nodeName?: string; targetRef?: { kind?: string; name?: string } };
          return {
            ip: a.ip,
            ...(a.nodeName === undefined || a.nodeName === null ? {} : { node: a.nodeName }),
            ...(a.targetRef?.kind === "Pod" && a.targetRef.name !== undefined
              ? { pod: a.targetRef.name }
              : {}),
          };
        }),
      );
      return { key: `${ns}/${name}`, raw: { name, namespace: ns, addresses } };
    }
    case "verifyruns": {
      const status = obj["status"];
      return {
        key: name,
        raw: { ...spec, name, ...(status === undefined || status === null ? {} : { status }) },
      };
    }
  }
}

/**
 * A StarlingX IPsecPolicy (cluster-scoped) as a cluster-wide EncryptionPolicy input:
 * `spec.policies[].servicename`, `servicens`, `serviceports` become `service`, `namespace`,
 * `ports`; rule names are made `<servicename>-<index>` when absent.
 */
export function fromIpsecPolicy(obj: KubeObject): Record<string, unknown> {
  const spec = (obj["spec"] ?? {}) as { policies?: unknown };
  const rules = Array.isArray(spec.policies) ? (spec.policies as Record<string, unknown>[]) : spec.policies;
  return {
    name: obj.metadata?.name,
    policies: Array.isArray(rules)
      ? rules.map((r, i) => ({
          name: r["name"] ?? `${String(r["servicename"])}-${i}`,
          service: r["servicename"],
          namespace: r["servicens"],
          ports: r["serviceports"],
        }))
      : rules,
  };
}

/** One RFC 6902 JSON patch operation, as far as podcrypt sends them. */
export interface JsonPatchOp {
  readonly op: "test" | "add" | "remove";
  /** RFC 6901 JSON pointer. */
  readonly path: string;
  /** For `test` and `add`. */
  readonly value?: unknown;
}

/** A Node taint as podcrypt writes it (Kubernetes core/v1 Taint; a key and effect identify one). */
export interface NodeTaint {
  readonly key: string;
  readonly effect: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
}

/**
 * The RFC 6902 JSON patch that adds (`present`) or removes `taint` on Node `node` as read, or
 * undefined when the Node already is as asked. It touches only `spec.taints` entries of that key
 * and effect (appended at the end; removed by index), and its first operation tests
 * `metadata.resourceVersion`: if anything wrote the Node since it was read (another taint added or
 * removed, indices moved), the API server refuses the whole patch (422) instead of losing or
 * removing someone else's taint, and the caller reads again. Other taints are never re-sent.
 */
export function taintPatch(node: KubeObject, taint: NodeTaint, present: boolean): JsonPatchOp[] | undefined {
  const spec = node["spec"];
  const list = typeof spec === "object" && spec !== null ? (spec as { taints?: unknown }).taints : undefined;
  const taints: unknown[] | undefined = Array.isArray(list) ? list : undefined;
  const ours = (t: unknown): boolean => {
    const o = (typeof t === "object" && t !== null ? t : {}) as { key?: unknown; effect?: unknown };
    return o.key === taint.key && o.effect === taint.effect;
  };
  const test: JsonPatchOp = {
    op: "test",
    path: "/metadata/resourceVersion",
    value: node.metadata?.resourceVersion ?? "",
  };
  const value = { key: taint.key, effect: taint.effect };
  if (present) {
    if (taints?.some(ours) === true) return undefined;
    if (taints !== undefined) return [test, { op: "add", path: "/spec/taints/-", value }];
    if (typeof spec === "object" && spec !== null)
      return [test, { op: "add", path: "/spec/taints", value: [value] }];
    return [test, { op: "add", path: "/spec", value: { taints: [value] } }];
  }
  const at = (taints ?? []).flatMap((t, i) => (ours(t) ? [i] : []));
  if (at.length === 0) return undefined;
  // From the last: removing one does not move the indices of those before it.
  return [test, ...at.reverse().map((i): JsonPatchOp => ({ op: "remove", path: `/spec/taints/${i}` }))];
}
