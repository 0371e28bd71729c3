/**
 * The ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, Kubernetes 1.30+) that let an
 * agent write only its own node's record, and patch its own Node only to add or remove the
 * workload-gating taint (the second policy, {@link OWN_NODE_TAINT_POLICY}), and write only its own
 * node's report in a verify run's status (the third, {@link OWN_REPORT_POLICY}).
 *
 * The record: RBAC grants the agents' service account `create` and `update` on every PodcryptNode
 * (it cannot name "the node this pod runs on"); the first policy denies any of those requests whose
 * object is not named after the node the request's token is bound to. The Node: RBAC grants `patch`
 * on every Node; the second denies a patch of another Node, or one that changes anything but that
 * taint.
 *
 * How the node is known: a DaemonSet pod's service-account token is bound to the pod, and since
 * Kubernetes 1.30 (ServiceAccountTokenPodNodeInfo) also names the node the pod was scheduled to.
 * The API server's token authenticator copies that into the request's user info as
 * `extra["authentication.kubernetes.io/node-name"]` (a one-element list), which a compromised
 * agent cannot forge: it comes from the signed token, not from the request. A token without it
 * (not bound to a pod, or a cluster older than 1.30) is denied outright: fail closed.
 */
import { NOT_READY_TAINT } from "../../agent/gate.js";
import { COMPONENT_NAMES, type ManifestOptions } from "./options.js";
import { PODCRYPT_GROUP } from "./crds.js";

/** The user-info extra key holding the node a bound service-account token belongs to. */
export const NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name";

/** Name of the record policy and of its binding. */
export const OWN_NODE_POLICY = "podcrypt-agent-own-node";

/** The CEL expressions of the policy (also read by the tests). */
export function ownNodeExpressions(o: ManifestOptions): {
  match: string;
  validation: string;
  message: string;
} {
  const user = `system:serviceaccount:${o.namespace}:${COMPONENT_NAMES.agent}`;
  const key = `'${NODE_NAME_EXTRA}'`;
  const extra = `request.userInfo.extra[${key}]`;
  return {
    // Only the agents' service account is restricted: people and the controller are not matched.
    match: `request.userInfo.username == '${user}'`,
    // The node the token is bound to must be the record's name (request.name is set for CREATE
    // and UPDATE of a named object alike).
    validation: `${key} in request.userInfo.extra && ` + `size(${extra}) == 1 && ${extra}[0] == request.name`,
    message:
      `'an agent may write only the PodcryptNode of its own node: the token is bound to node ' + ` +
      `(${key} in request.userInfo.extra ? ${extra}.join(',') : 'none') + ', the object is ' + request.name`,
  };
}

/** Name of the policy limiting an agent's Node patches to its own Node's taint, and of its binding. */
export const OWN_NODE_TAINT_POLICY = "podcrypt-agent-own-node-taint";

/** The Node fields besides `spec.taints` an agent may not change (all of a Node's writable ones). */
const FROZEN_NODE_FIELDS = [
  "metadata.labels",
  "metadata.annotations",
  "metadata.ownerReferences",
  "metadata.finalizers",
  "spec.podCIDR",
  "spec.podCIDRs",
  "spec.providerID",
  "spec.unschedulable",
  "spec.configSource",
  "spec.externalID",
] as const;

/** `field` of `object` equals that of `oldObject`, both absent included (no optional syntax needed). */
function unchanged(field: string): string {
  return `has(object.${field}) == has(oldObject.${field}) && (!has(object.${field}) || object.${field} == oldObject.${field})`;
}

/**
 * The CEL of the Node policy (also read by the tests): the agents' service account may patch
 * (UPDATE) only the Node its token is bound to, and there change only whether the taint
 * {@link NOT_READY_TAINT} is present: every other taint stays as it was, in order, and so does
 * every other field a Node write could change (labels and annotations steer scheduling too). The
 * status is not a main-resource write's to change (and `nodes/status` is not granted).
 */
export function nodeTaintExpressions(o: ManifestOptions): {
  match: string;
  validations: { expression: string; message?: string; messageExpression?: string }[];
} {
  const own = ownNodeExpressions(o);
  const { key, effect } = NOT_READY_TAINT;
  const others = (obj: "object" | "oldObject") =>
    `(has(${obj}.spec.taints) ? ${obj}.spec.taints : []).filter(t, !(t.key == '${key}' && t.effect == '${effect}'))`;
  const extra = `request.userInfo.extra['${NODE_NAME_EXTRA}']`;
  return {
    match: own.match,
    validations: [
      {
        expression: own.validation,
        messageExpression:
          `'an agent may patch only its own Node: the token is bound to node ' + ` +
          `('${NODE_NAME_EXTRA}' in request.userInfo.extra ? ${extra}.join(',') : 'none') + ', the Node is ' + request.name`,
      },
      {
        expression: `${others("object")} == ${others("oldObject")}`,
        message: `an agent may add or remove only the taint ${key}:${effect} of its Node, no other taint`,
      },
      {
        expression: FROZEN_NODE_FIELDS.map((f) => `(${unchanged(f)})`).join(" && "),
        message: `an agent may change only the taint ${key}:${effect} of its Node, none of its other fields (${FROZEN_NODE_FIELDS.join(", ")})`,
      },
    ],
  };
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

/** The policies and their bindings. */
export function admissionObjects(o: ManifestOptions): Record<string, unknown>[] {
  const e = ownNodeExpressions(o);
  const t = nodeTaintExpressions(o);
  const r = ownReportExpressions(o);
  const labels = { "app.kubernetes.io/part-of": "podcrypt" };
  return [
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name: OWN_NODE_POLICY, labels },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [PODCRYPT_GROUP],
              apiVersions: ["*"],
              operations: ["CREATE", "UPDATE", "DELETE"],
              resources: ["podcryptnodes"],
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
      metadata: { name: OWN_NODE_POLICY, labels },
      spec: { policyName: OWN_NODE_POLICY, validationActions: ["Deny"] },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name: OWN_NODE_TAINT_POLICY, labels },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          resourceRules: [
            { apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["nodes"] },
          ],
        },
        matchConditions: [{ name: "podcrypt-agent", expression: t.match }],
        validations: t.validations.map((v) => ({ ...v, reason: "Forbidden" })),
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name: OWN_NODE_TAINT_POLICY, labels },
      spec: { policyName: OWN_NODE_TAINT_POLICY, validationActions: ["Deny"] },
    },
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
