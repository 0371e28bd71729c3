/**
 * Kubernetes RBAC for the test API server: an authorizer that evaluates the ClusterRoles, Roles
 * and their bindings stored in the server (as the API server's RBAC authorizer does, from
 * k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac), and {@link installPodcrypt}, which starts a
 * server with a token per component and installs the generated CRDs, Namespace and RBAC through
 * the API as `kubectl apply` would, the admission policy included (evaluated by ./admission.ts).
 *
 * Modelled: subjects User, Group and ServiceAccount (user `system:serviceaccount:NS:NAME`, groups
 * `system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`); ClusterRoleBindings
 * grant everywhere, RoleBindings only in their namespace (to a Role there or a ClusterRole); rules
 * by apiGroups, resources (`resource/subresource` for subresources), verbs and resourceNames, each
 * with `*`. Not modelled: aggregated ClusterRoles, non-resource URLs (the server does not authorize
 * them), escalation checks on writes of RBAC objects.
 */
import { stringify } from "yaml";
import { manifestObjects } from "../../../src/cli/manifests/render.js";
import { defaultManifestOptions } from "../../../src/cli/manifests/options.js";
import { COMPONENT_NAMES } from "../../../src/cli/manifests/options.js";
import { NODE_NAME_EXTRA } from "../../../src/cli/manifests/admission.js";
import { validatingAdmission } from "./admission.js";
import type { KubeApiServerOptions, RequestRecord } from "./server.js";
import { KubeApiServer } from "./server.js";
import type { KubeObject, ObjectStore } from "./store.js";

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Subject {
  kind: "User" | "Group" | "ServiceAccount";
  name: string;
  namespace?: string;
}

/** The user name of a service account's token. */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** The users of the two podcrypt service accounts in namespace podcrypt-system. */
export const SERVICE_ACCOUNT_USERS = {
  controller: serviceAccountUser("podcrypt-system", COMPONENT_NAMES.controller),
  agent: serviceAccountUser("podcrypt-system", COMPONENT_NAMES.agent),
} as const;

function groupsOf(user: string): string[] {
  const m = /^system:serviceaccount:([^:]+):[^:]+$/.exec(user);
  const base = user === "system:anonymous" ? ["system:unauthenticated"] : ["system:authenticated"];
  return m === null ? base : [...base, "system:serviceaccounts", `system:serviceaccounts:${m[1]}`];
}

function bound(subjects: Subject[] | undefined, user: string, groups: string[]): boolean {
  return (subjects ?? []).some((s) =>
    s.kind === "User"
      ? s.name === user
      : s.kind === "Group"
        ? groups.includes(s.name)
        : serviceAccountUser(s.namespace ?? "", s.name) === user,
  );
}

const has = (list: string[] | undefined, v: string) => (list ?? []).some((x) => x === "*" || x === v);

function allows(rule: Rule, r: Omit<RequestRecord, "code">): boolean {
  const resource = r.subresource === "" ? r.resource : `${r.resource}/${r.subresource}`;
  if (!has(rule.apiGroups, r.apiGroup) || !has(rule.verbs, r.verb) || !has(rule.resources, resource))
    return false;
  if (rule.resourceNames === undefined || rule.resourceNames.length === 0) return true;
  return r.name !== "" && rule.resourceNames.includes(r.name);
}

/**
 * The RBAC decision for one request, from the RBAC objects in `store`. `superusers` (the test's
 * admin) are allowed everything, as members of system:masters are.
 */
export function rbacAllows(
  store: ObjectStore,
  r: Omit<RequestRecord, "code">,
  superusers: ReadonlySet<string>,
): boolean {
  if (superusers.has(r.user)) return true;
  const groups = groupsOf(r.user);
  const all = (resource: string): KubeObject[] =>
    store.list(store.lookup("rbac.authorization.k8s.io", "v1", resource)!, "", [], []).items;
  const clusterRoles = new Map(all("clusterroles").map((o) => [o.metadata.name!, o]));
  const roles = new Map(all("roles").map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, o]));
  const rulesOf = (o: KubeObject | undefined) => (o?.["rules"] as Rule[] | undefined) ?? [];
  for (const b of all("clusterrolebindings")) {
    if (!bound(b["subjects"] as Subject[], r.user, groups)) continue;
    const ref = b["roleRef"] as { kind: string; name: string };
    if (ref.kind === "ClusterRole" && rulesOf(clusterRoles.get(ref.name)).some((x) => allows(x, r)))
      return true;
  }
  if (r.namespace === "") return false;
  for (const b of all("rolebindings")) {
    if (b.metadata.namespace !== r.namespace || !bound(b["subjects"] as Subject[], r.user, groups)) continue;
    const ref = b["roleRef"] as { kind: string; name: string };
    const role =
      ref.kind === "ClusterRole"
        ? clusterRoles.get(ref.name)
        : roles.get(`${b.metadata.namespace}/${ref.name}`);
    if (rulesOf(role).some((x) => allows(x, r))) return true;
  }
  return false;
}

