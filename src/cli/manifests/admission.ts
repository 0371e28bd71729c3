/**
 * The ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes 1.30+) that lets an
 * agent write only its own node's record. RBAC grants the agents' service account `create` and
 * `update` on every PodcryptNode (it cannot name "the node this pod runs on"); this policy denies
 * any of those requests whose object is not named after the node the request's token is bound to.
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

/** The user-info extra key holding the node a bound service-account token belongs to. */
export const NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name";

/** Name of the policy and of its binding. */
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

/** The policy and its binding. */
export function admissionObjects(o: ManifestOptions): Record<string, unknown>[] {
  const e = ownNodeExpressions(o);
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
  ];
}
