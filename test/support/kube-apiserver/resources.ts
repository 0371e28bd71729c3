import { COMMON_FIELDS } from "./selectors.js";

/** A resource type the server serves: one (group, version, plural) with its kind and scope. */
export interface ResourceType {
  /** API group; "" for the core group. */
  group: string;
  version: string;
  /** Plural, lower case: the path segment and the RBAC resource name. */
  resource: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  /** Serves `/status`: main-resource writes keep the stored status, `/status` writes change only it. */
  statusSubresource: boolean;
  /** Status given on create is dropped (custom resources with a status subresource, Services). */
  resetStatusOnCreate: boolean;
  /** Custom resources: items carry kind/apiVersion in lists; strategic merge patch is refused. */
  custom: boolean;
  /** Field paths accepted by field selectors beyond metadata.name and metadata.namespace. */
  extraFields: readonly string[];
}

/** `group/version`, or `version` for the core group. */
export function apiVersionOf(t: Pick<ResourceType, "group" | "version">): string {
  return t.group === "" ? t.version : `${t.group}/${t.version}`;
}

/** The field paths a field selector may name for `t`. */
export function selectableFields(t: ResourceType): readonly string[] {
  return [...COMMON_FIELDS, ...t.extraFields];
}

function builtin(
  group: string,
  version: string,
  resource: string,
  kind: string,
  namespaced: boolean,
  extra: Partial<ResourceType> = {},
): ResourceType {
  return {
    group,
    version,
    resource,
    kind,
    listKind: `${kind}List`,
    namespaced,
    statusSubresource: false,
    resetStatusOnCreate: false,
    custom: false,
    extraFields: [],
    ...extra,
  };
}

/** The built-in types this server serves (those podcrypt reads or writes, Namespaces and RBAC). */
export const BUILTIN_TYPES: readonly ResourceType[] = [
  builtin("", "v1", "namespaces", "Namespace", false, {
    statusSubresource: true,
    extraFields: ["status.phase"],
  }),
  builtin("", "v1", "nodes", "Node", false, { statusSubresource: true, extraFields: ["spec.unschedulable"] }),
  builtin("", "v1", "services", "Service", true, { statusSubresource: true, resetStatusOnCreate: true }),
  builtin("", "v1", "endpoints", "Endpoints", true),
  builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
  builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
  // RBAC, for the authorizer of ./rbac.ts (and `kubectl apply` of the generated manifests).
  builtin("", "v1", "serviceaccounts", "ServiceAccount", true),
  builtin("", "v1", "configmaps", "ConfigMap", true),
  builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
  builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
  builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
  builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
  // Admission policies, for the evaluator of ./admission.ts.
  builtin(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    "ValidatingAdmissionPolicy",
    false,
  ),
  builtin(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding",
    false,
  ),
  builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, {
    statusSubresource: true,
  }),
];

/** The slice of a CustomResourceDefinition (apiextensions.k8s.io/v1) this server reads. */
export interface CrdSpec {
  group: string;
  names: { plural: string; kind: string; listKind?: string; singular?: string };
  scope: "Namespaced" | "Cluster";
  versions: { name: string; served: boolean; storage?: boolean; subresources?: { status?: object } }[];
}

/** The resource types a CRD makes the server serve: one per served version. */
export function typesOfCrd(spec: CrdSpec): ResourceType[] {
  return spec.versions
    .filter((v) => v.served)
    .map((v) => ({
      group: spec.group,
      version: v.name,
      resource: spec.names.plural,
      kind: spec.names.kind,
      listKind: spec.names.listKind ?? `${spec.names.kind}List`,
      namespaced: spec.scope === "Namespaced",
      statusSubresource: v.subresources?.status !== undefined,
      resetStatusOnCreate: v.subresources?.status !== undefined,
      custom: true,
      extraFields: [],
    }));
}