/**
 * A kubeconfig file's YAML for `server` as `user` with bearer `token`, as a service account's
 * would be (the server speaks plain HTTP on loopback, which client-node accepts only with
 * insecure-skip-tls-verify).
 */
export function kubeconfigYaml(server: string, user: string, token: string): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "test", cluster: { server, "insecure-skip-tls-verify": true } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: "test", user } }],
    "current-context": user,
  });
}

/** Options of {@link installPodcrypt}. */
export interface InstallOptions {
  /**
   * Bearer tokens of the controller's and agent's service accounts and of the test's admin. The
   * `agent` token is not bound to a node (as a token made by hand): the admission policy lets it
   * write no PodcryptNode.
   */
  tokens: { controller?: string; agent?: string; admin: string };
  /**
   * Agent tokens bound to a node, token → node name: the agent's service account with
   * `authentication.kubernetes.io/node-name` in its user info, as a DaemonSet pod's token has.
   */
  agentNodes?: Record<string, string>;
  /** Passed to the server. */
  bookmarkIntervalMs?: number;
}

/** The kinds of the generated manifests that are installed (no workloads: the test runs the daemons). */
const INSTALLED = new Set([
  "CustomResourceDefinition",
  "Namespace",
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "ConfigMap",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
]);

/** Where an object of the generated manifests is created: its collection path. */
function collectionPath(o: KubeObject): string {
  const [group, version] = String(o.apiVersion).includes("/")
    ? String(o.apiVersion).split("/")
    : ["", String(o.apiVersion)];
  const plural: Record<string, string> = {
    CustomResourceDefinition: "customresourcedefinitions",
    Namespace: "namespaces",
    ServiceAccount: "serviceaccounts",
    ConfigMap: "configmaps",
    ClusterRole: "clusterroles",
    ClusterRoleBinding: "clusterrolebindings",
    Role: "roles",
    RoleBinding: "rolebindings",
    ValidatingAdmissionPolicy: "validatingadmissionpolicies",
    ValidatingAdmissionPolicyBinding: "validatingadmissionpolicybindings",
  };
  const base = group === "" ? `/api/${version}` : `/apis/${group}/${version}`;
  const ns = o.metadata.namespace === undefined ? "" : `/namespaces/${o.metadata.namespace}`;
  return `${base}${ns}/${plural[String(o.kind)]}`;
}

/**
 * Starts a test API server on 127.0.0.1 that knows only the given tokens (401 for others) and
 * authorizes with RBAC and admits with the stored ValidatingAdmissionPolicies, then installs the
 * default `podcrypt manifests` CRDs, Namespace, ConfigMap, RBAC and admission policy through the
 * API with the admin token, in apply order. Close it with `close()`.
 */
export async function installPodcrypt(o: InstallOptions): Promise<KubeApiServer> {
  const users: NonNullable<KubeApiServerOptions["users"]> = { [o.tokens.admin]: "admin" };
  if (o.tokens.controller !== undefined) users[o.tokens.controller] = SERVICE_ACCOUNT_USERS.controller;
  if (o.tokens.agent !== undefined) users[o.tokens.agent] = SERVICE_ACCOUNT_USERS.agent;
  for (const [token, node] of Object.entries(o.agentNodes ?? {}))
    users[token] = { name: SERVICE_ACCOUNT_USERS.agent, extra: { [NODE_NAME_EXTRA]: [node] } };
  const superusers = new Set(["admin"]);
  // Requests come only after start() resolved, so `server` is set when authorize runs.
  const server: KubeApiServer = await KubeApiServer.start({
    users,
    bookmarkIntervalMs: o.bookmarkIntervalMs ?? 0,
    authorize: (r) => rbacAllows(server.store, r, superusers),
    admit: (r) => admit(r),
  });
  const admit = validatingAdmission(server.store);
  try {
    for (const obj of manifestObjects(defaultManifestOptions("test")) as unknown as KubeObject[]) {
      if (!INSTALLED.has(String(obj.kind))) continue;
      const res = await fetch(`${server.url}${collectionPath(obj)}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${o.tokens.admin}`, "Content-Type": "application/json" },
        body: JSON.stringify(obj),
      });
      if (res.status !== 201)
        throw new Error(
          `installing ${String(obj.kind)} ${obj.metadata.name}: HTTP ${res.status} ${await res.text()}`,
        );
    }
  } catch (e) {
    await server.close();
    throw e;
  }
  return server;
}
