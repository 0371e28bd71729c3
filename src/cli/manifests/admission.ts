/**
 * The ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, Kubernetes 1.30+) that let an
 * agent write only its own node's record, only its own node's liveness Lease
 * ({@link OWN_LEASE_POLICY}), and only its own node's report in a verify run's status
 * ({@link OWN_REPORT_POLICY}). Agents have no write on Node objects at all (RBAC: read only), so
 * no policy is needed there: workload gating's taint is written by the controller.
 *
 * The record: RBAC grants the agents' service account `create` and `update` on every PodcryptNode
 * (it cannot name "the node this pod runs on"); the first policy denies any of those requests whose
 * object is not named after the node the request's token is bound to.
 *
 * How the node is known: a DaemonSet pod's service-account token is bound to the pod, and since
 * Kubernetes 1.30 (ServiceAccountTokenPodNodeInfo) also names the node the pod was scheduled to.
 * The API server's token authenticator copies that into the request's user info as
 * `extra["authentication.kubernetes.io/node-name"]` (a one-element list), which a compromised
 * agent cannot forge: it comes from the signed token, not from the request. A token without it
 * (not bound to a pod, or a cluster older than 1.30) is denied outright: fail closed.
 */
import { COMPONENT_NAMES, type ManifestOptions } from "./options.js";
import { PODCRYPT_GROUP } from "./crds.js";
import { NODE_LEASE_PREFIX } from "../../datastore/kubernetes/datastore.js";

/** The user-info extra key holding the node a bound service-account token belongs to. */
export const NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name";

/** The CEL of one agent policy: which requests it governs, what they must satisfy, the refusal message. */
export interface AgentPolicyExpressions {
  match: string;
  validation: string;
  message: string;
}

/**
 * What both agent policies say in CEL: which requests they govern (`match`: the agents' service
 * account only; people and the controller are not matched), whether the token is bound to exactly
 * one node (`bound`), that node's name (`node`), and the end of the refusal message naming the
 * token's node(s) and the object (`refusal`).
 */
function agentToken(o: ManifestOptions): { match: string; bound: string; node: string; refusal: string } {
  const user = `system:serviceaccount:${o.namespace}:${COMPONENT_NAMES.agent}`;
  const key = `'${NODE_NAME_EXTRA}'`;
  const extra = `request.userInfo.extra[${key}]`;
  return {
    match: `request.userInfo.username == '${user}'`,
    bound: `${key} in request.userInfo.extra && size(${extra}) == 1`,
    node: `${extra}[0]`,
    refusal: `(${key} in request.userInfo.extra ? ${extra}.join(',') : 'none') + ', the object is ' + request.name`,
  };
}

/** Name of the record policy and of its binding. */
export const OWN_NODE_POLICY = "podcrypt-agent-own-node";

/** The CEL expressions of the policy (also read by the tests). */
export function ownNodeExpressions(o: ManifestOptions): AgentPolicyExpressions {
  const t = agentToken(o);
  return {
    match: t.match,
    // The node the token is bound to must be the record's name (request.name is set for CREATE
    // and UPDATE of a named object alike).
    validation: `${t.bound} && ${t.node} == request.name`,
    message: `'an agent may write only the PodcryptNode of its own node: the token is bound to node ' + ${t.refusal}`,
  };
}

/** Name of the policy (and binding) that limits an agent to its own node's liveness Lease. */
export const OWN_LEASE_POLICY = "podcrypt-agent-own-lease";

/**
 * The CEL expressions of the own-Lease policy: an agent may write (create, renew) only the Lease
 * `podcrypt-node-<its node>` (src/datastore/kubernetes/datastore.ts holdLiveness), never the
 * controller's leader Lease nor another node's liveness, under the same token binding as above.
 */
export function ownLeaseExpressions(o: ManifestOptions): AgentPolicyExpressions {
  const t = agentToken(o);
  return {
    match: t.match,
    validation: `${t.bound} && request.name == '${NODE_LEASE_PREFIX}' + ${t.node}`,
    message: `'an agent may write only the Lease ${NODE_LEASE_PREFIX}<its node>: the token is bound to node ' + ${t.refusal}`,
  };
}

/** A ValidatingAdmissionPolicy for the agents' writes of `resource` and its Deny binding. */
function agentPolicy(
  name: string,
  apiGroup: string,
  resource: string,
  e: AgentPolicyExpressions,
): Record<string, unknown>[] {
  const labels = { "app.kubernetes.io/part-of": "podcrypt" };
  return [
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name, labels },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [apiGroup],
              apiVersions: ["*"],
              operations: ["CREATE", "UPDATE", "DELETE"],
              resources: [resource],
            },
          ],
        },
        matchConditions: [{ name: "podcrypt-agent", expression: e.match }],
        validations: [{ expression: e.validation, messageExpression: e.message, reason: "Forbidden" }],
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name, labels },
      spec: { policyName: name, validationActions: ["Deny"] },
    },
  ];
}

/** Name of the policy limiting an agent's VerifyRun status writes to its own node's report, and of its binding. */
export const OWN_REPORT_POLICY = "podcrypt-agent-own-report";

/**
 * The CEL of the VerifyRun policy (also read by the tests): the agents' service account may write
 * a run's status (RBAC grants `verifyruns/status` patch; the spec is not a status write's to
 * change) only with a token bound to a node, and may change there only that node's report,
 * `status.reports.<node>`: every other node's report stays as it was, none removed or added.
 */
export function ownReportExpressions(o: ManifestOptions): {
  match: string;
  validations: { expression: string; message?: string; messageExpression?: string }[];
} {
  const key = `'${NODE_NAME_EXTRA}'`;
  const extra = `request.userInfo.extra[${key}]`;
  const node = `${extra}[0]`;
  const reports = (obj: "object" | "oldObject") =>
    `(has(${obj}.status) && has(${obj}.status.reports) ? ${obj}.status.reports : {})`;
  const [now, before] = [reports("object"), reports("oldObject")];
  return {
    match: ownNodeExpressions(o).match,
    validations: [
      {
        expression: `${key} in request.userInfo.extra && size(${extra}) == 1`,
        message: "an agent may write a verify run's report only with a token bound to its node",
      },
      {
        expression:
          `${now}.all(k, k == ${node} || (k in ${before} && ${now}[k] == ${before}[k])) && ` +
          `${before}.all(k, k == ${node} || k in ${now})`,
        messageExpression: `'an agent may write only the report of its own node (' + ${node} + ') in the status of a verify run'`,
      },
    ],
  };
}

/** The policies and their bindings: own node record, own liveness Lease, own verify report. */
export function admissionObjects(o: ManifestOptions): Record<string, unknown>[] {
  const r = ownReportExpressions(o);
  const labels = { "app.kubernetes.io/part-of": "podcrypt" };
  return [
    ...agentPolicy(OWN_NODE_POLICY, PODCRYPT_GROUP, "podcryptnodes", ownNodeExpressions(o)),
    ...agentPolicy(OWN_LEASE_POLICY, "coordination.k8s.io", "leases", ownLeaseExpressions(o)),
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name: OWN_REPORT_POLICY, labels },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [PODCRYPT_GROUP],
              apiVersions: ["*"],
              operations: ["UPDATE"],
              resources: ["verifyruns/status"],
            },
          ],
        },
        matchConditions: [{ name: "podcrypt-agent", expression: r.match }],
        validations: r.validations.map((v) => ({ ...v, reason: "Forbidden" })),
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name: OWN_REPORT_POLICY, labels },
      spec: { policyName: OWN_REPORT_POLICY, validationActions: ["Deny"] },
    },
  ];
}
